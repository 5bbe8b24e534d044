"""Portable (integer) evaluation of the networks: probability tables that are bit-identical
on every machine.

A float network's outputs differ in their last bits between CPUs (AVX2, AVX-512, plain C++
kernels), thread counts, batch sizes and devices, and one different bit in one probability
table derails an ANS decoder. The integer form of a network computes only with integers:

* :mod:`ardm.portable.quant` -- fixed-point formats, per-channel weight quantisation, and
  the integer rescale (multiply and shift in int64) that ends every layer;
* :mod:`ardm.portable.tables` -- exp, sigmoid and sinusoid tables computed with Python's
  ``decimal`` (correctly rounded, the same on every machine), never with libm;
* :mod:`ardm.portable.ops` -- exact conv/linear (float32 calls on integer operands
  whose every partial sum stays below ``2^24``), integer GroupNorm/LayerNorm, SiLU by table;
* :mod:`ardm.portable.attention` -- exact softmax attention (an exp table over score gaps,
  the weighted average of 8-bit values), shared by the U-Net's and the transformer's;
* :mod:`ardm.portable.pmf` -- integer logits -> an integer pmf summing to ``2^24 - K``,
  which ``constriction``'s ``Categorical(perfect=False)`` turns into exactly ``w + 1``;
  :func:`mixture_pmf` the same for a discretised logistic mixture (``cifar10-subset``) and
  ``mixture_byte_pmf`` for a 16-bit one as two 256-way symbols (high byte, then low byte);
* :mod:`ardm.portable.unet`, :mod:`ardm.portable.transformer`, :mod:`ardm.portable.wavenet` --
  the frozen integer forms of the three networks (:class:`IntegerUNet`, categorical or
  logistic-mixture heads; ``IntegerTransformer``; ``IntegerWaveNet`` with both digit stages
  or a 16-bit logistic-mixture head);
* :mod:`ardm.portable.model` -- :class:`~ardm.portable.model.PortableModel`, a frozen network
  with its head, shipped beside the weights (:mod:`ardm.portable.state`, no pickle);
* :mod:`ardm.portable.allocator` -- keeps freed memory for the large temporaries (speed only).

Freezing (``IntegerUNet.from_float``) runs the float network to calibrate activation ranges,
so it is *not* portable itself: the frozen integer state is what must be shipped, and every
machine that evaluates it gets the same bits. Not yet integer: Upscale models with the data
parametrisation, 8-bit mixtures on a WaveNet and 16-bit ones on a U-Net
(:class:`~ardm.portable.model.PortablePending`).
"""

from __future__ import annotations

from ardm.portable.pmf import PMF_TOTAL_BITS, categorical_pmf, mixture_pmf, pmf_nll_bits
from ardm.portable.unet import IntegerUNet

__all__ = ["PMF_TOTAL_BITS", "IntegerUNet", "categorical_pmf", "mixture_pmf", "pmf_nll_bits"]
