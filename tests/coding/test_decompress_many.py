"""Many integer-coder files (format v5) decoded together (:func:`codec.decompress_many`).

Files of different shapes and tile counts share one lockstep decode and give what each
gives alone; a corrupt file fails alone, with the one-line error it has alone; files of
other budgets or seeds, and of other versions, are decoded apart; ``files.decompress_files``
routes the v5 files there and keeps the input order and the name in its errors.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from ardm.coding import codec, container, files
from ardm.coding.lockstep import CodingSetup
from ardm.errors import FormatError
from ardm.models.ardm import ARDM
from ardm.portable.model import freeze
from tests.conftest import tiny_image_model

K, TILE = 8, (1, 6, 6)
SHAPES: list[tuple[int, ...]] = [(1, 6, 6), (1, 11, 13), (1, 3, 2), (1, 12, 6), (1, 6, 6)]
"""1, 6 (2 x 3, padded), 1 (padded), 2 and 1 tiles."""


@pytest.fixture(scope="module")
def model() -> ARDM:
    m = tiny_image_model(K=K, shape=TILE, seed=3)
    m.order_seed = 5
    m.tracker.set_all(np.linspace(3.0, 1.0, math.prod(TILE)))
    g = torch.Generator().manual_seed(0)
    m.portable = freeze(m, torch.randint(0, K, (8, *TILE), generator=g), passes=1)
    return m


def images(seed: int = 0, shapes: list[tuple[int, ...]] = SHAPES) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, K, shape, generator=g) for shape in shapes]


def blob(model: ARDM, x: torch.Tensor, budget: int = 4, version: int | None = None) -> bytes:
    out = codec.compress(model, x, budget=budget, version=version)
    assert isinstance(out, bytes)
    return out


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[list[int]]]:
    """The ``groups`` (tiles per stream) of every lockstep decode the codec makes."""
    seen: list[list[int]] = []
    decode = codec.decode_with_rest

    def counted(setup: CodingSetup, payloads: list[bytes]):  # type: ignore[no-untyped-def]
        seen.append(list(setup.groups or [1] * len(payloads)))
        return decode(setup, payloads)

    monkeypatch.setattr(codec, "decode_with_rest", counted)
    yield seen


def test_files_of_many_shapes_decode_together_as_alone(model: ARDM, calls: list[list[int]]) -> None:
    xs = images()
    blobs = [blob(model, x) for x in xs]
    assert all(container.unpack(b)[0].version == container.PORTABLE_VERSION for b in blobs)
    assert all(codec.batchable(b) for b in blobs)
    alone = [codec.decompress(model, b) for b in blobs]
    calls.clear()
    together = codec.decompress_many(model, blobs)
    assert calls == [[1, 6, 1, 2, 1]]  # one decode, one stream per file
    for x, a, t in zip(xs, alone, together, strict=True):
        assert isinstance(t, torch.Tensor)
        assert torch.equal(t, x) and torch.equal(a, x)
    calls.clear()
    decoded = files.decompress_files(model, blobs, [f"f{i}" for i in range(len(blobs))])
    assert calls == [[1, 6, 1, 2, 1]]
    assert all(torch.equal(d, x) for d, x in zip(decoded, xs, strict=True))


def test_a_corrupt_file_fails_alone(model: ARDM, calls: list[list[int]]) -> None:
    """Garbage in one file's tiles stays there (its checksum refuses it); a stream the ANS
    decoder refuses stops the decode of all, which then decodes them in halves."""
    xs = images(1)
    blobs = [blob(model, x) for x in xs]
    together = [[1, 6, 1, 2, 1]]
    cases = []
    for pos in (-3, 16):  # more than the checksum left; data that do not match it
        flipped = bytearray(blobs[1])
        flipped[pos] ^= 0x10
        cases.append((1, bytes(flipped), together))
    cases.append((2, blobs[2] + b"\x00", [*together, [1, 6], [1, 2, 1], [1], [2, 1]]))
    cases.append((3, blobs[3][:12], [[1, 6, 1, 1]]))  # a truncated header: never decoded
    for k, wrong, decodes in cases:
        batch = [*blobs]
        batch[k] = wrong
        with pytest.raises(FormatError) as alone:
            codec.decompress(model, wrong)
        calls.clear()
        out = codec.decompress_many(model, batch)
        assert calls == decodes
        for i, (x, got) in enumerate(zip(xs, out, strict=True)):
            if i == k:
                assert isinstance(got, FormatError) and str(got) == str(alone.value)
            else:
                assert isinstance(got, torch.Tensor) and torch.equal(got, x)
        names = [f"digit{i}.ardm" for i in range(len(batch))]
        with pytest.raises(FormatError) as e:
            files.decompress_files(model, batch, names)
        text = str(e.value)
        assert "\n" not in text and text == f"digit{k}.ardm: {alone.value}"


def test_other_budgets_seeds_versions_and_large_batches_decode_apart(
    model: ARDM, calls: list[list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    xs = images(2) + images(3)
    budgets = [4, 7, 4, 7, 2, 4, 7, 4, 7, 2]
    blobs = [blob(model, x, b) for x, b in zip(xs, budgets, strict=True)]
    model.order_seed = 9
    try:
        blobs[4] = blob(model, xs[4], 4)  # another order seed, the same budget as others
    finally:
        model.order_seed = 5
    blobs[9] = blob(model, xs[9], 2, version=container.VERSION)  # the float coder
    assert not codec.batchable(blobs[9]) and not codec.batchable(b"junk")
    calls.clear()
    out = codec.decompress_many(model, blobs)
    for o, x in zip(out, xs, strict=True):
        assert isinstance(o, torch.Tensor) and torch.equal(o, x)
    # budget 4 seed 5, budget 7, budget 4 seed 9; then the v4 file alone
    assert calls == [[1, 1, 1, 1], [6, 2, 6, 2], [1], [1]]
    monkeypatch.setattr(codec, "BATCH_TILES", 3)
    calls.clear()
    decoded = files.decompress_files(model, blobs, [f"f{i}" for i in range(len(blobs))])
    assert all(torch.equal(d, x) for d, x in zip(decoded, xs, strict=True))
    assert calls == [[1, 1, 1], [1], [6], [2], [6], [2], [1], [1]]  # 3 tiles, or one file
