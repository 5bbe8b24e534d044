"""Prefix-known training examples (:mod:`ardm.core.context`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ardm.coding.chain import Block, ChainPlan
from ardm.core.context import (
    PAD,
    coding_order,
    context_examples,
    context_region,
    policy_starts,
    prefix_orders,
)
from ardm.core.policy import optimal_policy, step_bounds


def test_the_mixture_puts_a_known_prefix_first_and_pads_only_the_context() -> None:
    D, c = 32, 20
    x = torch.randint(0, 256, (4000, D))
    g = torch.Generator().manual_seed(0)
    xp, t, sigma, tracked = context_examples(x, c, generator=g)
    assert sorted(sigma[0].tolist()) == list(range(D))
    # a known prefix of c' >= c: the first c' positions hold the ranks 0..c'-1
    whole = sigma.cummax(dim=1).values == torch.arange(D)[None, :]  # (B, D)
    prefix_known = whole[:, c - 1 : D - 1].any(dim=1)  # (B,)
    assert (t[prefix_known] < c).float().mean() < 0.01  # a few OA rows look prefix-known
    oa = 1 - prefix_known.float().mean().item()
    assert 0.12 < oa < 0.18  # about 15 % plain OA examples
    # tracked: OA examples below the context's size, and the coding case (70 %)
    assert abs(tracked.float().mean().item() - (0.15 * c / D + 0.70)) < 0.02
    assert (t[tracked & ~prefix_known] < c).all()
    changed = xp != x
    assert (xp[changed] == PAD).all()  # padding only writes PAD ...
    known = sigma < t[:, None]
    assert not (changed & ~known).any()  # ... and only where values are known
    padded = changed.any(dim=1).float().mean().item()
    assert 0.05 < padded < 0.25
    assert (t >= 0).all() and (t < D).all()


def test_slots_from_the_context_on_get_prefix_first_orders() -> None:
    D, c = 16, 6
    t = torch.tensor([0, 5, 6, 15])
    sigma = prefix_orders(t, D, c, generator=torch.Generator().manual_seed(1))
    for row in (2, 3):
        assert sorted(sigma[row, :c].tolist()) == list(range(c))
    assert sorted(sigma[0].tolist()) == list(range(D))


def test_an_image_block_is_the_bottom_right_given_the_rows_above_and_columns_left() -> None:
    from ardm.core.context import PAD_IMAGE, context_region

    shape, c = (3, 8, 8), 4
    region = context_region(shape, c).view(shape)
    assert not region[:, 4:, 4:].any() and region[:, :4].all() and region[:, :, :4].all()
    x = torch.randint(1, 256, (3000, 3 * 8 * 8))
    xp, t, sigma, _ = context_examples(
        x, c, shape=shape, generator=torch.Generator().manual_seed(0)
    )
    g = int(region.sum())
    coding = (sigma.view(-1, *shape)[:, :, 4:, 4:] >= g).all(dim=(1, 2, 3))  # block after region
    assert 0.6 < coding.float().mean() < 0.9
    known = sigma < t[:, None]
    changed = xp != x
    assert (xp[changed] == PAD_IMAGE).all() and not (changed & ~known).any()
    pad = changed.view(-1, *shape)
    # padding is an edge: the top rows or left columns of the context, or the block's last
    # columns or rows (outside the photo)
    inside_block = pad[:, :, 4:, 4:]
    assert inside_block.any()
    rows_out = inside_block.all(dim=(1, 3))  # (N, 4): whole block rows padded
    cols_out = inside_block.all(dim=(1, 2))  # (N, 4): whole block columns padded
    some = inside_block.any(dim=(1, 2, 3))
    assert (rows_out[some].any(dim=1) | cols_out[some].any(dim=1)).all()
    assert (t >= 0).all() and (t < 3 * 64).all()


def test_training_for_a_budget_draws_the_coders_step_starts_by_their_length() -> None:
    D, c, budget = 32, 8, 4
    L = np.linspace(3.0, 1.0, D)  # falling losses: the DP gives uneven steps
    starts = policy_starts(L, D, c, budget)
    assert starts[:c].tolist() == list(range(c))  # below the context: unchanged
    policy, _ = optimal_policy(L[c:], budget)
    steps = step_bounds(policy, D - c)
    assert sorted(set(starts[c:].tolist())) == [c + left for left, _ in steps]
    for left, right in steps:
        assert (starts[c + left : c + right] == c + left).all()
    x = torch.randint(0, 256, (20000, D))
    _, t_u, sigma_u, _ = context_examples(x, c, generator=torch.Generator().manual_seed(3))
    _, t, sigma, _ = context_examples(
        x, c, generator=torch.Generator().manual_seed(3), coding_starts=starts
    )
    assert torch.equal(sigma, sigma_u)  # the same draws, only the coding case's t moved
    assert ((t == t_u) | (t == starts[t_u])).all()
    moved = (t != t_u).float().mean().item()  # the coding case (70 %) where t is no start
    assert abs(moved - 0.70 * (1 - len(steps) / (D - c))) < 0.02


def test_an_image_block_trained_for_a_budget_starts_after_its_known_region() -> None:
    shape, c, budget = (3, 6, 6), 2, 4
    D = 3 * 6 * 6
    known = int(context_region(shape, c).sum())  # the rows above and columns left: 60
    starts = policy_starts(np.linspace(3.0, 1.0, D), D, known, budget)
    assert starts[:known].tolist() == list(range(known))
    assert len(set(starts[known:].tolist())) == budget and int(starts[known]) == known
    x = torch.randint(0, 256, (20000, D))
    _, t_u, _, _ = context_examples(x, c, shape=shape, generator=torch.Generator().manual_seed(4))
    _, t, _, _ = context_examples(
        x, c, shape=shape, generator=torch.Generator().manual_seed(4), coding_starts=starts
    )
    assert ((t == t_u) | (t == starts[t_u])).all()
    moved = (t != t_u).float().mean().item()
    assert abs(moved - 0.70 * (1 - budget / (D - known))) < 0.02


def test_a_budget_outside_the_block_is_refused() -> None:
    with pytest.raises(ValueError, match="policy_budget"):
        policy_starts(np.ones(16), 16, 4, 0)


@pytest.mark.parametrize(("shape", "c", "budget"), [((128,), 16, 14), ((3, 12, 12), 4, 4)])
def test_the_spread_coding_case_knows_exactly_what_the_coder_knows_at_a_call(
    shape: tuple[int, ...], c: int, budget: int
) -> None:
    D = int(np.prod(shape))
    region = context_region(shape, c)
    known = int(region.sum())
    L = np.linspace(4.0, 1.0, D)
    starts = policy_starts(L, D, known, budget)
    sigma_c = coding_order(shape, c)
    assert sorted(sigma_c.tolist()) == list(range(D))
    assert (sigma_c[region] < known).all()  # the known region first
    # the coder's plan of an interior block: its steps' values, in rank order
    block = torch.nonzero(~region).flatten()
    plan = ChainPlan(L, D, budget, seed=0, spread=True, tile=shape).for_block(
        Block(index=torch.arange(D), coded=block)
    )
    coder_known = {
        known + left: set(block[torch.argsort(plan.rank)[:left]].tolist()) for left, _ in plan.steps
    }
    x = torch.randint(0, 256, (4000, D))
    _, t, sigma, tracked = context_examples(
        x,
        c,
        shape=shape,
        generator=torch.Generator().manual_seed(5),
        coding_starts=starts,
        coding_sigma=sigma_c,
    )
    coding = (sigma == sigma_c[None, :]).all(dim=1)  # (B,) rows in the coder's order
    assert 0.65 < coding.float().mean().item() < 0.75  # the coding case's share
    assert set(t[coding].tolist()) == set(coder_known)  # every call, and only calls
    assert not tracked[coding].any() and (t[tracked] < known).all()  # L_t stays as defined
    for row in torch.nonzero(coding).flatten()[:200].tolist():
        got = set(torch.nonzero(sigma[row] < t[row]).flatten().tolist())
        assert got - set(torch.nonzero(region).flatten().tolist()) == coder_known[int(t[row])]
