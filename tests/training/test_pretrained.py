"""Shipped-weights files: export, load by path, checksum refusal."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ardm.config import load_config
from ardm.errors import CheckpointError
from ardm.models.build import build_model
from ardm.training.pretrained import export_weights, load_model, load_weights
from tests.training.test_train import TINY


def _model():  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = build_model(load_config("mnist-tiny", TINY)).eval()
    model.tracker.update(torch.arange(10), torch.linspace(1.0, 0.1, 10))
    model.order_seed = 3
    return model


def test_export_then_load_gives_the_same_model(tmp_path: Path) -> None:
    model = _model()
    path = export_weights(model, tmp_path / "m.safetensors", dtype=torch.float32)
    loaded = load_model(path)
    assert loaded.order_seed == 3 and loaded.fingerprint() == model.fingerprint()
    x = torch.randint(0, 256, (2, 1, 28, 28))
    known = torch.rand(2, 1, 28, 28) < 0.3
    t = known.flatten(1).sum(1)
    assert torch.equal(loaded.log_probs(x, known, t), model.log_probs(x, known, t))


def test_fp16_export_is_small_and_close(tmp_path: Path) -> None:
    model = _model()
    half = export_weights(model, tmp_path / "h.safetensors")
    full = export_weights(model, tmp_path / "f.safetensors", dtype=torch.float32)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    a, b = load_weights(half), load_weights(full)
    x = torch.randint(0, 256, (1, 1, 28, 28))
    known = torch.zeros(1, 1, 28, 28, dtype=torch.bool)
    t = torch.zeros(1, dtype=torch.long)
    torch.testing.assert_close(
        a.log_probs(x, known, t), b.log_probs(x, known, t), atol=0.05, rtol=0
    )


def test_damaged_weights_are_refused(tmp_path: Path) -> None:
    path = export_weights(_model(), tmp_path / "m.safetensors")
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x40  # flip a bit inside the last tensor
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_weights(path)
    path.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="cannot read weights"):
        load_weights(path)


def test_unknown_shipped_name() -> None:
    with pytest.raises(CheckpointError, match="no shipped model of that name"):
        load_model("no-such-model")


def test_re_exporting_a_model_over_an_old_one_replaces_its_portable_form(tmp_path: Path) -> None:
    """Export, freeze, then export other weights to the same file: freezing again must not
    trip over the stale portable form, and without --portable the stale one is removed."""
    from ardm.cli.commands import main

    for i in (0, 1):
        torch.manual_seed(i)
        cfg = load_config("mnist-tiny", [*TINY, "train.steps=0"])
        run = tmp_path / f"run{i}"
        from ardm.training.train import train

        train(cfg, run, device="cpu", fresh=True)
        out = tmp_path / "m.safetensors"
        assert main(["export", str(run), "-o", str(out), "--portable", "--calib", "4"]) == 0
        assert load_weights(out).portable is not None
    assert main(["export", str(tmp_path / "run0"), "-o", str(out)]) == 0
    assert not (tmp_path / "portable" / "m.safetensors").exists()
    assert load_weights(out).portable is None
