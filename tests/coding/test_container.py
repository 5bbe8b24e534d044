"""The ``.ardm`` file format (:mod:`ardm.coding.container`): varints, headers, the tiles'
streams and the padding of a tiled payload."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ardm.coding import container
from ardm.coding.container import Header
from ardm.errors import FormatError
from tests.coding.checks import one_line


@given(st.integers(0, 2**64))
def test_varint_round_trip(value: int) -> None:
    b = container.write_varint(value)
    assert container.read_varint(b + b"\xff", 0, "v") == (value, len(b))
    assert len(b) == max(1, math.ceil(value.bit_length() / 7))


def test_varint_refuses_overlong_and_truncated() -> None:
    with pytest.raises(FormatError, match="minimally"):
        container.read_varint(b"\x81\x00", 0, "budget")
    with pytest.raises(FormatError, match="truncated"):
        container.read_varint(b"\x81\x82", 0, "budget")
    with pytest.raises(FormatError, match="longer"):
        container.read_varint(b"\xff" * 12, 0, "budget")


headers = st.builds(
    Header,
    kind=st.sampled_from(container.KINDS),
    budget=st.integers(1, container.MAX_D),
    seed=st.integers(0, container.MAX_SEED),
    fingerprint=st.binary(min_size=4, max_size=4),
)


@given(
    header=headers,
    shape=st.none() | st.lists(st.integers(1, 60), min_size=1, max_size=4),
    version=st.sampled_from(container.READ_VERSIONS),
    crc=st.integers(0, 2**32 - 1),
)
def test_header_round_trip(header: Header, shape: list[int] | None, version: int, crc: int) -> None:
    crc32 = crc if version in container.CRC_VERSIONS else None  # version 4: no field
    header = Header(**{**header.__dict__, "version": version, "crc32": crc32})
    if shape is not None:
        header = Header(**{**header.__dict__, "K": 256, "shape": tuple(shape)})
    payload = b"\x12\x34"
    blob = container.pack(header, payload)
    assert container.unpack(blob) == (header, payload)


def test_header_is_10_bytes_for_a_native_item() -> None:
    # An MNIST digit with the model's native shape: budget 100, order seed 0..127.
    h = Header(kind="image", budget=100, seed=3, fingerprint=b"abcd")
    assert h.version == container.VERSION == 4 and h.crc32 is None
    assert len(container.pack(h, b"")) == 10
    h = Header(kind="image", budget=784, seed=3, fingerprint=b"abcd")
    assert len(container.pack(h, b"")) == 11
    h = Header(kind="image", budget=100, seed=3, fingerprint=b"abcd", crc32=123, version=3)
    assert len(container.pack(h, b"")) == 14  # versions 2 and 3: a crc32 field


def test_header_crc32_field_only_in_versions_2_and_3() -> None:
    with pytest.raises(ValueError, match="no crc32 field"):
        Header(kind="image", budget=1, seed=0, fingerprint=b"abcd", crc32=7)
    for version in (2, 3):
        with pytest.raises(ValueError, match="needs crc32"):
            Header(kind="image", budget=1, seed=0, fingerprint=b"abcd", version=version)
        with pytest.raises(ValueError, match="needs crc32"):
            Header(kind="image", budget=1, seed=0, fingerprint=b"abcd", crc32=-1, version=version)
        with pytest.raises(ValueError, match="needs crc32"):
            Header(
                kind="image", budget=1, seed=0, fingerprint=b"abcd", crc32=2**32, version=version
            )
    # the same fields, read as version 3 (4 more bytes: the checksum) and as version 4
    v3 = Header(kind="text", budget=20, seed=1, fingerprint=b"wxyz", crc32=0x01020304, version=3)
    blob = container.pack(v3, b"\x05")
    assert container.unpack(blob) == (v3, b"\x05")
    v4, payload = container.unpack(blob[:2] + b"\x04" + blob[3:])
    assert v4 == Header(kind="text", budget=20, seed=1, fingerprint=b"wxyz")
    assert payload == bytes.fromhex("0403020105")


def test_header_refuses_malformed_files() -> None:
    good = container.pack(Header(kind="text", budget=20, seed=1, fingerprint=b"wxyz"), b"\x05")
    cases = {
        "empty": b"",
        "magic": b"PK\x03\x04" + good[4:],
        "version": good[:2] + bytes([max(container.READ_VERSIONS) + 1]) + good[3:],
        "version 1": good[:2] + b"\x01" + good[3:],
        "flags": good[:3] + bytes([good[3] | 0x80]) + good[4:],
        "kind": good[:3] + bytes([good[3] | 0x03]) + good[4:],
        "budget0": good[:4] + b"\x00" + good[5:],
        "huge shape": good[:3]
        + bytes([good[3] | 0x04])
        + b"\x14\x01"
        + container.write_varint(256)
        + b"\x03"
        + container.write_varint(1 << 40),
        "too many axes": good[:3] + bytes([good[3] | 0x04]) + b"\x14\x01\x80\x02\x09",
    }
    messages = {}
    for name, blob in cases.items():
        with pytest.raises(FormatError) as e:
            container.unpack(blob)
        messages[name] = one_line(e)
    assert container.VERSION == 4 and container.READ_VERSIONS == (2, 3, 4, 5, 6, 7, 8, 9)
    assert "version 10 (this ardm reads versions 2, 3, 4, 5, 6, 7, 8, 9)" in messages["version"]
    assert "version 1 (this ardm reads versions 2, 3, 4, 5, 6, 7, 8, 9)" in messages["version 1"]
    assert container.unpack(good[:2] + b"\x02" + good[3:] + bytes(4))[0].version == 2
    with pytest.raises(FormatError, match="ends inside the model fingerprint or checksum"):
        container.unpack(good[:2] + b"\x03" + good[3:])  # 1 byte for a 4-byte checksum
    assert "not an ardm" in messages["magic"]
    for n in range(len(good) - 1):  # every truncation inside the header
        with pytest.raises(FormatError, match=r"truncated|not an ardm|empty"):
            container.unpack(good[:n])


def test_tiles_split_join() -> None:
    parts = [b"a" * 3, b"", b"b" * 200, b"c"]
    body = container.join_tiles(parts)
    assert container.split_tiles(body, 4) == parts
    assert container.split_tiles(container.join_tiles([b"", b""]), 2) == [b"", b""]
    for bad in (body[:100], body[:5], b"", b"\x05abc"):
        with pytest.raises(FormatError, match="truncated"):
            container.split_tiles(bad, 4)


@given(stream=st.binary(max_size=12), count=st.integers(1, 20))
def test_stream_padding(stream: bytes, count: int) -> None:
    """Version 3: a tiled payload has at least ``tiles - 1`` bytes; the padding (zero bytes,
    which end no stream) is removed again, and zeros anywhere else are left for the coder to
    refuse."""
    stream = stream.rstrip(b"\x00")  # the coder never ends a stream in a zero byte
    payload = container.pack_stream(stream, count)
    assert len(payload) == max(len(stream), count - 1)
    assert container.unpack_stream(payload, count) == stream
    if len(payload) != count - 1:  # extra zeros are not padding
        assert container.unpack_stream(payload + b"\x00", count).endswith(b"\x00")
    if count > 1:
        with pytest.raises(FormatError, match="truncated file") as e:
            container.unpack_stream(bytes(count - 2), count)
        one_line(e)
