"""Images: one strict reader, PNG output, inpainting masks, sample grids and GIFs.

The rule for every image that ardm reads (``ardm compress``, ``ardm inpaint --input`` and the
photos of the ``kodak32`` dataset): an image is read exactly as it is or refused with a
one-line :class:`DataError`; nothing is ever converted, because a conversion would not
round-trip. Single-frame images that Pillow reads (PNG, BMP, TIFF, PPM/PGM, ...) are taken in
mode ``L`` (8-bit gray, 1-channel models) or ``RGB`` (8-bit colour, 3-channel models). Other
modes (palette ``P``, ``LA``, ``RGBA``, 16-bit ``I;16``, bilevel ``1``, ...) are refused with
the Pillow call that converts them, and so are a transparent colour, several frames, lossy
formats (JPEG) and images of more than :data:`MAX_VALUES` values (checked from the header,
before any pixel is decoded).

What round-trips is the pixel values: a written image is a fresh PNG without the input's
metadata (gamma, ICC profile, text chunks).
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from PIL import Image

from ardm.errors import DataError, first_line
from ardm.modalities.modality import MAX_VALUES, Modality

LOSSY_FORMATS = frozenset({"JPEG", "MPO"})
"""Pillow formats whose pixels depend on the decoder: refused (convert to PNG yourself)."""

IMAGE_SUFFIXES = frozenset({".png", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".pnm", ".tga"})
"""Suffixes of the lossless image files ardm reads."""

REGIONS = ("bottom", "top", "left", "right", "center", "random")
"""The named regions :func:`image_mask` hides."""

_MODE_OF_CHANNELS = {1: "L", 3: "RGB"}
_MODE_NAMES = {
    "1": "1-bit black and white",
    "L": "8-bit gray",
    "LA": "8-bit gray with alpha",
    "P": "palette",
    "PA": "palette with alpha",
    "RGB": "8-bit colour",
    "RGBA": "8-bit colour with alpha",
    "CMYK": "CMYK",
    "YCbCr": "YCbCr",
    "I": "32-bit integer",
    "I;16": "16-bit gray",
    "I;16B": "16-bit gray",
    "F": "32-bit float",
}


# ---------------------------------------------------------------------------- reading
def _describe_mode(mode: str) -> str:
    name = _MODE_NAMES.get(mode)
    return f"{mode} ({name})" if name else mode


def read_image(data: bytes, *, channels: int, name: str) -> torch.Tensor:
    """Decode an image file's bytes into ``(C, H, W)`` uint8, ``C = channels``, without conversion.

    Raises a one-line :class:`DataError` naming ``name`` for anything that is not exactly an
    8-bit ``L`` (``channels=1``) or ``RGB`` (``channels=3``) single-frame lossless image.
    """
    want = _MODE_OF_CHANNELS.get(channels)
    if want is None:
        raise DataError(f"image models with {channels} channels have no image file mode")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns on metadata it does not understand
            im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        raise DataError(f"{name}: refused, too many pixels ({first_line(e)})") from None
    except Exception as e:  # UnidentifiedImageError, truncated headers, ...
        raise DataError(f"{name}: cannot read it as an image ({first_line(e)})") from None
    with im:
        _check_header(im, want, channels=channels, name=name)
        try:
            arr = np.array(im, dtype=np.uint8)  # (H, W) or (H, W, 3); decodes the pixels
        except Exception as e:  # truncated or corrupt pixel data
            raise DataError(f"{name}: cannot decode its pixels ({first_line(e)})") from None
    if arr.ndim == 2:
        arr = arr[..., None]  # (H, W, 1)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))  # (C, H, W)


def _check_header(im: Image.Image, want: str, *, channels: int, name: str) -> None:
    """Refuse an opened (not yet decoded) image that is not read exactly as it is."""
    if im.format in LOSSY_FORMATS:
        raise DataError(
            f"{name}: {im.format} is a lossy format whose pixels depend on the decoder; "
            "save the pixels you want to keep as PNG first"
        )
    width, height = im.size
    if width * height * channels > MAX_VALUES:
        raise DataError(
            f"{name}: {width}x{height} pixels is too large (at most {MAX_VALUES} values, "
            f"channels x height x width)"
        )
    frames = int(getattr(im, "n_frames", 1))
    if frames > 1:
        raise DataError(f"{name}: has {frames} frames; only single images are coded")
    if im.mode != want:
        raise DataError(
            f"{name}: image mode {_describe_mode(im.mode)}, but this model codes "
            f"{_describe_mode(want)} images only (a {channels}-channel model); ardm never "
            "converts (a conversion would not round-trip): if that is what you want, convert "
            f"the file first, e.g. Image.open(path).convert({want!r}).save('out.png') (Pillow)"
        )
    if "transparency" in im.info:
        raise DataError(
            f"{name}: has a transparent colour (tRNS); ardm codes pixel values only, "
            "so it would be lost"
        )


def png_bytes(x: torch.Tensor) -> bytes:
    """A PNG (mode ``L`` or ``RGB``) of ``x (C, H, W)`` with values in ``[0, 256)``."""
    C = x.shape[0]
    if x.dim() != 3 or C not in _MODE_OF_CHANNELS:
        raise DataError(f"cannot write an image of shape {tuple(x.shape)} as PNG")
    arr = x.detach().cpu().to(torch.uint8).permute(1, 2, 0).numpy()  # (H, W, C)
    im = Image.fromarray(np.ascontiguousarray(arr[..., 0] if C == 1 else arr))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


# ---------------------------------------------------------------------------- masks
def image_mask(region: str, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """``known`` mask ``(C, H, W)`` that hides one region of an image (one of :data:`REGIONS`;
    ``random``: a random half of the sub-pixels, drawn from ``seed``)."""
    C, H, W = shape
    known = torch.ones(C, H, W, dtype=torch.bool)  # (C, H, W)
    if region == "bottom":
        known[:, H // 2 :] = False
    elif region == "top":
        known[:, : H // 2] = False
    elif region == "left":
        known[:, :, : W // 2] = False
    elif region == "right":
        known[:, :, W // 2 :] = False
    elif region == "center":
        known[:, H // 4 : 3 * H // 4, W // 4 : 3 * W // 4] = False
    else:  # a random half, the same for every item
        g = torch.Generator().manual_seed(seed)
        known.view(-1)[torch.randperm(known.numel(), generator=g)[: known.numel() // 2]] = False
    return known


# ---------------------------------------------------------------------------- pictures
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


def with_hidden(x: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Images ``x (N, C, H, W)`` with their unknown sub-pixels shown as mid-gray 128."""
    return torch.where(known, x, torch.full_like(x, 128))  # (N, C, H, W)


# ---------------------------------------------------------------------------- modality
@dataclass(frozen=True)
class ImageModality(Modality):
    """Images of ``channels`` (1: gray, 3: RGB) 8-bit channels."""

    channels: int

    kind: ClassVar[str] = "image"
    unit: ClassVar[str] = "bpd"
    suffix: ClassVar[str] = ".png"

    def read(self, data: bytes, *, name: str) -> torch.Tensor:
        return read_image(data, channels=self.channels, name=name)  # (C, H, W)

    def write(self, x: torch.Tensor) -> bytes:
        return png_bytes(x)

    def output_name(self, base: str) -> str:
        """``x.png`` stays, ``x.bmp`` and ``x`` become ``x.png``, ``x.txt`` becomes ``x.txt.png``."""
        suffix = Path(base).suffix.lower()
        if suffix == ".png":
            return base
        return (Path(base).stem if suffix in IMAGE_SUFFIXES else base) + ".png"

    def save_samples(self, x: torch.Tensor, output: str | None, *, calls: int) -> str:
        out = save_grid(x, output or "samples.png")
        return f"wrote {x.shape[0]} samples ({calls} network calls each) to {out}"

    def region_mask(self, region: str, shape: tuple[int, ...], seed: int) -> torch.Tensor:
        return image_mask(region, shape, seed)  # (C, H, W)

    def save_inpainting(
        self, x: torch.Tensor, known: torch.Tensor, filled: torch.Tensor, path: str
    ) -> Path:
        """A grid with rows: the images, them with the unknown part gray, the completions."""
        return save_grid(torch.cat([x, with_hidden(x, known), filled]), path, nrow=x.shape[0])
