"""Untrusted inputs: checkpoints, images, texts and compressed files from elsewhere, and
writes that are interrupted. Each is refused with the library's own error, naming the
problem, before anything large is allocated or any code from the file runs."""

from __future__ import annotations

import io
import os
import pickle
import resource
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile

from ardm.coding import codec, files
from ardm.data.images import read_png
from ardm.data.text import SHAKESPEARE_ALPHABET, TEXT8_ALPHABET, TextAlphabet, read_shakespeare
from ardm.errors import CheckpointError, DataError, FormatError
from ardm.filesystem import atomic_write_bytes
from ardm.modalities.image import ImageModality
from ardm.modalities.modality import MAX_VALUES
from ardm.training.checkpoint import FORMAT, load_checkpoint, save_checkpoint
from ardm.training.pretrained import load_model
from tests.conftest import tiny_image_model, tiny_text_model


# ============================================================================ checkpoints
class MarkerPayload:
    """Unpickling this object creates ``path`` (what a malicious checkpoint would do)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_malicious_checkpoint_runs_no_code(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    evil = {"format": FORMAT, "model": {}, "payload": MarkerPayload(marker)}
    torch.save(evil, tmp_path / "evil.pt")  # a torch zip file
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps(evil))  # a bare pickle
    (tmp_path / "run").mkdir()
    torch.save(evil, tmp_path / "run" / "ckpt.pt")  # a run folder
    for path in (tmp_path / "evil.pt", tmp_path / "evil.pkl"):
        with pytest.raises(CheckpointError, match="cannot read checkpoint"):
            load_checkpoint(path)
    with pytest.raises(CheckpointError):
        load_model(tmp_path / "run")
    assert not marker.exists()
    # The payload is live: a plain unpickler runs it (so the test above can fail).
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(MarkerPayload(control)))
    assert control.exists()


def test_truncated_or_foreign_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"model": {"w": torch.arange(1000.0)}, "step": 3})
    assert load_checkpoint(path)["step"] == 3
    blob = path.read_bytes()
    for n in (1, 64, len(blob) // 2, len(blob) - 100, len(blob) - 1):
        cut = tmp_path / f"cut{n}.pt"
        cut.write_bytes(blob[:n])
        with pytest.raises(CheckpointError):
            load_checkpoint(cut)
    other = tmp_path / "other.pt"
    torch.save({"w": torch.zeros(2)}, other)  # a torch file, not an ardm checkpoint
    with pytest.raises(CheckpointError, match="not an ardm checkpoint"):
        load_checkpoint(other)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_empty_checkpoint_file_is_a_checkpoint_error(tmp_path: Path) -> None:
    """torch.load's error for an empty file has an empty message."""
    (tmp_path / "ckpt.pt").write_bytes(b"")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "ckpt.pt")


def test_checkpoint_without_config_is_a_checkpoint_error(tmp_path: Path) -> None:
    """A well-formed checkpoint file lacking its config (hand-made or from another tool)."""
    save_checkpoint(tmp_path / "ckpt.pt", {"model": {}})
    with pytest.raises(CheckpointError):
        load_model(tmp_path / "ckpt.pt")


# ============================================================================ atomic writes
def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_interrupted_atomic_write_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "out" / "ckpt.pt"

    def fail_replace(src: str, dst: str) -> None:
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(os, "replace", fail_replace)
    with pytest.raises(OSError, match="simulated"):
        atomic_write_bytes(target, b"x" * 10_000)
    assert _listing(target.parent) == []  # no target, no temporary file


def test_write_interrupted_midway_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A KeyboardInterrupt after half the bytes: the old checkpoint survives intact."""
    target = tmp_path / "ckpt.pt"
    save_checkpoint(target, {"step": 1})
    before = target.read_bytes()
    real_fdopen = os.fdopen

    class HalfWriter(io.RawIOBase):
        def __init__(self, f: Any) -> None:
            self.f = f

        def write(self, data: Any) -> int:
            self.f.write(bytes(data)[: len(data) // 2])
            self.f.flush()
            raise KeyboardInterrupt

        def fileno(self) -> int:
            return int(self.f.fileno())

        def close(self) -> None:
            self.f.close()
            super().close()

    monkeypatch.setattr(os, "fdopen", lambda fd, mode: HalfWriter(real_fdopen(fd, mode)))
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(target, {"step": 2, "model": {"w": torch.zeros(10_000)}})
    monkeypatch.undo()
    assert _listing(tmp_path) == ["ckpt.pt"]
    assert target.read_bytes() == before and load_checkpoint(target)["step"] == 1


def test_failed_fsync_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail_fsync(fd: int) -> None:
        raise OSError("I/O error (simulated)")

    monkeypatch.setattr(os, "fsync", fail_fsync)
    with pytest.raises(OSError, match="simulated"):
        atomic_write_bytes(tmp_path / "a.bin", b"abc")
    assert _listing(tmp_path) == []


# ============================================================================ images
def png_bytes(width: int, height: int, *, color: int = 0, body: bytes | None = None) -> bytes:
    """A PNG whose IHDR claims ``width x height`` (8-bit, ``color`` 0 gray / 2 RGB); the
    image data is ``body`` (raw scanlines, deflated) or one short row of zeros."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, color, 0, 0, 0)
    idat = zlib.compress(body if body is not None else bytes(16), 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def readers() -> list[Any]:
    """Every way an image is read, all through the one strict reader: the image modality
    (both channel counts) on a file's bytes, as ``ardm compress`` and ``ardm inpaint --input``
    read it, and the dataset reader ``read_png``."""
    return [
        lambda p: ImageModality(3).read(files.read_input(str(p)), name=str(p)),
        lambda p: ImageModality(1).read(files.read_input(str(p)), name=str(p)),
        read_png,
    ]


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("size", [(100_000, 100_000), (9000, 9000), (8193, 8193), (1, 1 << 27)])
def test_huge_dimensions_are_refused_before_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: tuple[int, int]
) -> None:
    def no_decoding(self: Any) -> None:
        raise AssertionError("pixel data decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    path = tmp_path / "claims-huge.png"
    path.write_bytes(png_bytes(*size, color=2))
    for read in readers():
        with pytest.raises(DataError, match=r"too large|too many pixels") as e:
            read(path)
        assert str(path) in str(e.value)
        assert f"{size[0]}x{size[1]}" in str(e.value) or "pixels" in str(e.value)


def test_a_small_image_is_read(tmp_path: Path) -> None:
    path = tmp_path / "ok.png"
    Image.fromarray(np.full((3, 5, 3), 7, dtype=np.uint8)).save(path)
    assert readers()[0](path).shape == (3, 3, 5)
    assert read_png(path).shape == (3, 5, 3)


def test_decompression_bomb_allocates_nothing(tmp_path: Path) -> None:
    """A valid 8200 x 8200 gray PNG of zeros (67 MB of pixels in a 65 KB file)."""
    width = height = 8200
    assert width * height > MAX_VALUES
    rows = bytes(width + 1) * height  # filter byte 0 + a row of zeros, per row
    path = tmp_path / "bomb.png"
    path.write_bytes(png_bytes(width, height, color=0, body=rows))
    del rows
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for read in readers():
        with pytest.raises(DataError, match="8200x8200 pixels is too large"):
            read(path)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 32


def test_wrong_image_modes_name_the_mode(tmp_path: Path) -> None:
    cases = {
        "sixteen.png": Image.fromarray(np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000),
        "float.tiff": Image.fromarray(np.ones((4, 4), dtype=np.float32)),
        "cmyk.tiff": Image.new("CMYK", (4, 4)),
        "int32.tiff": Image.fromarray(np.ones((4, 4), dtype=np.int32)),
    }
    for name, im in cases.items():
        path = tmp_path / name
        im.save(path)
        mode = Image.open(path).mode
        for read in readers():
            with pytest.raises(DataError, match=f"mode {mode}"):
                read(path)
    (tmp_path / "text.png").write_text("not an image")
    for read in readers():
        with pytest.raises(DataError):
            read(tmp_path / "text.png")
    for read in readers():
        with pytest.raises(DataError, match=r"no such file|cannot read"):
            read(tmp_path / "missing.png")


def _small_png() -> bytes:
    buf = io.BytesIO()
    pixels = np.arange(6 * 5 * 3, dtype=np.uint8).reshape(6, 5, 3) * 3
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


SMALL_PNG = _small_png()


def test_broken_png_chunks_are_data_errors(tmp_path: Path) -> None:
    """Pillow raises ValueError / SyntaxError (not OSError) for these: both readers must
    still give a DataError."""
    assert SMALL_PNG[12:16] == b"IHDR" and SMALL_PNG[37:41] == b"IDAT"
    cases = {
        "IHDR length 0": SMALL_PNG[:8] + bytes(4) + SMALL_PNG[12:],
        "IDAT length 5": SMALL_PNG[:33] + struct.pack(">I", 5) + SMALL_PNG[37:],
        "IDAT length 3": SMALL_PNG[:33] + struct.pack(">I", 3) + SMALL_PNG[37:],
    }
    path = tmp_path / "broken.png"
    for name, blob in cases.items():
        path.write_bytes(blob)
        for read in readers():
            with pytest.raises(DataError) as e:
                read(path)
            assert str(path) in str(e.value), name


@given(
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=4),
    cut=st.none() | st.integers(0, 10_000),
)
@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_corrupt_png_is_a_data_error(
    tmp_path: Path, edits: list[tuple[int, int]], cut: int | None
) -> None:
    """Byte substitutions and truncations of a valid PNG: an image or a DataError."""
    blob = bytearray(SMALL_PNG)
    for where, value in edits:
        blob[where % len(blob)] = value
    if cut is not None:
        blob = blob[: cut % len(blob)]
    path = tmp_path / "m.png"
    path.write_bytes(bytes(blob))
    for read in readers():
        try:
            out = read(path)
        except DataError as e:
            assert str(e) and "\n" not in str(e)
        else:
            assert out.dtype in (torch.uint8, np.uint8)


# ============================================================================ text
def test_foreign_characters_are_named() -> None:
    with pytest.raises(DataError) as e:
        TextAlphabet(TEXT8_ALPHABET).encode("héllo wörld, héllo!")
    message = str(e.value)
    for shown in ("'é' x2", "'ö' x1", "',' x1", "'!' x1"):
        assert shown in message
    assert message.startswith("5 characters outside the alphabet of 27 symbols (4 distinct)")
    many = "".join(chr(0x4E00 + i) for i in range(8))  # 8 distinct CJK characters
    with pytest.raises(DataError, match="and 3 more"):
        TextAlphabet(TEXT8_ALPHABET).encode(many)


def test_text_file_with_foreign_or_invalid_bytes(tmp_path: Path) -> None:
    path = tmp_path / "input.txt"
    path.write_text("First Citizen:\nBefore we proceed — hear me speak.\n", encoding="utf-8")
    assert "—" not in SHAKESPEARE_ALPHABET
    with pytest.raises(DataError, match="'—' x1") as e:
        read_shakespeare(path, "train")
    assert str(path) in str(e.value)
    path.write_bytes(b"abc\xff\xfedef")
    with pytest.raises(DataError, match="not UTF-8 text"):
        read_shakespeare(path, "train")


# ============================================================================ compressed files
def test_file_of_another_model_is_refused() -> None:
    """Same architecture, other weights; and a text model's file given to an image model."""
    ours, theirs = tiny_image_model(K=16, seed=0), tiny_image_model(K=16, seed=1)
    x = torch.randint(0, 16, ours.shape, generator=torch.Generator().manual_seed(0))
    blob = codec.compress(theirs, x, budget=4)
    assert isinstance(blob, bytes)
    with pytest.raises(FormatError, match="compressed with another model"):
        codec.decompress(ours, blob)
    text = tiny_text_model(K=5, L=6)
    text_blob = codec.compress(text, torch.zeros(6, dtype=torch.long), budget=2)
    assert isinstance(text_blob, bytes)
    with pytest.raises(FormatError, match="another model"):
        codec.decompress(ours, text_blob)
