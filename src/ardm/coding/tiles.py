"""Tiles: data larger or smaller than the model's shape, cut into tiles of that shape (C order,
zero padding at the far border marked by a mask) and pasted back."""

from __future__ import annotations

import math

import torch

from ardm.coding.container import MAX_D, MAX_NDIM
from ardm.errors import DataError, FormatError


# ---------------------------------------------------------------------------- tiles
def cut_tiles(x: torch.Tensor, tile: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut ``x`` (any shape with ``len(tile)`` axes) into tiles ``(T, *tile)`` in C order.

    Tiles at the far border are padded with zeros; the second result ``(T, *tile)`` bool
    marks that padding.
    """
    grid = tile_grid(tuple(x.shape), tile)
    full = tuple(g * m for g, m in zip(grid, tile, strict=True))
    canvas = torch.zeros(full, dtype=x.dtype, device=x.device)
    pad = torch.ones(full, dtype=torch.bool, device=x.device)
    inside = tuple(slice(0, n) for n in x.shape)
    canvas[inside] = x
    pad[inside] = False
    split = [d for g, m in zip(grid, tile, strict=True) for d in (g, m)]  # (g0, m0, g1, m1, ...)
    perm = [*range(0, 2 * len(tile), 2), *range(1, 2 * len(tile), 2)]

    def tiles(a: torch.Tensor) -> torch.Tensor:
        return a.reshape(split).permute(perm).reshape(-1, *tile)  # (T, *tile)

    return tiles(canvas), tiles(pad)


def paste_tiles(tiles: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Inverse of :func:`cut_tiles`: tiles ``(T, *tile)`` -> data of ``shape``."""
    tile = tuple(tiles.shape[1:])
    grid = tile_grid(shape, tile)
    n = len(tile)
    a = tiles.reshape(*grid, *tile)  # (g0, g1, ..., m0, m1, ...)
    perm = [i for axis in range(n) for i in (axis, n + axis)]
    full = a.permute(perm).reshape([g * m for g, m in zip(grid, tile, strict=True)])
    return full[tuple(slice(0, s) for s in shape)]


def _check_tileable(shape: tuple[int, ...], tile: tuple[int, ...]) -> None:
    if len(shape) > MAX_NDIM or any(n < 1 for n in shape) or math.prod(shape) > MAX_D:
        raise DataError(f"data of shape {shape} is empty or larger than {MAX_D} values")
    if math.prod(tile_grid(shape, tile)) * math.prod(tile) > 2 * MAX_D:
        raise DataError(f"data of shape {shape} needs too many tiles of the model's shape {tile}")


def tile_grid(shape: tuple[int, ...], tile: tuple[int, ...]) -> tuple[int, ...]:
    """Number of tiles along each axis when ``shape`` is cut into ``tile``-shaped pieces."""
    if len(shape) != len(tile):
        raise FormatError(
            f"data of shape {shape} cannot be cut into tiles of the model's shape {tile}"
        )
    return tuple(-(-n // m) for n, m in zip(shape, tile, strict=True))
