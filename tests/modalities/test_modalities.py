"""Modalities (``ardm.modalities``): one strict reader each, exact round trips, names, units,
masks and pictures; the modality of a dataset or model is chosen once, from its dataset."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from ardm.coding.container import MAX_D
from ardm.data import TextAlphabet, dataset_spec
from ardm.data.audio import wav_bytes
from ardm.errors import DataError
from ardm.modalities.audio import AudioModality, save_waveforms, waveform_strip
from ardm.modalities.image import ImageModality, grid, image_mask, save_gif, save_grid
from ardm.modalities.modality import MAX_VALUES
from ardm.modalities.registry import modality_for, modality_of
from ardm.modalities.text import TextModality

TEXT = TextModality(alphabet=TextAlphabet(" abc\n"), length=4)
GRAY, RGB = ImageModality(1), ImageModality(3)
AUDIO = AudioModality(8000)


def _png(arr: np.ndarray, **options: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", **options)
    return buf.getvalue()


def _one_line_error(excinfo: pytest.ExceptionInfo[DataError], *needles: str) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg and all(n in msg for n in needles), msg
    return msg


# ---------------------------------------------------------------------------- registry
def test_the_modality_of_each_dataset() -> None:
    assert modality_of(dataset_spec("mnist")) == GRAY
    assert modality_of(dataset_spec("cifar10-subset")) == RGB
    text = modality_of(dataset_spec("english", seq_len=64))
    assert isinstance(text, TextModality) and text.length == 64 and text.alphabet.K == 27
    assert modality_of(dataset_spec("fsdd")) == AUDIO
    model = SimpleNamespace(config={"data": {"name": "english", "seq_len": 32}})
    assert modality_for(model) == TextModality(alphabet=text.alphabet, length=32)
    assert [(m.kind, m.unit, m.suffix, m.binary) for m in (GRAY, TEXT, AUDIO)] == [
        ("image", "bpd", ".png", True),
        ("text", "bpc", ".txt", False),
        ("audio", "bits/sample", ".wav", True),
    ]
    assert MAX_VALUES == MAX_D  # the file format's limit


def test_modalities_import_without_a_circle() -> None:
    """The image reader sits below the dataset readers: a fresh interpreter imports either first."""
    for first in ("ardm.data.images", "ardm.modalities.registry"):
        code = f"import {first}, ardm.data, ardm.modalities.registry"
        subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------- image
def test_images_round_trip_exactly() -> None:
    gray = np.arange(20, dtype=np.uint8).reshape(4, 5) * 12
    colour = np.arange(60, dtype=np.uint8).reshape(4, 5, 3) * 4
    x = GRAY.read(_png(gray), name="g.png")
    assert x.dtype == torch.uint8 and x.shape == (1, 4, 5) and np.array_equal(x[0].numpy(), gray)
    assert torch.equal(GRAY.read(GRAY.write(x), name="again"), x)
    y = RGB.read(_png(colour), name="c.png")
    assert y.shape == (3, 4, 5) and np.array_equal(y.permute(1, 2, 0).numpy(), colour)
    assert torch.equal(RGB.read(RGB.write(y), name="again"), y)


@pytest.mark.parametrize(
    ("mode", "model", "needles"),
    [
        ("RGBA", RGB, ("mode RGBA (8-bit colour with alpha)", "convert('RGB')")),
        ("P", RGB, ("mode P (palette)", "convert('RGB')")),
        ("LA", GRAY, ("mode LA", "convert('L')")),
        ("1", GRAY, ("mode 1 (1-bit black and white)", "convert('L')")),
        ("RGB", GRAY, ("mode RGB (8-bit colour), but this model codes L", "never converts")),
    ],
)
def test_other_image_modes_are_refused_with_how_to_convert(
    mode: str, model: ImageModality, needles: tuple[str, ...]
) -> None:
    """The one rule (compress, inpaint --input, dataset photos): never convert, say how to."""
    buf = io.BytesIO()
    Image.new(mode, (3, 2)).save(buf, format="PNG")
    with pytest.raises(DataError) as e:
        model.read(buf.getvalue(), name="in.png")
    _one_line_error(e, "in.png", *needles)


def test_image_masks() -> None:
    shape = (3, 4, 6)
    bottom = image_mask("bottom", shape, 0)
    assert bottom.shape == shape and bottom[:, :2].all() and not bottom[:, 2:].any()
    assert not image_mask("right", shape, 0)[:, :, 3:].any()
    assert (~image_mask("center", shape, 0)).sum() == 3 * 2 * 3
    random = image_mask("random", shape, 5)
    assert (~random).sum() == 36 and torch.equal(random, image_mask("random", shape, 5))
    assert torch.equal(RGB.region_mask("top", shape, 0), image_mask("top", shape, 0))
    with pytest.raises(DataError, match="inpaint needs an image model"):
        TEXT.region_mask("bottom", (4,), 0)


def test_grids_and_gifs(tmp_path: Path) -> None:
    x = torch.arange(5 * 2 * 3).reshape(5, 1, 2, 3) * 8  # (N, C, H, W)
    g = grid(x, nrow=3, pad=1)
    assert g.shape == (2 * 3 + 1, 3 * 4 + 1, 1)
    assert np.array_equal(g[1:3, 1:4, 0], x[0, 0].numpy())
    with Image.open(save_grid(x, tmp_path / "g.png", scale=2)) as im:
        assert im.mode == "L" and im.size == (2 * (3 * 5 + 2), 2 * (2 * 4 + 2))  # pad 2
    with Image.open(save_gif([x, 255 - x], tmp_path / "a.gif", nrow=5)) as im:
        assert im.n_frames == 2
    images = x[:2].expand(2, 3, 2, 3)  # (2, 3, 2, 3)
    known = torch.ones(3, 2, 3, dtype=torch.bool)
    path = RGB.save_inpainting(images, known, images, str(tmp_path / "i.png"))
    with Image.open(path) as im:  # rows: images, known part, completions
        assert im.size == (2 * (2 * 5 + 2), 2 * (3 * 4 + 2))


# ---------------------------------------------------------------------------- text
def test_text_round_trip_holes_and_items() -> None:
    x = TEXT.read(b"ab c\n", name="t.txt")
    assert x.tolist() == [1, 2, 0, 3, 4] and TEXT.write(x) == b"ab c\n"
    with pytest.raises(DataError) as e:
        TEXT.read(b"abd", name="t.txt")
    _one_line_error(e, "t.txt", "outside the alphabet")
    ids, known = TEXT.hole_mask("a_c", hole="_")
    assert known.tolist() == [True, False, True, False] and ids.tolist() == [1, 0, 3, 0]
    with pytest.raises(DataError, match="at most 4"):
        TEXT.hole_mask("abcab", hole="_")
    with pytest.raises(DataError, match="complete needs a text model"):
        GRAY.hole_mask("a_", hole="_")
    assert TEXT.items(torch.arange(10)).shape == (2, 4)
    assert GRAY.items(torch.zeros(3, 1, 2, 2)).shape == (3, 1, 2, 2)


def test_output_names_per_modality() -> None:
    assert [GRAY.output_name(b) for b in ("x.png", "x.bmp", "x", "x.txt")] == [
        "x.png", "x.png", "x.png", "x.txt.png",
    ]  # fmt: skip
    assert [TEXT.output_name(b) for b in ("x.md", "x.png", "x")] == ["x.md", "x.txt", "x.txt"]
    assert [AUDIO.output_name(b) for b in ("x.wav", "x.png", "x")] == ["x.wav"] * 3


# ---------------------------------------------------------------------------- audio
def test_audio_round_trip_and_rate(tmp_path: Path) -> None:
    samples = np.array([-32768, -1, 0, 1, 32767], dtype=np.int16)
    x = AUDIO.read(wav_bytes(samples, 8000), name="a.wav")
    assert x.tolist() == [0, 32767, 32768, 32769, 65535]
    assert AUDIO.write(x) == wav_bytes(samples, 8000)
    with pytest.raises(DataError) as e:
        AUDIO.read(wav_bytes(samples, 16000), name="fast.wav")
    _one_line_error(e, "fast.wav: 16000 Hz audio; the model is for 8000 Hz")
    line = AUDIO.save_samples(torch.stack([x, x]), str(tmp_path / "s.wav"), calls=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s_000.wav", "s_001.wav"]
    assert line.startswith("wrote 2 WAV samples (3 network calls each)")


def test_waveform_pictures(tmp_path: Path) -> None:
    samples = (np.sin(np.arange(400) / 5) * 1000).astype(np.int16)
    strip = waveform_strip(samples, width=40, height=20, known=np.arange(400) < 200)
    assert strip.shape == (20, 40, 3)
    assert (strip[:, :19] == 150).all(axis=-1).any() and not (strip[:, 21:] == 150).all(-1).any()
    path = save_waveforms([("a", samples, None), ("b", samples, None)], tmp_path / "w.png")
    with Image.open(path) as im:
        assert im.size == (800, 2 * (14 + 90))
