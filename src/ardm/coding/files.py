"""Inputs and outputs of ``ardm compress`` / ``ardm decompress``: strict and lossless.

An input is read exactly as it is or refused with a one-line :class:`DataError`; nothing is
ever converted, because a conversion would not round-trip:

* image models take single-frame images that Pillow reads (PNG, BMP, TIFF, PPM/PGM, ...) in
  mode ``L`` (8-bit gray, 1-channel models) or ``RGB`` (8-bit colour, 3-channel models). Other
  modes (palette ``P``, ``LA``, ``RGBA``, 16-bit ``I;16``, bilevel ``1``, ...), a transparent
  colour, several frames and lossy formats (JPEG) are refused, and so are images of more
  than :data:`MAX_VALUES` values (checked from the header, before any pixel is decoded).
* text models take UTF-8 text whose every character is in the model's alphabet
  (:meth:`ardm.data.TextAlphabet.encode`); the bytes are read as they are (no newline
  translation), so a file that decodes writes back byte for byte.

What round-trips is the data: the pixel values (a decompressed image is a fresh PNG without
the input's metadata such as gamma, ICC profile or text chunks) and the text. Outputs are
written atomically (:func:`ardm.checkpoint.atomic_write_bytes`) and never over an existing
file unless ``force``; ``-`` means standard input / output.
"""

from __future__ import annotations

import io
import os
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ardm.coding.container import MAX_D
from ardm.data import TextAlphabet, dataset_spec
from ardm.errors import DataError, FormatError

STDIO = "-"
"""The path that means standard input (for an input) or standard output (for an output)."""

SUFFIX = ".ardm"
"""Suffix of compressed files."""

MAX_VALUES = MAX_D
"""Largest input (values: channels x height x width, or characters); the file format's limit."""

LOSSY_FORMATS = frozenset({"JPEG", "MPO"})
"""Pillow formats whose pixels depend on the decoder: refused (convert to PNG yourself)."""

IMAGE_SUFFIXES = frozenset({".png", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".pnm", ".tga"})

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


# ---------------------------------------------------------------------------- images
def _describe_mode(mode: str) -> str:
    name = _MODE_NAMES.get(mode)
    return f"{mode} ({name})" if name else mode


def read_image(data: bytes, *, channels: int, name: str) -> torch.Tensor:
    """Decode an image file's bytes into ``(C, H, W)`` uint8, ``C = channels``, without conversion.

    Raises :class:`DataError` naming ``name`` for anything that is not exactly an 8-bit
    ``L`` (``channels=1``) or ``RGB`` (``channels=3``) single-frame lossless image.
    """
    want = _MODE_OF_CHANNELS.get(channels)
    if want is None:
        raise DataError(f"image models with {channels} channels have no image file mode")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns on metadata it does not understand
            im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        raise DataError(f"{name}: refused, too many pixels ({e})") from None
    except Exception as e:  # UnidentifiedImageError, truncated headers, ...
        reason = _one_line(e)
        raise DataError(f"{name}: cannot read it as an image ({reason})") from None
    with im:
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
                f"{_describe_mode(want)} images only (a {channels}-channel model); convert the "
                "file yourself if that is what you want: ardm never converts, it must be lossless"
            )
        if "transparency" in im.info:
            raise DataError(
                f"{name}: has a transparent colour (tRNS); ardm codes pixel values only, "
                "so it would be lost"
            )
        try:
            arr = np.array(im, dtype=np.uint8)  # (H, W) or (H, W, 3); decodes the pixels
        except Exception as e:  # truncated or corrupt pixel data
            raise DataError(f"{name}: cannot decode its pixels ({_one_line(e)})") from None
    if arr.ndim == 2:
        arr = arr[..., None]
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))  # (C, H, W)


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


# ---------------------------------------------------------------------------- text
def read_text(data: bytes, alphabet: TextAlphabet, *, name: str) -> torch.Tensor:
    """UTF-8 bytes -> ``(n,)`` uint8 ids; every character must be in ``alphabet``."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(
            f"{name}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); "
            "this model codes text"
        ) from None
    if not text:
        raise DataError(f"{name}: empty file; there is nothing to compress")
    if len(text) > MAX_VALUES:
        raise DataError(f"{name}: {len(text)} characters is too long (at most {MAX_VALUES})")
    try:
        return alphabet.encode(text)  # (n,)
    except DataError as e:
        raise DataError(f"{name}: {e}; this model codes only {_accepts(alphabet)}") from None


def _accepts(alphabet: TextAlphabet) -> str:
    symbols = alphabet.symbols
    if len(symbols) <= 40:
        shown = repr(symbols)
    else:
        shown = repr(symbols[:20]) + "..." + repr(symbols[-10:])
    newline = "" if "\n" in symbols else ", no newline (a trailing newline is refused too)"
    return f"the {alphabet.K} characters {shown}{newline}"


def text_bytes(x: torch.Tensor, alphabet: TextAlphabet) -> bytes:
    """The UTF-8 bytes of ids ``x (n,)``."""
    return alphabet.decode(x).encode("utf-8")


# ---------------------------------------------------------------------------- per model
@dataclass(frozen=True)
class ItemCodec:
    """How one model's items are read from and written to files."""

    kind: str  # "image", "text" or "audio"
    channels: int = 0  # images
    alphabet: TextAlphabet | None = None  # text
    rate: int = 0  # audio: the sample rate the model was trained on

    @staticmethod
    def for_model(model: Any) -> ItemCodec:
        """The file reader/writer for a model (an :class:`ardm.model.ARDM` from a checkpoint)."""
        if model.kind == "image":
            return ItemCodec("image", channels=int(model.shape[0]))
        if model.kind == "text":
            data = model.config.get("data", {})
            spec = dataset_spec(data["name"], seq_len=data.get("seq_len", model.shape[0]))
            if spec.alphabet is None or len(spec.alphabet) != model.K:
                raise DataError(
                    f"the model's dataset {data['name']!r} has no alphabet of K symbols"
                )
            return ItemCodec("text", alphabet=TextAlphabet(spec.alphabet))
        if model.kind == "audio":
            from ardm.data.audio import FSDD_RATE

            return ItemCodec("audio", rate=FSDD_RATE)
        raise DataError(f"files for {model.kind} models are not supported yet")

    @property
    def suffix(self) -> str:
        """Suffix of decompressed files: ``.png``, ``.txt`` or ``.wav``."""
        return {"image": ".png", "audio": ".wav"}.get(self.kind, ".txt")

    @property
    def unit(self) -> str:
        return "bpc" if self.kind == "text" else "bpd"

    def read(self, data: bytes, *, name: str) -> torch.Tensor:
        """File bytes -> data tensor ``(C, H, W)``, ``(n,)`` symbols or ``(n,)`` audio classes."""
        if self.kind == "image":
            return read_image(data, channels=self.channels, name=name)
        if self.kind == "audio":
            from ardm.data.audio import read_wav, samples_to_classes

            samples, rate = read_wav(data, name=name)
            if rate != self.rate:
                raise DataError(
                    f"{name}: {rate} Hz audio; the model is for {self.rate} Hz (resample it first)"
                )
            if len(samples) == 0:
                raise DataError(f"{name}: the WAV file holds no samples")
            return samples_to_classes(samples)
        assert self.alphabet is not None
        return read_text(data, self.alphabet, name=name)

    def write(self, x: torch.Tensor) -> bytes:
        """Data tensor -> file bytes (PNG, UTF-8 or 16-bit PCM WAV)."""
        if self.kind == "image":
            return png_bytes(x)
        if self.kind == "audio":
            from ardm.data.audio import classes_to_samples, wav_bytes

            return wav_bytes(classes_to_samples(x), self.rate)
        assert self.alphabet is not None
        return text_bytes(x, self.alphabet)


# ---------------------------------------------------------------------------- many files
def decompress_files(model: Any, blobs: list[bytes], names: list[str]) -> list[torch.Tensor]:
    """Decompress several files, several at once on a pool of threads.

    :func:`ardm.coding.codec.decompress` decodes one file (its tiles spread over worker
    threads, each with one intra-op thread). For many small files the pool goes over the
    files instead: the torch thread count is set to 1 for the whole pool (so no call changes
    it under another), each file is decoded alone, single-threaded, as the codec's
    determinism rule asks. A :class:`FormatError` is prefixed with the file's name.
    """
    from concurrent.futures import ThreadPoolExecutor

    from ardm.coding import codec

    def one(i: int) -> torch.Tensor:
        try:
            return codec.decompress(model, blobs[i])
        except FormatError as e:
            raise FormatError(f"{names[i]}: {e}") from None

    threads = torch.get_num_threads()
    if len(blobs) <= 1 or threads == 1 or model.device.type != "cpu":
        return [one(i) for i in range(len(blobs))]  # one file: its tiles share the codec's pool
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(max_workers=min(threads, len(blobs))) as pool:
            return list(pool.map(one, range(len(blobs))))
    finally:
        torch.set_num_threads(threads)


# ---------------------------------------------------------------------------- names
def compressed_name(path: str, *, in_directory: bool) -> str:
    """Output file name for compressing ``path``: ``x.png`` -> ``x.png.ardm`` beside it, or
    ``x.ardm`` (the stem) in an output directory."""
    p = Path(path)
    return p.stem + SUFFIX if in_directory else p.name + SUFFIX


def decompressed_name(path: str, codec: ItemCodec) -> str:
    """Output file name for decompressing ``path``: ``x.png.ardm`` and ``x.ardm`` -> ``x.png``
    (an image model) or ``x.txt`` (text; a text file keeps its own suffix: ``a.md.ardm`` ->
    ``a.md``)."""
    name = Path(path).name
    base = name[: -len(SUFFIX)] if name.endswith(SUFFIX) and len(name) > len(SUFFIX) else name
    suffix = Path(base).suffix.lower()
    if codec.kind == "audio":
        return base if suffix == ".wav" else (Path(base).stem if suffix else base) + ".wav"
    if codec.kind == "image":
        if suffix == ".png":
            return base
        return (Path(base).stem if suffix in IMAGE_SUFFIXES else base) + ".png"
    if suffix and suffix not in IMAGE_SUFFIXES and suffix != SUFFIX:
        return base
    return (Path(base).stem if suffix else base) + ".txt"


def display_name(path: str) -> str:
    """How an input is named in messages."""
    return "standard input" if path == STDIO else path


def check_stdio(inputs: list[str], output: str | None) -> None:
    """Standard input and output (``-``) serve a single input only."""
    if STDIO in inputs and len(inputs) > 1:
        raise DataError("'-' (standard input) works only as the single input")
    if output == STDIO and len(inputs) > 1:
        raise DataError("-o - (standard output) works only with a single input")


def output_paths(
    inputs: list[str],
    output: str | None,
    name: Callable[[str, bool], str],
    *,
    force: bool,
) -> list[str]:
    """One output path per input, checked before anything is coded.

    ``output`` is ``None`` (each output beside its input, ``name(input, False)``; standard
    output for standard input), ``-`` (standard output, one input only), a directory (an
    existing one, one ending in ``/``, or any path when there are several inputs; created;
    outputs ``name(input, True)`` inside it) or a file. Refuses ``-`` among several inputs,
    two inputs with the same output, and existing outputs unless ``force``.
    """
    check_stdio(inputs, output)
    if output is None:
        if inputs == [STDIO]:
            return [STDIO]
        outs = [str(Path(i).parent / name(i, False)) for i in inputs]
    elif output == STDIO:
        outs = [STDIO]
    elif len(inputs) > 1 or Path(output).is_dir() or output.endswith(("/", os.sep)):
        folder = Path(output)
        if folder.exists() and not folder.is_dir():
            raise DataError(f"{output} is not a directory (with several inputs, -o names one)")
        if inputs == [STDIO]:
            raise DataError("standard input has no name: give -o a file name, not a directory")
        outs = [str(folder / name(i, True)) for i in inputs]
    else:
        outs = [output]
    seen: dict[str, str] = {}
    for i, o in zip(inputs, outs, strict=True):
        if o in seen:
            raise DataError(f"{seen[o]} and {i} would both be written to {o}")
        seen[o] = i
        check_writable(o, force=force)
    return outs


# ---------------------------------------------------------------------------- bytes in/out
def read_input(path: str) -> bytes:
    """The bytes of an input file, or of standard input for ``-``."""
    if path == STDIO:
        return sys.stdin.buffer.read()
    p = Path(path)
    if not p.exists():
        raise DataError(f"{path}: no such file")
    if not p.is_file():
        raise DataError(f"{path}: not a file")
    try:
        return p.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read it ({e.strerror or e})") from None


def check_writable(path: str | Path, *, force: bool) -> None:
    """Refuse an output that exists (unless ``force``) or that is a directory."""
    if str(path) == STDIO:
        return
    p = Path(path)
    if p.is_dir():
        raise DataError(f"{p} is a directory")
    if p.exists() and not force:
        raise DataError(f"{p} exists; use --force to overwrite it")


def write_output(path: str | Path, data: bytes, *, force: bool) -> None:
    """Write ``data`` atomically to ``path`` (``-``: standard output), never over an existing
    file unless ``force``."""
    from ardm.filesystem import atomic_write_bytes

    if str(path) == STDIO:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    check_writable(path, force=force)
    try:
        atomic_write_bytes(path, data)
    except OSError as e:
        raise DataError(f"{path}: cannot write it ({e.strerror or e})") from None


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__
