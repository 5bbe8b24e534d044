"""Fixed-point formats, weight quantisation and the integer rescale.

Every integer tensor stands for ``q * scale`` with a ``scale`` fixed at freeze time (a float
used only while freezing; at run time only the integers exist). Three formats are used:

* ``NARROW``: ``|q| <= 127``, the 8-bit operands of every float32 conv/matmul call;
* ``WIDE``: ``|q| <= 2^14 - 1``, the residual stream and skip tensors (two 7-bit limbs per
  call, see :func:`ardm.portable.ops.limbs`);
* fixed point ``Q_f``: ``scale = 2^-f`` (e.g. GroupNorm outputs ``Q_8``, logits ``Q_6``).

A layer's accumulator has scale ``s_in * s_w[c]`` per output channel ``c``; the
:class:`Rescale` multiplies by an integer and shifts right (in int64, round half up) to move
it to the scale of the next tensor.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

NARROW = 127
"""Largest magnitude of an 8-bit operand."""

WIDE = (1 << 14) - 1
"""Largest magnitude of a wide (residual) activation."""

INT64_BITS = 62
"""Products in an int64 rescale stay below ``2^62``: one bit of headroom for the rounding."""

FLOAT64_BITS = 52
"""Products in a float64 rescale stay below ``2^52``: integers up to ``2^53`` are exact."""

FLOAT64_EXACT = 1 << 53
"""A float64 product or sum of integers is exact below this."""


def bit_length(bound: int) -> int:
    """Bits needed for a magnitude ``bound >= 0``."""
    return int(bound).bit_length()


def quantize_weight(w: torch.Tensor, *, bits: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-output-channel symmetric quantisation of ``w`` ``(O, ...)``.

    Returns ``(q, scale)``: ``q`` int64 of ``w``'s shape with ``|q| <= 2^(bits-1) - 1`` and
    ``scale`` ``(O,)`` float64 with ``w ~= q * scale``. An all-zero channel gets scale 1.
    """
    top = (1 << (bits - 1)) - 1
    w64 = w.detach().to(torch.float64).cpu()
    amax = w64.reshape(w64.shape[0], -1).abs().amax(dim=1)  # (O,)
    scale = torch.where(amax > 0, amax / top, torch.ones_like(amax))  # (O,)
    shape = (-1,) + (1,) * (w64.dim() - 1)
    q = torch.round(w64 / scale.view(shape)).clamp(-top, top).to(torch.int64)
    return q, scale


def quantize_values(x: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    """``round(x / scale)`` as int64 (for biases and tables, frozen once)."""
    return torch.round(x.detach().to(torch.float64).cpu() / scale).to(torch.int64)


@dataclass(frozen=True)
class Rescale:
    """``y = floor((x * multiplier + 2^(shift-1)) / 2^shift)``: integers ``x`` times ``ratio``.

    ``multiplier`` is an integer (one per channel, broadcasting against ``x``, or one for
    all) and ``in_bound`` bounds ``|x|``. On int64 ``x`` it runs in int64 (products below
    ``2^62``); on a float tensor holding integers it runs in float64, where every product
    and sum is an integer below ``2^53`` (``float64=True`` at freezing) and so exact: the same
    integers either way, the float64 form is faster on CPUs without 64-bit integer SIMD
    multiplies.
    """

    multiplier: torch.Tensor
    shift: int
    in_bound: int
    float64: bool = False

    @classmethod
    def from_ratio(
        cls,
        ratio: torch.Tensor | float,
        *,
        in_bound: int,
        shape: tuple[int, ...] = (-1,),
        float64: bool = False,
    ) -> Rescale:
        """The rescale by ``ratio`` (float64, ``>= 0``) of integers with ``|x| <= in_bound``."""
        r = torch.as_tensor(ratio, dtype=torch.float64).reshape(-1)
        rmax = float(r.max())
        if not rmax >= 0 or not math.isfinite(rmax):
            raise ValueError(f"a rescale ratio must be finite and >= 0, got max {rmax}")
        bits = FLOAT64_BITS if float64 else INT64_BITS
        room = bits - bit_length(in_bound)  # bits left for the multiplier
        if room < 12:
            raise ValueError(f"a rescale input bound of {in_bound} leaves no room in {bits} bits")
        top = math.frexp(rmax)[1] if rmax > 0 else 0  # rmax < 2^top
        shift = max(1, min(bits - 1, room - top))
        m = torch.round(r * 2.0**shift).to(torch.int64)
        return cls(multiplier=m.reshape(shape), shift=shift, in_bound=in_bound, float64=float64)

    @property
    def out_bound(self) -> int:
        """A bound on ``|y|`` for ``|x| <= in_bound``."""
        top = int(self.multiplier.abs().max())
        return (self.in_bound * top + (1 << (self.shift - 1))) >> self.shift

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not x.is_floating_point():
            return (x * self.multiplier + (1 << (self.shift - 1))) >> self.shift
        if not self.float64:
            raise ValueError("this rescale was frozen for int64 inputs")
        scale, half = self._float64
        return torch.addcmul(half, x, scale).floor_()  # floor(x M 2^-s + 1/2): exact

    @property
    def factor(self) -> torch.Tensor:
        """``M 2^-s`` (float64, the multiplier's shape): the rescale is ``floor(x factor + 1/2)``."""
        return self._float64[0]

    @functools.cached_property
    def _float64(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(M 2^-s, 1/2)`` in float64: ``x M 2^-s`` is exact while ``|x M| < 2^53``."""
        return self.multiplier.to(torch.float64) * 2.0**-self.shift, torch.tensor(
            0.5, dtype=torch.float64
        )


def div_round(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``round(num / den)`` (half up) for int64 ``num`` and positive int64 ``den``."""
    return torch.div(2 * num + den, 2 * den, rounding_mode="floor")


def div_round_float64(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """:func:`div_round` for float64 integers ``num``, ``den > 0`` (broadcasting) with
    ``2 |num| + 3 den <= 2^53`` (the caller's bound): ``floor((2 num + den) / (2 den))``,
    float64, the same integers.

    ``N = 2 num + den`` and ``D = 2 den`` are exact, with ``|N| + D <= 2^53``. IEEE division is
    correctly rounded, and it cannot round a non-integer quotient ``k + r / D`` (``0 < r <
    D``) up to ``k + 1``: the gap ``(D - r) / D >= 1 / D`` exceeds half an ulp of ``k + 1``,
    as ``|k + 1| D <= |N| + D <= 2^53``; nor below ``k``, which is exact; an integer quotient
    is exact. So the floor of the float quotient is the floor of ``N / D``."""
    return torch.add(den, num, alpha=2.0).div_(2.0 * den).floor_()


def isqrt(a: torch.Tensor) -> torch.Tensor:
    """``floor(sqrt(a))`` of int64 ``0 <= a < 2^52``, exactly.

    float64 ``sqrt`` is correctly rounded (IEEE 754) and ``a`` is exact in float64; the two
    integer corrections make the result exact even where a kernel were not.
    """
    s = torch.sqrt(a.to(torch.float64)).floor().to(torch.int64)
    s = s - (s * s > a).to(torch.int64)
    return s + ((s + 1) * (s + 1) <= a).to(torch.int64)


def isqrt_float64(a: torch.Tensor) -> torch.Tensor:
    """:func:`isqrt` of float64 integers ``0 <= a < 2^52``, as float64 integers: the same
    integers, with the same two corrections read off one remainder ``r = a - s^2`` (exact:
    every square is below ``2^53``): ``s`` is one too large where ``r < 0`` and one too small
    where ``r >= 2 s + 1``, i.e. ``r > 2 s``."""
    s = torch.sqrt(a).floor_()
    r = torch.addcmul(a, s, s, value=-1.0)  # a - s^2, exact
    over = r < 0
    under = r.sub_(s, alpha=2.0) > 0  # r - 2 s > 0 (before s changes)
    return s.add_(under).add_(over, alpha=-1.0)
