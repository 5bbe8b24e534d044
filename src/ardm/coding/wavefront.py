"""Images as blocks in anti-diagonal waves, each coded given the pixels above and left of it.

A model with context (``model.context = c``, :mod:`ardm.core.context`) on windows of
``(C, Th, Tw)`` codes an image of any size ``(C, H, W)`` as blocks of ``(Th - c) x (Tw - c)``
pixels (every channel). Block ``(by, bx)`` is the bottom-right of the window whose top-left
pixel is ``(by * bh - c, bx * bw - c)``: its top ``c`` rows and left ``c`` columns hold pixels
of the blocks above, left and above-left, coded before it; window positions outside the image
are padding (:data:`ardm.core.context.PAD_IMAGE`, known). A block at the right or bottom edge
codes only its pixels inside the image.

Waves. Block ``(by, bx)`` needs only blocks with a smaller ``by + bx``, so wave ``k`` is every
block with ``by + bx = k`` (in order of ``by``): a 768 x 512 photo with 16 x 16 blocks is 79
waves of up to 32 independent blocks, each wave one batch of network calls per step
(:func:`ardm.coding.chain.decode_chain` walks any such layout).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ardm.coding.chain import Block
from ardm.core.context import PAD_IMAGE


@dataclass(frozen=True)
class WavefrontLayout:
    """An image of ``shape (C, H, W)`` in blocks for a model of window ``tile (C, Th, Tw)``
    whose top ``context`` rows and left ``context`` columns are known."""

    shape: tuple[int, int, int]
    tile: tuple[int, int, int]
    context: int
    pad: int = PAD_IMAGE

    def __post_init__(self) -> None:
        C, Th, Tw = self.tile
        if len(self.shape) != 3 or self.shape[0] != C or min(self.shape) < 1:
            raise ValueError(f"an image of {C} channels, got shape {self.shape}")
        if not 0 < self.context < min(Th, Tw):
            raise ValueError(f"context must lie in (0, {min(Th, Tw)}), got {self.context}")

    @property
    def n(self) -> int:
        """Values in all: ``C * H * W``."""
        return math.prod(self.shape)

    @property
    def grid(self) -> tuple[int, int]:
        """Blocks per column and per row."""
        _, H, W = self.shape
        _, Th, Tw = self.tile
        return -(-H // (Th - self.context)), -(-W // (Tw - self.context))

    def block(self, by: int, bx: int) -> Block:
        """Block ``(by, bx)``: its window's data positions and the positions it codes."""
        C, H, W = self.shape
        _, Th, Tw = self.tile
        c = self.context
        rows = torch.arange(Th) + by * (Th - c) - c  # (Th,) image rows of the window
        cols = torch.arange(Tw) + bx * (Tw - c) - c  # (Tw,)
        inside = ((rows >= 0) & (rows < H))[:, None] & ((cols >= 0) & (cols < W))[None, :]
        flat = rows.clamp(0, H - 1)[:, None] * W + cols.clamp(0, W - 1)[None, :]  # (Th, Tw)
        index = torch.arange(C)[:, None, None] * (H * W) + flat[None]  # (C, Th, Tw)
        index = torch.where(inside[None], index, -1).reshape(-1)  # (D,)
        block = (torch.arange(Th)[:, None] >= c) & (torch.arange(Tw)[None, :] >= c)
        coded = torch.nonzero((block & inside)[None].expand(C, Th, Tw).reshape(-1)).flatten()
        return Block(index, coded)

    def waves(self) -> list[list[Block]]:
        """Wave ``k``: the blocks with ``by + bx = k``, in order of ``by``."""
        ny, nx = self.grid
        return [
            [self.block(by, k - by) for by in range(max(0, k - nx + 1), min(ny, k + 1))]
            for k in range(ny + nx - 1)
        ]
