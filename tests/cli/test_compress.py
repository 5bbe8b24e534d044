"""``ardm compress`` / ``ardm decompress`` end to end on tiny real checkpoints.

Round trips (model-sized PNG, tiled PNG, text, WAV audio on a mixture model, stdin/stdout,
several files into a folder, ``--verify``), ``ardm sample`` writing WAV files, and every user
mistake as a one-line error with exit status 2.
"""

from __future__ import annotations

import io
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ardm.cli.commands import main
from ardm.coding import container, files
from ardm.data import TextAlphabet
from ardm.errors import DataError
from ardm.modalities.image import ImageModality, png_bytes, read_image
from ardm.modalities.text import TextModality, read_text
from tests.training.test_train import TINY

TEXT = "the quick brown fox jumps over the lazy dog and keeps running far away"  # 70 chars


def _train(out: Path, preset: str, overrides: list[str]) -> Path:
    args = ["train", "--preset", preset, "--out", str(out), "--device", "cpu", "--quiet"]
    for s in overrides:
        args += ["--set", s]
    assert main(args) == 0
    return out


@pytest.fixture(scope="module")
def image_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(
        tmp_path_factory.mktemp("mnist"),
        "mnist-tiny",
        [*TINY, "train.steps=2", "train.calibrate_passes=0"],
    )


@pytest.fixture(scope="module")
def text_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tiny = [
        "model.transformer.dim=16",
        "model.transformer.depth=1",
        "model.transformer.heads=2",
        "data.seq_len=32",
        "train.batch_size=4",
        "train.eval_items=8",
        "train.eval_every=0",
        "train.steps=2",
        "train.calibrate_passes=0",
    ]
    return _train(tmp_path_factory.mktemp("english"), "english-tiny", tiny)


@pytest.fixture(scope="module")
def audio_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DMoL WaveNet on 64-sample FSDD clips (8 kHz): coded as two bytes per sample."""
    tiny = [
        "data.seq_len=64",
        "model.wavenet.channels=8",
        "model.wavenet.blocks=2",
        "model.wavenet.dilation_cycle=2",
        "train.steps=2",
        "train.batch_size=2",
        "train.calibrate_passes=0",
        "train.eval_items=2",
    ]
    return _train(tmp_path_factory.mktemp("fsdd"), "fsdd-tiny", tiny)


def _wav(path: Path, n: int, *, rate: int = 8000, seed: int = 0) -> np.ndarray:
    """A mono 16-bit WAV of ``n`` samples (a random walk, like speech at low volume)."""
    from ardm.data.audio import wav_bytes

    rng = np.random.default_rng(seed)
    samples = np.clip(np.cumsum(rng.normal(0, 400, n)), -32768, 32767).astype(np.int16)
    path.write_bytes(wav_bytes(samples, rate))
    return samples


def _samples(path: Path) -> np.ndarray:
    from ardm.data.audio import read_wav

    samples, rate = read_wav(path.read_bytes(), name=path.name)
    assert rate == 8000 and samples.dtype == np.int16 and samples.ndim == 1
    return samples


def _png(path: Path, h: int, w: int, *, mode: str = "L", seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (h, w) if mode == "L" else (h, w, 3)
    arr = (rng.random(shape) * 255).astype(np.uint8)
    arr[: h // 2] = 0  # some structure, like a digit's empty border
    Image.fromarray(arr).save(path)
    return arr


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.mode in ("L", "RGB")
        return np.array(im)


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("ardm: error: ")
    return err


# ---------------------------------------------------------------------------- round trips
@pytest.mark.parametrize(("h", "w"), [(28, 28), (40, 50)])
def test_png_round_trip_beside_the_input(image_run: Path, tmp_path: Path, h: int, w: int) -> None:
    arr = _png(tmp_path / "x.png", h, w)
    model = ["--model", str(image_run)]
    assert main(["compress", str(tmp_path / "x.png"), *model, "--budget", "6", "--quiet"]) == 0
    blob = (tmp_path / "x.png.ardm").read_bytes()
    assert blob[:3] == b"\xadM" + bytes([container.VERSION])
    assert bool(blob[3] & 0b100) == ((h, w) != (28, 28))  # SHAPE flag: tiled, true size stored
    (tmp_path / "x.png").rename(tmp_path / "original.png")
    assert main(["decompress", str(tmp_path / "x.png.ardm"), *model, "--quiet"]) == 0
    assert np.array_equal(_pixels(tmp_path / "x.png"), arr)


def test_text_round_trip_and_verify(
    text_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "note.txt"
    src.write_bytes(TEXT.encode())  # 70 characters: three tiles of the 32-character model
    model = ["--model", str(text_run)]
    argv = ["compress", str(src), "-o", str(tmp_path / "note.ardm"), *model, "--budget", "4"]
    assert main([*argv, "--verify", "--quiet"]) == 0
    summary = capsys.readouterr().out
    assert "compressed 1 file: 70 -> " in summary and "bpc" in summary and "verified" in summary
    src.rename(tmp_path / "original.txt")
    assert main(["decompress", str(tmp_path / "note.ardm"), *model, "--quiet"]) == 0
    assert (tmp_path / "note.txt").read_bytes() == TEXT.encode()  # default: beside the input


def test_wav_round_trip_and_verify(
    audio_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = ["--model", str(audio_run)]
    for name, n in (("clip.wav", 150), ("native.wav", 64)):  # 3 tiles (last padded); 1 tile
        samples = _wav(tmp_path / name, n, seed=n)
        out = tmp_path / f"{name}.ardm"
        argv = ["compress", str(tmp_path / name), "-o", str(out), *model, "--budget", "6"]
        assert main([*argv, "--verify", "--quiet"]) == 0
        assert "verified" in capsys.readouterr().out
        header, _ = container.unpack(out.read_bytes())
        assert header.kind == "audio" and header.shape == (None if n == 64 else (n,))
        original = (tmp_path / name).read_bytes()
        (tmp_path / name).unlink()
        assert main(["decompress", str(out), *model, "--quiet"]) == 0  # beside it: name.wav
        assert np.array_equal(_samples(tmp_path / name), samples)
        assert (tmp_path / name).read_bytes() == original  # a canonical WAV comes back as is


def test_wav_at_another_rate_is_refused(
    audio_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _wav(tmp_path / "fast.wav", 100, rate=16000)
    argv = ["compress", str(tmp_path / "fast.wav"), "--model", str(audio_run), "--quiet"]
    assert main(argv) == 2
    assert "fast.wav: 16000 Hz audio; the model is for 8000 Hz" in _error(capsys)
    assert not (tmp_path / "fast.wav.ardm").exists()


def test_sample_writes_wav_files(audio_run: Path, tmp_path: Path) -> None:
    argv = ["sample", str(audio_run), "--budget", "4", "--seed", "1"]
    assert main([*argv, "-n", "2", "-o", str(tmp_path / "out.wav")]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out_000.wav", "out_001.wav"]
    for p in tmp_path.iterdir():
        assert len(_samples(p)) == 64
    assert main([*argv, "-n", "1", "-o", str(tmp_path / "one.wav")]) == 0
    assert len(_samples(tmp_path / "one.wav")) == 64
    assert not (tmp_path / "one_000.wav").exists()


def test_stdin_to_stdout(
    image_run: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    arr = _png(tmp_path / "x.png", 28, 28, seed=1)
    model = ["--model", str(image_run)]
    monkeypatch.setattr(
        sys, "stdin", io.TextIOWrapper(io.BytesIO((tmp_path / "x.png").read_bytes()))
    )
    assert main(["compress", "-", "-o", "-", *model, "--budget", "5"]) == 0
    out = capsysbinary.readouterr()
    assert out.out[:2] == b"\xadM" and b"compressed 1 file" in out.err  # summary on stderr
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(out.out)))
    assert main(["decompress", "-", *model]) == 0  # default output for stdin: stdout
    png = capsysbinary.readouterr().out
    with Image.open(io.BytesIO(png)) as im:
        assert im.format == "PNG" and np.array_equal(np.array(im), arr)


def test_several_files_into_a_directory(image_run: Path, tmp_path: Path) -> None:
    shapes = {"a": (28, 28), "b": (28, 28), "c": (28, 28), "d": (30, 17)}
    arrays = {n: _png(tmp_path / f"{n}.png", *s, seed=i) for i, (n, s) in enumerate(shapes.items())}
    model = ["--model", str(image_run)]
    pngs = [str(tmp_path / f"{n}.png") for n in shapes]
    packed = tmp_path / "packed"
    assert main(["compress", *pngs, "-o", str(packed), *model, "--budget", "4", "--quiet"]) == 0
    assert sorted(p.name for p in packed.iterdir()) == [f"{n}.ardm" for n in shapes]
    blobs = sorted(str(p) for p in packed.iterdir())
    assert main(["decompress", *blobs, "-o", str(tmp_path / "back"), *model, "--quiet"]) == 0
    for n, arr in arrays.items():
        assert np.array_equal(_pixels(tmp_path / "back" / f"{n}.png"), arr)
    # a file of a batch is the file of that item alone, and decodes alone
    alone = ["compress", pngs[1], "-o", str(tmp_path / "b_alone.ardm"), *model, "--budget", "4"]
    assert main([*alone, "--quiet"]) == 0
    assert (tmp_path / "b_alone.ardm").read_bytes() == (packed / "b.ardm").read_bytes()
    one = ["decompress", str(packed / "b.ardm"), "-o", str(tmp_path / "b_alone.png"), *model]
    assert main(one) == 0
    assert np.array_equal(_pixels(tmp_path / "b_alone.png"), arrays["b"])


def test_overwrite_needs_force(
    image_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _png(tmp_path / "x.png", 28, 28)
    argv = ["compress", str(tmp_path / "x.png"), "--model", str(image_run), "--budget", "3"]
    (tmp_path / "x.png.ardm").write_bytes(b"precious")
    assert main([*argv, "--quiet"]) == 2
    assert "x.png.ardm exists; use --force" in _error(capsys)
    assert (tmp_path / "x.png.ardm").read_bytes() == b"precious"
    assert main([*argv, "--quiet", "--force"]) == 0
    assert (tmp_path / "x.png.ardm").read_bytes()[:2] == b"\xadM"
    # decompress refuses to overwrite the original image
    dec = ["decompress", str(tmp_path / "x.png.ardm"), "--model", str(image_run), "--quiet"]
    assert main(dec) == 2
    assert "x.png exists; use --force" in _error(capsys)


def test_verify_reports_a_mismatch(
    image_run: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import ardm.coding.codec as codec

    real = codec.decompress
    monkeypatch.setattr(codec, "decompress", lambda model, blob, **kw: real(model, blob, **kw) ^ 1)
    _png(tmp_path / "x.png", 28, 28)
    argv = ["compress", str(tmp_path / "x.png"), "--model", str(image_run), "--budget", "3"]
    assert main([*argv, "--verify", "--quiet"]) == 2
    assert "--verify failed" in _error(capsys)
    assert not (tmp_path / "x.png.ardm").exists()  # nothing unverified is written


# ---------------------------------------------------------------------------- user errors
def test_wrong_inputs_are_one_line_errors(
    image_run: Path, text_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    img, txt = ["--model", str(image_run)], ["--model", str(text_run)]
    _png(tmp_path / "rgb.png", 28, 28, mode="RGB")
    Image.new("P", (28, 28)).save(tmp_path / "pal.png")
    Image.new("I;16", (28, 28)).save(tmp_path / "deep.png")
    (tmp_path / "bad.txt").write_text("Hello world\n")
    (tmp_path / "good.txt").write_text(TEXT)
    (tmp_path / "empty.txt").write_text("")
    _png(tmp_path / "x.png", 28, 28)
    assert main(["compress", str(tmp_path / "x.png"), *img, "--budget", "4", "--quiet"]) == 0
    assert main(["compress", str(tmp_path / "good.txt"), *txt, "--budget", "4", "--quiet"]) == 0
    blob = (tmp_path / "x.png.ardm").read_bytes()
    (tmp_path / "flip.ardm").write_bytes(blob[:20] + bytes([blob[20] ^ 0x10]) + blob[21:])
    (tmp_path / "cut.ardm").write_bytes(blob[: len(blob) // 2])
    (tmp_path / "head.ardm").write_bytes(blob[:9])
    capsys.readouterr()

    cases: list[tuple[list[str], str]] = [
        (["compress", "rgb.png", *img], "image mode RGB (8-bit colour), but this model codes L"),
        (["compress", "pal.png", *img], "image mode P (palette)"),
        (["compress", "deep.png", *img], "16-bit gray"),
        (["compress", "bad.txt", *txt], "characters outside the alphabet"),
        (["compress", "empty.txt", *txt], "empty file"),
        (["compress", "x.png", *txt], "not UTF-8 text"),
        (["compress", "good.txt", *img], "cannot read it as an image"),
        (["compress", "missing.png", *img], "missing.png: no such file"),
        (["compress", "x.png", "good.txt", "-", *img], "works only as the single input"),
        (["compress", "x.png", "rgb.png", "-o", "-", *img], "works only with a single input"),
        (["decompress", "flip.ardm", *img], "flip.ardm: "),
        (["decompress", "cut.ardm", *img], "cut.ardm: "),
        (["decompress", "head.ardm", *img], "truncated file"),
        (["decompress", "good.txt.ardm", *img], "compressed with another model"),
        (["decompress", "x.png", *img], "not an ardm compressed file"),
    ]
    for argv, message in cases:
        paths = [str(tmp_path / a) if a.endswith((".png", ".txt", ".ardm")) else a for a in argv]
        out = [] if "-o" in argv else ["-o", str(tmp_path / "out"), "--force"]
        assert main([*paths, *out, "--quiet"]) == 2, argv
        err = _error(capsys)
        assert message in err, (argv, err)
    assert not (tmp_path / "out").exists()  # no error left a partial output behind


def test_text_error_suggests_the_alphabet(text_run: Path, tmp_path: Path) -> None:
    alphabet = TextAlphabet(" abcdefghijklmnopqrstuvwxyz")
    with pytest.raises(DataError) as e:
        read_text(b"Hello\n", alphabet, name="h.txt")
    msg = str(e.value)
    assert "h.txt" in msg and "'\\n'" in msg and "' abcdefghijklmnopqrstuvwxyz'" in msg
    assert "newline" in msg and "\n" not in msg


def test_image_reader_is_strict_and_exact(tmp_path: Path) -> None:
    arr = _png(tmp_path / "rgb.png", 5, 7, mode="RGB")
    x = read_image((tmp_path / "rgb.png").read_bytes(), channels=3, name="rgb.png")
    assert x.dtype == torch.uint8 and x.shape == (3, 5, 7)
    assert np.array_equal(x.permute(1, 2, 0).numpy(), arr)
    assert np.array_equal(np.array(Image.open(io.BytesIO(png_bytes(x)))), arr)
    Image.new("L", (4, 4)).save(tmp_path / "t.png", transparency=0)
    Image.new("L", (4, 4)).save(tmp_path / "j.jpg")
    for name, message in [("t.png", "transparent"), ("j.jpg", "lossy")]:
        with pytest.raises(DataError, match=message):
            read_image((tmp_path / name).read_bytes(), channels=1, name=name)
    buf = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buf, format="PNG")
    # a header that claims 2^13 x 2^12 pixels is refused before any pixel is decoded
    png = bytearray(buf.getvalue())
    png[16:24] = (1 << 13).to_bytes(4, "big") + (1 << 12).to_bytes(4, "big")  # IHDR width, height
    png[29:33] = zlib.crc32(png[12:29]).to_bytes(4, "big")  # IHDR checksum
    with pytest.raises(DataError, match="8192x4096 pixels is too large"):
        read_image(bytes(png), channels=3, name="big.png")


def test_output_names() -> None:
    img = ImageModality(channels=1)
    txt = TextModality(alphabet=TextAlphabet("ab"), length=8)
    assert files.compressed_name("d/x.png", in_directory=False) == "x.png.ardm"
    assert files.compressed_name("d/x.png", in_directory=True) == "x.ardm"
    assert files.decompressed_name("d/x.png.ardm", img) == "x.png"
    assert files.decompressed_name("x.ardm", img) == "x.png"
    assert files.decompressed_name("x.bmp.ardm", img) == "x.png"
    assert files.decompressed_name("x.ardm", txt) == "x.txt"
    assert files.decompressed_name("x.md.ardm", txt) == "x.md"
    assert files.decompressed_name("x.png.ardm", txt) == "x.txt"
    with pytest.raises(DataError, match="both be written"):
        files.output_paths(["a/x.png", "b/x.png"], "out", lambda p, d: "x.ardm", force=True)


def test_a_model_with_a_portable_form_codes_on_the_cpu_whatever_the_device(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--device`` naming another device (here ``meta``, present on every machine): a shipped
    model (it has a portable form) still codes on the CPU, says so, and its file round-trips."""
    from ardm.data.items import model_items
    from ardm.training.pretrained import load_model

    digit = model_items(load_model("mnist"), "test", 1)[0]  # (1, 28, 28)
    src = tmp_path / "d.png"
    src.write_bytes(png_bytes(digit.to(torch.uint8)))
    out, back = tmp_path / "d.ardm", tmp_path / "back.png"
    common = ["--device", "meta", "--quiet"]
    assert (
        main(["compress", str(src), "-o", str(out), "--model", "mnist", "--budget", "5", *common])
        == 0
    )
    assert "integer coder runs on the CPU, not on meta" in capsys.readouterr().err
    assert main(["decompress", str(out), "-o", str(back), *common]) == 0
    again = read_image(back.read_bytes(), channels=1, name="back.png")
    assert torch.equal(again.long(), digit.long())
