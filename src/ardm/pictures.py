"""Pictures in and out: PNG grids of samples, GIF animations, PNG inputs as tensors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ardm.errors import DataError


def grid(
    images: torch.Tensor, *, nrow: int | None = None, pad: int = 2, scale: int = 1
) -> np.ndarray:
    """Tile ``(N, C, H, W)`` uint8-valued images into one ``(H', W', C)`` uint8 array."""
    x = images.detach().cpu().clamp(0, 255).to(torch.uint8)
    N, C, H, W = x.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(N)))
    ncol_rows = math.ceil(N / nrow)
    out = np.full((ncol_rows * (H + pad) + pad, nrow * (W + pad) + pad, C), 255, dtype=np.uint8)
    arr = x.permute(0, 2, 3, 1).numpy()  # (N, H, W, C)
    for i in range(N):
        r, c = divmod(i, nrow)
        out[
            pad + r * (H + pad) : pad + r * (H + pad) + H,
            pad + c * (W + pad) : pad + c * (W + pad) + W,
        ] = arr[i]
    if scale > 1:
        out = out.repeat(scale, axis=0).repeat(scale, axis=1)
    return out


def _to_pil(arr: np.ndarray) -> Image.Image:
    return Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)


def save_grid(
    images: torch.Tensor, path: Path | str, *, nrow: int | None = None, scale: int = 2
) -> Path:
    """Save a PNG grid of ``(N, C, H, W)`` images (values 0..255)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _to_pil(grid(images, nrow=nrow, scale=scale)).save(path)
    return path


def save_gif(
    frames: list[torch.Tensor],
    path: Path | str,
    *,
    nrow: int | None = None,
    scale: int = 3,
    ms: int = 60,
) -> Path:
    """Save an animated GIF, one frame per ``(N, C, H, W)`` tensor."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pics = [_to_pil(grid(f, nrow=nrow, scale=scale)).convert("RGB") for f in frames]
    pics[0].save(path, save_all=True, append_images=pics[1:], duration=ms, loop=0)
    return path


def waveform_strip(
    samples: np.ndarray,
    *,
    width: int = 800,
    height: int = 90,
    known: np.ndarray | None = None,
    peak: float = 32768.0,
) -> np.ndarray:
    """A ``(height, width, 3)`` uint8 picture of int16 ``samples (L,)``: each pixel column
    spans the min..max of its samples and the last sample before them (a connected line),
    ``±peak`` the strip's height; the samples where ``known (L,)`` is True are gray, the rest
    blue."""
    x = np.clip(np.asarray(samples, dtype=np.float64) / peak, -1.0, 1.0)  # (L,)
    L = len(x)
    if L == 0:
        raise ValueError("cannot draw an empty waveform")
    out = np.full((height, width, 3), 255, dtype=np.uint8)
    out[height // 2, :] = (220, 220, 220)  # the zero line
    given = None if known is None else np.asarray(known, dtype=bool)  # (L,)
    edges = np.linspace(0, L, width + 1).astype(np.int64)  # (width + 1,)
    for c in range(width):
        lo, hi = edges[c], max(edges[c + 1], edges[c] + 1)
        seg = x[max(lo - 1, 0) : hi]
        top = round(float(1 - seg.max()) * (height - 1) / 2)
        bottom = round(float(1 - seg.min()) * (height - 1) / 2)
        gray = given is not None and bool(given[lo:hi].all())
        out[top : bottom + 1, c] = (150, 150, 150) if gray else (31, 94, 168)
    return out


def save_waveforms(
    strips: list[tuple[str, np.ndarray, np.ndarray | None]], path: Path | str, *, width: int = 800
) -> Path:
    """Save a PNG of labelled waveform strips ``(label, int16 samples, known or None)``, all
    on one vertical scale: the largest absolute sample of any strip fills a strip's height."""
    from PIL import ImageDraw

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    label_h, strip_h = 14, 90
    peak = max(1.0, *(float(np.abs(np.asarray(a, dtype=np.float64)).max()) for _, a, _ in strips))
    canvas = Image.new("RGB", (width, len(strips) * (label_h + strip_h)), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (label, samples, known) in enumerate(strips):
        y = i * (label_h + strip_h)
        draw.text((2, y + 1), label, fill=(0, 0, 0))
        strip = waveform_strip(samples, width=width, height=strip_h, known=known, peak=peak)
        canvas.paste(Image.fromarray(strip), (0, y + label_h))
    canvas.save(path)
    return path


MAX_IMAGE_PIXELS = 1 << 26
"""Largest image (width x height) that :func:`read_image` decodes: 67 M pixels, 8192 x 8192.

Checked from the PNG/JPEG header (``Image.open`` reads only that) before any pixel data is
decoded, so a small file claiming huge dimensions is refused without allocating memory."""


def read_image(path: Path | str, *, channels: int) -> torch.Tensor:
    """Read an 8-bit PNG (or any Pillow image) as ``(C, H, W)`` uint8 with ``channels`` channels.

    Raises :class:`DataError` for a missing, unreadable or corrupt file, an image of more
    than :data:`MAX_IMAGE_PIXELS` pixels (before decoding it) and a mode that is not 8-bit.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image not found: {path}")
    try:
        with Image.open(path) as im:
            check_image_size(im, path)
            if im.mode not in ("L", "RGB", "RGBA", "P", "LA", "1"):
                raise DataError(
                    f"{path}: unsupported image mode {im.mode} (need 8-bit gray or RGB)"
                )
            im = im.convert("L" if channels == 1 else "RGB")
            arr = np.asarray(im, dtype=np.uint8)
    except DataError:
        raise
    except Image.DecompressionBombError as e:  # Pillow's own limit, hit inside Image.open
        raise DataError(f"{path}: image too large, refused before decoding ({e})") from None
    except Exception as e:
        raise DataError(f"cannot read image {path}: {e}") from None
    if arr.ndim == 2:
        arr = arr[..., None]
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)  # (C, H, W)


def check_image_size(im: Image.Image, path: Path | str) -> None:
    """Refuse an opened (not yet decoded) image of more than :data:`MAX_IMAGE_PIXELS` pixels."""
    width, height = im.size
    if width * height > MAX_IMAGE_PIXELS:
        raise DataError(
            f"{path}: image of {width}x{height} pixels is too large "
            f"(at most {MAX_IMAGE_PIXELS} pixels); refused before decoding"
        )
