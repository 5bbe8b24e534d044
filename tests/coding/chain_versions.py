"""Format version 6 from version 7: the same file without the ``context`` varint.

A version-7 file coded with the model's own context (what version 6 always used) holds
exactly a version-6 file's bytes plus that varint after ``segment``, and version byte 7: the
golden version-6 files are checked against what today's coder writes through this."""

from __future__ import annotations

from ardm.coding.container import SEEDED_CHAIN_VERSION, read_varint, unpack


def as_v6(blob: bytes, context: int) -> bytes:
    """The version-6 file of a version-7 ``blob`` whose context is ``context``."""
    header, body = unpack(blob)
    assert header.version == SEEDED_CHAIN_VERSION
    _, pos = read_varint(body, 0, "segment length")
    stored, end = read_varint(body, pos, "context")
    assert stored == context, f"coded with context {stored}, not {context}"
    head = len(blob) - len(body)
    return blob[:2] + bytes([6]) + blob[3:head] + body[:pos] + body[end:]
