"""Exact softmax attention on integers: both integer attentions' weighted average of values.

The U-Net's :class:`ardm.portable.unet.IntAttn` and the transformer's
:class:`ardm.portable.transformer.IntSelfAttention` compute the same thing once their queries,
keys and values are 8-bit integers (``|.| <= 127``, float32): integer scores ``s_ij = q_i . k_j``,
weights ``e_ij = exp_table[score(max_j' s_ij' - s_ij)]`` (``score`` a :class:`Rescale` into
``Q_6`` nats, the table :func:`ardm.portable.tables.exp_table`, at most ``2^14``), and

    y_i = round_half_up(sum_j e_ij v_j * value / (sum_j e_ij << shift)),  clamped to 8 bits.

:func:`attend` is that computation, in a layout made for the CPU's float32 GEMMs (every product
exact, so the same integers on every machine):

* the scores are computed key-major, ``s^T = k q^T`` ``(Lk, Lq)``, so that the row maximum is a
  reduction over the outer axis and every later step reads memory in order;
* :func:`score_exp_table` folds ``score`` and the exp table into one table over the gap
  ``max - s`` (cut where it saturates), and stores each entry as two 7-bit limbs; the limbs sit
  side by side in one 8-byte word (:func:`packed_limbs`), so one gather fetches both, and the
  gathered ``(Lk, Lq, 2)`` block is already the right operand of ``v^T e`` ``(hd, 2 Lq)``: one
  GEMM for both limbs and every query (sums of at most ``Lk 2^7 127 < 2^24``, split over keys
  beyond :data:`KEY_CHUNK`);
* the rounded division runs in float64 where that is exact
  (:func:`ardm.portable.quant.div_round_float64`), else in int64.
"""

from __future__ import annotations

import torch

from ardm.portable.quant import FLOAT64_EXACT, NARROW, Rescale, div_round, div_round_float64
from ardm.portable.tables import exp_table

ATTN_EXP_FRAC_BITS = 6
"""Score gaps index the exp table in ``Q_6`` nats."""
ATTN_EXP_BITS = 14
"""Attention weights are ``round(2^14 exp(-gap))``."""
ATTN_EXP_SPAN = 16
"""The exp table covers gaps below 16 nats (and its last entry every larger gap)."""

EXP_LIMB_BITS = 7
"""Attention weights (``<= 2^14``) are split into two 7-bit limbs (``<= 2^7``) for ``e v``."""

VALUE_SHIFT = 24
"""Fractional bits of the multiplier that moves the value average to the output scale."""

KEY_CHUNK = (1 << 24) // ((1 << EXP_LIMB_BITS) * NARROW + 1)
"""Keys per exact float32 GEMM of limbs and values (``KEY_CHUNK 2^7 127 < 2^24``): 1031."""


def score_exp_table(score: Rescale, bound: int) -> torch.Tensor:
    """``exp_table[min(score(j), n - 1)]`` for every score gap ``j = max - q.k`` in ``[0,
    bound]``, cut after the first ``j`` that reaches the table's last entry (every larger gap
    gets that entry too): the rescale and the exp lookup as one lookup, the same integers.
    Returned as its two 7-bit limbs ``e mod 2^7`` and ``e >> 7`` (at most ``2^7``), so that
    ``e @ v`` over ``L <= 1031`` keys is exact in float32. Float32 ``(2, cut + 1)``."""
    table = exp_table(frac_bits=ATTN_EXP_FRAC_BITS, span=ATTN_EXP_SPAN, out_bits=ATTN_EXP_BITS)
    last = table.numel() - 1
    cut = min(bound, _first_gap_at(score, last))
    idx = score(torch.arange(cut + 1)).clamp(max=last)  # (cut + 1,) non-decreasing
    if cut < bound and (int(idx[-1]) != last or (cut > 0 and int(idx[-2]) == last)):
        raise AssertionError("the score rescale reaches the table's end elsewhere")
    e = table[idx]  # (cut + 1,) in [0, 2^14]
    low = e & ((1 << EXP_LIMB_BITS) - 1)
    return torch.stack([low, e >> EXP_LIMB_BITS]).to(torch.float32)  # (2, cut + 1)


def _first_gap_at(score: Rescale, index: int) -> int:
    """The smallest gap ``j >= 0`` with ``score(j) >= index`` (a single multiplier ``M > 0``:
    ``floor((j M + 2^(s-1)) / 2^s) >= index`` iff ``j M >= index 2^s - 2^(s-1)``)."""
    M, s = int(score.multiplier.reshape(-1)[0]), score.shift
    if score.multiplier.numel() != 1 or M <= 0:
        return score.in_bound  # the whole range
    need = (index << s) - (1 << (s - 1))
    return max(0, -(-need // M))


def packed_limbs(limbs: torch.Tensor) -> torch.Tensor:
    """The ``(2, n)`` float32 limbs of :func:`score_exp_table` as ``(n,)`` int64 words, each
    holding one entry's low and high limb side by side: gathering words and viewing them as
    float32 gives ``(..., 2)`` pairs (low, high), on either byte order."""
    return limbs.t().contiguous().view(torch.int64).view(-1)  # (n,)


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    packed: torch.Tensor,
    value: torch.Tensor,
    shift: int = VALUE_SHIFT,
) -> torch.Tensor:
    """The attention average ``(..., hd, Lq)`` (8-bit float32 integers) of channel-major 8-bit
    queries ``q (..., hd, Lq)``, keys ``k (..., hd, Lk)`` and values ``v (..., hd, Lk)`` (views
    are fine), for the table ``packed`` (:func:`packed_limbs`) and the int64 multiplier ``value``
    ``2^-shift`` into the output scale."""
    *lead, hd, Lq = q.shape
    Lk = k.shape[-1]
    if hd * NARROW * NARROW >= 1 << 24:
        raise ValueError(f"attention scores over {hd} channels are not exact in float32")
    qb, kb, vb = (x.reshape(-1, hd, x.shape[-1]) for x in (q, k, v))  # (b, hd, L)
    s = torch.matmul(kb.transpose(1, 2), qb)  # (b, Lk, Lq) exact: hd 127^2 < 2^24
    gap = torch.sub(s.amax(dim=1, keepdim=True), s, out=s)  # (b, Lk, Lq) >= 0
    idx = gap.clamp_(max=packed.numel() - 1).to(torch.int32)
    e = packed.index_select(0, idx.view(-1)).view(torch.float32).view(-1, Lk, 2 * Lq)
    if Lk <= KEY_CHUNK:
        y = torch.matmul(vb, e)  # (b, hd, 2 Lq): sum_j v_j (low_ij, high_ij), exact
        sums = e.sum(dim=1).double()  # (b, 2 Lq) exact: Lk 2^7 < 2^24
    else:  # exact float32 GEMMs over chunks of keys, added in float64
        y = torch.zeros(vb.shape[0], hd, 2 * Lq, dtype=torch.float64)
        for j in range(0, Lk, KEY_CHUNK):
            y.add_(torch.matmul(vb[:, :, j : j + KEY_CHUNK], e[:, j : j + KEY_CHUNK]))
        sums = e.sum(dim=1, dtype=torch.float64)  # (b, 2 Lq)
    pair = y.view(-1, hd, Lq, 2)
    num = pair[..., 1].double().mul_(1 << EXP_LIMB_BITS).add_(pair[..., 0])  # (b, hd, Lq)
    sums = sums.view(-1, 1, Lq, 2)
    S = sums[..., 1].mul(1 << EXP_LIMB_BITS).add_(sums[..., 0])  # (b, 1, Lq) sum_j e_ij
    out = _weighted_average(num, S, value, shift)  # (b, hd, Lq)
    return out.to(torch.float32).clamp_(-NARROW, NARROW).view(*lead, hd, Lq)


def _weighted_average(
    num: torch.Tensor, S: torch.Tensor, value: torch.Tensor, shift: int
) -> torch.Tensor:
    """``div_round(num value, S 2^shift)`` for float64 integers ``num`` and ``S > 0``: float64
    integers where :func:`div_round_float64` is exact (with ``|num| <= 127 S``, ``2 |num value|
    + 3 S 2^shift <= S (254 |value| + 3 2^shift)``), else int64."""
    v = int(value)
    top = float(S.max()) * (2 * NARROW * abs(v) + 3 * (1 << shift))
    if top <= FLOAT64_EXACT:
        return div_round_float64(num.mul_(v), S * float(1 << shift))  # products exact
    return div_round(num.to(torch.int64) * v, S.to(torch.int64) << shift)
