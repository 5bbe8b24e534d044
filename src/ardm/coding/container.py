"""The ``.ardm`` file format: a small header followed by the entropy-coded payload.

Layout (versions 4 and 5, every field documented byte by byte in ``docs/format.md``)::

    magic      2 bytes   0xAD 0x4D ("\\xadM")
    version    1 byte    8 (integer coder) or 4 (float coder); 2, 3 and 5 are still read
    flags      1 byte    bits 0-1 kind (0 image, 1 text, 2 audio), bit 2 SHAPE, bits 3-7 zero
    budget     varint    number of network calls per tile, 1..D
    seed       varint    order seed: sigma = order_from_seed(D, seed) (version 8: unused,
                         the order is the spread order of the tile's shape)
    [SHAPE]    varint K, 1 byte ndim (1..4), ndim varints: the true data shape (tiled)
    model      4 bytes   first 4 bytes of the model fingerprint (hash of weights + config;
                         versions 5 and up: of the model's portable form, its integer state)
    payload    the rest  one ANS stream for the whole file (all its tiles, interleaved),
                         started from the data checksum (:func:`data_crc32`) as the coder's
                         initial state, which the decoder finds again after the last value;
                         a tiled file's payload has at least tiles - 1 bytes (a shorter
                         stream is padded with zero bytes, see :func:`pack_stream`)

Version 9 (:data:`CHAIN_VERSION`) has version 5's header, always with the true shape; its
payload is a varint (blocks per segment, 0 for one chain), a varint (the context: how many
known values precede a block in the model's window) and one ANS stream of the blocks, each
coded given the values before it (:mod:`ardm.coding.chain`), in the spread order of its
values' places (:func:`ardm.core.spread_order.spread_ranks`). Version 7 is the same with each
block in the order ``seeded_order(b, seed)``; version 6 (read only) is version 7 without the
context varint: the context is the model's ``context``.

Version 8 (:data:`PORTABLE_VERSION`) has version 4's layout; its payload is made by the
integer coder (:mod:`ardm.portable`): integer probability tables and the spread order of the
tile (:func:`ardm.core.spread_order.spread_order`), so it decodes on every machine. Version 5
is the same with orders from :func:`ardm.core.seeded_order.seeded_order`. A model without a
portable form writes version 4.

Versions 2 and 3 (read only) have a field ``crc32`` (4 bytes, the same checksum,
little-endian) after ``model``, and an ANS stream started from the empty state. Version 2
also differs in the payload of a tiled file: one stream per tile, each but the last preceded
by its length as a varint (:func:`split_tiles`); version 3 has one stream per file as
version 4.

A single item of the model's native shape with budget and seed below 128 has a 10-byte
header (14 in versions 2 and 3). Parsing is defensive: anything unexpected raises
:class:`ardm.errors.FormatError` with a one-line message, before any large allocation.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np

from ardm.coding.ans import MAX_K
from ardm.errors import FormatError

MAGIC = b"\xadM"
VERSION = 4
"""The version the float coder writes (a model without a portable form)."""
PORTABLE_VERSION = 8
"""The version the integer coder writes for tiles (a model with a portable form): version 5's
layout, with spread orders (:mod:`ardm.core.spread_order`)."""
SEEDED_PORTABLE_VERSION = 5
"""The integer coder's tiles with orders from :func:`ardm.core.seeded_order.seeded_order`
(written where asked for: ``version=5``)."""
PORTABLE_VERSIONS = (SEEDED_PORTABLE_VERSION, PORTABLE_VERSION)
"""The versions of the integer coder's tiles."""
CHAIN_VERSION = 9
"""The version of a chain of blocks coded with context (:mod:`ardm.coding.chain`, the integer
coder): version 5's header; the payload is a varint (blocks per segment), a varint (the known
context of a block) and one ANS stream; each block in its spread order."""
SEEDED_CHAIN_VERSION = 7
"""Version 9 with each block in the order ``seeded_order(b, seed)`` (written where asked for)."""
CHAIN_WRITE_VERSIONS = (SEEDED_CHAIN_VERSION, CHAIN_VERSION)
"""The chain versions written (``version=7`` on request): both carry the context field."""
CHAIN_VERSIONS = (6, *CHAIN_WRITE_VERSIONS)
"""The chain versions read: version 6 has no context field (the model's ``context``)."""
SPREAD_VERSIONS = (PORTABLE_VERSION, CHAIN_VERSION)
"""The versions whose orders are spread orders (:func:`ardm.core.spread_order.spread_order`)."""
WRITE_VERSIONS = (
    VERSION,
    SEEDED_PORTABLE_VERSION,
    SEEDED_CHAIN_VERSION,
    PORTABLE_VERSION,
    CHAIN_VERSION,
)
READ_VERSIONS = (2, 3, 4, 5, 6, 7, 8, 9)
"""The versions :func:`unpack` accepts (version 2: one ANS stream per tile; versions 2 and 3:
a ``crc32`` header field, the stream started from the empty state)."""
CRC_VERSIONS = (2, 3)
"""The versions with a ``crc32`` header field (version 4 carries it in the ANS stream)."""
CRC_BYTES = 4
KINDS = ("image", "text", "audio")
FINGERPRINT_BYTES = 4
MAX_D = 1 << 24
"""Largest number of variables a file may declare (refused before anything is allocated)."""
MAX_NDIM = 4
MAX_SEED = (1 << 63) - 1
_MAX_VARINT_BYTES = 10

_KIND_MASK = 0b0000_0011
_FLAG_SHAPE = 0b0000_0100
_KNOWN_FLAGS = _KIND_MASK | _FLAG_SHAPE


@dataclass(frozen=True)
class Header:
    """What a file says about itself. ``shape``/``K`` are ``None`` for the model's native shape.

    ``crc32``: the stored data checksum of a version-2 or -3 file (required there); ``None``
    in version 4, whose checksum is the ANS stream's initial state, not a header field.
    """

    kind: str
    budget: int
    seed: int
    fingerprint: bytes  # FINGERPRINT_BYTES bytes
    crc32: int | None = None
    K: int | None = None
    shape: tuple[int, ...] | None = None
    version: int = VERSION  # the payload layout; writers write VERSION or PORTABLE_VERSION

    def __post_init__(self) -> None:
        if self.version not in READ_VERSIONS:
            raise ValueError(f"version must be one of {READ_VERSIONS}, got {self.version}")
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.budget < 1:
            raise ValueError(f"budget must be >= 1, got {self.budget}")
        if not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must lie in [0, 2**63), got {self.seed}")
        if len(self.fingerprint) != FINGERPRINT_BYTES:
            raise ValueError(f"fingerprint must be {FINGERPRINT_BYTES} bytes")
        if self.version not in CRC_VERSIONS:
            if self.crc32 is not None:
                raise ValueError(
                    f"a version-{self.version} header has no crc32 field (the checksum is the "
                    f"coder's initial state); give crc32=None"
                )
        elif self.crc32 is None or not 0 <= self.crc32 < 1 << 32:
            raise ValueError(
                f"a version-{self.version} header needs crc32, a 32-bit unsigned value, "
                f"got {self.crc32}"
            )
        if (self.shape is None) != (self.K is None):
            raise ValueError("give both K and shape (non-native geometry) or neither")
        if self.shape is not None:
            _check_geometry(int(self.K or 0), self.shape, exc=ValueError)


# ---------------------------------------------------------------------------- varints
def write_varint(value: int) -> bytes:
    """Unsigned LEB128: 7 bits per byte, least significant group first, high bit = more."""
    if value < 0:
        raise ValueError(f"varints are unsigned, got {value}")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def read_varint(buf: bytes, pos: int, what: str) -> tuple[int, int]:
    """Read one canonical varint at ``pos``: ``(value, next_pos)``; ``what`` names it in errors."""
    value = 0
    for i in range(_MAX_VARINT_BYTES):
        if pos + i >= len(buf):
            raise FormatError(f"truncated file: it ends inside the {what} field")
        byte = buf[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if byte == 0 and i > 0:
                raise FormatError(f"corrupt header: the {what} field is not minimally encoded")
            return value, pos + i + 1
    raise FormatError(f"corrupt header: the {what} field is longer than {_MAX_VARINT_BYTES} bytes")


# ---------------------------------------------------------------------------- data checksum
def data_crc32(x: np.ndarray, K: int) -> int:
    """CRC-32 (zlib/IEEE 802.3) of the shape and values of ``x``: the number of axes and each
    axis size as little-endian uint32, then the values in C order, each as a little-endian
    unsigned integer of 1 byte (``K <= 256``), 2 bytes (``K <= 65536``) or 4 bytes. Covering
    the shape (format version 2) means an edited shape field cannot pass as other data."""
    width = "<u1" if K <= 1 << 8 else "<u2" if K <= 1 << 16 else "<u4"
    values = np.ascontiguousarray(x).astype(width)  # (...,)
    shape = np.array([values.ndim, *values.shape], dtype="<u4")
    return zlib.crc32(values.tobytes(), zlib.crc32(shape.tobytes())) & 0xFFFFFFFF


# ---------------------------------------------------------------------------- geometry
def _check_geometry(K: int, shape: tuple[int, ...], *, exc: type[Exception]) -> None:
    if not 2 <= K <= MAX_K:
        raise exc(f"K={K} is outside [2, {MAX_K}]")
    if not 1 <= len(shape) <= MAX_NDIM:
        raise exc(f"shape {shape} must have 1 to {MAX_NDIM} axes")
    if any(n < 1 for n in shape):
        raise exc(f"shape {shape} has an empty axis")
    if math.prod(shape) > MAX_D:
        raise exc(f"shape {shape} has more than {MAX_D} values")


def pack_stream(stream: bytes, count: int) -> bytes:
    """The payload (versions 3, 4) of a file of ``count`` tiles whose one ANS stream is ``stream``.

    A payload has at least ``count - 1`` bytes, as in version 2 (where every tile but the last
    has a length byte), so a short file cannot declare a long decode: a shorter stream (only
    for nearly constant data, below 8 bits per tile) is padded with zero bytes up to
    ``count - 1``. The coder's stream never ends in a zero byte, so the padding is unambiguous.
    """
    return stream + bytes(max(0, count - 1 - len(stream)))


def unpack_stream(payload: bytes, count: int) -> bytes:
    """Inverse of :func:`pack_stream`: the ANS stream of a payload of ``count`` tiles (v3, v4).

    Refuses a payload shorter than ``count - 1`` bytes before anything is decoded. Zero bytes
    at the end are padding only in a payload of exactly ``count - 1`` bytes; anywhere else
    they stay, and the decoder refuses them (the coder never writes a final zero byte).
    """
    if len(payload) < count - 1:
        raise FormatError(
            f"truncated file: {count} tiles need a payload of at least {count - 1} bytes, "
            f"{len(payload)} left"
        )
    return payload.rstrip(b"\x00") if len(payload) == count - 1 else payload


def join_tiles(payloads: list[bytes]) -> bytes:
    """Version 2: concatenate tile payloads, each but the last preceded by its length (varint).

    Only for reading (and rebuilding) version-2 files: writers write :func:`pack_stream`."""
    out = bytearray()
    for i, p in enumerate(payloads):
        if i < len(payloads) - 1:
            out += write_varint(len(p))
        out += p
    return bytes(out)


def split_tiles(body: bytes, count: int) -> list[bytes]:
    """Inverse of :func:`join_tiles` for ``count`` tiles of a version-2 file (a tile payload
    may be empty: the coder writes nothing for a tile whose coded values are all 0)."""
    out: list[bytes] = []
    pos = 0
    for i in range(count - 1):
        n, pos = read_varint(body, pos, f"length of tile {i}")
        if pos + n > len(body):
            raise FormatError(f"truncated file: tile {i} needs {n} bytes, {len(body) - pos} left")
        out.append(body[pos : pos + n])
        pos += n
    out.append(body[pos:])
    return out


# ---------------------------------------------------------------------------- header
def pack(header: Header, payload: bytes) -> bytes:
    """The bytes of a file: header fields (``header.version``), then the payload.

    The codec writes :data:`VERSION` or :data:`PORTABLE_VERSION`; a version-2 or -3 header
    (with its ``crc32`` field) is for rebuilding old files."""
    flags = KINDS.index(header.kind)
    geometry = b""
    if header.shape is not None:
        flags |= _FLAG_SHAPE
        geometry = write_varint(int(header.K or 0)) + bytes([len(header.shape)])
        geometry += b"".join(write_varint(n) for n in header.shape)
    return b"".join(
        [
            MAGIC,
            bytes([header.version, flags]),
            write_varint(header.budget),
            write_varint(header.seed),
            geometry,
            header.fingerprint,
            b"" if header.crc32 is None else header.crc32.to_bytes(CRC_BYTES, "little"),
            payload,
        ]
    )


def unpack(blob: bytes) -> tuple[Header, bytes]:
    """Parse a file: ``(header, payload)``. Raises :class:`FormatError` on anything malformed."""
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise TypeError(f"expected bytes, got {type(blob).__name__}")
    blob = bytes(blob)
    if len(blob) == 0:
        raise FormatError("empty file: not an ardm compressed file")
    if blob[: len(MAGIC)] != MAGIC:
        if len(blob) < len(MAGIC) and MAGIC.startswith(blob):
            raise FormatError("truncated file: it ends inside the magic bytes")
        raise FormatError(
            f"not an ardm compressed file (starts with {blob[:2].hex()}, expected {MAGIC.hex()})"
        )
    pos = len(MAGIC)
    if pos >= len(blob):
        raise FormatError("truncated file: it ends before the format version")
    version = blob[pos]
    if version not in READ_VERSIONS:
        raise FormatError(
            f"unsupported format version {version} (this ardm reads versions "
            f"{', '.join(map(str, READ_VERSIONS))})"
        )
    pos += 1
    if pos >= len(blob):
        raise FormatError("truncated file: it ends before the flags byte")
    flags = blob[pos]
    pos += 1
    if flags & ~_KNOWN_FLAGS:
        raise FormatError(f"corrupt header: unknown flag bits 0x{flags & ~_KNOWN_FLAGS:02x}")
    kind_index = flags & _KIND_MASK
    if kind_index >= len(KINDS):
        raise FormatError(f"corrupt header: unknown data kind {kind_index}")
    budget, pos = read_varint(blob, pos, "budget")
    if not 1 <= budget <= MAX_D:
        raise FormatError(f"corrupt header: budget {budget} is outside [1, {MAX_D}]")
    seed, pos = read_varint(blob, pos, "order seed")
    if seed > MAX_SEED:
        raise FormatError(f"corrupt header: order seed {seed} is not below 2**63")
    K: int | None = None
    shape: tuple[int, ...] | None = None
    if flags & _FLAG_SHAPE:
        K, pos = read_varint(blob, pos, "K")
        if pos >= len(blob):
            raise FormatError("truncated file: it ends before the number of axes")
        ndim = blob[pos]
        pos += 1
        if not 1 <= ndim <= MAX_NDIM:
            raise FormatError(f"corrupt header: {ndim} axes (at most {MAX_NDIM})")
        dims = []
        for axis in range(ndim):
            n, pos = read_varint(blob, pos, f"size of axis {axis}")
            if n > MAX_D:
                raise FormatError(f"corrupt header: axis {axis} has {n} values (at most {MAX_D})")
            dims.append(n)
        shape = tuple(dims)
        try:
            _check_geometry(K, shape, exc=ValueError)
        except ValueError as e:  # name the culprit: the header, not the caller's data
            raise FormatError(f"corrupt header: {e}") from None
    has_crc = version in CRC_VERSIONS
    end = pos + FINGERPRINT_BYTES + (CRC_BYTES if has_crc else 0)
    if end > len(blob):
        what = "model fingerprint or checksum" if has_crc else "model fingerprint"
        raise FormatError(f"truncated file: it ends inside the {what}")
    fingerprint = blob[pos : pos + FINGERPRINT_BYTES]
    crc = int.from_bytes(blob[pos + FINGERPRINT_BYTES : end], "little") if has_crc else None
    header = Header(
        kind=KINDS[kind_index],
        budget=budget,
        seed=seed,
        fingerprint=fingerprint,
        crc32=crc,
        K=K,
        shape=shape,
        version=version,
    )
    return header, blob[end:]
