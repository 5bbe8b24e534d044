"""Spread orders (format versions 8 and 9): their definition, and that they spread."""

from __future__ import annotations

import math
from decimal import Decimal, getcontext

import pytest
import torch

from ardm.core.seeded_order import seeded_order
from ardm.core.spread_order import (
    GOLDEN_STEP,
    PLASTIC_STEPS,
    grid_coords,
    spread_order,
    spread_ranks,
)


def test_the_constants_are_the_golden_ratio_and_the_plastic_number_in_64_bits() -> None:
    getcontext().prec = 60
    phi = (1 + Decimal(5).sqrt()) / 2
    g = Decimal(1)
    for _ in range(300):  # the real root of g^3 = g + 1
        g = (1 + g) ** (Decimal(1) / 3)
    assert abs(g**3 - g - 1) < Decimal(10) ** -50
    one = Decimal(2) ** 64
    assert int((one / phi).to_integral_value()) == GOLDEN_STEP
    assert tuple(int((one / g**i).to_integral_value()) for i in (1, 2)) == PLASTIC_STEPS


def test_a_sequence_is_ranked_by_its_golden_ratio_keys() -> None:
    """The integer keys order the positions as ``frac(1/2 + (p + 1) / phi)`` does."""
    b = 112
    keys = [(0.5 + (p + 1) * 2 / (1 + math.sqrt(5))) % 1.0 for p in range(b)]
    expected = sorted(range(b), key=lambda p: keys[p])  # positions by rank
    rank = spread_order((b,))
    assert torch.equal(torch.argsort(rank), torch.tensor(expected))


@pytest.mark.parametrize("shape", [(1,), (7,), (112,), (128,), (1, 5, 3), (3, 24, 24), (3, 32, 32)])
def test_orders_are_permutations_the_same_on_every_call(shape: tuple[int, ...]) -> None:
    D = math.prod(shape)
    rank = spread_order(shape)
    assert torch.equal(torch.sort(rank).values, torch.arange(D))
    rank[0] = -1  # a copy: the cached order stays intact
    assert torch.equal(torch.sort(spread_order(shape)).values, torch.arange(D))


def _closest_in_runs(positions: torch.Tensor, k: int) -> int:
    """The smallest distance between two positions of any ``k`` consecutive ranks (1D)."""
    return min(
        int(positions[r : r + k].sort().values.diff().min()) for r in range(len(positions) - k)
    )


def test_neighbouring_bytes_are_never_in_a_run_of_a_few_ranks() -> None:
    """The point of the order: the values of one network call (a run of consecutive ranks)
    are far apart. In a block of 112 bytes any 6 consecutive ranks are at least 13 apart, any
    8 at least 8 (Fibonacci numbers), where a random order puts neighbours together."""
    spread = torch.argsort(spread_order((112,)))  # (112,) positions by rank
    assert _closest_in_runs(spread, 6) >= 13 and _closest_in_runs(spread, 8) >= 8
    assert _closest_in_runs(torch.argsort(seeded_order(112, 0)), 4) == 1


def _closest_pixels(rank: torch.Tensor, shape: tuple[int, int, int], k: int) -> int:
    """The smallest Chebyshev distance between the pixels of two variables of any ``k``
    consecutive ranks (0: two channels of one pixel)."""
    C, H, W = shape
    by_rank = torch.argsort(rank.reshape(-1))
    ys, xs = by_rank % (H * W) // W, by_rank % W
    worst = H + W
    for r in range(C * H * W - k):
        y, x = ys[r : r + k], xs[r : r + k]
        dist = (y[:, None] - y[None]).abs().maximum((x[:, None] - x[None]).abs())
        worst = min(worst, int((dist + (H + W) * torch.eye(k, dtype=torch.long)).min()))
    return worst


def test_an_images_pixels_are_spread_and_its_channels_a_third_apart() -> None:
    """In a 24 x 24 RGB block, any 8 consecutive ranks are at least 6 pixels apart (a random
    order has two channels of one pixel, or touching pixels, in some run of 4), and a pixel's
    channels are about a third of the order apart."""
    C, H, W = shape = (3, 24, 24)
    rank = spread_order(shape)
    assert _closest_pixels(rank, shape, 8) >= 6
    assert _closest_pixels(seeded_order(C * H * W, 0), shape, 4) <= 1
    n = H * W
    by_pixel = rank.view(C, n)
    for c in range(1, C):
        gap = (by_pixel[c] - by_pixel[0]) % (C * n)
        assert int((gap - c * n).abs().max()) <= n // 8


def test_block_coordinates_count_from_the_blocks_first_value() -> None:
    """A block's order does not depend on where the block sits in its window."""
    coords, channels = grid_coords((3, 32, 32), torch.arange(3 * 32 * 32))
    inner = (coords[:, 1] >= 8) & (coords[:, 2] >= 8)  # the 24 x 24 block below a context of 8
    assert channels == 3
    assert torch.equal(spread_ranks(coords[inner], 3), spread_order((3, 24, 24)))
    seq = torch.arange(16, 128)[:, None]  # the last 112 positions of a window of 128
    assert torch.equal(spread_ranks(seq), spread_order((112,)))


def test_bad_coordinates_are_refused() -> None:
    with pytest.raises(ValueError, match="coordinates"):
        spread_ranks(torch.zeros(4, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="shapes"):
        grid_coords((2, 3), torch.arange(6))
