"""Exact integer operations, fast: float32 calls on small integer operands.

A float32 sum of integers is exact, in any order, while every partial sum stays below
``2^24``. A conv or matmul whose operands are bounded by ``A`` and ``W`` and whose reduction
has ``n`` terms is therefore exact, and gives the same bits on every kernel, thread count and
batch size, when ``n * A * W < 2^24`` (8-bit operands: ``n <= 1040``). Larger operands are
split into 7-bit limbs (one call each) and longer reductions into chunks of input channels;
the partial results are added in int64.

Besides: integer GroupNorm/LayerNorm (integer mean and variance, exact integer square root)
and SiLU by an exact sigmoid table.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ardm.portable.quant import (
    FLOAT64_EXACT,
    Rescale,
    bit_length,
    div_round,
    div_round_float64,
    isqrt,
    isqrt_float64,
)
from ardm.portable.tables import normal_cdf_table, sigmoid_table

EXACT_LIMIT = 1 << 24
"""Every partial sum of a float32 call stays strictly below this."""

LIMB_BITS = 7
"""Lower limbs hold ``[0, 2^7)``; the top limb is signed."""


def limbs(a: torch.Tensor, bound: int) -> list[tuple[torch.Tensor, int, int]]:
    """Split integers ``a`` (``|a| <= bound``; int64, or a float tensor holding integers) into
    ``[(limb, limb_bound, shift)]`` with ``a = sum limb * 2^shift``.

    One limb when ``bound <= 256``; otherwise lower limbs ``a mod 2^7`` and a signed top limb
    with a bound of at most 256 (14-bit wide activations: two limbs).
    """
    parts: list[tuple[torch.Tensor, int, int]] = []
    shift = 0
    while bound > 256:
        if a.is_floating_point():
            hi = torch.floor(a * (1.0 / (1 << LIMB_BITS)))  # exact: a power of two
            parts.append((a - hi * (1 << LIMB_BITS), (1 << LIMB_BITS) - 1, shift))
            a = hi
        else:
            parts.append((a & ((1 << LIMB_BITS) - 1), (1 << LIMB_BITS) - 1, shift))
            a = a >> LIMB_BITS
        bound = (bound >> LIMB_BITS) + 1
        shift += LIMB_BITS
    parts.append((a, bound, shift))
    return parts


def chunk_size(terms_per_channel: int, a_bound: int, w_bound: int, channels: int) -> int:
    """Input channels per exact float32 call for a reduction of ``terms_per_channel`` each."""
    per_channel = terms_per_channel * a_bound * w_bound
    if per_channel >= EXACT_LIMIT:
        raise ValueError(
            f"one input channel already reaches 2^24 ({terms_per_channel} terms x {a_bound} x "
            f"{w_bound}); use smaller operands"
        )
    most = max(1, min(channels, (EXACT_LIMIT - 1) // per_channel))
    chunks = -(-channels // most)
    return -(-channels // chunks)  # balanced: e.g. 128 channels as 64 + 64, not 115 + 13


@dataclass(frozen=True)
class ExactConv:
    """An exact integer conv2d (or, with 1x1 kernels on ``(B, I, 1, 1)``, a linear layer).

    ``weight`` ``(O, I, kh, kw)`` holds integers ``|w| <= w_bound`` (as float32); inputs obey
    ``|a| <= a_bound``. The limbs of the input are stacked along the batch and the input
    channels split into chunks, so that each float32 call is exact; a 1x1 conv is a matmul.
    Inputs are int64 or float tensors holding integers; returns the accumulator ``(B, O, H',
    W')`` as float64 integers (exact below ``2^53``).
    """

    weight: torch.Tensor
    w_bound: int
    a_bound: int
    stride: int = 1
    padding: int = 0

    def __call__(self, a: torch.Tensor) -> torch.Tensor:
        acc: torch.Tensor | None = None
        for y, shift in self.terms(a):
            term = y.to(torch.float64) * float(1 << shift)  # exact
            acc = term if acc is None else acc + term  # integers below 2^53: exact
        assert acc is not None
        return acc

    def terms(self, a: torch.Tensor) -> list[tuple[torch.Tensor, int]]:
        """``[(y, shift)]`` with ``accumulator = sum y * 2^shift``: one float32 term per limb
        (float64 where input chunks had to be added), so a caller can fuse the sum; or, for a
        wide input of a GEMM-shaped layer (:attr:`_gemm`), the whole accumulator as one float64
        term (:attr:`_float64_weight`)."""
        _, _, kh, kw = self.weight.shape
        w64 = self._float64_weight
        if w64 is not None and self.a_bound > 256:
            return [(self._call(a.to(torch.float64), w64), 0)]
        return self._limb_terms(a, self.weight, kh * kw, self.w_bound, self._call)

    @property
    def _gemm(self) -> bool:
        """Whether :meth:`_call` is one matrix product (a 1x1 conv: no conv algorithm such as
        Winograd or FFT can enter, in float32 or float64, on any device)."""
        return self.weight.shape[2:] == (1, 1) and self.stride == 1 and self.padding == 0

    @functools.cached_property
    def _float64_weight(self) -> torch.Tensor | None:
        """The weight in float64 where one float64 matrix product on the whole (wide) input is
        exact: every product and partial sum an integer below ``2^53`` (``acc_bound``), so any
        order of summation gives the same integers. One float64 product costs about what the
        limbs' float32 products cost, without splitting the input or adding the terms."""
        if not self._gemm or self.acc_bound >= FLOAT64_EXACT:
            return None
        return self.weight.to(torch.float64)

    def terms_at(self, a: torch.Tensor, pixels: torch.Tensor) -> list[tuple[torch.Tensor, int]]:
        """:meth:`terms` at the output pixels ``pixels`` ``(m,)`` (flat ``y W' + x``) only:
        ``[(y (B, O, m), shift)]``, the same integers there (each output is the same exact sum
        of the same integer products, in float32 calls bounded as :meth:`terms` bounds them).
        The receptive fields of the pixels are gathered from the zero-padded input (before any
        split into limbs) and multiplied by the flattened kernel: for a few pixels, a small
        fraction of the conv."""
        if self.stride != 1:
            raise ValueError("terms_at needs a conv with stride 1")
        _, _, kh, kw = self.weight.shape
        W, p = a.shape[3], self.padding
        Wp = W + 2 * p
        out_w = Wp - kw + 1
        pixels = pixels.to(torch.int64)
        oy, ox = pixels // out_w, pixels % out_w  # (m,) each
        dy, dx = torch.meshgrid(torch.arange(kh), torch.arange(kw), indexing="ij")
        taps = (dy.reshape(-1, 1) + oy) * Wp + dx.reshape(-1, 1) + ox  # (kh kw, m) padded flat
        m = pixels.numel()
        B, c_in = a.shape[:2]
        xp = F.pad(a, (p, p, p, p)).flatten(2)  # (B, I, Hp Wp)
        fields = xp.index_select(2, taps.view(-1)).view(B, c_in, kh * kw, m)  # receptive fields

        def at(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
            """One exact call: fields ``(N, i, kh kw, m)`` -> ``(N, O, m)``."""
            return torch.matmul(w.reshape(w.shape[0], -1), x.reshape(x.shape[0], -1, m))

        return self._limb_terms(fields, self.weight, kh * kw, self.w_bound, at)

    def up2_terms(self, a: torch.Tensor) -> list[tuple[torch.Tensor, int]]:
        """:meth:`terms` of this conv (3x3, stride 1, padding 1) on ``a`` ``(B, I, H, W)``
        upsampled x2 by nearest neighbour, computed at ``a``'s resolution.

        Each of the four output phases ``(2i + p, 2j + q)`` reads a 2x2 neighbourhood of
        ``a``, with the 3x3 taps that land on the same input value summed (:attr:`_phases`):
        the same integer products regrouped, so the same accumulator, for 16 instead of 36
        multiply-adds per output value of ``a``'s grid. The summed taps (at most 4 weights)
        bound the chunks as :meth:`terms` does, so every float32 call stays exact.
        """
        c_out, _, kh, kw = self.weight.shape
        if (kh, kw, self.stride, self.padding) != (3, 3, 1, 1):
            raise ValueError("up2_terms needs a 3x3 conv with stride 1 and padding 1")
        H, W = a.shape[2:]

        def phases(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
            """One exact call: ``(N, i, H, W)`` -> the four phases ``(N, O, 2H, 2W)``."""
            y = F.conv2d(F.pad(x, (1, 1, 1, 1)), w)  # (N, 4 O, H + 1, W + 1)
            out = y.new_empty(y.shape[0], c_out, H, 2, W, 2)  # (N, O, H, p, W, q)
            for p in (0, 1):
                for q in (0, 1):
                    k = 2 * p + q
                    out[:, :, :, p, :, q] = y[:, k * c_out : (k + 1) * c_out, p : p + H, q : q + W]
            return out.view(y.shape[0], c_out, 2 * H, 2 * W)

        return self._limb_terms(a, self._phases, 4, 4 * self.w_bound, phases)

    def _limb_terms(
        self,
        a: torch.Tensor,
        weight: torch.Tensor,
        taps: int,
        w_bound: int,
        call: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    ) -> list[tuple[torch.Tensor, int]]:
        """``call(x, w)`` (exact for ``taps`` weights of at most ``w_bound`` per input channel)
        on the limbs of ``a`` stacked along the batch, input channels in chunks whose outputs
        add in float64; split back into one ``(y, shift)`` per limb."""
        B, c_in = a.shape[0], weight.shape[1]
        parts = limbs(a, self.a_bound)
        step = chunk_size(taps, max(b for _, b, _ in parts), w_bound, c_in)
        if len(parts) == 1 and a.dtype == torch.float32:
            x = a  # (B, I, H, W) float32 integers already
        else:
            x = torch.cat([p for p, _, _ in parts]).to(torch.float32)  # (L*B, I, H, W) exact
        y = call(x, weight) if step >= c_in else self._chunked(x, weight, step, call)
        if len(parts) == 1:
            return [(y, parts[0][2])]
        return [(y[j * B : (j + 1) * B], shift) for j, (_, _, shift) in enumerate(parts)]

    @staticmethod
    def _chunked(
        x: torch.Tensor,
        weight: torch.Tensor,
        step: int,
        call: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    ) -> torch.Tensor:
        """``call`` on chunks of ``step`` input channels, their outputs added in float64."""
        y: torch.Tensor | None = None
        for c0 in range(0, weight.shape[1], step):
            part = call(x[:, c0 : c0 + step], weight[:, c0 : c0 + step])  # exact
            y = part if y is None else y.to(torch.float64) + part  # chunks add in float64
        assert y is not None
        return y

    @functools.cached_property
    def _phases(self) -> torch.Tensor:
        """The 2x2 kernels ``(4 O, I, 2, 2)`` of the four phases of a nearest-x2 upsample
        followed by this 3x3 conv, phase ``(p, q)`` at ``(2 p + q) O``: row ``r`` of the
        2x2 kernel sums the 3x3 rows that read input row ``i - 1 + p + r`` (likewise columns)."""
        sums = torch.tensor([[[1, 0, 0], [0, 1, 1]], [[1, 1, 0], [0, 0, 1]]], dtype=torch.float64)
        w = self.weight.to(torch.float64)  # (O, I, 3, 3) integers
        k = [torch.einsum("ry,oiyx,cx->oirc", sums[p], w, sums[q]) for p in (0, 1) for q in (0, 1)]
        return torch.cat(k).to(torch.float32)  # integers |.| <= 4 w_bound: exact

    def _call(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """One exact float32 call: ``(N, i, H, W)`` -> ``(N, O, H', W')``."""
        if w.shape[2:] == (1, 1) and self.stride == 1 and self.padding == 0:
            N, i, H, W = x.shape
            y = torch.matmul(w[:, :, 0, 0], x.reshape(N, i, H * W))  # (N, O, HW)
            return y.reshape(N, -1, H, W)
        return F.conv2d(x, w, stride=self.stride, padding=self.padding)

    @property
    def acc_bound(self) -> int:
        """A bound on ``|accumulator|``."""
        _, c_in, kh, kw = self.weight.shape
        return c_in * kh * kw * self.a_bound * self.w_bound


MEAN_FRAC_BITS = 3
"""The group mean is rounded to ``2^-3`` of an input unit."""

STD_FRAC_BITS = 5
"""The standard deviation carries 5 more fractional bits than the centred values."""

COEF_BITS = 24
"""Fractional bits of the per-(item, channel) factor ``gamma / sigma``."""

FEW_CHANNELS = 192
"""At most this many (item, channel) pairs: :class:`IntNorm` computes its statistics and
factors in Python integers, where a few dozen tensor ops on tiny tensors would cost more (a
U-Net's norms at batch 1: mnist's 18 norms 5.6 -> 3.8 ms; at batch 4 and more the tensor ops
are cheaper than the Python loop over (item, channel) pairs)."""

UNCENTRED_MIN = 1024
"""Groups of at least this many values skip the centring pass (:meth:`IntNorm.unrounded`);
for smaller ones the pass costs less than the few tiny ops of the uncentred form."""


@dataclass(frozen=True)
class IntNorm:
    """Integer GroupNorm over ``(B, C, ...)`` (LayerNorm: :meth:`layer_norm`, ``groups = 1``),
    with an affine map into an output integer format.

    ``y_c = round(d * coef[b, c] / 2^24) + beta_q[c]`` where ``d`` is the input minus the
    group mean (units ``2^-3``), ``sigma`` the integer square root of the group variance
    (units ``2^-8``, with ``eps_q`` added), ``coef = round(gamma_q[c] 2^29 / (sigma
    2^gamma_bits))`` one integer division per item and channel, ``gamma_q = round(gamma / u *
    2^gamma_bits)`` and ``beta_q = round(beta / u)`` for the output unit ``u``. Inputs obey
    ``|x| <= in_bound``; outputs are clamped to ``|y| <= out_bound``. Inputs are float (or
    int64) tensors holding integers; the large products run in float64, exactly (every one
    an integer below ``2^52``, checked), and the output is float32 integers.
    """

    groups: int
    gamma_q: torch.Tensor
    beta_q: torch.Tensor
    gamma_bits: int
    eps_q: int
    in_bound: int
    out_bound: int

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        y = self.unrounded(x, shift=0.5).floor_()  # (B, C, ...) float64 integers
        # to float32 before the clamp: |y| < 2^31, and a value beyond 2^24 that rounds stays
        # beyond the bound (rounding is monotonic), so the clamp gives the same integers
        return y.to(torch.float32).clamp_(-self.out_bound, self.out_bound)

    def unrounded(self, x: torch.Tensor, *, shift: float) -> torch.Tensor:
        """``d coef / 2^24 + beta_q + shift`` (float64, exact); the output is its floor when
        ``shift = 1/2``."""
        B, C = x.shape[:2]
        g = x.reshape(B, self.groups, -1)  # (B, G, n) integers < 2^16
        n = g.shape[-1]
        if 2 * (self.in_bound.bit_length() + MEAN_FRAC_BITS + 1) + n.bit_length() > 52:
            raise ValueError(f"an integer norm of {n} values below {self.in_bound} overflows")
        gamma_q, offset, gamma_top = self._constants
        # |d| <= sqrt(V) <= sqrt(n) (sigma + 1) 2^-5, so |d coef| <= 2 sqrt(n) max|gamma/u| 2^24
        if 2 * (math.isqrt(n) + 1) * gamma_top >= 1 << (52 - COEF_BITS):
            raise ValueError("an integer norm's gamma is too large for exact float64 products")
        # the statistics in float64 integers (every value below 2^53: exact), no int64 copies
        d = g.to(torch.float64, copy=True)  # (B, G, n): one conversion, then in place
        shape = (B, C) + (1,) * (x.dim() - 2)
        if B * C <= FEW_CHANNELS:
            affine = self._few_channels_affine(d, shift)
            if affine is not None:  # the same integers from a few Python integers
                factor, bias = affine  # (B, C) each
                d = d.view(x.shape)
                return torch.addcmul(bias.view(shape), d, factor.view(shape), out=d)
        S = d.sum(dim=-1, keepdim=True)  # (B, G, 1) exact
        # the mean in 2^-3: div_round(8 S, n) = floor((16 S + n) / (2 n)), in float64 as
        # div_round_float64 (|16 S| + 3 n <= 2^53, the overflow check above): exact
        m = S.mul(2.0 * (1 << MEAN_FRAC_BITS)).add_(n).div_(2.0 * n).floor_()  # (B, G, 1)
        uncentred = n >= UNCENTRED_MIN and self._moments_exact(n)
        if uncentred:  # sum (8 g - m)^2 = 64 Q - 16 m S + n m^2 from Q = sum g^2: no centring
            Q = torch.linalg.vecdot(d, d)[..., None]  # (B, G, 1) exact
            V = torch.addcmul(Q.mul_(64.0), m, S, value=-16.0).addcmul_(m, m, value=float(n))
        else:
            d = torch.addcmul(-m, d, self._mean_unit, out=d)  # 8 g - m, exact (< 2^20)
            V = torch.linalg.vecdot(d, d)[..., None]  # (B, G, 1) exact: < 2^52
        den, den_top = self._scaled_sigma(V, n)  # (B, G, 1) float64 integers
        # gamma/(u sigma) in 2^-24: div_round(gamma_q, den) of each channel's group, broadcast
        # over the group's channels (no per-channel copy of den), in float64 where exact
        view = (1, self.groups, C // self.groups)
        if self._num_top + 3 * den_top <= FLOAT64_EXACT:
            coef = div_round_float64(self._num_float64.view(view), den)  # (B, G, C/G)
        else:
            coef = div_round(gamma_q.view(view), den.to(torch.int64)).to(torch.float64)
        # floor(d coef / 2^24 + 1/2) + beta = floor(d (coef 2^-24) + (beta + 1/2)): exact (the
        # power of two scales the product of two integers, in either order); in place on d
        o = (offset + shift).view((1, C) + (1,) * (x.dim() - 2))
        a = coef.mul_(2.0**-COEF_BITS)  # (B, G, C/G) coef 2^-24
        if uncentred and self._affine_exact(float(a.abs().max()) * 2.0**COEF_BITS, shift):
            # (8 g - m) a + o = g (8 a) + (o - m a): every product an integer times 2^-24
            # below 2^53 of that unit, and so every sum (checked), exact
            bias = o - (m * a).view(shape)  # (B, C, ...)
            d = d.view(x.shape)
            return torch.addcmul(bias, d, a.mul_(self._mean_unit).view(shape), out=d)
        if uncentred:
            d = torch.addcmul(-m, d, self._mean_unit, out=d)  # 8 g - m, exact (< 2^20)
        d = d.view(x.shape)
        return torch.addcmul(o, d, a.view(shape), out=d)

    def _few_channels_affine(
        self, d: torch.Tensor, shift: float
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """For a few channels, in groups ``d (B, G, n)`` (float64 integers): the factor ``8
        coef 2^-24`` and bias ``beta_q + shift - m coef 2^-24`` ``(B, C)`` of the uncentred
        form. The group statistics (mean, variance, square root: a few per item) in Python
        integers, exact; the per-channel divisions and constants in float64 numpy arrays
        (tiny arrays: numpy costs a fraction of a tensor op each), exact by the checks below:
        every value an integer, or an integer times a power of two, below ``2^53``. The same
        integers as the tensor path: the same mean, variance, square root and divisions, each
        rounded as there. None where the affine form would not be exact (see
        :meth:`_affine_exact`): the caller takes the tensor path."""
        B, G, n = d.shape
        sums = d.sum(dim=-1).tolist()  # (B, G) exact integers
        squares = torch.linalg.vecdot(d, d).tolist()  # (B, G)
        means: list[int] = []
        dens: list[int] = []
        for b in range(B):
            for j in range(G):
                S, Q = int(sums[b][j]), int(squares[b][j])
                m = (2 * (S << MEAN_FRAC_BITS) + n) // (2 * n)  # div_round(8 S, n)
                V = 64 * Q - 16 * m * S + n * m * m  # sum (8 g - m)^2
                sigma = math.isqrt((V << 2 * STD_FRAC_BITS) // n + self.eps_q)
                means.append(m)
                dens.append(sigma << self.gamma_bits)
        if self._num_top + 3 * max(dens) > FLOAT64_EXACT:
            return None  # the float64 division below would not be exact
        num, beta_scaled = self._numpy_constants  # (G, C/G) each
        den = np.array(dens, dtype=np.float64).reshape(B, G, 1)
        mean = np.array(means, dtype=np.float64).reshape(B, G, 1)
        # coef = div_round(gamma_q 2^29, den) = floor((2 num + den) / (2 den)): exact, as
        # quant.div_round_float64 (2 |num| + 3 den <= 2^53, checked above)
        coef = np.floor((2.0 * num + den) / (2.0 * den))  # (B, G, C/G)
        if not self._affine_exact(float(np.abs(coef).max()), shift):
            return None
        one = float(1 << COEF_BITS)
        # beta 2^24 - m coef: integers below 2^52 (_affine_exact), then powers of two: exact
        bias = (beta_scaled - mean * coef) * (1.0 / one) + shift  # (B, G, C/G)
        factor = coef * (float(1 << MEAN_FRAC_BITS) / one)  # (B, G, C/G) 8 coef 2^-24
        return (
            torch.from_numpy(factor.reshape(B, -1)).to(d.device),
            torch.from_numpy(bias.reshape(B, -1)).to(d.device),
        )

    @functools.cached_property
    def _numpy_constants(self) -> tuple[np.ndarray, np.ndarray]:
        """``gamma_q 2^29`` and ``beta_q 2^24`` per channel, float64 ``(G, C/G)`` (exact: below
        ``2^52`` and ``2^52``, checked where used)."""
        num = self._num_float64.reshape(self.groups, -1).numpy()
        beta = self.beta_q.to(torch.float64).reshape(self.groups, -1).numpy() * float(
            1 << COEF_BITS
        )
        return num, beta

    def _moments_exact(self, n: int) -> bool:
        """Whether ``64 Q - 16 m S + n m^2`` (``Q = sum g^2``, ``S = sum g``, ``m`` the mean in
        ``2^-3``) is exact in float64 for ``n`` values below ``in_bound``: every term and
        partial sum below ``2^53`` (``|m| <= 8 in_bound + 1``)."""
        b = self.in_bound
        return 64 * n * b * b + 16 * (8 * b + 1) * n * b + n * (8 * b + 1) ** 2 < FLOAT64_EXACT

    def _affine_exact(self, c: float, shift: float) -> bool:
        """Whether ``g (8 a) + (o + shift - m a)`` is exact for the factors ``a = coef 2^-24``
        with ``c = max |coef|``: ``(16 in_bound + 1) c + (max |beta_q| + |shift| + 1) 2^24``
        below ``2^53`` bounds every product and sum in units of ``2^-24`` (checked against
        ``2^52``: the check itself is in rounded float arithmetic)."""
        top = (16 * self.in_bound + 1) * c + (self._beta_top + abs(shift) + 1) * 2.0**COEF_BITS
        return top < 2.0**52

    @functools.cached_property
    def _beta_top(self) -> int:
        """``max |beta_q|``."""
        return int(self.beta_q.abs().max()) if self.beta_q.numel() else 0

    def _scaled_sigma(self, V: torch.Tensor, n: int) -> tuple[torch.Tensor, int]:
        """``isqrt(floor(V 2^10 / n) + eps_q) 2^gamma_bits`` (float64 integers) for the sums of
        squares ``V`` (float64 integers) of ``n`` centred values, and a bound on it.

        The bound comes from the inputs' bound where that already shows the float64 path
        exact (no pass over ``V``): ``V = sum (x - m)^2 = sum (x - mu)^2 + n (mu - m)^2 <=
        sum x^2 + n / 4`` for ``x = 8 g`` and ``m`` the rounded mean ``mu``, so ``V <= 64 n
        in_bound^2 + n``; else from the batch's largest ``V``."""
        scale = 1 << 2 * STD_FRAC_BITS
        top = 64 * n * self.in_bound**2 + n
        if top * scale + n > 1 << 52:
            top = int(V.max())
        bound = (math.isqrt(top * scale // n + self.eps_q) + 1) << self.gamma_bits
        if top * scale + n <= 1 << 52 and self.eps_q < 1 << 50:  # all below 2^52: exact
            A = (V * float(scale)).div_(n).floor_().add_(self.eps_q)  # floor(N / D), N + D <= 2^52
            return isqrt_float64(A).mul_(2.0**self.gamma_bits), bound
        A = ((V.to(torch.int64) << 2 * STD_FRAC_BITS) // n) + self.eps_q  # variance in 2^-16
        return (isqrt(A) << self.gamma_bits).to(torch.float64), bound

    @functools.cached_property
    def _mean_unit(self) -> torch.Tensor:
        """``2^MEAN_FRAC_BITS``: the centred values' unit per input unit (float64)."""
        return torch.tensor(float(1 << MEAN_FRAC_BITS), dtype=torch.float64)

    @functools.cached_property
    def _num_float64(self) -> torch.Tensor:
        """The numerators ``gamma_q 2^29`` of :attr:`_constants` in float64 (exact)."""
        return self._constants[0].to(torch.float64)

    @functools.cached_property
    def _num_top(self) -> int:
        """``2 max |gamma_q 2^29|``: with ``3 max den`` at most ``2^53``, the float64 division
        of :func:`div_round_float64` is exact."""
        return 2 * int(self._constants[0].abs().max())

    @functools.cached_property
    def _constants(self) -> tuple[torch.Tensor, torch.Tensor, int]:
        """``gamma_q 2^29`` ``(C, 1)``, ``beta_q`` float64 ``(C,)`` and a bound on ``|gamma/u|``."""
        num = (self.gamma_q << (STD_FRAC_BITS + COEF_BITS))[:, None]  # (C, 1) < 2^52
        top = (int(self.gamma_q.abs().max()) >> self.gamma_bits) + 1
        return num, self.beta_q.to(torch.float64), top

    def layer_norm(self, x: torch.Tensor) -> torch.Tensor:
        """LayerNorm over the last axis of ``x (..., C)`` (a one-group norm per position)."""
        C = x.shape[-1]
        return self(x.reshape(-1, C)).reshape(x.shape)  # (..., C)

    @classmethod
    def freeze(
        cls,
        norm: torch.nn.GroupNorm | torch.nn.LayerNorm,
        *,
        in_scale: float,
        in_bound: int,
        out_unit: float,
        out_bound: int,
    ) -> IntNorm:
        """The integer form of ``norm`` for inputs of scale ``in_scale``, outputs in ``out_unit``."""
        gamma = norm.weight.detach().to(torch.float64) / out_unit  # (C,)
        top = float(gamma.abs().max())
        gamma_bits = max(0, 22 - (int(top).bit_length() if top >= 1 else 0))  # gamma_q < 2^23
        eps_q = round(norm.eps / in_scale**2 * 2.0 ** (2 * (MEAN_FRAC_BITS + STD_FRAC_BITS)))
        return cls(
            groups=norm.num_groups if isinstance(norm, torch.nn.GroupNorm) else 1,
            gamma_q=torch.round(gamma * 2.0**gamma_bits).to(torch.int64),
            beta_q=torch.round(norm.bias.detach().to(torch.float64) / out_unit).to(torch.int64),
            gamma_bits=gamma_bits,
            eps_q=max(1, eps_q),
            in_bound=in_bound,
            out_bound=out_bound,
        )


SILU_IN_FRAC_BITS = 8
"""SiLU inputs are ``Q_8``."""

SIGMOID_SPAN = 16
SIGMOID_BITS = 16
SILU_IN_BOUND = 1 << 24
"""SiLU inputs are clamped to ``|z| <= 2^24`` (65536 in value)."""


def sigmoid_q16(z: torch.Tensor) -> torch.Tensor:
    """``round(2^16 sigmoid(z / 2^8))`` for int64 ``Q_8`` inputs: the exact table inside
    ``|z| < 16``, and 0 or ``2^16`` beyond (where the table has saturated)."""
    table = sigmoid_table(frac_bits=SILU_IN_FRAC_BITS, span=SIGMOID_SPAN, out_bits=SIGMOID_BITS)
    n = SIGMOID_SPAN << SILU_IN_FRAC_BITS
    s = table[z.clamp(-n, n - 1) + n]
    return torch.where(z >= n, 1 << SIGMOID_BITS, s)


@dataclass(frozen=True)
class IntSiLU:
    """``silu(z) = z * sigmoid(z)`` for ``Q_8`` inputs by the exact sigmoid table, then an
    int64 :class:`Rescale` to the output format, clamped to ``|y| <= out_bound``. Returns
    float32 integers; for large tensors with 8-bit outputs :class:`SiLUTable` is faster."""

    rescale: Rescale
    out_bound: int

    @classmethod
    def freeze(cls, *, out_scale: float, out_bound: int) -> IntSiLU:
        """SiLU into integers of scale ``out_scale``."""
        ratio = 2.0 ** -(SILU_IN_FRAC_BITS + SIGMOID_BITS) / out_scale
        bound = SILU_IN_BOUND << SIGMOID_BITS
        return cls(Rescale.from_ratio(ratio, in_bound=bound), out_bound)

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        z = z.to(torch.int64).clamp(-SILU_IN_BOUND, SILU_IN_BOUND)
        y = self.rescale(z * sigmoid_q16(z)).clamp(-self.out_bound, self.out_bound)
        return y.to(torch.float32)


@dataclass(frozen=True)
class SiLUTable:
    """:class:`IntSiLU` as one lookup: the table of its output for every ``Q_8`` input in
    ``[-half, half)``, wide enough that the output has saturated at either end (``-half``:
    0, ``half - 1``: ``out_bound``); inputs and outputs are float32 integers."""

    table: torch.Tensor  # (2 half,) float32 integers
    half: int

    @classmethod
    def freeze(cls, *, out_scale: float, out_bound: int) -> SiLUTable:
        """SiLU into integers of scale ``out_scale`` with ``|y| <= out_bound``."""
        span = max(SIGMOID_SPAN, math.ceil(out_bound * out_scale) + 1)
        half = span << SILU_IN_FRAC_BITS
        z = torch.arange(-half, half)  # (2 half,) every Q_8 input in range
        silu = IntSiLU.freeze(out_scale=out_scale, out_bound=out_bound)
        return cls(silu(z), half)

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        i = (z.clamp(-self.half, self.half - 1) + self.half).to(torch.int32)  # fast conversion
        return self.table.index_select(0, i.reshape(-1)).view(i.shape)  # float32 integers


@dataclass(frozen=True)
class NormSiLU:
    """``silu(norm(x))``: an :class:`IntNorm` into ``Q_8`` and a :class:`SiLUTable`, fused so
    that the normalised value indexes the table directly (the same integers as the two)."""

    norm: IntNorm
    silu: SiLUTable

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm.unrounded(x, shift=0.5 + self.silu.half)  # (B, C, ...) index + fraction
        # the index is clamp(floor(y), 0, 2 half - 1): truncation to int32 (|y| < 2^31) differs
        # from the floor only below 0, where the clamp gives 0 either way (a fast conversion,
        # then the clamp on 4-byte integers)
        top = 2 * self.silu.half - 1
        if self._int32_index:
            i = y.to(torch.int32).clamp_(0, top)
        else:  # clamped to [0, top] first, truncation is the floor
            i = y.clamp_(0, top).to(torch.int32)
        return self.silu.table.index_select(0, i.view(-1)).view(i.shape)  # float32 integers

    @functools.cached_property
    def _int32_index(self) -> bool:
        """Whether every unrounded index is below ``2^31`` in magnitude: ``|d coef| 2^-24 <
        2^28`` (:class:`IntNorm`'s own check) plus ``|beta_q| + half + 1``."""
        top = (1 << 28) + int(self.norm.beta_q.abs().max()) + self.silu.half + 1
        return top < 1 << 31


def ensure_bits(bound: int, bits: int, what: str) -> None:
    """Raise if ``bound`` needs more than ``bits`` bits."""
    if bit_length(bound) > bits:
        raise ValueError(f"{what}: bound {bound} exceeds {bits} bits")


GELU_IN_FRAC_BITS = 8
"""GELU inputs are ``Q_8``."""

NORMAL_CDF_SPAN = 16
NORMAL_CDF_BITS = 16


def normal_cdf_q16(z: torch.Tensor) -> torch.Tensor:
    """``round(2^16 Phi(z / 2^8))`` for int64 ``Q_8`` inputs: the exact table inside ``|z| <
    16``, and 0 or ``2^16`` beyond (where the table has saturated)."""
    table = normal_cdf_table(
        frac_bits=GELU_IN_FRAC_BITS, span=NORMAL_CDF_SPAN, out_bits=NORMAL_CDF_BITS
    )
    n = NORMAL_CDF_SPAN << GELU_IN_FRAC_BITS
    p = table[z.clamp(-n, n - 1) + n]
    return torch.where(z >= n, 1 << NORMAL_CDF_BITS, p)


@dataclass(frozen=True)
class IntGELU:
    """``gelu(z) = z * Phi(z)`` (exact erf form, as ``F.gelu``) for ``Q_8`` inputs by the exact
    normal-CDF table, then an int64 :class:`Rescale` to the output format, clamped to ``|y| <=
    out_bound``. Returns float32 integers; :class:`GELUTable` is its one-lookup form."""

    rescale: Rescale
    out_bound: int

    @classmethod
    def freeze(cls, *, out_scale: float, out_bound: int) -> IntGELU:
        """GELU into integers of scale ``out_scale``."""
        ratio = 2.0 ** -(GELU_IN_FRAC_BITS + NORMAL_CDF_BITS) / out_scale
        bound = SILU_IN_BOUND << NORMAL_CDF_BITS
        return cls(Rescale.from_ratio(ratio, in_bound=bound), out_bound)

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        z = z.to(torch.int64).clamp(-SILU_IN_BOUND, SILU_IN_BOUND)
        y = self.rescale(z * normal_cdf_q16(z)).clamp(-self.out_bound, self.out_bound)
        return y.to(torch.float32)


@dataclass(frozen=True)
class GELUTable:
    """:class:`IntGELU` as one lookup: its output for every ``Q_8`` input in ``[-half,
    half)``, wide enough that the output has saturated at either end (``-half``: 0, ``half -
    1``: ``out_bound``); inputs and outputs are float32 integers."""

    table: torch.Tensor  # (2 half,) float32 integers
    half: int

    @classmethod
    def freeze(cls, *, out_scale: float, out_bound: int) -> GELUTable:
        """GELU into integers of scale ``out_scale`` with ``|y| <= out_bound``."""
        span = max(NORMAL_CDF_SPAN, math.ceil(out_bound * out_scale) + 1)
        half = span << GELU_IN_FRAC_BITS
        z = torch.arange(-half, half)  # (2 half,) every Q_8 input in range
        return cls(IntGELU.freeze(out_scale=out_scale, out_bound=out_bound)(z), half)

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        i = (z.clamp(-self.half, self.half - 1) + self.half).to(torch.int32)  # fast conversion
        return self.table.index_select(0, i.reshape(-1)).view(i.shape)  # float32 integers


@dataclass(frozen=True)
class ExactDilatedConv(ExactConv):
    """An exact integer conv1d with dilation, on ``(B, I, 1, L)`` (a row of height 1): kernel
    ``(O, I, 1, k)``, zero ``padding`` on both ends of ``L`` and taps ``dilation`` apart.

    Each call stacks the ``k`` shifted copies of its input along the channels and does one
    matmul (a plain GEMM: no Winograd or FFT algorithm can enter), every partial sum an
    integer below ``2^24`` as for :class:`ExactConv` (the fan-in is ``k`` per channel).
    Only ``stride = 1`` (same-length output when ``padding = dilation * (k - 1) / 2``).
    """

    dilation: int = 1

    @property
    def _gemm(self) -> bool:
        """Always: :meth:`_call` stacks the shifted copies and does one matrix product."""
        return True

    @property
    def taps_exact(self) -> bool:
        """Whether a wide input takes :meth:`taps_accumulator` (float64 taps are exact)."""
        return self.a_bound > 256 and self._float64_taps is not None

    def padded(self, x: torch.Tensor) -> torch.Tensor:
        """An empty float64 input ``(N, I, L + 2 padding)`` for :meth:`taps_accumulator`, its
        padding already zero; the caller writes the input into ``[..., padding : padding + L]``
        of ``x (N, I, 1, L)``'s length."""
        N, i, _, L = x.shape
        p = self.padding
        z = torch.empty(N, i, L + 2 * p, dtype=torch.float64, device=x.device)
        z[..., :p] = 0
        z[..., L + p :] = 0
        return z

    def taps_accumulator(self, z: torch.Tensor) -> torch.Tensor:
        """The accumulator ``(N, O, 1, L)`` (float64 integers) on the zero-padded input ``z``
        (:meth:`padded`; ``|z| <= a_bound``), without copying its taps: one float64 matrix
        product per tap on a shifted view of ``z``, the GEMM adding each into the last. Every
        product and partial sum is an integer below ``acc_bound < 2^53``, so exact in any
        order (only where :attr:`_float64_weight` is set)."""
        taps = self._float64_taps
        if taps is None:
            raise ValueError("taps_accumulator needs a float64-exact conv")
        N, _, Lp = z.shape
        d, k = self.dilation, len(taps)
        out = Lp - d * (k - 1)
        acc = torch.matmul(taps[0], z[..., :out])  # (N, O, L)
        for j in range(1, k):
            zj = z[..., j * d : j * d + out]  # (N, I, L) a view
            if N == 1:
                torch.addmm(acc[0], taps[j], zj[0], out=acc[0])
            else:
                torch.baddbmm(acc, taps[j].expand(N, -1, -1), zj, out=acc)
        return acc[:, :, None]

    @functools.cached_property
    def _float64_taps(self) -> list[torch.Tensor] | None:
        """Each tap's weight ``(O, I)`` in float64 (:attr:`_float64_weight`), or None."""
        w64 = self._float64_weight
        if w64 is None or self.stride != 1:
            return None
        return [w64[:, :, 0, j].contiguous() for j in range(w64.shape[-1])]

    def _call(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """One exact call (float32, or float64 for :attr:`_float64_weight`): ``(N, i, 1, L)``
        -> ``(N, O, 1, L')``."""
        if self.stride != 1:
            raise ValueError("a dilated exact conv has stride 1")
        N, i, H, L = x.shape
        c_out, _, _, k = w.shape
        pad, d = self.padding, self.dilation
        out = L + 2 * pad - d * (k - 1)
        xp = F.pad(x, (pad, pad)) if pad else x  # (N, i, 1, L + 2 pad)
        cols = torch.cat([xp[..., j * d : j * d + out] for j in range(k)], dim=1)  # (N, k i, 1, L')
        wm = w[:, :, 0, :].permute(0, 2, 1).reshape(c_out, k * i)  # (O, k i), tap-major like cols
        y = torch.matmul(wm, cols.reshape(N, k * i, H * out))  # (N, O, L') exact
        return y.reshape(N, c_out, H, out)
