"""Networks ``f(x, known, t) -> logits`` used by ARDMs.

Every network in this package has the same call signature::

    logits = net(x, known, t)
    # x:      (B, *shape) int64 in [0, K); values at unknown positions are arbitrary
    # known:  (B, *shape) bool, True where the variable is given
    # t:      (B,) int64, number of known variables (0-indexed step)
    # logits: (B, *shape, K) float, one K-way categorical per variable

A network must never read ``x`` where ``known`` is False (no leak): it replaces those
values by its own absorbing input (token ``K`` for text; value 0 plus a mask channel for
images) before doing anything else.

Two constructor options extend the contract (``build_net(..., stages=1, out_classes=None)``):

* ``out_classes`` (default ``K``): the width of the last axis of the output,
  ``(B, *shape, out_classes)``; e.g. ``S * b`` digit logits for the direct parametrisation
  of an Upscale ARDM.
* ``stages = S > 1``: a stage-conditioned network for Upscale ARDMs
  (:class:`ardm.upscale_model.UpscaleARDM`, paper Sec. 3.2):

  * ``t`` is the *global* step ``s * D + t_in`` in ``[0, S * D)``; the network derives
    ``stage = t // D`` and ``t_in = t % D``;
  * ``x`` holds the current value of *every* position: positions not yet refined in this
    stage show the coarse value ``x^(s)``, refined ones ``x^(s+1)``. The network reads ``x``
    everywhere; there is no leak, since ``x^(s)`` is known at stage ``s``;
  * ``known`` marks the positions refined in this stage;
  * the network adds a learned stage embedding (transformer: a vector added to every token;
    U-Net: ``S`` one-hot stage channels concatenated to its input, next to the mask
    channels) and, if time-conditioned, the time embedding of ``t_in``.

  With ``stages = 1`` (the default) the network is the plain OA-ARDM one above, with the
  same parameters and names as always (old checkpoints load).

Networks expose ``K``, ``shape``, ``D``, ``stages`` and ``out_classes`` as attributes.
"""

from __future__ import annotations

from typing import Protocol

import torch


class DenoisingNet(Protocol):
    """What :class:`ardm.model.ARDM` needs from a network."""

    K: int
    shape: tuple[int, ...]
    # optional: ``stages`` (default 1) and ``out_classes`` (default ``K``), see above

    def __call__(self, x: torch.Tensor, known: torch.Tensor, t: torch.Tensor) -> torch.Tensor: ...
