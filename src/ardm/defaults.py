"""Which shipped model codes a file when the user names none.

:func:`model_for_input` looks at a file's bytes: a PNG (or any image Pillow reads) goes to the
grayscale model by its mode if it is no larger than that model's 28 x 28 digits (a larger
grayscale image has no default: a one-line error); a colour image to the natural-photo model
(coded block by block with context) if it is larger than the CIFAR model's 32 x 32 tile, else
to the CIFAR model; a WAV file to the audio model, UTF-8 text (with or without a byte-order
mark) to the byte-level text model. Anything else gets a
one-line error naming the choices. A compressed file records its model's fingerprint;
:func:`model_for_file` finds the shipped model that has it again.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

from ardm.errors import DataError, FormatError

TEXT_MODEL = "english-bytes"
GRAY_MODEL = "mnist"
COLOUR_MODEL = "cifar10-subset"
PHOTO_MODEL = "kodak-photo"
THUMBNAIL = 32
"""Colour images of at most this many rows and columns go to :data:`COLOUR_MODEL`."""
GRAY_TILE = 28
"""Grayscale images of at most this many rows and columns go to :data:`GRAY_MODEL` (a model of
28 x 28 digits). A larger one, a photo most likely, has no default: the digit model makes a
256 x 256 grayscale crop of a Kodak photo 2.6x larger than its PNG (103,803 against 39,757
bytes: 12.7 bits per pixel, more than the 8 it came in), and the photo model, on the gray image
as RGB, 2.2x (it codes each gray value three times)."""
AUDIO_MODEL = "fsdd"

_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"GIF8", b"II*\x00", b"MM\x00*")
_CHOICES = (
    f"text (UTF-8): {TEXT_MODEL}; grayscale digits: {GRAY_MODEL} (up to {GRAY_TILE}x{GRAY_TILE}); colour photos: "
    f"{PHOTO_MODEL} ({COLOUR_MODEL} up to {THUMBNAIL}x{THUMBNAIL}); 8 kHz WAV: {AUDIO_MODEL}"
)


def _image_header(data: bytes, name: str) -> tuple[str, int, int] | None:
    """An image's mode, width and height from its header (no pixel is decoded); ``None`` if
    it cannot be read, a one-line error naming ``name`` if it is a decompression bomb."""
    from PIL import Image, UnidentifiedImageError

    from ardm.errors import first_line

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a large header: the reader refuses it in one line
            with Image.open(io.BytesIO(data)) as im:
                return str(im.mode), int(im.width), int(im.height)
    except Image.DecompressionBombError as e:
        raise DataError(f"{name}: refused, too many pixels ({first_line(e)})") from None
    except (UnidentifiedImageError, OSError, ValueError):
        return None


def model_for_input(data: bytes, *, name: str) -> str:
    """The shipped model for a file's bytes, or a one-line :class:`DataError` naming choices."""
    if data.startswith(_IMAGE_MAGIC):
        head = _image_header(data, name)
        if head is None:
            raise DataError(f"{name}: an image file that cannot be read (truncated or corrupt?)")
        mode, width, height = head
        if mode in ("I;16", "I"):
            return GRAY_MODEL  # its image reader refuses 16-bit pixels in one line
        if mode in ("L", "1"):
            if max(width, height) <= GRAY_TILE:
                return GRAY_MODEL
            raise DataError(
                f"{name}: a {width}x{height} grayscale image has no default model: the shipped "
                f"grayscale model, {GRAY_MODEL}, knows {GRAY_TILE}x{GRAY_TILE} digits and makes a "
                f"grayscale photo larger than its PNG; `--model {GRAY_MODEL}` codes it anyway, "
                f"in {GRAY_TILE}x{GRAY_TILE} tiles"
            )
        return COLOUR_MODEL if max(width, height) <= THUMBNAIL else PHOTO_MODEL
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return AUDIO_MODEL
    if not data:
        raise DataError(f"{name}: empty file; there is nothing to compress")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(
            f"{name}: binary data (not UTF-8 at byte {e.start}, not an image or WAV) has no "
            f"default model; choices: {_CHOICES}; `--model {TEXT_MODEL}` codes any bytes"
        ) from None
    return TEXT_MODEL


def model_for_inputs(raws: list[bytes], names: list[str]) -> str:
    """The one shipped model for all inputs (several kinds at once is a one-line error)."""
    chosen = [model_for_input(r, name=n) for r, n in zip(raws, names, strict=True)]
    if len(set(chosen)) > 1:
        pairs = ", ".join(f"{n}: {m}" for n, m in list(zip(names, chosen, strict=True))[:4])
        raise DataError(
            f"the inputs need different models ({pairs}); compress them separately or give --model"
        )
    return chosen[0]


def _file_fingerprint(model: Any, version: int) -> bytes:
    from ardm.coding.container import FINGERPRINT_BYTES, SEEDED_PORTABLE_VERSION

    portable = getattr(model, "portable", None)
    if version >= SEEDED_PORTABLE_VERSION:  # the integer coder's versions (5 and up)
        return b"" if portable is None else bytes(portable.fingerprint())[:FINGERPRINT_BYTES]
    return bytes(model.fingerprint())[:FINGERPRINT_BYTES]


def model_for_file(blob: bytes, *, name: str) -> str:
    """The shipped model whose fingerprint a compressed file carries, or a one-line error."""
    from ardm.coding.container import unpack
    from ardm.modalities.registry import modality_for
    from ardm.training.pretrained import load, shipped_names

    header, _ = unpack(blob)
    for candidate in shipped_names():
        model = load(candidate)
        if modality_for(model).kind != header.kind:
            continue
        if _file_fingerprint(model, header.version) == header.fingerprint:
            return candidate
    raise FormatError(
        f"{name}: made by a model that is not shipped with this ardm (fingerprint "
        f"{header.fingerprint.hex()}); give --model"
    )
