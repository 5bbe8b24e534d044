"""Photos through the command line with the shipped natural-photo model and no ``--model``:
a colour image larger than the CIFAR tile goes to ``kodak-photo`` (format v6, blocks in waves
given the pixels above and left), any size round-trips, bad images get one-line errors."""

from __future__ import annotations

import io
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ardm
from ardm.cli.commands import main
from ardm.coding.container import CHAIN_VERSION, SEEDED_CHAIN_VERSION, unpack
from ardm.defaults import PHOTO_MODEL
from tests.cli.cross_machine import assert_decodes_elsewhere
from tests.cli.test_text_files import one_line_error
from tests.coding.chain_versions import as_v6

GOLDEN = Path(__file__).resolve().parents[1] / "golden"


def photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A photo-like ``(h, w, 3)`` uint8 image: smooth colour gradients, an edge, sensor noise
    (numpy's PCG64: the same pixels on every machine and release)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    base = np.stack([60 + 2.0 * y, 120 + 1.5 * x, 200 - y - x], axis=-1)
    base[(x > w / 2) & (y > h / 3)] -= 50  # an object's edge
    noisy = base + rng.normal(0, 3, (h, w, 3))
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def png(arr: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def test_a_photo_round_trips_without_naming_a_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "photo.png"
    src.write_bytes(png(photo(40, 57)))
    assert main(["compress", str(src), "--quiet"]) == 0
    assert f"model {PHOTO_MODEL}" in capsys.readouterr().out
    packed = tmp_path / "photo.png.ardm"
    header, _ = unpack(packed.read_bytes())
    assert header.version == CHAIN_VERSION and header.shape == (3, 40, 57)
    src.rename(tmp_path / "original.png")
    assert main(["decompress", str(packed), "--quiet"]) == 0
    got = np.array(Image.open(tmp_path / "photo.png"))
    assert np.array_equal(got, np.array(Image.open(tmp_path / "original.png")))


@pytest.mark.parametrize("h, w", [(1, 1), (1, 30), (30, 1), (25, 33), (24, 24)])
def test_photos_of_any_size_round_trip(h: int, w: int) -> None:
    from ardm.coding.codec import compress, decompress

    model = ardm.load(PHOTO_MODEL)
    x = torch.from_numpy(photo(h, w, seed=h * 100 + w)).permute(2, 0, 1).contiguous()
    blob = compress(model, x, budget=2)
    assert isinstance(blob, bytes) and unpack(blob)[0].version == CHAIN_VERSION
    assert torch.equal(decompress(model, blob), x.long())


def test_bad_photos_get_one_line_errors_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    arr = photo(40, 40)
    rgba = np.concatenate([arr, np.full((40, 40, 1), 255, np.uint8)], axis=-1)
    huge = bytearray(png(photo(1, 1)))
    huge[16:24] = (10000).to_bytes(4, "big") * 2  # IHDR: 10000 x 10000 pixels
    huge[29:33] = zlib.crc32(huge[12:29]).to_bytes(4, "big")  # the IHDR checksum
    deep, pal = io.BytesIO(), io.BytesIO()
    Image.fromarray(np.full((40, 40), 40000, np.uint16)).save(deep, format="PNG")
    Image.fromarray(arr).convert("P").save(pal, format="PNG")
    whole = png(arr)
    cases = {
        "rgba.png": (png(rgba), "RGBA (8-bit colour with alpha)"),
        "palette.png": (pal.getvalue(), "P (palette)"),
        "huge.png": (bytes(huge), "10000x10000 pixels is too large"),
        "deep.png": (deep.getvalue(), "16-bit"),
        "cut.png": (whole[: len(whole) // 2], "cannot decode its pixels"),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        assert main(["compress", str(tmp_path / name)]) == 2, name
        err = one_line_error(capsys)
        assert name in err and message in err, (name, err)
    assert not list(tmp_path.glob("*.ardm"))


def test_the_shipped_photo_model_decodes_under_other_kernels_threads_and_batches(
    tmp_path: Path,
) -> None:
    x = torch.from_numpy(photo(40, 56, seed=3)).permute(2, 0, 1).contiguous()
    assert_decodes_elsewhere(PHOTO_MODEL, x, tmp_path, budget=2)


@pytest.mark.parametrize(
    ("name", "golden", "version"),
    [
        ("kodak-photo-1", "v6_kodak-photo-1_40x56_budget2.ardm", 6),
        ("kodak-photo-2", "v7_kodak-photo-2_40x56_budget2.ardm", 7),
        ("kodak-photo-2", "v9_kodak-photo-2_40x56_budget2.ardm", 9),
        ("kodak-photo", "v9_kodak-photo_40x56_budget2.ardm", 9),
    ],
)
def test_the_golden_photo_files_decode_and_encode_byte_for_byte_on_this_machine(
    name: str, golden: str, version: int
) -> None:
    """Made on other machines (AMD EPYC, AVX2; version 9: AVX-512, sessions 13 and 14) by
    ``compress(model, photo(40, 56, seed=1), budget=2)``: this CPU must decode them and write
    the same bytes (version 7: with ``version=7``, the blocks in seeded orders).
    ``kodak-photo-1`` and ``kodak-photo-2`` are the earlier photo models, still shipped so that
    their files decode; ``ardm decompress`` finds each file's model by the fingerprint it
    carries."""
    from ardm.coding.codec import compress, decompress
    from ardm.defaults import model_for_file

    model = ardm.load(name)
    x = torch.from_numpy(photo(40, 56, seed=1)).permute(2, 0, 1).contiguous()
    path = GOLDEN / golden
    blob = path.read_bytes()
    assert blob[2] == version  # v6: written before version 7 stored the context (the model's)
    assert model_for_file(blob, name=path.name) == name
    assert torch.equal(decompress(model, blob), x.long())
    again = compress(model, x, budget=2, version=9 if version == 9 else 7)
    assert again[2] == (CHAIN_VERSION if version == 9 else SEEDED_CHAIN_VERSION)
    assert (as_v6(again, model.context) if version == 6 else again) == blob
    assert torch.equal(decompress(model, again), x.long())
