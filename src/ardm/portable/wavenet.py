"""The integer form of the non-causal WaveNet (:class:`ardm.nets.wavenet.WaveNet`).

Every activation is a tensor of integers with a scale fixed at freeze time, carried in
float32 as ``(B, C, 1, L)`` (a row of height 1, so the 2-D integer layers of
:mod:`ardm.portable.layers` apply); accumulators and rescales run exactly in float64:

* input: a width-3 exact conv on ``(2x - K, K known, K onehot(stage)...)`` in units of
  ``1/K`` (17-bit values: three 7-bit limbs, so every bit of a 16-bit sample reaches the
  network), plus a table of ``value_in(value_emb(bucket))`` per top-8-bit bucket; ReLU;
* the residual stream ``h`` is wide (``|q| <= 2^14 - 1``); each block adds its time term
  (from the exact sinusoid table of ``t_in`` through the integer time MLP, one row per step,
  kept) in the input format of its dilated conv (:class:`Widths`), runs the dilated conv as
  one exact GEMM on the shifted copies (:class:`ardm.portable.ops.ExactDilatedConv`) into
  ``Q_10`` pre-activations, ``tanh`` and ``sigmoid`` from exact tables (``Q_15``) and their
  integer product rescaled, a 1x1 conv to the residual (in the next block's units times
  ``sqrt 2``) and the skip (one common skip unit), so the residual update is one rescale
  and an add, and the skip sum an exact integer sum;
* head: ``relu(skips / sqrt(blocks))`` by one rescale, two 1x1 integer layers with ReLUs,
  logits in ``Q_6``.

An Upscale ARDM's net (``stages = S > 1``) sees the global step ``t = s D + t_in``; stage
``s`` uses logits ``[s b, (s + 1) b)`` (:func:`ardm.portable.pmf.digit_pmf`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import torch
from torch import nn

from ardm.core.orders import known_mask, random_orders
from ardm.nets.embeddings import split_step
from ardm.nets.wavenet import ResidualBlock, WaveNet
from ardm.portable.layers import IntLayer, Ranges, _pow2_weights, wide_scale
from ardm.portable.ops import ExactConv, ExactDilatedConv
from ardm.portable.pmf import (
    LOGIT_FRAC_BITS,
    MIX16_FRAC_BITS,
    call_stage,
    digit_pmf,
    mixture_byte_pmf,
)
from ardm.portable.quant import NARROW, WIDE, Rescale, quantize_values, quantize_weight
from ardm.portable.tables import sigmoid_table, tanh_table
from ardm.portable.unet import LOGIT_BOUND, MIX_OUT_W_BITS, IntTime, fold_head_bias

PRE_FRAC_BITS = 10
"""Gate pre-activations are ``Q_10``."""

TANH_SPAN = 8
SIGMOID_SPAN = 16
GATE_BITS = 15
"""``tanh`` and ``sigmoid`` tables give ``Q_15``; their product is below ``2^30``."""

INPUT_W_BITS = 12
"""The input conv (4 channels, 3 taps) affords 12-bit weights."""

CHUNK_VALUES = 8192
"""The integer WaveNet runs at most this many values (items times length, at least one item)
per pass: 2 clips of 4000 samples (measured on ``fsdd``: per item, a batch of 16 costs about
1.5x a batch of 1 or 2, its float64 activations no longer in the caches)."""

MIX16_BOUND = (1 << 23) - 1
"""A 16-bit mixture net's outputs are clamped to ``|q| < 2^23`` (means: 8 in value; logits
2048 nats; log-scales 128)."""


@dataclass(frozen=True)
class Widths:
    """The bound (``NARROW`` = 8-bit, one call; ``WIDE`` = 14-bit, two 7-bit limbs) of the
    inputs of each kind of conv: the dilated convs, the 1x1 convs after the gate, the head.

    The default since session 15: 8-bit everywhere, every conv one exact float32 GEMM. The
    dilated convs on 14-bit inputs (``wnn``, the default of the first integer forms, still
    stored in ``fsdd-1`` and ``fsdd-mixture-1``) run as float64 GEMMs, about a third of the
    call at batch 1; on 8-bit inputs the call is 13-15 % faster (1 thread: ``fsdd-mixture``
    20.1 -> 17.4 ms, float32 14.4; ``fsdd`` 21.5 -> 18.8, float32 16.1) for a rate cost of
    -0.06 / +0.14 / +0.06 % on ``fsdd`` (16 test clips at budgets 4 / 20 / 100) and 0.00 /
    +0.004 % on ``fsdd-mixture`` (8 clips, budgets 4 / 20). The cost sits in the first steps
    of stage 0 (KL to the float model 0.11-0.15 nats per sample at ``t_in = 44``, 0.0005 with
    14-bit dilated inputs; ``benchmarks/results/portable_fsdd.md``)."""

    dilated: int = NARROW
    gated: int = NARROW
    head: int = NARROW


def _scale(amax: float, bound: int) -> float:
    return amax / bound if amax > 0 else 1.0


def freeze_conv1d(
    module: nn.Conv1d | nn.Linear,
    *,
    in_scale: float,
    in_bound: int,
    out_scale: float | torch.Tensor,
    out_bound: int,
    w_bits: int = 8,
) -> IntLayer:
    """The integer form of a Conv1d (on ``(B, I, 1, L)``) or Linear (on ``(B, I, 1, 1)``),
    as :meth:`IntLayer.freeze`; 8-bit inputs get power-of-two rescales (the float32 epilogue)."""
    w = module.weight.detach()
    padding, dilation = 0, 1
    if isinstance(module, nn.Conv1d):
        padding, dilation = int(module.padding[0]), int(module.dilation[0])  # type: ignore[arg-type]
        w = w[:, :, None, :]  # (O, I, 1, k)
    else:
        w = w[:, :, None, None]  # (O, I, 1, 1)
    q, s_w = quantize_weight(w, bits=w_bits)
    if in_bound <= NARROW:
        q, s_w = _pow2_weights(w, s_w, in_scale=in_scale, out_scale=out_scale, bits=w_bits)
    acc_scale = in_scale * s_w  # (O,)
    bias = module.bias if module.bias is not None else torch.zeros(w.shape[0])
    b = quantize_values(bias, acc_scale)  # (O,)
    w_bound = (1 << (w_bits - 1)) - 1
    conv: ExactConv
    if w.shape[-1] == 1:
        conv = ExactConv(q.to(torch.float32), w_bound, in_bound)
    else:
        conv = ExactDilatedConv(q.to(torch.float32), w_bound, in_bound, 1, padding, dilation)
    ratio = acc_scale / torch.as_tensor(out_scale, dtype=torch.float64)  # (O,)
    bound = conv.acc_bound + int(b.abs().max())
    rescale = Rescale.from_ratio(ratio, in_bound=bound, shape=(1, -1, 1, 1), float64=True)
    return IntLayer(conv, b.view(1, -1, 1, 1).to(torch.float64), rescale, out_bound)


@dataclass(frozen=True)
class Gate:
    """``tanh(f) * sigmoid(g)`` for ``Q_10`` pre-activations: two exact tables (``Q_15``,
    float64) whose product (below ``2^30``, exact in float64) each block rescales."""

    tanh: torch.Tensor  # (2 * 8 * 2^10,) float64 integers
    sigmoid: torch.Tensor  # (2 * 16 * 2^10,) float64 integers

    @classmethod
    def build(cls) -> Gate:
        f, bits = PRE_FRAC_BITS, GATE_BITS
        tanh = tanh_table(frac_bits=f, span=TANH_SPAN, out_bits=bits)
        sig = sigmoid_table(frac_bits=f, span=SIGMOID_SPAN, out_bits=bits)
        return cls(tanh.to(torch.float64), sig.to(torch.float64))

    def __call__(self, f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """``tanh(f) sigmoid(g)`` in ``2^-30``, float64 integers, for float ``Q_10`` integers."""
        return _lookup(self.tanh, f) * _lookup(self.sigmoid, g)  # exact: < 2^30


def _lookup(table: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``table`` at ``z + half`` (``z`` float integers, clamped into the table)."""
    half = table.numel() // 2
    i = (z.clamp(-half, half - 1) + half).to(torch.int64)
    return table.index_select(0, i.view(-1)).view(i.shape)


@dataclass(frozen=True)
class IntWaveBlock:
    """Integer :class:`ardm.nets.wavenet.ResidualBlock` (see the module docstring)."""

    to_y: Rescale  # h -> the dilated conv's input units (bound: dilated.conv.a_bound)
    temb_proj: IntLayer | None  # silu(temb) -> y units
    dilated: IntLayer  # -> Q_10 pre-activations
    gate_out: Rescale  # tanh * sigmoid (2^-30) -> the 1x1 conv's input units (out.conv.a_bound)
    out: IntLayer  # -> (residual / sqrt 2 in the next h's units, skip in skip units)
    to_next: Rescale  # h -> the next h's units, divided by sqrt 2
    last: bool  # the last block's residual is never read

    def __call__(
        self,
        h: torch.Tensor,
        time: torch.Tensor | None,
        lookup: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
        positions: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(h_next, skip)`` for the wide input ``h`` ``(B, C, 1, L)`` (float integers), the
        block's time term ``time`` ``(B, C, 1, 1)`` (or None) and its :meth:`gate_lookup`;
        ``h_next`` is float64, ``skip`` float32; ``positions`` ``(m,)``: ``skip`` only there,
        ``(B, C, 1, m)`` (the 1x1 conv is per position: the same integers).

        The steps of the module docstring, fused where the integers allow: the dilated conv's
        rescaled, clamped pre-activations go straight to indices of one table holding both
        gate tables (:meth:`gate_lookup`), whose sigmoid half is pre-multiplied by the
        ``gate_out`` rescale, so that ``tanh * sigmoid`` and its rescale are one exact
        ``addcmul``."""
        C = h.shape[1]
        conv = self.dilated.conv
        y_bound, g_bound = conv.a_bound, self.out.conv.a_bound
        assert isinstance(conv, ExactDilatedConv)
        z = conv.padded(h) if conv.taps_exact else None  # (B, C, L + 2 pad) float64
        y = None if z is None else z[:, :, None, conv.padding : conv.padding + h.shape[-1]]
        if time is None:
            y = torch.addcmul(self._half, h, self.to_y.factor, out=y)  # (B, C, 1, L) float64
        elif self._time_in_offset:  # to_y(h) + time = floor(h M 2^-s + (time + 1/2))
            y = torch.addcmul(time + 0.5, h, self.to_y.factor, out=y)
        else:
            y = torch.addcmul(self._half, h, self.to_y.factor, out=y).floor_().add_(time)
        y = y.floor_().clamp_(-y_bound, y_bound)
        if z is not None:  # the input is in place: each tap a view of z
            v = self.dilated.unrounded_acc(conv.taps_accumulator(z))  # (B, 2C, 1, L) float64
        else:
            v = self.dilated.unrounded(y if y_bound > NARROW else y.to(torch.float32))
        table, base, lo, hi = lookup
        v = v.floor_()
        # (integer shifts commute with clamps) the pre-activation's clamp and each table's own
        # clamp as one clamp of the table index; truncation of indices >= 0 floors
        v = torch.minimum(torch.maximum(v.add_(base), lo, out=v), hi, out=v)
        i = v.to(torch.int32)  # (a vectorised conversion, unlike int64's on AVX2)
        f = table.index_select(0, i.view(-1)).view(i.shape)  # (B, 2C, 1, L) float64
        g = torch.addcmul(self._half, f[:, :C], f[:, C:]).floor_()  # gate_out(tanh * sigmoid)
        g = g.clamp_(-g_bound, g_bound).to(torch.float32)  # (B, C, 1, L)
        if positions is None and not self.last:
            o = self.out(g)  # (B, 2C, 1, L): residual and skip in one product
            residual, skip = o[:, :C], o[:, C:]
        else:  # the skip rows where they are read; the residual rows unless last
            residual_rows, skip_rows = self._out_rows
            skip = skip_rows(g if positions is None else g[..., positions])  # (B, C, 1, m)
            if self.last:
                return h, skip
            residual = residual_rows(g)  # (B, C, 1, L)
        h_next = self.to_next(h).add_(residual).clamp_(-WIDE, WIDE)  # (B, C, 1, L) float64
        return h_next, skip

    @functools.cached_property
    def _out_rows(self) -> tuple[IntLayer, IntLayer]:
        """The 1x1 conv's residual rows and its skip rows (the same integers)."""
        C = self.out.conv.weight.shape[0] // 2
        return self.out.rows(0, C), self.out.rows(C, 2 * C)

    @functools.cached_property
    def _time_in_offset(self) -> bool:
        """Whether the time term (``|time| <= 2^14 - 1``, from ``temb_proj``) may join the
        ``to_y`` rescale's offset: ``|h M| + |time| 2^s + 2^(s-1) < 2^53``, so that ``h M
        2^-s + time + 1/2`` is exact in float64."""
        r = self.to_y
        top = r.in_bound * int(r.multiplier.abs().max()) + (WIDE << r.shift) + (1 << (r.shift - 1))
        return self.temb_proj is not None and self.temb_proj.out_bound <= WIDE and top < 1 << 53

    @functools.cached_property
    def _half(self) -> torch.Tensor:
        return torch.tensor(0.5, dtype=torch.float64)

    def gate_lookup(
        self, gate: Gate
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(table, base, lo, hi)``: ``table`` is ``gate.tanh`` followed by ``gate.sigmoid``
        times the ``gate_out`` rescale's factor ``M 2^-s`` (exact: each ``sigmoid M`` is an
        integer below ``2^53``, and so is every ``tanh sigmoid M``, the rescale's own bound);
        a ``Q_10`` pre-activation ``z`` of channel ``c`` reads ``table[clamp(z + base_c, lo_c,
        hi_c)]``, the clamps of the conv's output and of each table in one."""
        if self.gate_out.multiplier.numel() != 1:
            raise ValueError("the gate rescale has one factor")
        factor = self.gate_out.factor
        n_t, n_s = gate.tanh.numel(), gate.sigmoid.numel()
        table = torch.cat([gate.tanh, gate.sigmoid * factor.reshape(())])  # exact products
        out_bound = self.dilated.out_bound
        C = self.out.conv.weight.shape[1]
        shape = (1, 2 * C, 1, 1)
        ends = [(n_t // 2, 0, n_t - 1), (n_s // 2 + n_t, n_t, n_t + n_s - 1)]
        parts = []
        for half, first, last in ends:
            low = max(first, half - out_bound)
            high = min(last, half + out_bound)
            parts.append(torch.tensor([half, low, high], dtype=torch.float64).repeat(C, 1))
        base, lo, hi = torch.cat(parts).T.reshape(3, *shape).unbind(0)
        return table, base, lo, hi

    def time_term(self, temb: torch.Tensor) -> torch.Tensor | None:
        """The time projection ``(B, C, 1, 1)`` of ``silu(temb)`` in ``y``'s units."""
        return self.temb_proj(temb) if self.temb_proj is not None else None

    @classmethod
    def freeze(cls, block: ResidualBlock, ctx: _Freeze, i: int) -> IntWaveBlock:
        """Block ``i``'s integer form, with the scales and widths of ``ctx``."""
        name, r, w = f"blocks.{i}", ctx.ranges, ctx.widths
        C = block.out.in_channels
        s_h, s_next = ctx.s_h[i], ctx.s_h[i + 1]
        s_y = _scale(r[name + ".dilated<"], w.dilated)
        temb = None
        if block.temb_proj is not None:
            temb = freeze_conv1d(
                block.temb_proj,
                in_scale=ctx.temb_scale,
                in_bound=WIDE,
                out_scale=s_y,
                out_bound=WIDE,
                w_bits=12,
            )
        span = SIGMOID_SPAN << PRE_FRAC_BITS
        dilated = freeze_conv1d(
            block.dilated,
            in_scale=s_y,
            in_bound=w.dilated,
            out_scale=2.0**-PRE_FRAC_BITS,
            out_bound=span,
        )
        s_g = _scale(r[name + ".out<"], w.gated)
        gate_out = Rescale.from_ratio(2.0 ** -(2 * GATE_BITS) / s_g, in_bound=1 << 30, float64=True)
        out_scale = torch.cat(
            [torch.full((C,), s_next * math.sqrt(2.0)), torch.full((C,), ctx.s_skip)]
        ).double()  # (2C,)
        out = freeze_conv1d(
            block.out, in_scale=s_g, in_bound=w.gated, out_scale=out_scale, out_bound=WIDE
        )
        to_y = Rescale.from_ratio(s_h / s_y, in_bound=WIDE, float64=True)
        to_next = Rescale.from_ratio(s_h / (s_next * math.sqrt(2.0)), in_bound=WIDE, float64=True)
        last = i == ctx.blocks - 1
        return cls(to_y, temb, dilated, gate_out, out, to_next, last)


@dataclass
class _Freeze:
    """What freezing a block needs: ranges, widths, the scales of every ``h``, the skip unit,
    the scale of ``silu(temb)`` and the number of blocks."""

    ranges: Ranges
    widths: Widths
    s_h: list[float]
    s_skip: float
    temb_scale: float
    blocks: int


@dataclass(frozen=True)
class IntWaveInput:
    """Input processing: a width-3 exact conv on ``(2x - K, K known, K onehot(stage)...)``
    (units ``1/K``; 17-bit values as three limbs) and a table of ``value_in(value_emb(.))``
    per top-8-bit bucket (last row: unknown); ReLU; wide."""

    K: int
    stages: int
    buckets: int
    conv_in: IntLayer
    values: torch.Tensor  # (buckets + 1, E') float32 integers, value_in's bias included

    def __call__(self, x: torch.Tensor, known: torch.Tensor, stage: torch.Tensor) -> torch.Tensor:
        B, L = x.shape
        bucket = torch.div(x * self.buckets, self.K, rounding_mode="floor")  # (B, L)
        value = 2 * x - self.K  # (B, L) in units 1/K
        chans = [value, self.K * known.long()]
        if self.stages == 1:
            bucket = torch.where(known, bucket, self.buckets)
            chans[0] = torch.where(known, value, 0)
        else:
            onehot = torch.nn.functional.one_hot(stage, self.stages) * self.K  # (B, S)
            chans += list(onehot[:, :, None].expand(B, self.stages, L).unbind(1))
        a = torch.stack(chans, dim=1)[:, :, None].float()  # (B, in, 1, L) exact (< 2^24)
        h_conv = self.conv_in(a)  # (B, 3C/4, 1, L)
        h_val = self.values.index_select(0, bucket.view(-1)).view(B, L, -1)  # (B, L, E')
        h_val = h_val.permute(0, 2, 1)[:, :, None]  # (B, E', 1, L)
        return torch.cat([h_conv, h_val], dim=1).clamp_(0, WIDE)  # (B, C, 1, L) relu

    @classmethod
    def freeze(cls, net: WaveNet, s_h: float) -> IntWaveInput:
        K = net.K
        conv_in = freeze_conv1d(  # every channel in units of 1/K: the value 2x - K, K * flags
            net.conv_in,
            in_scale=1.0 / K,
            in_bound=K,
            out_scale=s_h,
            out_bound=WIDE,
            w_bits=INPUT_W_BITS,
        )
        with torch.no_grad():
            emb = net.value_emb.weight.detach().double()  # (buckets + 1, E)
            wv = net.value_in.weight.detach().double()[:, :, 0]  # (E', E)
            bias = net.value_in.bias.detach().double()  # type: ignore[union-attr]
            values = emb @ wv.T + bias  # (buckets + 1, E')
        q = quantize_values(values, s_h).clamp(-WIDE, WIDE).to(torch.float32)
        return cls(K, net.stages, net.buckets, conv_in, q)


@dataclass(frozen=True)
class IntWaveHead:
    """``conv_out(relu(skip_out(relu(skips / sqrt(blocks)))))`` on the integer skip sum."""

    to_a: Rescale  # skip sum -> skip_out's input units, divided by sqrt(blocks)
    a_bound: int
    skip_out: IntLayer
    conv_out: IntLayer  # -> Q_6 logits

    def __call__(self, skips: torch.Tensor) -> torch.Tensor:
        a = self.to_a(skips).clamp_(0, self.a_bound).to(torch.float32)  # (B, C, 1, L) relu
        b = self.skip_out(a).clamp_(min=0)  # (B, C, 1, L) relu
        return self.conv_out(b)  # (B, O, 1, L) Q_6

    @classmethod
    def freeze(
        cls, net: WaveNet, ctx: _Freeze, head_bias: torch.Tensor | None = None
    ) -> IntWaveHead:
        """Logits in ``Q_6``; or (``head_bias``, a 16-bit logistic mixture's bias ``(3M,)``,
        folded into ``conv_out``) mixture parameters in :data:`MIX16_FRAC_BITS`, ``conv_out``
        on a wide input with 10-bit weights (its means need a fraction of a 16-bit bin)."""
        r, bound = ctx.ranges, ctx.widths.head
        mid = WIDE if head_bias is not None else bound  # conv_out's input
        s_a, s_b = _scale(r["skip_out<"], bound), _scale(r["conv_out<"], mid)
        n = ctx.blocks
        to_a = Rescale.from_ratio(
            ctx.s_skip / (math.sqrt(n) * s_a), in_bound=n * WIDE, float64=True
        )
        skip_out = freeze_conv1d(
            net.skip_out, in_scale=s_a, in_bound=bound, out_scale=s_b, out_bound=mid
        )
        if head_bias is None:
            conv_out = freeze_conv1d(
                net.conv_out,
                in_scale=s_b,
                in_bound=bound,
                out_scale=2.0**-LOGIT_FRAC_BITS,
                out_bound=LOGIT_BOUND,
            )
            return cls(to_a, bound, skip_out, conv_out)
        M = net.out_classes // 3
        frac = torch.tensor(MIX16_FRAC_BITS, dtype=torch.float64).repeat_interleave(M)  # (3M,)
        conv_out = freeze_conv1d(
            fold_head_bias(net.conv_out, head_bias),
            in_scale=s_b,
            in_bound=WIDE,
            out_scale=2.0**-frac,
            out_bound=MIX16_BOUND,
            w_bits=MIX_OUT_W_BITS,
        )
        return cls(to_a, bound, skip_out, conv_out)


def stage_inputs(
    x: torch.Tensor, *, K: int, b: int, S: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """An Upscale ARDM's network inputs at a random stage and step per item, as in its loss:
    ``(x_cur, known, t)`` with ``x_cur = where(known, x^(s+1), x^(s))`` and ``t = s D + t_in``
    (one stage: ``x`` where known, 0 elsewhere)."""
    N, D = x.shape[0], x[0].numel()
    s = torch.randint(0, S, (N,), generator=generator)  # (N,)
    t_in = torch.randint(0, D, (N,), generator=generator)  # (N,)
    known = known_mask(random_orders(N, D, generator=generator), t_in).view(x.shape)
    unit = (b ** (S - s)).view(-1, *([1] * (x.dim() - 1)))  # (N, 1...) x^(s) digit unit
    past = torch.div(x, unit, rounding_mode="floor") * unit
    nxt = torch.div(x, unit // b, rounding_mode="floor") * (unit // b)
    return torch.where(known, nxt, past), known, s * D + t_in


class IntegerWaveNet:
    """The frozen integer form of :class:`ardm.nets.wavenet.WaveNet`.

    ``logits(x, known, t)`` gives int64 logits ``(B, L, O)`` in ``Q_6`` (units of 1/64 nat),
    the same bits on every machine, thread count and batch size; for an Upscale ARDM (direct
    parametrisation) ``digit_pmf(x, known, t)`` gives stage ``t // D``'s integer digit pmf.
    A 16-bit logistic-mixture net (``mixture``) gives its parameters instead, and
    ``byte_pmf(out, hi)`` the integer pmfs of a value's high and low byte. Build it with
    :meth:`from_float`; ship the frozen object.
    """

    mixture: bool = False
    """A 16-bit logistic-mixture net (an instance attribute only where True)."""

    def __init__(
        self,
        net: WaveNet,
        ranges: Ranges,
        widths: Widths,
        head_bias: torch.Tensor | None = None,
    ) -> None:
        self.K, self.D, self.stages = net.K, net.D, net.stages
        self.out_classes = net.out_classes
        if head_bias is not None:  # set only here: other nets' states stay as they were
            if self.K != 1 << 16 or self.stages != 1:
                raise ValueError(
                    "the integer WaveNet's mixture head codes 16-bit values, one stage"
                )
            self.mixture = True
        self.widths = widths
        self._time_cache: dict[int, list[torch.Tensor | None]] = {}
        n = len(net.blocks)
        s_h = [wide_scale(max(ranges["conv_in>"], ranges["value_in>"]))]
        s_h += [wide_scale(ranges[f"blocks.{i}<"]) for i in range(1, n)]
        s_h.append(s_h[-1])  # the last block's residual is never read
        C = net.cfg.channels
        s_skip = wide_scale(
            max(float(ranges.channels(f"blocks.{i}.out")[C:].max()) for i in range(n))
        )
        self.time: IntTime | None = None
        temb_scale = 1.0
        if net.time_emb is not None:
            temb_amax = ranges["blocks.0.temb_proj<"]
            self.time = IntTime.freeze(net, ranges, temb_amax)  # type: ignore[arg-type]
            temb_scale = wide_scale(temb_amax)
        ctx = _Freeze(ranges, widths, s_h, s_skip, temb_scale, n)
        self.input = IntWaveInput.freeze(net, s_h[0])
        self.blocks = [IntWaveBlock.freeze(block, ctx, i) for i, block in enumerate(net.blocks)]  # type: ignore[arg-type]
        self.head = IntWaveHead.freeze(net, ctx, head_bias)
        self.gate = Gate.build()

    @classmethod
    @torch.no_grad()
    def from_float(
        cls,
        net: WaveNet,
        items: torch.Tensor,
        *,
        passes: int = 4,
        seed: int = 0,
        widths: Widths | None = None,
        branching: int | None = None,
        head_bias: torch.Tensor | None = None,
    ) -> IntegerWaveNet:
        """Freeze ``net`` after recording its activation ranges on ``items`` ``(N, L)``, each
        seen ``passes`` times at a random stage and step with its Upscale state (see
        :func:`stage_inputs`; ``branching`` defaults to ``out_classes // stages``).
        ``head_bias`` ``(3M,)``: a 16-bit logistic-mixture head's bias (``model.head.bias``)."""
        g = torch.Generator().manual_seed(seed)
        S = net.stages
        b = branching if branching is not None else max(2, net.out_classes // S)
        ranges = Ranges()
        net = net.eval()
        with ranges.recording(net):
            for _ in range(passes):
                net(*stage_inputs(items, K=net.K, b=b, S=S, generator=g))
        return cls(net, ranges, widths if widths is not None else Widths(), head_bias)

    @torch.inference_mode()
    def logits(self, x: torch.Tensor, known: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Integer logits ``(B, L, O)`` int64 in ``Q_6``, or a mixture net's parameters
        (:data:`ardm.portable.pmf.MIX16_FRAC_BITS`)."""
        return self.outputs(x, known, t).to(torch.int64)

    @torch.inference_mode()
    def outputs(
        self,
        x: torch.Tensor,
        known: torch.Tensor,
        t: torch.Tensor,
        positions: torch.Tensor | None = None,
        *,
        stage_rows: bool = False,
    ) -> torch.Tensor:
        """:meth:`logits` as float32 integers ``(B, L, O)`` (exact: ``|q| < 2^24``); with
        ``stage_rows`` (an Upscale net, one stage per call) only stage ``t // D``'s ``b``
        logits ``(B, L, b)``, the only ones its digit pmf reads (the head's other rows are
        not computed); ``positions`` ``(m,)``: only their rows ``(B, m, O)``, the same integers
        (the skips and the head are per position). Items are run :data:`CHUNK_VALUES` values
        at a time (the same integers at any batch size; a WaveNet's activations outgrow the
        caches in larger batches)."""
        head = self.head
        if stage_rows:
            head = self._stage_heads[call_stage(t, self.D)]
        step = max(1, CHUNK_VALUES // max(1, x.shape[-1]))
        parts = [
            self._forward(x[i : i + step], known[i : i + step], t[i : i + step], head, positions)
            for i in range(0, x.shape[0], step)
        ]
        out = parts[0] if len(parts) == 1 else torch.cat(parts)  # (B, O, 1, L or m)
        return out[:, :, 0].transpose(1, 2)  # (B, L or m, O)

    def _forward(
        self,
        x: torch.Tensor,
        known: torch.Tensor,
        t: torch.Tensor,
        head: IntWaveHead,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The network on one chunk of items: ``(B, O, 1, L)`` float32 integers (``(B, O, 1,
        m)`` at ``positions``)."""
        stage, t_in = split_step(t, self.D) if self.stages > 1 else (torch.zeros_like(t), t)
        h = self.input(x.long(), known, stage)  # (B, C, 1, L) wide
        skips: torch.Tensor | None = None
        blocks = zip(self.blocks, self.time_terms(t_in), self._gate_lookups, strict=True)
        for block, time, lookup in blocks:
            h, skip = block(h, time, lookup, positions)
            # exact in float32: |skips| < blocks * 2^14
            skips = skip.clone() if skips is None else skips.add_(skip)
        assert skips is not None
        return head(skips)

    @functools.cached_property
    def _stage_heads(self) -> list[IntWaveHead]:
        """The head of each stage's ``b`` logits (rows of ``conv_out``; a cache: never saved)."""
        b = self.out_classes // self.stages
        return [
            dataclasses.replace(self.head, conv_out=self.head.conv_out.rows(s * b, (s + 1) * b))
            for s in range(self.stages)
        ]

    @functools.cached_property
    def _gate_lookups(
        self,
    ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Every block's :meth:`IntWaveBlock.gate_lookup` (a cache: never saved)."""
        return [block.gate_lookup(self.gate) for block in self.blocks]

    def digit_pmf(self, x: torch.Tensor, known: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Stage ``s = t // D``'s integer digit pmf ``(B, L, b)`` (one stage for the batch),
        for an Upscale ARDM with the direct parametrisation (``b = out_classes / stages``)."""
        stage = call_stage(t, self.D)
        b = self.out_classes // self.stages
        out = self.logits(x, known, t)
        return digit_pmf(out, x, stage, b=b, S=self.stages, K=self.K)

    def byte_pmf(self, out: torch.Tensor, hi: torch.Tensor | None) -> torch.Tensor:
        """A mixture net's integer pmf ``(..., 256)`` of the high byte (``hi=None``) or of the
        low byte given the high bytes ``hi (...)``, from its outputs ``out (..., 3M)``
        (:func:`ardm.portable.pmf.mixture_byte_pmf`)."""
        if not self.mixture:
            raise ValueError("byte_pmf needs a mixture net (16-bit values)")
        return mixture_byte_pmf(out, hi)

    def time_terms(self, t_in: torch.Tensor) -> list[torch.Tensor | None]:
        """Every block's time term ``(B, C, 1, 1)`` for in-stage steps ``t_in`` ``(B,)``,
        computed once per step and kept (an exact integer function: no bit changes)."""
        if self.time is None:
            return [None] * len(self.blocks)
        rows = []
        for step in t_in.tolist():
            if step not in self._time_cache:
                temb = self.time(torch.tensor([step]))  # (1, 4C, 1, 1)
                self._time_cache[step] = [b.time_term(temb) for b in self.blocks]
            rows.append(self._time_cache[step])
        return [None if col[0] is None else torch.cat(col) for col in zip(*rows, strict=True)]

    def __getstate__(self) -> dict[str, object]:
        """Pickle without the kept time terms (a copy recomputes them)."""
        return {**self.__dict__, "_time_cache": {}}
