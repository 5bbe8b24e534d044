"""Cutting items into tiles of a model's shape and pasting them back
(:mod:`ardm.coding.tiles`)."""

from __future__ import annotations

import torch
from hypothesis import given
from hypothesis import strategies as st

from ardm.coding.tiles import cut_tiles, paste_tiles
from tests.coding.checks import FAST


@given(
    shape=st.lists(st.integers(1, 9), min_size=1, max_size=3),
    tile=st.lists(st.integers(1, 4), min_size=3, max_size=3),
)
@FAST
def test_cut_paste_tiles(shape: list[int], tile: list[int]) -> None:
    tile = tile[: len(shape)]
    x = torch.randint(1, 100, shape)
    tiles, pad = cut_tiles(x, tuple(tile))
    assert tiles.shape[1:] == tuple(tile) and pad.shape == tiles.shape
    assert int((~pad).sum()) == x.numel() and bool((tiles[pad] == 0).all())
    assert torch.equal(paste_tiles(tiles, tuple(shape)), x)
