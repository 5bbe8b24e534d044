"""Classical lossless codecs a user would pick instead of ardm, for side-by-side sizes.

Images: PNG, WebP lossless and JPEG 2000 (Pillow), JPEG-XL lossless (effort 10, or
others) and JPEG-LS (``imagecodecs``), zstd -19 on raw bytes. Text: xz -9e, bzip2 -9 (stdlib), zstd -19, brotli
q11, PPMd. Audio: FLAC (libsndfile), xz and zstd on raw samples. The non-stdlib ones come with ``pip install 'ardm[bench]'``; a codec that is not
installed is reported as missing, never faked. Each codec is ``(encode, decode)``: an item
(``(C, H, W)`` uint8 array, or bytes) -> file bytes -> the item.
"""

from __future__ import annotations

import bz2
import io
import lzma
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image

Codec = tuple[Callable[[Any], bytes], Callable[[bytes], Any]]
"""``(encode, decode)``: an item (``uint8`` array or ``bytes``) -> file bytes -> the item."""


def _pillow_codec(fmt: str, **options: Any) -> Codec:
    def encode(arr: np.ndarray) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(_hwc(arr)).save(buf, format=fmt, **options)
        return buf.getvalue()

    def decode(blob: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(blob)) as im:
            return _chw(np.array(im))

    return encode, decode


def _jpeg2000() -> Codec:
    """JPEG 2000, reversible 5/3 wavelet; colour images with the reversible colour transform
    (``mct``: without it each RGB channel is coded alone, 26 % larger on Kodak)."""

    def encode(arr: np.ndarray) -> bytes:
        buf = io.BytesIO()
        mct = 1 if arr.shape[0] == 3 else 0
        Image.fromarray(_hwc(arr)).save(buf, format="JPEG2000", irreversible=False, mct=mct)
        return buf.getvalue()

    def decode(blob: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(blob)) as im:
            return _chw(np.array(im))

    return encode, decode


def _jpegls(ic: Any) -> Codec:
    """JPEG-LS (CharLS), lossless; colour images with the HP1 colour transform of JPEG-LS
    part 2 (``R - G, G, B - G`` modulo 256) applied around it, which ``imagecodecs`` does not
    expose (it would mark it in the file; the size is the same but for that marker)."""

    def encode(arr: np.ndarray) -> bytes:
        if arr.shape[0] == 3:
            r, g, b = arr.astype(np.int16)
            arr = np.stack([(r - g) % 256, g, (b - g) % 256]).astype(np.uint8)
        return bytes(ic.jpegls_encode(_hwc(arr), level=0))

    def decode(blob: bytes) -> np.ndarray:
        arr = _chw(ic.jpegls_decode(blob))
        if arr.shape[0] == 3:
            r, g, b = arr.astype(np.int16)
            arr = np.stack([(r + g) % 256, g, (b + g) % 256]).astype(np.uint8)
        return arr

    return encode, decode


def _hwc(arr: np.ndarray) -> np.ndarray:
    """``(C, H, W)`` -> ``(H, W)`` (gray) or ``(H, W, 3)``, contiguous."""
    return np.ascontiguousarray(arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0))


def _chw(arr: np.ndarray) -> np.ndarray:
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def image_codecs(
    *, jxl_efforts: tuple[int, ...] = (10,), jpeg2000: bool = False
) -> tuple[dict[str, tuple[str, Codec]], dict[str, str]]:
    """Classical lossless image codecs available here: ``{name: (setting, codec)}``, and notes
    on the missing ones. ``jxl_efforts``: the JPEG-XL efforts to run (one column each; the
    column of effort 10 alone is named ``JPEG-XL lossless``); ``jpeg2000``: add JPEG 2000
    (reversible 5/3 wavelet, OpenJPEG via Pillow)."""
    codecs: dict[str, tuple[str, Codec]] = {
        "PNG": (
            "Pillow, optimize=True, compress_level=9",
            _pillow_codec("PNG", optimize=True, compress_level=9),
        ),
        "WebP lossless": (
            "Pillow, lossless, quality=100, method=6, exact",
            _pillow_codec("WEBP", lossless=True, quality=100, method=6, exact=True),
        ),
    }
    if jpeg2000:
        codecs["JPEG 2000"] = (
            "Pillow (OpenJPEG), reversible, colour transform for RGB",
            _jpeg2000(),
        )
    missing: dict[str, str] = {}
    jxl_names = {
        e: "JPEG-XL lossless" if jxl_efforts == (10,) else f"JPEG-XL e{e}" for e in jxl_efforts
    }
    try:
        import imagecodecs as ic

        for effort, name in jxl_names.items():
            if ic.JPEGXL.available:
                codecs[name] = (
                    f"imagecodecs, effort={effort}, naked codestream",
                    (
                        lambda a, e=effort: bytes(
                            ic.jpegxl_encode(_hwc(a), lossless=True, effort=e)
                        ),
                        lambda b: _chw(ic.jpegxl_decode(b)),
                    ),
                )
            else:
                missing[name] = "imagecodecs built without libjxl"
        if ic.JPEGLS.available:
            codecs["JPEG-LS"] = (
                "imagecodecs (CharLS), lossless, HP1 colour transform for RGB",
                _jpegls(ic),
            )
        else:
            missing["JPEG-LS"] = "imagecodecs built without CharLS"
    except ImportError:
        for name in [*jxl_names.values(), "JPEG-LS"]:
            missing[name] = "imagecodecs not installed"
    zstd = _zstd(19)
    if zstd is not None:
        enc, dec = zstd
        codecs["zstd raw"] = ("zstd -19 on the raw C×H×W bytes", (lambda a: enc(a.tobytes()), dec))
    else:
        missing["zstd raw"] = "zstandard not installed"
    return codecs, missing


def _zstd(level: int) -> tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]] | None:
    try:
        import zstandard
    except ImportError:
        return None
    c = zstandard.ZstdCompressor(level=level)
    d = zstandard.ZstdDecompressor()
    return c.compress, d.decompress


def text_codecs(whole: bytes) -> tuple[dict[str, tuple[str, Codec]], dict[str, str]]:
    """Classical text compressors (bytes -> bytes); PPMd's order is chosen on ``whole``."""
    codecs: dict[str, tuple[str, Codec]] = {
        "xz": (
            "-9e (lzma preset 9 + extreme, .xz container)",
            (lambda b: lzma.compress(b, preset=9 | lzma.PRESET_EXTREME), lzma.decompress),
        ),
        "bzip2": ("-9", (lambda b: bz2.compress(b, 9), bz2.decompress)),
    }
    missing: dict[str, str] = {}
    zstd = _zstd(19)
    if zstd is not None:
        codecs["zstd"] = ("-19", zstd)
    else:
        missing["zstd"] = "zstandard not installed"
    try:
        import brotli

        codecs["brotli"] = (
            "quality 11, lgwin 24",
            (lambda b: brotli.compress(b, quality=11, lgwin=24), brotli.decompress),
        )
    except ImportError:
        missing["brotli"] = "brotli not installed"
    try:
        import pyppmd

        sizes = {
            order: len(pyppmd.compress(whole, max_order=order, variant="I"))
            for order in (4, 5, 6, 8, 10)
        }
        best = min(sizes, key=lambda o: sizes[o])
        codecs["PPMd"] = (
            f"variant I, order {best} (best of {sorted(sizes)} on the whole test text), 16 MiB",
            (
                lambda b: pyppmd.compress(b, max_order=best, variant="I"),
                lambda b: pyppmd.decompress(b, max_order=best, variant="I"),
            ),
        )
        missing["PPMd variant H"] = "not run: it needs the length stored outside the stream"
    except ImportError:
        missing["PPMd"] = "pyppmd not installed"
    return codecs, missing


def audio_codecs(rate: int) -> tuple[dict[str, tuple[str, Codec]], dict[str, str]]:
    """Classical lossless audio codecs for 16-bit mono clips (``int16`` arrays) at ``rate`` Hz:
    FLAC at its highest compression level (libsndfile via ``soundfile``), and xz and zstd on
    the raw little-endian samples."""
    codecs: dict[str, tuple[str, Codec]] = {}
    missing: dict[str, str] = {}
    try:
        import soundfile

        def flac_encode(a: np.ndarray) -> bytes:
            buf = io.BytesIO()
            soundfile.write(
                buf,
                np.asarray(a, dtype=np.int16),
                rate,
                format="FLAC",
                subtype="PCM_16",
                compression_level=1.0,
            )
            return buf.getvalue()

        def flac_decode(b: bytes) -> np.ndarray:
            data, _ = soundfile.read(io.BytesIO(b), dtype="int16")
            return np.asarray(data)

        codecs["FLAC"] = ("libsndfile, compression_level=1.0 (flac -8)", (flac_encode, flac_decode))
    except (ImportError, OSError):
        missing["FLAC"] = "soundfile (libsndfile) not installed"
    raw = lambda a: np.asarray(a, dtype="<i2").tobytes()  # noqa: E731
    codecs["xz (raw samples)"] = (
        "-9e on 16-bit little-endian samples",
        (lambda a: lzma.compress(raw(a), preset=9 | lzma.PRESET_EXTREME), lzma.decompress),
    )
    zstd = _zstd(19)
    if zstd is not None:
        enc, dec = zstd
        codecs["zstd (raw samples)"] = (
            "-19 on 16-bit little-endian samples",
            (lambda a: enc(raw(a)), dec),
        )
    return codecs, missing


def codec_versions() -> dict[str, str]:
    from PIL import features

    out = {
        "pillow": Image.__version__,
        "zlib (Pillow PNG)": str(features.version("zlib")),
        "libwebp (Pillow)": str(features.version("webp")),
        "xz/lzma, bzip2": f"Python {sys.version.split()[0]} stdlib",
    }
    for module, extra in [
        ("imagecodecs", ("libjxl", "charls")),
        ("zstandard", ()),
        ("brotli", ()),
        ("pyppmd", ()),
        ("soundfile", ()),
    ]:
        try:
            mod = __import__(module)
        except ImportError:
            out[module] = "not installed"
            continue
        out[module] = str(getattr(mod, "__version__", "?"))
        if module == "imagecodecs":
            versions = mod.version(dict)
            for lib in extra:
                out[lib] = str(versions.get(lib, "missing"))
        if module == "soundfile":
            out["libsndfile"] = str(getattr(mod, "__libsndfile_version__", "?"))
        if module == "zstandard":
            out["libzstd"] = str(mod.ZSTD_VERSION)
    return out


def same(a: Any, b: Any) -> bool:
    """Decoded ``b`` equals item ``a``: bytes, a raw byte dump of an array, or an image. A gray
    image that comes back as RGB (WebP has no gray mode) must have every channel equal."""
    if isinstance(a, bytes | bytearray):
        return bytes(a) == bytes(b)
    if isinstance(b, bytes | bytearray):  # raw-bytes codecs: the benchmark knows the shape
        return np.asarray(a).tobytes() == bytes(b)
    a, b = np.asarray(a), np.asarray(b)
    if a.shape[0] == 1 and b.shape == (3, *a.shape[1:]):
        return bool((b == a).all())
    return bool(np.array_equal(a, b))
