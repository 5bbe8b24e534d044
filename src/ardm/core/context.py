"""Prefix-known training: a block of variables given the variables before it.

A file longer than the model's window is coded as a chain of blocks (:mod:`ardm.coding.chain`):
each block is the last variables of a window whose first ``context`` variables (at least) are
already known, the bytes before it. Order-agnostic training alone rarely shows the network
that situation (a uniform order puts a whole prefix first with probability ``1 / C(D, c)``), so
a model with ``model.context = c > 0`` draws each training example from a mixture:

- ``OA_SHARE``: a plain order-agnostic example (``t ~ U{0..D-1}``, uniform order);
- ``CODING_SHARE``: the coding case, the first ``c`` variables known first (in random order),
  then ``t ~ U{c..D-1}``: the block of ``D - c`` variables, ``t - c`` of them known;
- the rest: a known prefix of ``c' ~ U{c..D-1}`` variables (a file's last, shorter block).

Trained for a budget (``train.policy_budget``, :func:`policy_starts`), the coding case's ``t``
is the start of the coder's step that holds the uniform draw: the DP policy's step ``[l, r)``
is drawn with probability ``(r - l) / (D - c)``, what the coder pays for it, as the calls the
coder makes (each step codes its ``r - l`` variables as independent given ``l`` known ones).
The same weight ``(D - c) / (D - l)`` then makes the example an unbiased estimate of the
policy's cost of the block instead of the one-step bound.

Trained in the coder's spread order (``train.spread_order``, :func:`coding_order`), the coding
case's block is ordered as the spread coder (format versions 8 and 9) orders it, so that with
``policy_budget`` the known variables of a coding example are exactly those the coder knows at
the start of one of its calls: the network learns the very masks it is asked about.

A prefix-known example's context is, with probability ``PAD_SHARE``, replaced by the byte
``PAD`` (a newline) throughout: what stands before a file's first byte when it is coded.

Images ``(C, H, W)`` (:func:`context_region`): the known region is the top ``c`` rows and the
left ``c`` columns, the block the bottom-right ``(H - c) x (W - c)`` (every channel), what a
photo coded block by block sees of the blocks above and left of it
(:mod:`ardm.coding.wavefront`). There "the rest" are blocks at the right or bottom edge of the
photo: their last columns and/or rows lie outside it and are known padding
(:data:`PAD_IMAGE`); and a padded context is the top rows and/or left columns (the photo's
top or left edge).

The bound is the OA-ARDM one-step bound unchanged: with ``c'`` known first and ``t >= c'``,
the ``D - t`` unknown variables are equally likely to come next, so ``(D - c') * ll / (D - t)``
is unbiased for ``log p(block | prefix)`` and ``-ll / ((D - t) ln 2)`` estimates the block's
bits per variable, the same unit as the OA bound's bits per dimension.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from ardm.core.orders import orders_given_first
from ardm.core.policy import optimal_policy, step_bounds
from ardm.core.spread_order import block_ranks

OA_SHARE = 0.15
CODING_SHARE = 0.70
PAD_SHARE = 0.15
PAD = 10
"""The byte that stands for "before the file": ``\\n`` (documents start after a blank line)."""
PAD_IMAGE = 0
"""The value of an image's padding: positions above, left of, right of or below the image."""


def pad_value(shape: tuple[int, ...]) -> int:
    """The padding value of items of ``shape``: :data:`PAD` for sequences, else
    :data:`PAD_IMAGE`."""
    return PAD if len(shape) == 1 else PAD_IMAGE


def context_region(shape: tuple[int, ...], context: int) -> torch.Tensor:
    """The known region ``(D,)`` bool of a coded block: the first ``context`` positions of a
    sequence; the top ``context`` rows and left ``context`` columns of a ``(C, H, W)`` item
    (every channel), whose block is the bottom-right ``(H - c) x (W - c)``."""
    if len(shape) == 1:
        if not 0 < context < shape[0]:
            raise ValueError(f"context must lie in (0, {shape[0]}), got {context}")
        return torch.arange(shape[0]) < context
    C, H, W = shape
    if not 0 < context < min(H, W):
        raise ValueError(f"context must lie in (0, {min(H, W)}), got {context}")
    rows = torch.arange(H)[:, None] < context  # (H, 1)
    cols = torch.arange(W)[None, :] < context  # (1, W)
    return (rows | cols).expand(C, H, W).reshape(-1)  # (D,)


def _edges(
    shape: tuple[int, ...], context: int, n: int, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """For ``n`` examples: extra known positions beyond the coding case (a sequence's longer
    prefix; an image block's last columns and rows outside the image) ``(n, D)``, and which of
    the known positions are padding ``(n, D)``."""
    if len(shape) == 1:
        (D,) = shape
        longer = context + torch.floor(torch.rand(n, generator=generator) * (D - context))
        extra = torch.arange(D)[None, :] < longer.long()[:, None]  # (n, D) a longer prefix
        return extra, torch.zeros(n, D, dtype=torch.bool)
    C, H, W = shape
    cut_r = torch.randint(0, H - context, (n, 1, 1), generator=generator)  # rows outside
    cut_c = torch.randint(0, W - context, (n, 1, 1), generator=generator)  # columns outside
    rows = torch.arange(H)[None, :, None] >= H - cut_r  # (n, H, 1)
    cols = torch.arange(W)[None, None, :] >= W - cut_c  # (n, 1, W)
    outside = (rows | cols)[:, None].expand(n, C, H, W).reshape(n, -1)  # (n, D)
    return outside, outside


def _padded(
    shape: tuple[int, ...], context: int, given: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    """Which known positions of the examples ``given (n, D)`` may be padding ``(n, D)``: a
    sequence's whole known prefix (a file's start); an image's top rows and/or left columns
    (its top or left edge)."""
    if len(shape) == 1:
        return given
    n = given.shape[0]
    C, H, W = shape
    top = torch.rand(n, 1, 1, generator=generator) < 0.5
    left = ~top | (torch.rand(n, 1, 1, generator=generator) < 0.5)
    rows = (torch.arange(H)[None, :, None] < context) & top  # (n, H, 1)
    cols = (torch.arange(W)[None, None, :] < context) & left  # (n, 1, W)
    return (rows | cols)[:, None].expand(n, C, H, W).reshape(n, -1) & given  # (n, D)


def policy_starts(L: np.ndarray, D: int, known: int, budget: int) -> torch.Tensor:
    """The slot ``(D,)`` that each slot ``t`` of a coding example is drawn as when training for
    ``budget`` calls per block: ``t`` below the ``known`` size of the coding case's known
    region (:func:`context_region`: a sequence's context, an image block's rows above and
    columns left) is itself; from it on, the start of the DP policy's step that holds ``t``,
    the policy the coder plans on the block losses ``L[known:]`` (``L (D,)`` the tracker's, as
    :class:`ardm.coding.chain.ChainPlan` takes them)."""
    if not 0 < known < D:
        raise ValueError(f"the known region must hold (0, {D}) values, got {known}")
    b = D - known
    if not budget >= 1:
        raise ValueError(f"policy_budget must be at least 1, got {budget}")
    starts = torch.arange(D)
    policy, _ = optimal_policy(np.asarray(L, dtype=np.float64)[known:], min(budget, b))
    for left, right in step_bounds(policy, b):
        starts[known + left : known + right] = known + left
    return starts


def coding_order(shape: tuple[int, ...], context: int) -> torch.Tensor:
    """The order ``(D,)`` (each position's rank) of the coding case as the spread coder takes
    it: the known region (:func:`context_region`) first, by index, then the block in its spread
    order (:func:`ardm.core.spread_order.block_ranks` of the block's places in the window, as
    :class:`ardm.coding.chain.ChainPlan` ranks a whole block)."""
    return _coding_order(tuple(shape), context).clone()


@functools.cache
def _coding_order(shape: tuple[int, ...], context: int) -> torch.Tensor:
    region = context_region(shape, context)  # (D,)
    known = torch.nonzero(region).flatten()  # (c,)
    block = torch.nonzero(~region).flatten()  # (b,)
    by_rank = block[torch.argsort(block_ranks(shape, block))]  # (b,) positions by rank
    sigma = torch.empty(region.numel(), dtype=torch.int64)
    sigma[torch.cat([known, by_rank])] = torch.arange(region.numel())
    return sigma


def context_examples(
    x: torch.Tensor,
    context: int,
    *,
    shape: tuple[int, ...] | None = None,
    generator: torch.Generator | None = None,
    coding_starts: torch.Tensor | None = None,
    coding_sigma: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw the mixture for a batch ``x (B, D)`` of items of ``shape`` (default ``(D,)``):
    returns ``(x, t, sigma, tracked)``, ``x`` with padding where drawn (a copy), ``t (B,)``
    known variables, ``sigma (B, D)`` orders (the known ones first) and ``tracked (B,)`` bool
    the examples drawn as the tracked ``L_t`` is defined (:func:`prefix_orders`, what
    calibration measures and the coder plans on): a plain OA example below the known region's
    size, a coding case at a uniform ``t`` in a uniform order of the block. The coding case
    drawn at the coder's steps or in its spread order is not: its losses would pull ``L``, and
    with it the policy it is trained at, away from the one the coder uses. ``coding_starts (D,)``
    (:func:`policy_starts`) maps the coding case's uniform ``t`` to its coder step's start;
    ``coding_sigma (D,)`` (:func:`coding_order`) is the coding case's order instead of a uniform
    one within the block."""
    B, D = x.shape
    shape = (D,) if shape is None else tuple(shape)
    region = context_region(shape, context)  # (D,)
    u = torch.rand(B, generator=generator)  # (B,) which kind of example
    extra, extra_pad = _edges(shape, context, B, generator)  # (B, D) each
    oa, coding = u < OA_SHARE, u < OA_SHARE + CODING_SHARE  # (B,) each
    given = region[None, :] | (extra & ~coding[:, None])  # (B, D)
    given = given & ~oa[:, None]
    drawn = torch.rand(B, 1, generator=generator) < PAD_SHARE  # (B, 1)
    pad = _padded(shape, context, given, generator) & drawn  # (B, D) an edge of the data
    pad = pad | (extra_pad & ~coding[:, None] & given)  # (B, D) and outside it on the right
    g = given.sum(dim=1)  # (B,)
    t = g + torch.floor(torch.rand(B, generator=generator) * (D - g)).long()  # (B,)
    if coding_starts is not None:
        t = torch.where(coding & ~oa, coding_starts[t], t)  # (B,) the step's start
    sigma = orders_given_first(given, generator=generator)  # (B, D)
    if coding_sigma is not None:
        sigma = torch.where((coding & ~oa)[:, None], coding_sigma[None, :], sigma)  # (B, D)
    x = torch.where(pad.to(x.device), torch.full_like(x, pad_value(shape)), x)  # (B, D)
    tracked = oa & (t < int(region.sum()))  # (B,)
    if coding_starts is None and coding_sigma is None:
        tracked = tracked | (coding & ~oa)
    return x, t.to(x.device), sigma.to(x.device), tracked.to(x.device)


def prefix_orders(
    t: torch.Tensor,
    D: int,
    context: int,
    *,
    shape: tuple[int, ...] | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Orders ``(B, D)`` for slots ``t (B,)``: the known region (:func:`context_region`) first
    where ``t`` reaches its size (the coding case), uniform elsewhere."""
    region = context_region((D,) if shape is None else tuple(shape), context)  # (D,)
    given = region[None, :] & (t.cpu() >= int(region.sum()))[:, None]  # (B, D)
    return orders_given_first(given, generator=generator).to(t.device)  # (B, D)
