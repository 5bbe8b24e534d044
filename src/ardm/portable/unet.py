"""The integer form of the image U-Net (:class:`ardm.nets.unet.UNet`, one stage).

Every activation is a tensor of integers with a scale fixed at freeze time, carried in
float32 (all of them stay below ``2^24``; accumulators and rescales run in float64, below
``2^53``, or in int64), so every operation is exact:

* the residual stream and skips are *wide* (``|q| <= 2^14 - 1``; convs on them take two
  7-bit limbs); GroupNorm outputs are ``Q_8`` and index a SiLU table whose outputs, like
  every other conv/matmul input, are 8-bit; logits are ``Q_6``;
* a logistic-mixture net (``out_classes = 3M`` per image channel, ``head_bias`` given) has
  its outputs in ``Q_12`` with the head's bias folded into the last conv's bias, that conv on
  a wide input with 10-bit weights, and its pmf from :func:`ardm.portable.pmf.mixture_pmf`;
* the input conv sees ``2x - K`` where known (else 0) and ``K * known``, both in units of
  ``1/K``; the value embedding followed by its 1x1 conv is one table per image channel;
* the time path starts from an exact sinusoid table (one row per ``t``), then the MLP and
  each block's projection run as integer layers;
* attention: integer q.k scores, an exact ``exp`` table after subtracting the row maximum,
  and the weighted sum of values divided by the table sum in int64.
"""

from __future__ import annotations

import copy
import functools
import math
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import nn

from ardm.core.orders import known_mask, random_orders
from ardm.nets.unet import AttnBlock, Downsample, ResBlock, UNet, Upsample
from ardm.portable.attention import ATTN_EXP_FRAC_BITS, attend, packed_limbs, score_exp_table
from ardm.portable.layers import IntLayer, Ranges, narrow_scale, wide_scale
from ardm.portable.ops import (
    SILU_IN_BOUND,
    SILU_IN_FRAC_BITS,
    IntNorm,
    IntSiLU,
    NormSiLU,
    SiLUTable,
)
from ardm.portable.pmf import LOGIT_FRAC_BITS, MIX_FRAC_BITS, categorical_pmf, mixture_pmf
from ardm.portable.quant import NARROW, WIDE, Rescale, quantize_values
from ardm.portable.tables import sinusoid_table

QS = 2.0**-SILU_IN_FRAC_BITS
"""The unit of a GroupNorm or linear output that feeds a SiLU."""

LOGIT_BOUND = 1 << 20
"""Integer logits are clamped to ``|l| <= 2^20`` (16384 nats)."""

POW2 = True
"""Layers on 8-bit inputs rescale by powers of two (see ``IntLayer.freeze``)."""

TIME_W_BITS = 12
"""The time path (one row per item, no pixels) affords 12-bit weights."""

MIX_OUT_W_BITS = 10
"""A mixture net's last conv has 10-bit weights (on a wide input: its means need a fraction
of a bin; measured on ``cifar10-subset``, 0.66 % -> 0.50 % rate cost)."""


def _norm_silu(
    norm: nn.GroupNorm, *, in_scale: float, out_amax: float, wide: bool = False
) -> NormSiLU:
    """GroupNorm (wide in, ``Q_12`` out) and SiLU (into an 8-bit tensor of magnitude ``out_amax``;
    ``wide``: a wide one)."""
    n = IntNorm.freeze(norm, in_scale=in_scale, in_bound=WIDE, out_unit=QS, out_bound=SILU_IN_BOUND)
    if wide:
        return NormSiLU(n, SiLUTable.freeze(out_scale=wide_scale(out_amax), out_bound=WIDE))
    return NormSiLU(n, SiLUTable.freeze(out_scale=narrow_scale(out_amax), out_bound=NARROW))


@dataclass(frozen=True)
class IntResBlock:
    """Integer :class:`ardm.nets.unet.ResBlock`; ``join`` brings concatenated parts to one scale."""

    join: tuple[Rescale, ...] | None
    norm_1: NormSiLU
    conv_1: IntLayer
    temb_proj: IntLayer | None
    norm_2: NormSiLU
    conv_2: IntLayer
    skip: IntLayer | Rescale

    def __call__(self, parts: list[torch.Tensor], time: torch.Tensor | None) -> torch.Tensor:
        """The block on its input ``parts`` (concatenated) with its time term ``time``
        ``(B, out, 1, 1)`` (see :meth:`time_term`) or None."""
        if self.join is None:
            h = torch.cat(parts, dim=1)  # (B, in, H, W) wide
        else:  # each part rescaled straight into its channels (float32: rounding beyond 2^24
            # is monotonic, so the clamp to WIDE after it gives the same integers)
            B, _, H, W = parts[0].shape
            h = parts[0].new_empty(B, sum(p.shape[1] for p in parts), H, W)  # (B, in, H, W)
            c0 = 0
            for rescale, p in zip(self.join, parts, strict=True):
                h[:, c0 : c0 + p.shape[1]].copy_(rescale(p))
                c0 += p.shape[1]
            h.clamp_(-WIDE, WIDE)
        r = self.conv_1(self.norm_1(h), time)  # (B, out, H, W) wide
        r = self.conv_2(self.norm_2(r))  # (B, out, H, W) wide
        return (self.skip(h).float() + r).clamp_(-WIDE, WIDE)  # (B, out, H, W)

    def time_term(self, temb: torch.Tensor) -> torch.Tensor | None:
        """The time projection ``(B, out, 1, 1)`` of ``silu(temb)`` (wide), if any."""
        return self.temb_proj(temb) if self.temb_proj is not None else None

    @classmethod
    def freeze(
        cls, block: ResBlock, name: str, parts: list[float], ranges: Ranges, temb_scale: float
    ) -> tuple[IntResBlock, float]:
        """The integer block for input parts of the given scales; returns it and its output scale."""
        s_in, join = parts[0], None
        if len(parts) > 1:
            s_in = wide_scale(ranges[name + "<"])
            join = tuple(Rescale.from_ratio(s / s_in, in_bound=WIDE, float64=True) for s in parts)
        s_r = wide_scale(ranges[name + ".norm_2<"])
        s_out = wide_scale(ranges[name + ">"])
        norm_1 = _norm_silu(block.norm_1, in_scale=s_in, out_amax=ranges[name + ".conv_1<"])
        norm_2 = _norm_silu(block.norm_2, in_scale=s_r, out_amax=ranges[name + ".conv_2<"])
        conv_1 = IntLayer.freeze(
            block.conv_1,
            in_scale=narrow_scale(ranges[name + ".conv_1<"]),
            in_bound=NARROW,
            pow2=POW2,
            out_scale=s_r,
            out_bound=WIDE,
        )
        temb = None
        if block.temb_proj is not None:
            temb = IntLayer.freeze(
                block.temb_proj,
                in_scale=temb_scale,
                in_bound=WIDE,
                out_scale=s_r,
                out_bound=WIDE,
                w_bits=TIME_W_BITS,
            )
        conv_2 = IntLayer.freeze(
            block.conv_2,
            in_scale=narrow_scale(ranges[name + ".conv_2<"]),
            in_bound=NARROW,
            pow2=POW2,
            out_scale=s_out,
            out_bound=WIDE,
        )
        skip: IntLayer | Rescale
        if isinstance(block.skip, nn.Conv2d):
            skip = IntLayer.freeze(
                block.skip, in_scale=s_in, in_bound=WIDE, out_scale=s_out, out_bound=WIDE
            )
        else:
            skip = Rescale.from_ratio(s_in / s_out, in_bound=WIDE, float64=True)
        layer = cls(join, norm_1, conv_1, temb, norm_2, conv_2, skip)
        return layer, s_out


@dataclass(frozen=True)
class IntAttn:
    """Integer :class:`ardm.nets.unet.AttnBlock` (single head, residual)."""

    norm: IntNorm
    qkv: IntLayer
    score: Rescale  # (max - q.k) -> Q_6 nats for the exp table
    value: torch.Tensor  # () int64: multiplier of (sum e v) / (sum e) into y's 8-bit scale
    value_shift: int
    proj: IntLayer
    residual: Rescale

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        B, C, H, W = h.shape
        qkv = self.qkv(self.norm(h)).reshape(B, 3, C, H * W)  # (B, 3, C, HW) 8-bit
        q, k, v = qkv.unbind(dim=1)  # (B, C, HW) each: channel-major
        y = attend(q, k, v, self._packed, self.value, self.value_shift).view(B, C, H, W)
        return (self.residual(h).float() + self.proj(y)).clamp_(-WIDE, WIDE)  # (B, C, H, W)

    @functools.cached_property
    def _packed(self) -> torch.Tensor:
        """``score`` and the exp table as one table over score gaps, packed for :func:`attend`."""
        return packed_limbs(score_exp_table(self.score, self.score.in_bound))

    @classmethod
    def freeze(
        cls, block: AttnBlock, name: str, s_in: float, ranges: Ranges
    ) -> tuple[IntAttn, float]:
        """The integer block for a wide input of scale ``s_in``; returns it and its output scale."""
        C = block.qkv.in_channels
        s_n = narrow_scale(ranges[name + ".qkv<"])
        norm = IntNorm.freeze(
            block.norm, in_scale=s_in, in_bound=WIDE, out_unit=s_n, out_bound=NARROW
        )
        parts = ranges.channels(name + ".qkv").reshape(3, C).amax(dim=1)  # (3,) q, k, v
        s_q, s_k, s_v = (narrow_scale(float(a)) for a in parts)
        out_scale = torch.tensor([s_q, s_k, s_v], dtype=torch.float64).repeat_interleave(C)
        qkv = IntLayer.freeze(
            block.qkv,
            in_scale=s_n,
            in_bound=NARROW,
            pow2=POW2,
            out_scale=out_scale,
            out_bound=NARROW,
        )
        score_ratio = s_q * s_k / math.sqrt(C) * 2.0**ATTN_EXP_FRAC_BITS
        score = Rescale.from_ratio(score_ratio, in_bound=2 * C * NARROW * NARROW)
        s_y = narrow_scale(ranges[name + ".proj<"])
        value_shift = 24
        value = torch.tensor(round(s_v / s_y * 2.0**value_shift), dtype=torch.int64)
        s_out = wide_scale(ranges[name + ">"])
        proj = IntLayer.freeze(
            block.proj, in_scale=s_y, in_bound=NARROW, pow2=POW2, out_scale=s_out, out_bound=WIDE
        )
        residual = Rescale.from_ratio(s_in / s_out, in_bound=WIDE, float64=True)
        return cls(norm, qkv, score, value, value_shift, proj, residual), s_out


@dataclass(frozen=True)
class IntResample:
    """Integer :class:`Downsample` (stride-2 conv) or :class:`Upsample` (nearest x2, conv)."""

    conv: IntLayer
    up: bool

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        return self.conv(h, up2=self.up)  # (B, c, 2H, 2W) when up: computed at h's size

    @classmethod
    def freeze(
        cls, layer: Downsample | Upsample, name: str, s_in: float, ranges: Ranges
    ) -> tuple[IntResample, float]:
        s_out = wide_scale(ranges[name + ">"])
        conv = IntLayer.freeze(
            layer.conv, in_scale=s_in, in_bound=WIDE, out_scale=s_out, out_bound=WIDE
        )
        return cls(conv, isinstance(layer, Upsample)), s_out


@dataclass(frozen=True)
class IntTime:
    """The time path: exact sinusoid table row ``t`` -> Linear -> SiLU -> Linear -> SiLU.

    It costs nothing next to the convs, so every activation on it is wide (14 bits).
    """

    table: torch.Tensor  # (D, dim) int64, |.| <= WIDE (scale 1/WIDE)
    lin_1: IntLayer
    silu_1: IntSiLU
    lin_2: IntLayer
    silu_2: IntSiLU

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        s = self.table[t][:, :, None, None].float()  # (B, dim, 1, 1)
        u = self.silu_1(self.lin_1(s))  # (B, 4ch, 1, 1) 8-bit
        return self.silu_2(self.lin_2(u))  # (B, 4ch, 1, 1) wide: silu(temb)

    @classmethod
    def freeze(cls, net: UNet, ranges: Ranges, temb_amax: float) -> IntTime:
        assert net.time_emb is not None
        lin_1, lin_2 = net.time_emb.mlp[0], net.time_emb.mlp[2]
        assert isinstance(lin_1, nn.Linear) and isinstance(lin_2, nn.Linear)
        table = sinusoid_table(steps=net.D, dim=net.time_emb.dim, D=net.D, out_bits=14)
        s_u = wide_scale(ranges["time_emb.mlp.2<"])

        def linear(layer: nn.Linear, in_scale: float) -> IntLayer:
            return IntLayer.freeze(
                layer,
                in_scale=in_scale,
                in_bound=WIDE,
                out_scale=QS,
                out_bound=SILU_IN_BOUND,
                w_bits=TIME_W_BITS,
            )

        return cls(
            table=table,
            lin_1=linear(lin_1, 1 / WIDE),
            silu_1=IntSiLU.freeze(out_scale=s_u, out_bound=WIDE),
            lin_2=linear(lin_2, s_u),
            silu_2=IntSiLU.freeze(out_scale=wide_scale(temb_amax), out_bound=WIDE),
        )


@dataclass(frozen=True)
class IntInput:
    """Input processing: conv3x3 on ``(2x - K, K * known)`` (units ``1/K``) and, per image
    channel, a table of ``value_in(value_emb(x))`` (row ``K``: unknown); both wide."""

    K: int
    conv_in: IntLayer
    values: torch.Tensor  # (C, K + 1, E') int64: each image channel's share of value_in
    value_bias: torch.Tensor  # (E',) int64

    def __call__(self, x: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        x = torch.where(known, x, self.K)  # (B, C, H, W) unknown -> index K
        value = torch.where(known, 2 * x - self.K, 0)  # (B, C, H, W) in units 1/K
        a = torch.cat([value, self.K * known.long()], dim=1).float()  # (B, 2C, H, W)
        h_conv = self.conv_in(a)  # (B, 3ch/4, H, W)
        C = x.shape[1]
        e = sum(self.values[c][x[:, c]] for c in range(C))  # (B, H, W, E')
        h_val = (e + self.value_bias).permute(0, 3, 1, 2).clamp(-WIDE, WIDE).float()
        return torch.cat([h_conv, h_val], dim=1)  # (B, ch, H, W) wide

    @classmethod
    def freeze(cls, net: UNet, ranges: Ranges) -> tuple[IntInput, float]:
        s_h = wide_scale(max(ranges["conv_in>"], ranges["value_in>"]))
        C, K = net.shape[0], net.K
        conv_in = IntLayer.freeze(  # the mask arrives as K * known: 1 in units of 1/K
            net.conv_in, in_scale=1.0 / K, in_bound=K, out_scale=s_h, out_bound=WIDE, w_bits=10
        )
        emb = net.value_emb.weight.detach().double()  # (K + 1, E)
        E = emb.shape[1]
        wv = net.value_in.weight.detach().double()[:, :, 0, 0]  # (E', C * E)
        values = torch.stack([emb @ wv[:, c * E : (c + 1) * E].T for c in range(C)])  # (C, K+1, E')
        bias = net.value_in.bias.detach().double()  # type: ignore[union-attr]
        return cls(K, conv_in, quantize_values(values, s_h), quantize_values(bias, s_h)), s_h


class IntegerUNet:
    """The frozen integer form of a one-stage :class:`ardm.nets.unet.UNet`.

    ``logits(x, known, t)`` gives int64 outputs ``(B, C, H, W, O)``: for a categorical net
    logits in ``Q_6`` (units of 1/64 nat); for a logistic mixture (``head_bias`` given: the
    :class:`~ardm.models.heads.MixtureHead` bias, ``(O,)``, ``O = 3M``) its parameters
    (logits, means, log-scales, the head's bias included) in ``Q_12``. ``pmf(x, known, t)``
    gives integer weights ``(B, C, H, W, K)`` summing to ``2^24 - K`` per variable;
    ``params_pmf(params)`` the same for rows ``(n, O)`` of chosen variables. All are the same
    bits on every machine, thread count and batch size. Build it with :meth:`from_float`;
    ship the frozen object (its freezing calibrates on float outputs).
    """

    def __init__(self, net: UNet, ranges: Ranges, head_bias: torch.Tensor | None = None) -> None:
        if net.stages != 1:
            raise ValueError("the integer U-Net supports one-stage networks only (so far)")
        self.shape = net.shape
        self.K, self.out_classes, self.D = net.K, net.out_classes, net.D
        self._time_cache: dict[int, list[torch.Tensor | None]] = {}
        self.input, s = IntInput.freeze(net, ranges)
        self.time: IntTime | None = None
        temb_scale = 1.0
        if net.time_emb is not None:
            temb_amax = ranges["down.0.temb_proj<"]
            self.time, temb_scale = IntTime.freeze(net, ranges, temb_amax), wide_scale(temb_amax)
        scales = [s]
        self.down: list[IntResBlock | IntResample] = []
        for i, layer in enumerate(net.down):
            if isinstance(layer, ResBlock):
                block, s = IntResBlock.freeze(layer, f"down.{i}", [s], ranges, temb_scale)
                self.down.append(block)
            else:
                resample, s = IntResample.freeze(layer, f"down.{i}", s, ranges)  # type: ignore[arg-type]
                self.down.append(resample)
            scales.append(s)
        self.mid_1, s = IntResBlock.freeze(net.mid_1, "mid_1", [s], ranges, temb_scale)
        self.mid_attn: IntAttn | None = None
        if net.mid_attn is not None:
            self.mid_attn, s = IntAttn.freeze(net.mid_attn, "mid_attn", s, ranges)
        self.mid_2, s = IntResBlock.freeze(net.mid_2, "mid_2", [s], ranges, temb_scale)
        self.up: list[IntResBlock | IntResample] = []
        for i, layer in enumerate(net.up):
            if isinstance(layer, ResBlock):
                parts = [s, scales.pop()]
                block, s = IntResBlock.freeze(layer, f"up.{i}", parts, ranges, temb_scale)
                self.up.append(block)
            else:
                resample, s = IntResample.freeze(layer, f"up.{i}", s, ranges)  # type: ignore[arg-type]
                self.up.append(resample)
        self.mixture = head_bias is not None
        self.out_frac_bits = MIX_FRAC_BITS if self.mixture else LOGIT_FRAC_BITS
        amax = ranges["conv_out<"]
        if not self.mixture:
            self.norm_out = _norm_silu(net.norm_out, in_scale=s, out_amax=amax)
            self.conv_out = IntLayer.freeze(
                net.conv_out,
                in_scale=narrow_scale(amax),
                in_bound=NARROW,
                pow2=POW2,
                out_scale=2.0**-LOGIT_FRAC_BITS,
                out_bound=LOGIT_BOUND,
            )
        else:  # the means need a fraction of a bin: a wide input and 10-bit weights
            self.norm_out = _norm_silu(net.norm_out, in_scale=s, out_amax=amax, wide=True)
            self.conv_out = IntLayer.freeze(
                fold_head_bias(net.conv_out, head_bias, net.shape[0]),
                in_scale=wide_scale(amax),
                in_bound=WIDE,
                out_scale=2.0**-MIX_FRAC_BITS,
                out_bound=LOGIT_BOUND,
                w_bits=MIX_OUT_W_BITS,
            )

    @classmethod
    @torch.no_grad()
    def from_float(
        cls,
        net: UNet,
        items: torch.Tensor,
        *,
        passes: int = 4,
        seed: int = 0,
        head_bias: torch.Tensor | None = None,
    ) -> IntegerUNet:
        """Freeze ``net`` after recording its activation ranges on ``items`` ``(N, C, H, W)``,
        each seen ``passes`` times with a random order and a random ``t``. ``head_bias``
        ``(O,)``: a logistic-mixture head's bias (``model.head.bias``), for a mixture net."""
        g = torch.Generator().manual_seed(seed)
        ranges = Ranges()
        net = net.eval()
        with ranges.recording(net):
            for _ in range(passes):
                N = items.shape[0]
                t = torch.randint(0, net.D, (N,), generator=g)  # (N,)
                sigma = random_orders(N, net.D, generator=g)  # (N, D)
                known = known_mask(sigma, t).view(N, *net.shape)  # (N, C, H, W)
                net(items, known, t)
        return cls(net, ranges, head_bias)

    @torch.inference_mode()
    def logits(self, x: torch.Tensor, known: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Integer outputs ``(B, C, H, W, O)`` int64: logits in ``Q_6``, or mixture parameters
        in ``Q_12``."""
        return self.outputs(x, known, t).to(torch.int64)

    @torch.inference_mode()
    def outputs(
        self,
        x: torch.Tensor,
        known: torch.Tensor,
        t: torch.Tensor,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """:meth:`logits` as float32 integers (exact: ``|q| < 2^24``), for a coder that takes
        only a step's rows to int64 (float32 to int64 is a slow conversion on AVX2).

        ``positions`` ``(m,)`` (flat indices of variables in ``(C, H, W)``): only their rows
        ``(B, m, O)``, the same integers, with the last conv computed at their pixels alone (on
        a large image it costs as much as several layers, and a coding step needs ``D /
        budget`` of its outputs)."""
        B, C, H, W = x.shape
        h = self.input(x.long(), known)  # (B, ch, H, W) wide
        times = iter(self.time_terms(t))  # one per ResBlock, in order
        hs = [h]
        for layer in self.down:
            h = layer([h], next(times)) if isinstance(layer, IntResBlock) else layer(h)
            hs.append(h)
        h = self.mid_1([h], next(times))  # (B, c, h, w)
        if self.mid_attn is not None:
            h = self.mid_attn(h)
        h = self.mid_2([h], next(times))
        for layer in self.up:
            h = layer([h, hs.pop()], next(times)) if isinstance(layer, IntResBlock) else layer(h)
        a = self.norm_out(h)  # (B, ch, H, W)
        if positions is not None:  # the rows of the variables at positions only
            pixels, channel = positions % (H * W), positions // (H * W)  # (m,) each
            rows = self.conv_out.at(a, pixels).view(B, C, self.out_classes, -1)  # (B, C, O, m)
            m = torch.arange(pixels.numel())
            return rows[:, channel, :, m].transpose(0, 1)  # (B, m, O)
        out = self.conv_out(a).reshape(B, C, self.out_classes, H, W)  # (B, C, O, H, W)
        return out.permute(0, 1, 3, 4, 2)  # (B, C, H, W, O)

    def blocks(self) -> list[IntResBlock]:
        """The ResBlocks in the order of the forward pass."""
        down = [b for b in self.down if isinstance(b, IntResBlock)]
        up = [b for b in self.up if isinstance(b, IntResBlock)]
        return [*down, self.mid_1, self.mid_2, *up]

    def time_terms(self, t: torch.Tensor) -> list[torch.Tensor | None]:
        """Every ResBlock's time term ``(B, out, 1, 1)`` for steps ``t`` ``(B,)``.

        They depend on ``t`` alone, so each step's terms are computed once and kept (an
        exact integer function: keeping them changes no bit).
        """
        blocks = self.blocks()
        if self.time is None:
            return [None] * len(blocks)
        rows = []
        for step in t.tolist():
            if step not in self._time_cache:
                temb = self.time(torch.tensor([step]))  # (1, 4ch, 1, 1)
                self._time_cache[step] = [b.time_term(temb) for b in blocks]
            rows.append(self._time_cache[step])
        return [None if col[0] is None else torch.cat(col) for col in zip(*rows, strict=True)]

    def __getstate__(self) -> dict[str, object]:
        """Pickle without the kept time terms (a copy recomputes them)."""
        return {**self.__dict__, "_time_cache": {}}

    def pmf(self, x: torch.Tensor, known: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Integer weights ``(B, C, H, W, O)``, each >= 0, summing to ``2^24 - O`` per variable."""
        return self.params_pmf(self.logits(x, known, t))

    def params_pmf(self, out: torch.Tensor) -> torch.Tensor:
        """Integer weights ``(..., K)`` from integer outputs ``(..., O)`` (see :meth:`logits`)."""
        if not self.mixture:
            return categorical_pmf(out)
        rows = mixture_pmf(out.reshape(-1, out.shape[-1]), self.K)  # (n, K)
        return rows.reshape(*out.shape[:-1], self.K)


ConvT = TypeVar("ConvT", nn.Conv1d, nn.Conv2d)


def fold_head_bias(conv: ConvT, head_bias: torch.Tensor | None, channels: int = 1) -> ConvT:
    """``conv`` with the head's bias ``(O,)`` added to its bias for each of ``channels`` image
    channels (output channel ``c O + o``), so that the integer layer computes the parameters."""
    if head_bias is None:
        return conv
    folded = copy.deepcopy(conv)
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros(conv.out_channels)
    folded.bias = nn.Parameter(bias + head_bias.detach().to(bias).repeat(channels))
    return folded
