"""The integer form of the bidirectional Transformer (:class:`ardm.nets.transformer.Transformer`,
one stage, no time conditioning: the shipped ``english`` model).

Every activation is a tensor of integers with a scale fixed at freeze time, carried in
float32 (below ``2^24``; accumulators and rescales run exactly in float64 or int64):

* the residual stream is *wide* (``|q| <= 2^14 - 1``), one scale per point between blocks;
  the token embedding (row ``K``: the absorbing token) is a wide integer table;
* LayerNorm is :class:`ardm.portable.ops.IntNorm` per position, into 8-bit operands; every
  linear layer is an :class:`IntLayer` whose one float32 matmul on 8-bit operands is exact
  (fan-in <= 1040) and whose epilogue adds the rescaled residual;
* queries and keys leave ``qkv`` wide, are rotated by the exact rotary table
  (:func:`ardm.portable.tables.rotary_table`, ``Q_14``) in float64 and rescaled to
  ``ATTN_QK_BOUND``; values are 8-bit; attention is :func:`ardm.portable.attention.attend`
  (integer ``q.k`` scores, an exact ``exp`` table after subtracting the row maximum, and the
  weighted value sum divided by the table sum, exactly);
* GELU (``F.gelu``, the erf form) is a per-layer lookup table (:class:`GELUTable`) on ``Q_8``
  inputs built from the exact normal-CDF table;
* the head gives ``Q_6`` logits for :func:`ardm.portable.pmf.categorical_pmf`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from ardm.core.orders import known_mask, random_orders
from ardm.nets.embeddings import apply_rotary
from ardm.nets.transformer import Block, SelfAttention, Transformer
from ardm.portable.attention import (
    ATTN_EXP_FRAC_BITS,
    VALUE_SHIFT,
    attend,
    packed_limbs,
    score_exp_table,
)
from ardm.portable.layers import IntLayer, Ranges, narrow_scale, wide_scale
from ardm.portable.ops import EXACT_LIMIT, GELU_IN_FRAC_BITS, SILU_IN_BOUND, GELUTable, IntNorm
from ardm.portable.pmf import LOGIT_FRAC_BITS, categorical_pmf
from ardm.portable.quant import NARROW, WIDE, Rescale, quantize_values
from ardm.portable.tables import rotary_table
from ardm.portable.unet import LOGIT_BOUND, POW2

ROTARY_BITS = 14
"""Rotary cosines and sines are ``Q_14``."""

ATTN_QK_BOUND = NARROW
"""Rotated queries and keys are integers ``|q| <= ATTN_QK_BOUND`` (8-bit: one matmul call)."""

_HALF = torch.tensor(0.5, dtype=torch.float64)
"""The rescale's rounding term of :func:`rotate_rescaled` (a 0-dim tensor: any device)."""


def linear(layer: IntLayer, a: torch.Tensor, add: torch.Tensor | None = None) -> torch.Tensor:
    """An :class:`IntLayer` on rows ``a (N, I)`` -> ``(N, O)``; ``add`` ``(N, O)`` (output
    units) is added before the clamp.

    Where one float32 call covers the whole reduction (``I * a_bound * w_bound < 2^24``), this
    is ``a @ w^T`` on the rows and the layer's epilogue (:meth:`IntLayer.finish`: the same
    integers as the layer, without transposing the activations); otherwise the layer itself on
    ``(1, I, N, 1)``.
    """
    w = layer.conv.weight[:, :, 0, 0]  # (O, I) float32 integers
    one_call = w.shape[1] * layer.conv.a_bound * layer.conv.w_bound < EXACT_LIMIT
    if not one_call or a.dtype != torch.float32:
        x = a.t()[None, :, :, None]  # (1, I, N, 1)
        extra = None if add is None else add.t()[None, :, :, None]  # (1, O, N, 1)
        return layer(x, extra)[0, :, :, 0].t()  # (N, O)
    return layer.finish([(torch.matmul(a, w.t()), 0)], add)  # (N, O)


def rotate_rescaled(
    x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, rescale: Rescale, bound: int
) -> torch.Tensor:
    """Integers ``x (..., L, 2h)`` turned by ``Q_14`` integer ``cos, sin (L, h)`` (float64),
    ``(x1 c - x2 s, x1 s + x2 c)`` (``|.| < 2^30`` for wide ``x``), then ``rescale``d and
    clamped to ``|.| <= bound``, as float32 integers. The rescale's factor ``M 2^-s`` is folded
    into the tables: ``c M`` and ``s M`` are integers below ``2^38`` times ``2^-s``, so every
    product and the sum are exact multiples of ``2^-s`` below ``2^53`` times it, the same
    integers as rescaling the exact rotation."""
    scale = rescale._float64[0]  # (1,) M 2^-s
    a, b = cos * scale, sin * scale  # (L, h) each, exact
    half = x.shape[-1] // 2
    xd = x.double()  # (..., L, 2h)
    x1, x2 = xd[..., :half], xd[..., half:]  # (..., L, h) each
    out = torch.empty(x.shape, dtype=torch.float64)  # (..., L, 2h)
    first, second = out[..., :half], out[..., half:]
    # + 1/2 (the rescale's rounding) first: every term a multiple of 2^-s, every partial sum
    # below 2^53 of that unit, so the same exact sums in this order
    torch.addcmul(_HALF, x1, a, out=first).addcmul_(x2, b, value=-1.0)  # x1 c - x2 s
    torch.addcmul(_HALF, x1, b, out=second).addcmul_(x2, a)  # x1 s + x2 c
    # floor, then float32 (|.| < 2^31; rounding beyond 2^24 is monotonic, so the clamp to a
    # bound below 2^24 gives the same integers)
    return out.floor_().to(torch.float32).clamp_(-bound, bound)


@dataclass(frozen=True)
class IntSelfAttention:
    """Integer :class:`ardm.nets.transformer.SelfAttention` (without its output projection)."""

    heads: int
    qkv: IntLayer  # -> q, k wide; v 8-bit
    rot_q: Rescale  # rotated q (Q_14 product) -> |q| <= ATTN_QK_BOUND
    rot_k: Rescale
    score: Rescale  # (max - q.k) -> Q_6 nats for the exp table
    exp: torch.Tensor  # (2, n) float32: low and high 7-bit limbs of exp table[score(j)]
    value: torch.Tensor  # () int64: multiplier of (sum e v) / (sum e) into y's 8-bit scale

    def __call__(
        self,
        a: torch.Tensor,
        B: int,
        cos: torch.Tensor,
        sin: torch.Tensor,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The attention output ``(N, C)`` 8-bit for the normalised rows ``a (N, C)``;
        ``positions`` ``(m,)``: only the queries at those positions of each item, ``(B m, C)``
        (each query's output depends on its own row and every key: the same integers)."""
        N, C = a.shape
        L, hd = N // B, C // self.heads
        if positions is None:
            qkv = linear(self.qkv, a).reshape(B, L, 3, self.heads, hd)  # (B, L, 3, nh, hd)
            q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # (B, nh, L, hd) each
        else:  # the queries' rows of the layer at the positions only
            q_layer, kv_layer = self._split_qkv
            a_q = a.view(B, L, C)[:, positions].reshape(-1, C)  # (B m, C)
            q = linear(q_layer, a_q).reshape(B, -1, 1, self.heads, hd)  # (B, m, 1, nh, hd)
            kv = linear(kv_layer, a).reshape(B, L, 2, self.heads, hd)  # (B, L, 2, nh, hd)
            q = q.permute(2, 0, 3, 1, 4)[0]  # (B, nh, m, hd)
            k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)  # (B, nh, L, hd) each
        q_cos, q_sin = (cos, sin) if positions is None else (cos[positions], sin[positions])
        q = rotate_rescaled(q, q_cos, q_sin, self.rot_q, ATTN_QK_BOUND)  # (B, nh, Lq, hd)
        k = rotate_rescaled(k, cos, sin, self.rot_k, ATTN_QK_BOUND)
        v = v.contiguous().clamp_(-NARROW, NARROW)  # (B, nh, L, hd)
        qt, kt, vt = (x.transpose(-1, -2) for x in (q, k, v))  # views (B, nh, hd, L)
        y = attend(qt, kt, vt, self._packed, self.value)  # (B, nh, hd, Lq) 8-bit
        return y.permute(0, 3, 1, 2).reshape(-1, C)  # (B Lq, C)

    @functools.cached_property
    def _split_qkv(self) -> tuple[IntLayer, IntLayer]:
        """The ``qkv`` layer's query rows and its key and value rows (the same integers)."""
        C = self.qkv.conv.weight.shape[1]
        return self.qkv.rows(0, C), self.qkv.rows(C, 3 * C)

    @functools.cached_property
    def _packed(self) -> torch.Tensor:
        """:attr:`exp` as the packed words that :func:`attend` gathers."""
        return packed_limbs(self.exp)

    @classmethod
    def freeze(
        cls, attn: SelfAttention, name: str, s_a: float, ranges: Ranges
    ) -> tuple[IntSelfAttention, float]:
        """The integer attention on 8-bit inputs of scale ``s_a``; returns it and the scale
        of its (8-bit) output."""
        C = attn.qkv.in_features
        hd = C // attn.heads
        s_q, s_k = wide_scale(ranges[name + ":q"]), wide_scale(ranges[name + ":k"])
        s_v = narrow_scale(ranges[name + ":v"])
        out_scale = torch.tensor([s_q, s_k, s_v], dtype=torch.float64).repeat_interleave(C)
        qkv = IntLayer.freeze(
            attn.qkv, in_scale=s_a, in_bound=NARROW, pow2=POW2, out_scale=out_scale, out_bound=WIDE
        )
        s_qr = ranges[name + ":qr"] / ATTN_QK_BOUND
        s_kr = ranges[name + ":kr"] / ATTN_QK_BOUND
        rot_bound = 2 * WIDE << ROTARY_BITS

        def rot(s_in: float, s_out: float) -> Rescale:
            ratio = s_in * 2.0**-ROTARY_BITS / s_out
            return Rescale.from_ratio(ratio, in_bound=rot_bound, float64=True)

        score_ratio = s_qr * s_kr / math.sqrt(hd) * 2.0**ATTN_EXP_FRAC_BITS
        bound = 2 * hd * ATTN_QK_BOUND * ATTN_QK_BOUND
        score = Rescale.from_ratio(score_ratio, in_bound=bound)
        if hd * ATTN_QK_BOUND * ATTN_QK_BOUND >= EXACT_LIMIT:
            raise ValueError(f"attention scores over {hd} channels are not exact in float32")
        s_y = narrow_scale(ranges[name + ".proj<"])
        value = torch.tensor(round(s_v / s_y * 2.0**VALUE_SHIFT), dtype=torch.int64)
        exp = score_exp_table(score, bound)
        layer = cls(attn.heads, qkv, rot(s_q, s_qr), rot(s_k, s_kr), score, exp, value)
        return layer, s_y


@dataclass(frozen=True)
class IntBlock:
    """Integer pre-LayerNorm :class:`ardm.nets.transformer.Block` on wide rows ``(N, C)``."""

    ln_1: IntNorm
    attn: IntSelfAttention
    proj: IntLayer
    res_1: Rescale
    ln_2: IntNorm
    fc: IntLayer  # -> Q_8 GELU input
    gelu: GELUTable
    mlp_proj: IntLayer
    res_2: Rescale

    def __call__(
        self,
        h: torch.Tensor,
        B: int,
        cos: torch.Tensor,
        sin: torch.Tensor,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The block on wide rows ``h (N, C)``; ``positions`` ``(m,)``: its output rows at those
        positions of each item only, ``(B m, C)`` (after the attention every step is per row)."""
        y = self.attn(self.ln_1(h), B, cos, sin, positions)  # (N', C) 8-bit
        if positions is not None:
            h = h.view(B, -1, h.shape[-1])[:, positions].reshape(-1, h.shape[-1])  # (B m, C)
        h = linear(self.proj, y, self.res_1(h).float())  # (N', C) wide
        u = self.fc_gelu(self.ln_2(h))  # (N', 4C) 8-bit
        return linear(self.mlp_proj, u, self.res_2(h).float())  # (N', C) wide

    def fc_gelu(self, a: torch.Tensor) -> torch.Tensor:
        """``gelu(linear(fc, a))`` for 8-bit rows ``a (N, C)``: ``(N, 4C)`` 8-bit, in one pass
        where :attr:`_fc_gelu` allows (the same integers)."""
        fused = self._fc_gelu
        if fused is None or a.dtype != torch.float32:
            return self.gelu(linear(self.fc, a))
        scaled_offset, power, top = fused
        w = torch.matmul(a, self.fc.conv.weight[:, :, 0, 0].t())  # (N, 4C) exact
        i = torch.addcmul(scaled_offset, w, power, out=w).clamp_(0, top).to(torch.int32)
        return self.gelu.table.index_select(0, i.view(-1)).view(i.shape)

    @functools.cached_property
    def _fc_gelu(self) -> tuple[torch.Tensor, torch.Tensor, int] | None:
        """``fc`` and the GELU table in one pass, where it is exact: ``(offset', 2^-k, top)``.

        The layer gives ``y = clamp(floor(v), -b, b)`` with ``v = (acc + offset) 2^-k``, and
        the table reads ``clamp(y, -half, half - 1) + half``. With ``b >= half`` that index is
        ``clamp(floor(v + half), 0, 2 half - 1)``, i.e. the truncation of ``clamp(v + half, 0,
        top)`` (non-negative), and ``v + half = (acc + offset + half 2^k) 2^-k`` is one exact
        float32 multiply-add while ``|acc| + |offset + half 2^k| < 2^24``; else None."""
        fast, fc, half = self.fc._float32_epilogue, self.fc, self.gelu.half
        w = fc.conv.weight
        one_call = w.shape[1] * fc.conv.a_bound * fc.conv.w_bound < EXACT_LIMIT
        if fast is None or not one_call or w.shape[2:] != (1, 1) or fc.out_bound < half:
            return None
        scaled_offset, power = fast  # (1, O, 1, 1) float32 each: offset 2^-k, 2^-k
        k = -torch.log2(power.double()).round()  # (1, O, 1, 1)
        offset = (scaled_offset.double() * 2.0**k + half * 2.0**k).reshape(-1)  # integers
        if fc.conv.acc_bound + float(offset.abs().max()) >= EXACT_LIMIT:
            return None
        shifted = (offset * power.double().reshape(-1)).float()  # (O,) exact
        return shifted, power.reshape(-1), 2 * half - 1

    @classmethod
    def freeze(cls, block: Block, name: str, s_h: float, ranges: Ranges) -> tuple[IntBlock, float]:
        """The integer block for a wide input of scale ``s_h``; returns it and its output scale."""
        s_a = narrow_scale(ranges[name + ".attn.qkv<"])
        ln_1 = IntNorm.freeze(
            block.ln_1, in_scale=s_h, in_bound=WIDE, out_unit=s_a, out_bound=NARROW
        )
        attn, s_y = IntSelfAttention.freeze(block.attn, name + ".attn", s_a, ranges)
        s_mid = wide_scale(ranges[name + ".ln_2<"])
        proj = IntLayer.freeze(
            block.attn.proj,
            in_scale=s_y,
            in_bound=NARROW,
            pow2=POW2,
            out_scale=s_mid,
            out_bound=WIDE,
        )
        s_b = narrow_scale(ranges[name + ".mlp.fc<"])
        ln_2 = IntNorm.freeze(
            block.ln_2, in_scale=s_mid, in_bound=WIDE, out_unit=s_b, out_bound=NARROW
        )
        fc = IntLayer.freeze(
            block.mlp.fc,
            in_scale=s_b,
            in_bound=NARROW,
            pow2=POW2,
            out_scale=2.0**-GELU_IN_FRAC_BITS,
            out_bound=SILU_IN_BOUND,
        )
        s_u = narrow_scale(ranges[name + ".mlp.proj<"])
        gelu = GELUTable.freeze(out_scale=s_u, out_bound=NARROW)
        s_out = wide_scale(ranges[name + ">"])
        mlp_proj = IntLayer.freeze(
            block.mlp.proj,
            in_scale=s_u,
            in_bound=NARROW,
            pow2=POW2,
            out_scale=s_out,
            out_bound=WIDE,
        )
        res_1 = Rescale.from_ratio(s_h / s_mid, in_bound=WIDE, float64=True)
        res_2 = Rescale.from_ratio(s_mid / s_out, in_bound=WIDE, float64=True)
        layer = cls(ln_1, attn, proj, res_1, ln_2, fc, gelu, mlp_proj, res_2)
        return layer, s_out


@contextmanager
def attention_ranges(net: Transformer, ranges: Ranges) -> Iterator[None]:
    """Also record, per attention layer ``name``, the magnitudes of its queries, keys and
    values before rotation (``name:q``, ``:k``, ``:v``) and of its rotated queries and keys
    (``name:qr``, ``:kr``)."""

    def hook(name: str, heads: int) -> Callable[..., None]:
        def record(_m: nn.Module, _args: tuple[object, ...], out: torch.Tensor) -> None:
            B, L, C3 = out.shape
            C = C3 // 3
            q, k, v = out.detach().float().split(C, dim=-1)  # (B, L, C) each
            parts = {"q": q, "k": k, "v": v}
            for key, x in (("qr", q), ("kr", k)):
                xh = x.view(B, L, heads, C // heads).transpose(1, 2)  # (B, nh, L, hd)
                parts[key] = apply_rotary(xh, net.cos, net.sin)
            for key, x in parts.items():
                ranges._note(f"{name}:{key}", x)

        return record

    handles = []
    for i, block in enumerate(net.blocks):
        assert isinstance(block, Block)
        attn = block.attn
        handles.append(attn.qkv.register_forward_hook(hook(f"blocks.{i}.attn", attn.heads)))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


class IntegerTransformer:
    """The frozen integer form of a one-stage :class:`ardm.nets.transformer.Transformer`
    without time conditioning.

    ``logits(x, known, t)`` gives int64 logits ``(B, L, O)`` in ``Q_6`` (units of 1/64 nat)
    and ``pmf(x, known, t)`` integer weights summing to ``2^24 - O`` per position; both are
    the same bits on every machine, thread count and batch size. ``t`` is ignored (as the
    float network ignores it). Build it with :meth:`from_float`; ship the frozen object.
    """

    def __init__(self, net: Transformer, ranges: Ranges) -> None:
        if net.stages != 1 or net.time_emb is not None:
            raise ValueError(
                "the integer Transformer supports one-stage networks without time "
                "conditioning only (so far)"
            )
        self.shape = net.shape
        self.K, self.out_classes, self.D = net.K, net.out_classes, net.D
        s = wide_scale(ranges["tok_emb>"])
        emb = quantize_values(net.tok_emb.weight, s).clamp(-WIDE, WIDE)  # (K + 1, C)
        self.embedding = emb.to(torch.float32)
        hd = net.cfg.dim // net.cfg.heads
        cos, sin = rotary_table(positions=net.D, head_dim=hd, out_bits=ROTARY_BITS)  # (L, hd/2)
        self.cos, self.sin = cos.to(torch.float64), sin.to(torch.float64)
        self.blocks: list[IntBlock] = []
        for i, block in enumerate(net.blocks):
            int_block, s = IntBlock.freeze(block, f"blocks.{i}", s, ranges)  # type: ignore[arg-type]
            self.blocks.append(int_block)
        s_f = narrow_scale(ranges["head<"])
        self.ln_f = IntNorm.freeze(
            net.ln_f, in_scale=s, in_bound=WIDE, out_unit=s_f, out_bound=NARROW
        )
        self.head = IntLayer.freeze(
            net.head,
            in_scale=s_f,
            in_bound=NARROW,
            pow2=POW2,
            out_scale=2.0**-LOGIT_FRAC_BITS,
            out_bound=LOGIT_BOUND,
        )

    @classmethod
    @torch.no_grad()
    def from_float(
        cls, net: Transformer, items: torch.Tensor, *, passes: int = 4, seed: int = 0
    ) -> IntegerTransformer:
        """Freeze ``net`` after recording its activation ranges on ``items`` ``(N, L)``, each
        seen ``passes`` times with a random order and a random ``t``."""
        g = torch.Generator().manual_seed(seed)
        ranges = Ranges()
        net = net.eval()
        with ranges.recording(net), attention_ranges(net, ranges):
            for _ in range(passes):
                N = items.shape[0]
                t = torch.randint(0, net.D, (N,), generator=g)  # (N,)
                sigma = random_orders(N, net.D, generator=g)  # (N, D)
                known = known_mask(sigma, t).view(N, *net.shape)  # (N, L)
                net(items, known, t)
        return cls(net, ranges)

    @torch.inference_mode()
    def logits(self, x: torch.Tensor, known: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Integer logits ``(B, L, O)`` int64 in ``Q_6``."""
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
        only a step's rows to int64. ``positions`` ``(m,)``: only the rows ``(B, m, O)`` of
        those positions, the same integers, with the last block after its keys and values, the
        last norm and the head computed there alone."""
        B, L = x.shape
        tokens = torch.where(known, x.long(), self.K)  # (B, L) unknown -> absorbing token
        h = self.embedding.index_select(0, tokens.reshape(-1))  # (B*L, C) wide
        cos, sin = self.cos[:L], self.sin[:L]  # (L, hd/2)
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            h = block(h, B, cos, sin, positions if i == last else None)  # (B*L or B*m, C)
        out = linear(self.head, self.ln_f(h))  # (B*L or B*m, O)
        return out.reshape(B, -1, self.out_classes)

    def pmf(self, x: torch.Tensor, known: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Integer weights ``(B, L, O)``, each >= 0, summing to ``2^24 - O`` per position."""
        return categorical_pmf(self.logits(x, known, t))
