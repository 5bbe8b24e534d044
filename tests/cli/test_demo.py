"""The shipped models load (checksums verified) and the demo's compression table round-trips."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ardm.cli.demo import compression_rows
from ardm.training.pretrained import load_model, shipped_names

SHIPPED = (
    "mnist",
    "fashion-mnist",
    "english",
    "english-bytes",
    "english-bytes-1",
    "english-bytes-2",
    "english-bytes-3",
    "english-bytes-4",
    "cifar10-subset",
    "kodak-photo",
    "kodak-photo-1",
    "kodak-photo-2",
    "fsdd",
    "fsdd-1",
    "fsdd-mixture",
    "fsdd-mixture-1",
)


def test_shipped_models_are_present() -> None:
    assert set(SHIPPED) <= set(shipped_names())


@pytest.mark.parametrize(
    ("name", "items", "most"),
    [
        ("mnist", 2, 8),
        ("english", 1, 8),
        ("cifar10-subset", 1, 8),
        ("kodak-photo", 1, 8),
        ("fsdd", 1, 16),
    ],
)
def test_demo_compression_rows(name: str, items: int, most: int) -> None:
    """Every shipped kind: the model's files decode to the input (``compression_rows``
    checks), with a plausible size, next to the classical codecs of that kind."""
    model = load_model(name)
    rows = compression_rows(model, name, items=items, budgets=(3,))
    ours = rows[0]
    assert ours["codec"].startswith(f"ardm {name}, 3 calls")
    assert 0 < ours["bpd"] < most
    classical = {r["codec"] for r in rows[1:]}
    expected = {
        "image": {"PNG", "WebP lossless"},
        "text": {"xz", "bzip2"},
        "audio": {"WAV (16-bit PCM)", "xz (raw samples)"},
    }[model.kind]
    assert expected <= classical


def test_files_of_the_first_release_decode_or_say_why() -> None:
    """A file made by the first release's shipped ``mnist`` model (format v2, budget 20, test
    image 0) on a machine with AVX-512. The model and its fingerprint are today's (new model
    settings stay out of the fingerprint), so one of two things is true, never a third:

    * this CPU's float kernels give that machine's bits: the file decodes to the test image;
    * they do not (an AVX2-only CPU, say): decoding raises a one-line ``FormatError`` that says
      the file was made by the float coder and may only decode on the
      machine type that made it. Wrong data never comes out.
    """
    from ardm.coding.codec import decompress
    from ardm.data.items import model_items
    from ardm.errors import FormatError

    model = load_model("mnist")
    assert model.fingerprint()[:4].hex() == "07477916"
    blob = (Path(__file__).parents[1] / "golden" / "shipped_mnist_v2_budget20.ardm").read_bytes()
    try:
        x = decompress(model, blob)
    except FormatError as e:
        message = str(e)
        assert "\n" not in message
        assert "made by the float coder (format v2)" in message
        assert "may only decode on the machine type that made it" in message
    else:
        assert torch.equal(x, model_items(model, "test", 1)[0])


def test_demo_compression_rows_for_audio() -> None:
    """The demo's audio table: real test clips coded by an (untrained) tiny model and checked,
    next to WAV, FLAC, xz and zstd on the same clips."""
    from ardm.config import load_config
    from ardm.models.build import build_model

    cfg = load_config(
        "fsdd-tiny",
        [
            "data.seq_len=256",
            "model.wavenet.channels=8",
            "model.wavenet.blocks=2",
            "model.wavenet.dilation_cycle=2",
            "model.mixtures=3",
        ],
    )
    model = build_model(cfg).eval()
    rows = compression_rows(model, "tiny-audio", items=1, budgets=(2,))
    assert rows[0]["codec"].startswith("ardm tiny-audio, 2 calls per 256-sample window")
    assert 0 < rows[0]["bpd"] < 20  # bits per sample, headers included
    names = {r["codec"] for r in rows[1:]}
    assert {"WAV (16-bit PCM)", "xz (raw samples)"} <= names


def test_demo_audio_pictures(tmp_path: Path) -> None:
    """The demo's audio section: WAV samples at each budget, an infill of a test clip's second
    half (the given half kept exactly) and one waveform picture of them all."""
    from PIL import Image

    from ardm.cli.demo import pictures
    from ardm.config import load_config
    from ardm.data.audio import classes_to_samples
    from ardm.data.items import model_items
    from ardm.models.build import build_model

    cfg = load_config(
        "fsdd-cpu", ["data.seq_len=200", "model.wavenet.channels=8", "model.wavenet.blocks=2"]
    )
    model = build_model(cfg).eval()
    lines = pictures(model, "tiny", tmp_path, (2, 4), gif=False)
    assert sum("network calls" in line for line in lines) == 4
    wavs = sorted(p.name for p in tmp_path.glob("*.wav"))
    assert wavs == [
        "tiny_infill.wav",
        "tiny_sample_2_0.wav",
        "tiny_sample_2_1.wav",
        "tiny_sample_4_0.wav",
        "tiny_sample_4_1.wav",
    ]
    from ardm.modalities.registry import modality_for

    filled = modality_for(model).read((tmp_path / "tiny_infill.wav").read_bytes(), name="x")
    clip = model_items(model, "test", 1)[0]
    assert torch.equal(filled[:100], clip[:100])  # the given half is kept
    assert classes_to_samples(filled).shape == (200,)
    with Image.open(tmp_path / "tiny_waveforms.png") as im:
        assert im.size == (800, 6 * (14 + 90))  # clip, infill, 2 budgets x 2 samples
