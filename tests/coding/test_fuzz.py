"""The decoder on hostile input: a seeded slice of ``python -m fuzz.campaign`` and properties.

Every input must end in the exact original data or a one-line :class:`FormatError`, within
the time bound of :mod:`fuzz.campaign` (proportional to tiles x budget) and without a jump of
the peak RSS. The full campaign (100,000+ inputs) is ``python -m fuzz.campaign``; its results
are in ``benchmarks/results/fuzz.md``.
"""

from __future__ import annotations

import functools

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ardm.coding import codec, container
from ardm.errors import FormatError
from fuzz.campaign import (
    KIND_WEIGHTS,
    RSS_JUMP_MIB,
    Fuzzer,
    header_fields,
    message_class,
    run_inputs,
)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@functools.cache
def fuzzer() -> Fuzzer:
    torch.set_num_threads(1)
    return Fuzzer(seed=0, systematic=True)


def item_index(name: str) -> int:
    return next(i for i, it in enumerate(fuzzer().items) if it.name == name)


def decode_or_format_error(item: int, blob: bytes) -> torch.Tensor | None:
    """Decompress ``blob`` with the model of seed file ``item``: ``None`` for a FormatError."""
    f = fuzzer()
    try:
        return codec.decompress(f.models[f.items[item].model], blob)
    except FormatError as e:
        assert str(e) and "\n" not in str(e)
        return None


def check_result(item: int, blob: bytes) -> None:
    """The decoder refuses ``blob`` or returns the original data of seed file ``item``; the
    only other acceptable result is data whose file is ``blob`` byte for byte."""
    f = fuzzer()
    item %= len(f.items)
    y = decode_or_format_error(item, blob)
    if y is not None and not torch.equal(y, f.items[item].x):
        assert f.reencodes_to(f.models[f.items[item].model], blob, y), blob.hex()


# ============================================================================ the campaign
def test_seeded_campaign_has_no_failures() -> None:
    """1,500 random-phase inputs of seed 0 (every mutation kind): zero failures."""
    f = fuzzer()
    start = len(f.systematic)
    report = run_inputs(f, range(start, start + 1500))
    assert report.num_failures == 0, report.failures[:5]
    assert report.count == 1500
    for kind in KIND_WEIGHTS:
        assert sum(report.kinds[kind].values()) >= 10, kind
    summary = report.summary()
    assert summary["outcomes"]["exact"] > 20 and summary["outcomes"]["FormatError"] > 1000
    assert summary["max_time_over_bound"] < 1.0
    assert report.peak_rss_mib - report.baseline_rss_mib < RSS_JUMP_MIB
    assert len(report.messages) >= 15  # the header, tiles, payload and checksum all refuse


@pytest.mark.parametrize(
    "name", ["img-tiled-4x8-b4", "txt-native-b8", "txt-tiled-21-b4-v2", "photo7-9x13-b2"]
)
def test_systematic_inputs_of_one_file(name: str) -> None:
    """The file unchanged, cut at every length, every header bit flipped, every version and
    flags byte: only the original data or a FormatError (a version-2 and two version-4
    files)."""
    f = fuzzer()
    item = item_index(name)
    indices = [n for n, entry in enumerate(f.systematic) if entry[1] == item]
    report = run_inputs(f, indices)
    assert report.num_failures == 0, report.failures[:5]
    kinds = report.kinds
    assert kinds["none"]["exact"] == 1
    assert kinds["truncate"]["FormatError"] == len(f.items[item].blob)  # every prefix refused
    # No other version reads a file: version 4 has no crc32 field and starts its stream from
    # the checksum, versions 2 and 3 have the field (and 2 a length per tile).
    assert kinds["header_byte"]["exact"] == 0
    assert kinds["header_byte"]["FormatError"] == 2 * 255
    assert kinds["header_bitflip"]["failures"] == 0


def swapped_axes(name: str) -> tuple[bytes, torch.Tensor]:
    """Seed file ``name`` (shape (1, 4, 8)) with its stored shape changed to (1, 8, 4) (two
    bytes), and the data that shape would give."""
    item = fuzzer().items[item_index(name)]
    dims = [fl for fl in header_fields(item.blob, (1, 4, 4)) if fl.name.startswith("dim")]
    assert item.blob[dims[1].start : dims[2].end] == b"\x04\x08"
    blob = item.blob[: dims[1].start] + b"\x08\x04" + item.blob[dims[2].end :]
    return blob, item.x.reshape(1, 8, 4)


@pytest.mark.parametrize("name", ["img-tiled-4x8-zero-b2", "img-tiled-4x8-const-b3"])
def test_shape_permutation_is_refused(name: str) -> None:
    """Format v1 let an edited shape field pass as the file of other data (the campaign found
    it: a constant image whose tiles line up, two axes swapped). Since v2 the checksum covers
    the shape, so the edit is refused."""
    blob, _ = swapped_axes(name)
    with pytest.raises(FormatError, match="checksum"):
        codec.decompress(fuzzer().models["image"], blob)


@pytest.mark.parametrize("version", [4, 3, 2])
def test_huge_geometry_is_refused_before_allocation(
    monkeypatch: pytest.MonkeyPatch, version: int
) -> None:
    """Shapes and tile counts are checked (and the body must hold a byte per tile but one:
    versions 3 and 4 pad a shorter stream, version 2 has a length per tile) before the codec
    cuts tiles or decodes anything."""

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("allocated before refusing the header")

    f = fuzzer()
    model = f.models["image"]
    fingerprint = model.fingerprint()[: container.FINGERPRINT_BYTES]
    monkeypatch.setattr(codec, "cut_tiles", forbidden)
    monkeypatch.setattr(codec, "decode_with_rest", forbidden)
    cases = {
        # 2^20 tiles need at least 2^20 - 1 body bytes
        (1, 4096, 4096): "at least 1048575 bytes" if version > 2 else "length of tile 0",
        (1, 1, 1 << 24): "tiles of",  # 2^22 tiles x D = 2^26 > 2^25
        (4096, 4096, 2): "more than",  # 2^25 values > 2^24
        (1, 5, 1 << 30): "axis 2 has",
        (1, 1, 1, 1, 1): "axes",
    }
    for shape, match in cases.items():
        geometry = container.write_varint(16) + bytes([len(shape)])
        geometry += b"".join(container.write_varint(n) for n in shape)
        blob = b"\xadM" + bytes([version]) + b"\x04\x03\x03" + geometry + fingerprint + bytes(4)
        with pytest.raises(FormatError, match=match) as e:
            codec.decompress(model, blob)
        assert str(e.value).startswith(("corrupt header", "truncated file")), str(e.value)
        assert "\n" not in str(e.value)


def test_message_class() -> None:
    assert message_class("truncated file: tile 3 needs 25 bytes, 2 left") == (
        "truncated file: tile # needs # bytes, # left"
    )
    assert message_class("this file was compressed with another model (fingerprint 0b25)") == (
        "this file was compressed with another model"
    )


# ============================================================================ properties
@given(blob=st.binary(max_size=200), name=st.sampled_from(["img-native-b4", "txt-native-b8"]))
@SETTINGS
def test_random_bytes_are_refused(blob: bytes, name: str) -> None:
    assert decode_or_format_error(item_index(name), blob) is None


@given(
    item=st.integers(0, 10**6),
    keep=st.sampled_from([2, 3, 4, 5, 14, 19]),
    tail=st.binary(max_size=80),
)
@SETTINGS
def test_valid_prefix_and_random_rest(item: int, keep: int, tail: bytes) -> None:
    blob = fuzzer().items[item % len(fuzzer().items)].blob
    check_result(item, blob[:keep] + tail)


mutations = st.lists(
    st.tuples(
        st.sampled_from(["flip", "set", "insert", "delete"]),
        st.integers(0, 10_000),
        st.integers(0, 255),
    ),
    min_size=1,
    max_size=4,
)


@given(item=st.integers(0, 10**6), ops=mutations)
@SETTINGS
def test_mutated_files_decode_exactly_or_are_refused(
    item: int, ops: list[tuple[str, int, int]]
) -> None:
    blob = bytearray(fuzzer().items[item % len(fuzzer().items)].blob)
    for op, where, value in ops:
        pos = where % (len(blob) + 1)
        if op == "insert":
            blob.insert(pos, value)
        elif not blob or pos == len(blob):
            continue
        elif op == "flip":
            blob[pos] ^= 1 << (value % 8)
        elif op == "set":
            blob[pos] = value
        else:
            del blob[pos]
    check_result(item, bytes(blob))
