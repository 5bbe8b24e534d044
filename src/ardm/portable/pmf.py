"""Integer logits -> an integer pmf for the coder, the same on every machine.

``constriction``'s ``Categorical(probabilities, perfect=False)`` quantises a float pmf to
24-bit fixed point; given float64 integer weights ``w`` that sum to exactly ``2^24 - K``,
its scale is exactly 1 and its fixed-point pmf is exactly ``w + 1`` (every entry >= 1). So
:func:`categorical_pmf` returns such ``w``, and :func:`pmf_nll_bits` scores ``w + 1``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ardm.core.dmol import BYTE, log_scale_min
from ardm.portable.quant import div_round
from ardm.portable.tables import exp_range_table, exp_table, sigmoid_table

PMF_TOTAL_BITS = 24
"""The coder's pmf is ``(w + 1) / 2^24``."""

LOGIT_FRAC_BITS = 6
"""Integer logits are in ``Q_6`` (units of 1/64 nat)."""

EXP_SPAN = 18
"""``exp(-18) * 2^24 < 0.3``: logits further than 18 nats below the maximum weigh 0."""


def categorical_pmf(logits: torch.Tensor, *, frac_bits: int = LOGIT_FRAC_BITS) -> torch.Tensor:
    """Integer weights ``(..., K)`` int64, each >= 0, summing to ``2^24 - K`` along the last axis.

    ``logits`` are int64 in ``Q_frac_bits``. Steps: subtract the maximum, look up
    ``2^24 exp(-d)`` in an exact table, scale to the total ``2^24 - K`` by an integer floor
    division, and give the few units the floors lost to the (first) largest entry.
    """
    K = logits.shape[-1]
    total = (1 << PMF_TOTAL_BITS) - K
    table = exp_table(frac_bits=frac_bits, span=EXP_SPAN, out_bits=PMF_TOTAL_BITS)
    d = logits.amax(dim=-1, keepdim=True) - logits  # (..., K) >= 0
    e = table[d.clamp(max=table.numel() - 1)]  # (..., K) in (0, 2^24], the max gets 2^24
    e = torch.where(d < table.numel() - 1, e, torch.zeros_like(e))
    w = torch.div(e * total, e.sum(dim=-1, keepdim=True), rounding_mode="floor")  # (..., K)
    rest = total - w.sum(dim=-1, keepdim=True)  # (..., 1) in [0, K)
    top = w.argmax(dim=-1, keepdim=True)  # (..., 1)
    return w.scatter_add(-1, top, rest)  # (..., K)


def pmf_nll_bits(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``-log2((w[x] + 1) / 2^24)`` ``(...)`` float64: the exact code length of ``x`` under ``w``."""
    p = torch.gather(w, -1, x.unsqueeze(-1)).squeeze(-1) + 1  # (...)
    return PMF_TOTAL_BITS - torch.log2(p.to(torch.float64))


def masked_categorical_pmf(
    logits: torch.Tensor, valid: torch.Tensor, *, frac_bits: int = LOGIT_FRAC_BITS
) -> torch.Tensor:
    """:func:`categorical_pmf` over the entries where ``valid`` (bool, broadcasting; at least
    one per row): weights ``(..., K)`` int64, 0 where not valid, the valid ones summing to
    ``2^24 - K`` (so the coder's table is ``w + 1`` for all ``K`` entries, as ever).

    An invalid entry is set to exactly ``EXP_SPAN`` nats below the valid maximum, where the
    exp table gives 0; the valid entries see the same maximum as without it.
    """
    if bool(valid.all()):
        return categorical_pmf(logits, frac_bits=frac_bits)  # the same integers, faster
    low = torch.iinfo(torch.int64).min
    top = torch.where(valid, logits, low).amax(dim=-1, keepdim=True)  # (..., 1) valid max
    floor = top - (EXP_SPAN << frac_bits)  # (..., 1): weight 0
    return categorical_pmf(torch.where(valid, logits, floor), frac_bits=frac_bits)


def call_stage(t: torch.Tensor, D: int) -> int:
    """The one Upscale stage ``t // D`` of a call's global steps ``t (B,)``; a ``ValueError``
    where the batch mixes stages (a digit pmf is one stage's)."""
    stages = torch.unique(torch.div(t, D, rounding_mode="floor")).tolist()
    if len(stages) != 1:
        raise ValueError(f"one stage per call, got stages {stages}")
    return int(stages[0])


def digit_pmf(
    logits: torch.Tensor, x_cur: torch.Tensor, s: int, *, b: int, S: int, K: int
) -> torch.Tensor:
    """An Upscale ARDM's integer digit pmf (direct parametrisation, as
    :meth:`ardm.models.heads.DigitHead.stage_log_probs`): from integer logits ``(..., S * b)``
    in ``Q_6`` and the current values ``x_cur (...)``, stage ``s``'s slice of ``b`` logits,
    every digit whose value would reach ``K`` weighted 0, the others an integer pmf summing to
    ``2^24 - b``. Returns ``(..., b)`` int64."""
    from ardm.core.upscale import coarsen, refine  # here: the module head stays append-only

    stage = logits.unflatten(-1, (S, b))[..., s, :]  # (..., b)
    past = coarsen(x_cur, s, b=b, S=S)  # (...)
    d = torch.arange(b, device=x_cur.device)  # (b,)
    valid = refine(past[..., None], d, s, b=b, S=S) < K  # (..., b)
    return masked_categorical_pmf(stage, valid)


MIX_FRAC_BITS = 12
"""Integer mixture parameters are in ``Q_12`` (units of ``2^-12``): logits (nats), means
(on the ``[-1, 1]`` scale of :mod:`ardm.core.dmol`) and log-scales."""

MIX_WEIGHT_BITS = 13
"""Mixture weights are normalised to sum to (about) ``2^13``."""

CDF_BITS = 26
"""Component CDFs are in units of ``2^-26``."""

CDF_FRAC_BITS = 8
"""The sigmoid table has a step of ``2^-8`` in the standardised value ``z``..."""

CDF_INTERP_BITS = 8
"""...and is interpolated linearly, with ``z`` in ``Q_16`` (``2^-8`` of a step)."""

CDF_SPAN = 20
"""``sigmoid(-20) 2^26 < 0.2``: the table covers ``z`` in ``[-20, 20)``."""

SCALE_FRAC_BITS = 8
"""Log-scales index the exp table in ``Q_8``."""

SCALE_SPAN = 24
"""Log-scales more than 24 above the clamp give inverse scale 0 (a flat component)."""

MU_BOUND = 1 << 20
"""Means are clamped to ``|mu| <= 2^20`` units (256 for ``Q_12``; the U-Net's clamp)."""

INV_SCALE_BITS = 18
"""Inverse scales ``1/s`` are in ``Q_18`` (at most ``exp(8.9) 2^18 < 2^31``)."""


def _mixture_weights(logits: torch.Tensor, frac_bits: int) -> torch.Tensor:
    """Integer softmax ``(n, M)`` int64, each >= 0, summing to at most ``2^13`` (floors)."""
    shift = frac_bits - LOGIT_FRAC_BITS
    q6 = (logits + (1 << (shift - 1))) >> shift if shift > 0 else logits << -shift  # (n, M) Q_6
    table = exp_table(frac_bits=LOGIT_FRAC_BITS, span=EXP_SPAN, out_bits=PMF_TOTAL_BITS)
    d = q6.amax(dim=-1, keepdim=True) - q6  # (n, M) >= 0
    e = torch.where(d < table.numel(), table[d.clamp(max=table.numel() - 1)], 0)  # (n, M)
    return torch.div(e << MIX_WEIGHT_BITS, e.sum(dim=-1, keepdim=True), rounding_mode="floor")


def _inverse_scales(log_s: torch.Tensor, K: int, frac_bits: int) -> torch.Tensor:
    """``exp(-max(log_s, log_scale_min(K)))`` ``(n, M)`` int64 in ``Q_18``, from an exact exp
    table over ``Q_8`` log-scales starting at the clamp (0 beyond its end: a flat component)."""
    lo = math.ceil(log_scale_min(K) * (1 << SCALE_FRAC_BITS))  # the clamp in Q_8
    shift = frac_bits - SCALE_FRAC_BITS
    q8 = (log_s + (1 << (shift - 1))) >> shift if shift > 0 else log_s << -shift  # (n, M) Q_8
    d = q8.clamp(min=lo) - lo  # (n, M) >= 0
    table = exp_range_table(
        frac_bits=SCALE_FRAC_BITS,
        start=lo,
        count=SCALE_SPAN << SCALE_FRAC_BITS,
        out_bits=INV_SCALE_BITS,
    )
    return torch.where(d < table.numel(), table[d.clamp(max=table.numel() - 1)], 0)  # (n, M)


def _edge_cdfs(mu: torch.Tensor, inv_s: torch.Tensor, K: int, frac_bits: int) -> torch.Tensor:
    """The CDFs ``(r, K - 1)`` int32 in ``2^-26`` units of ``r`` components (``mu``, ``inv_s``
    ``(r,)``) at the inner bin edges, by linear interpolation in an exact sigmoid table.

    Inner edge ``j`` (between classes ``j - 1`` and ``j``) is ``(2j - K) / (K - 1)``, so
    ``z = (edge - mu) / s`` is ``((2j - K) 2^f - (K - 1) mu) u / 2^(f + 26)`` with ``u =
    round(2^8 inv_s / (K - 1))`` (``inv_s`` in ``Q_18``), rounded to ``Q_16``: for ``|mu| <=
    2^20`` units and ``inv_s < 2^31`` every term is an int64 below ``2^60``. Once clamped to
    the table, ``z < 2^22``, the table and its steps below ``2^26`` and a step times the
    interpolation fraction below ``2^31``: the rest is int32.
    """
    zf = CDF_FRAC_BITS + CDF_INTERP_BITS
    shift = frac_bits + INV_SCALE_BITS + 8 - zf
    u = div_round(inv_s << 8, torch.tensor(K - 1))  # (r,)
    edges = (2 * torch.arange(1, K) - K) << frac_bits  # (K - 1,) units 2^-f / (K - 1)
    z = (edges - (K - 1) * mu[:, None]).mul_(u[:, None])  # (r, K - 1)
    z = z.add_(1 << (shift - 1)).bitwise_right_shift_(shift)  # Q_16, rounded
    return _sigmoid_q26(z)


def _sigmoid_q26(z: torch.Tensor) -> torch.Tensor:
    """``sigmoid(z / 2^16)`` in ``2^-26`` units (int32, any shape) for int64 ``Q_16`` ``z``
    (clamped to the table's ``[-20, 20)``; consumed), by linear interpolation between the
    exact table's ``2^-8`` steps."""
    zf = CDF_FRAC_BITS + CDF_INTERP_BITS
    half = CDF_SPAN << zf
    z32 = z.clamp_(-half, half - (1 << CDF_INTERP_BITS) - 1).add_(half).to(torch.int32)
    table, slope = _cdf_table()
    j = (z32 >> CDF_INTERP_BITS).view(-1).long()
    frac = z32.bitwise_and_((1 << CDF_INTERP_BITS) - 1)  # (r, K - 1)
    step = frac.mul_(slope.index_select(0, j).view(z32.shape)).add_(1 << (CDF_INTERP_BITS - 1))
    return step.bitwise_right_shift_(CDF_INTERP_BITS).add_(table.index_select(0, j).view(z32.shape))


def _cdf_table() -> tuple[torch.Tensor, torch.Tensor]:
    """The sigmoid table ``(N,)`` and its forward differences ``(N,)`` (0 at the end)."""
    table = sigmoid_table(frac_bits=CDF_FRAC_BITS, span=CDF_SPAN, out_bits=CDF_BITS)
    slope = torch.cat([table[1:] - table[:-1], table[:1] * 0])
    return table.to(torch.int32), slope.to(torch.int32)


MIX_CHUNK_COMPONENTS = 1024
"""Components per chunk of :func:`mixture_pmf` (its ``(r, K)`` temporaries stay in cache)."""


def mixture_pmf(params: torch.Tensor, K: int, *, frac_bits: int = MIX_FRAC_BITS) -> torch.Tensor:
    """Integer weights ``(n, K)`` int64 of a discretised logistic mixture, each >= 0, summing
    to ``2^24 - K``: the integer form of :func:`ardm.core.dmol.dmol_log_probs_range`.

    ``params`` ``(n, 3M)`` int64 in ``Q_frac_bits`` (logits, means, log-scales, as in
    :mod:`ardm.core.dmol`, with the head's bias already added). Per component the bin masses
    are CDF differences at the bin edges (sigmoid table, clamped at 0; the edge bins take
    the tails), mixed with an integer softmax of the logits (exp table), then scaled to the
    total by an integer floor division whose remainder goes to the largest entry.
    """
    if params.dim() != 2 or params.shape[-1] % 3 != 0:
        raise ValueError(f"mixture_pmf needs (n, 3M) parameters, got {tuple(params.shape)}")
    logits, mu, log_s = params.long().chunk(3, dim=-1)  # (n, M) each
    n, M = mu.shape
    w = _mixture_weights(logits, frac_bits).view(-1)  # (n M,) sum per row <= 2^13
    # only the components that weigh anything (every row's largest does) add to p
    live = torch.nonzero(w).view(-1)  # (r,)
    mu = mu.clamp(-MU_BOUND, MU_BOUND).view(-1).index_select(0, live)  # (r,) products < 2^60
    inv_s = _inverse_scales(log_s, K, frac_bits).view(-1).index_select(0, live)  # (r,)
    weight = w.index_select(0, live).to(torch.float64)  # (r,)
    row = live // M  # (r,)
    # p = sum of weight * mass over a row's components: integers below 2^43, so exact in
    # float64 in any order of summation
    p = torch.zeros(n, K, dtype=torch.float64)  # (n, K)
    for lo in range(0, live.numel(), MIX_CHUNK_COMPONENTS):
        part = slice(lo, lo + MIX_CHUNK_COMPONENTS)
        cdf = _edge_cdfs(mu[part], inv_s[part], K, frac_bits)  # (r', K - 1)
        mass = torch.empty(cdf.shape[0], K, dtype=torch.float64)  # (r', K) sums to 2^26
        mass[:, 0] = cdf[:, 0]  # the edge bins take the tails
        torch.sub(cdf[:, 1:], cdf[:, :-1], out=mass[:, 1:-1])
        mass[:, -1] = (1 << CDF_BITS) - cdf[:, -1]
        p.index_add_(0, row[part], mass.clamp_(min=0).mul_(weight[part, None]))
    return _to_total(p.long())  # (n, K) masses below 2^39


def _to_total(q: torch.Tensor) -> torch.Tensor:
    """Integer masses ``(n, K)`` (``>= 0``, each row's sum positive and below ``2^39``) scaled
    to the coder's total ``2^24 - K`` by an integer floor division, the remainder given to
    the (first) largest entry."""
    K = q.shape[-1]
    total = (1 << PMF_TOTAL_BITS) - K
    out = torch.div(q * total, q.sum(dim=-1, keepdim=True), rounding_mode="floor")  # (n, K)
    rest = total - out.sum(dim=-1, keepdim=True)  # (n, 1) in [0, K)
    return out.scatter_add(-1, out.argmax(dim=-1, keepdim=True), rest)  # (n, K)


MIX16_FRAC_BITS = (12, 20, 16)
"""A 16-bit mixture net's outputs: logits in ``Q_12`` (nats), means in ``Q_20`` (on the
``[-1, 1]`` scale: ``2^-20`` is 1/32 of a 16-bit bin), log-scales in ``Q_16``."""

BIN_FRAC_BITS = 8
"""16-bit component means in bins (class ``k`` at ``k``), ``Q_8``."""

BIN_INV_BITS = 24
"""16-bit inverse scales per bin, ``Q_24`` (at most ``e^4 2^24 < 2^31`` at the clamp)."""


def _bin_components(params: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """From 16-bit mixture outputs ``(n, 3M)`` (:data:`MIX16_FRAC_BITS`): the live components'
    rows ``(r,)``, weights (float64, a row's sum at most ``2^13``), means in bins ``Q_8`` and
    inverse scales per bin ``Q_24`` (int64 ``(r,)`` each)."""
    K = BYTE * BYTE
    f_logit, f_mu, f_scale = MIX16_FRAC_BITS
    logits, mu, log_s = params.long().chunk(3, dim=-1)  # (n, M) each
    M = mu.shape[-1]
    w = _mixture_weights(logits, f_logit).reshape(-1)  # (n M,)
    live = torch.nonzero(w).view(-1)  # (r,) every row's largest weighs > 0
    mu = mu.reshape(-1).index_select(0, live).clamp(-(2 << f_mu), 2 << f_mu)  # |mu| <= 2
    # bins: m = (mu + 1) (K - 1) / 2, rounded to Q_8 (products below 2^39)
    shift = f_mu + 1 - BIN_FRAC_BITS
    m = ((mu + (1 << f_mu)) * (K - 1) + (1 << (shift - 1))) >> shift  # (r,)
    inv_s = _inverse_scales(log_s, K, f_scale).reshape(-1).index_select(0, live)  # (r,) Q_18
    # per bin: 1 / s_bins = inv_s 2 / (K - 1), in Q_24 (inv_s < 2^39: products below 2^46)
    v = div_round(inv_s << (BIN_INV_BITS - INV_SCALE_BITS + 1), torch.tensor(K - 1))  # (r,)
    return live // M, w.index_select(0, live).to(torch.float64), m, v


def _bin_cdfs(m: torch.Tensor, v: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Component CDFs ``(r, E)`` int64 in ``2^-26`` units at bin edges ``edges`` (``(E,)`` or
    ``(r, E)`` int64; edge ``j`` lies between classes ``j - 1`` and ``j``) for means ``m`` and
    inverse scales ``v`` ``(r,)`` (:func:`_bin_components`): ``z = (j - 1/2 - m) v``, rounded
    to ``Q_16`` (``|j - m| < 2^17`` bins times ``v < 2^31``: int64 products below ``2^57``)."""
    d = (edges << BIN_FRAC_BITS) - (1 << (BIN_FRAC_BITS - 1)) - m[:, None]  # (r, E) Q_8 bins
    shift = BIN_FRAC_BITS + BIN_INV_BITS - (CDF_FRAC_BITS + CDF_INTERP_BITS)
    z = d.mul_(v[:, None]).add_(1 << (shift - 1)).bitwise_right_shift_(shift)  # (r, E) Q_16
    return _sigmoid_q26(z).long()


def mixture_byte_pmf(params: torch.Tensor, hi: torch.Tensor | None = None) -> torch.Tensor:
    """A 16-bit discretised logistic mixture as two 256-way integer pmfs (the integer form of
    :func:`ardm.core.dmol.dmol_byte_log_probs`): weights ``(..., 256)`` int64, each ``>= 0``,
    summing to ``2^24 - 256``, for outputs ``params (..., 3M)`` (:data:`MIX16_FRAC_BITS`).

    ``hi=None``: the high byte, each block of 256 classes weighted by its mixture mass (CDF
    differences at the blocks' edges; the first and last blocks take the tails).
    ``hi (...)``: the low byte given the high byte, the mass of each class of block ``hi``
    (CDF differences at its 257 edges; the outer edges of blocks 0 and 255 are the tails). A
    block where every component's mass rounds to 0 gets the uniform pmf.
    """
    lead = params.shape[:-1]
    rows, weight, m, v = _bin_components(params.reshape(-1, params.shape[-1]))
    n = math.prod(lead)
    p = torch.zeros(n, BYTE, dtype=torch.float64)  # (n, 256): sums below 2^39, exact
    if hi is not None:
        h = hi.reshape(-1).long()
        if bool((h < 0).any()) or bool((h >= BYTE).any()):
            raise ValueError("hi must lie in [0, 256)")
    for lo in range(0, rows.numel(), MIX_CHUNK_COMPONENTS):
        part = slice(lo, lo + MIX_CHUNK_COMPONENTS)
        r = rows[part]
        if hi is None:
            cdf = _bin_cdfs(m[part], v[part], torch.arange(1, BYTE) * BYTE)  # (r', 255)
            cdf = F.pad(cdf, (1, 1), value=0)  # (r', 257) with the tails at both ends
            cdf[:, -1] = 1 << CDF_BITS
        else:
            base = h.index_select(0, r) * BYTE  # (r',) the block's first class
            cdf = _bin_cdfs(m[part], v[part], base[:, None] + torch.arange(BYTE + 1))
            cdf[:, 0].masked_fill_(base == 0, 0)  # below class 0: the lower tail
            cdf[:, -1].masked_fill_(base == BYTE * (BYTE - 1), 1 << CDF_BITS)  # the upper
        mass = (cdf[:, 1:] - cdf[:, :-1]).clamp_(min=0).to(torch.float64)  # (r', 256)
        p.index_add_(0, r, mass.mul_(weight[part, None]))
    q = p.long()  # (n, 256)
    q = torch.where(q.sum(dim=-1, keepdim=True) > 0, q, 1)  # an empty block: uniform
    return _to_total(q).reshape(*lead, BYTE)
