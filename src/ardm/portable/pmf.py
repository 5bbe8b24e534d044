"""Integer logits -> an integer pmf for the coder, the same on every machine.

``constriction``'s ``Categorical(probabilities, perfect=False)`` quantises a float pmf to
24-bit fixed point; given float64 integer weights ``w`` that sum to exactly ``2^24 - K``,
its scale is exactly 1 and its fixed-point pmf is exactly ``w + 1`` (every entry >= 1). So
:func:`categorical_pmf` returns such ``w``, and :func:`pmf_nll_bits` scores ``w + 1``.
"""

from __future__ import annotations

import torch

from ardm.portable.tables import exp_table

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
