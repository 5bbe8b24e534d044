"""Masks of known variables for inpainting: the named regions of an image (``bottom``, ``top``,
``left``, ``right``, ``center``, ``random``)."""

from __future__ import annotations

import torch


def image_mask(kind: str, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """``known`` mask (C, H, W) that hides one part of an image."""
    C, H, W = shape
    known = torch.ones(C, H, W, dtype=torch.bool)
    if kind == "bottom":
        known[:, H // 2 :] = False
    elif kind == "top":
        known[:, : H // 2] = False
    elif kind == "left":
        known[:, :, : W // 2] = False
    elif kind == "right":
        known[:, :, W // 2 :] = False
    elif kind == "center":
        known[:, H // 4 : 3 * H // 4, W // 4 : 3 * W // 4] = False
    else:  # a random half, the same for every item
        g = torch.Generator().manual_seed(seed)
        known.view(-1)[torch.randperm(known.numel(), generator=g)[: known.numel() // 2]] = False
    return known
