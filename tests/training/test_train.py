"""Training: checkpoints round-trip, resume continues exactly, DDP on two gloo processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ardm.config import load_config
from ardm.errors import CheckpointError
from ardm.training.checkpoint import load_checkpoint
from ardm.training.pretrained import load_model
from ardm.training.train import train

TINY = [
    "model.unet.ch=8",
    "model.unet.ch_mult=[1, 2]",
    "model.unet.num_res_blocks=1",
    "model.unet.value_emb_dim=4",
    "model.unet.groups=4",
    "train.batch_size=4",
    "train.eval_items=8",
    "train.eval_every=0",
    "train.log_every=2",
]


def _cfg(*extra: str):  # type: ignore[no-untyped-def]
    return load_config("mnist-tiny", [*TINY, *extra])


def test_checkpoint_roundtrip_gives_identical_outputs(tmp_path: Path) -> None:
    train(_cfg("train.steps=3", "train.ckpt_every=3"), tmp_path, progress=False)
    a, b = load_model(tmp_path), load_model(tmp_path / "ckpt.pt")
    x = torch.randint(0, 256, (2, 1, 28, 28))
    known = torch.rand(2, 1, 28, 28) < 0.5
    t = known.flatten(1).sum(1)
    assert torch.equal(a.log_probs(x, known, t), b.log_probs(x, known, t))
    assert a.fingerprint() == b.fingerprint()
    assert bool(a.tracker.seen.any())
    lines = [json.loads(s) for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines[0]["step"] == 2 and "train_bound_bpd" in lines[0]


def test_resume_continues_exactly(tmp_path: Path) -> None:
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train(_cfg("train.steps=6", "train.ckpt_every=2"), straight, progress=False)
    train(_cfg("train.steps=4", "train.ckpt_every=2"), resumed, progress=False)
    assert load_checkpoint(resumed / "ckpt.pt")["step"] == 4
    result = train(_cfg("train.steps=6", "train.ckpt_every=2"), resumed, progress=False)
    assert result.step == 6
    a, b = load_checkpoint(straight / "ckpt.pt"), load_checkpoint(resumed / "ckpt.pt")
    for key in ("model", "ema"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), (key, name)
    assert torch.equal(a["tracker"]["values"], b["tracker"]["values"])


def test_resume_refuses_another_model(tmp_path: Path) -> None:
    train(_cfg("train.steps=1"), tmp_path, progress=False)
    with pytest.raises(CheckpointError, match="other model settings"):
        train(_cfg("train.steps=2", "model.unet.ch=16"), tmp_path, progress=False)


def test_init_starts_from_a_weights_file_and_refuses_another_network(tmp_path: Path) -> None:
    from ardm.training.pretrained import export_weights, load_weights

    train(_cfg("train.steps=2"), tmp_path / "first", progress=False)
    weights = export_weights(load_model(tmp_path / "first"), tmp_path / "first.safetensors")
    start = load_weights(weights)
    train(_cfg("train.steps=0", f"train.init={weights}"), tmp_path / "second", progress=False)
    state = load_checkpoint(tmp_path / "second" / "ckpt.pt")
    for name, tensor in start.net.state_dict().items():  # the fp16 weights, as float32
        assert torch.equal(state["ema"][name], tensor), name
        assert torch.equal(state["model"][name], tensor), name
    # a run folder starts it too (its EMA weights, as load_model gives them)
    train(
        _cfg("train.steps=0", f"train.init={tmp_path / 'first'}"), tmp_path / "run", progress=False
    )
    state = load_checkpoint(tmp_path / "run" / "ckpt.pt")
    for name, tensor in load_model(tmp_path / "first").net.state_dict().items():
        assert torch.equal(state["ema"][name], tensor), name
    with pytest.raises(CheckpointError, match=r"other model settings than this run \(unet\)"):
        train(
            _cfg("train.steps=1", f"train.init={weights}", "model.unet.ch=16"),
            tmp_path / "third",
            progress=False,
        )


def test_corrupt_checkpoint_is_a_clean_error(tmp_path: Path) -> None:
    (tmp_path / "ckpt.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_model(tmp_path)


@pytest.mark.ddp
def test_ddp_two_gloo_processes(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=2",
        "-m",
        "ardm",
        "train",
        "--preset",
        "mnist-tiny",
        "--out",
        str(tmp_path),
        "--device",
        "cpu",
        "--quiet",
        *[a for s in [*TINY, "train.steps=4", "train.ckpt_every=2"] for a in ("--set", s)],
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = load_checkpoint(tmp_path / "ckpt.pt")
    assert state["step"] == 4 and len(state["samplers"]) == 2
    # the two ranks drew different batches but kept identical trackers (gathered updates)
    assert state["samplers"][0] != state["samplers"][1]
    assert int(state["tracker"]["seen"].sum()) > 4  # 2 ranks x 4 items x 4 steps, gathered


def test_kill_9_then_same_command_resumes(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "ardm", "train", "--preset", "mnist-tiny", "--out", str(tmp_path)]
    cmd += ["--device", "cpu", "--quiet"]
    for s in [*TINY, "train.steps=400", "train.ckpt_every=3", "train.calibrate_passes=0"]:
        cmd += ["--set", s]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    ckpt = tmp_path / "ckpt.pt"
    deadline = time.time() + 120
    while time.time() < deadline and not (ckpt.exists() and load_checkpoint(ckpt)["step"] >= 6):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = load_checkpoint(ckpt)["step"]
    assert 6 <= killed_at < 400
    final = [*cmd[:-2], "--set", "train.steps=" + str(killed_at + 3)]
    done = subprocess.run(final, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert load_checkpoint(ckpt)["step"] == killed_at + 3


def test_nan_loss_stops_and_keeps_last_good_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ardm.models.ardm import ARDM
    from ardm.training.train import TrainingDiverged

    real_loss = ARDM.loss
    calls = {"n": 0}

    def loss(self, x, **kwargs):  # type: ignore[no-untyped-def]
        out = real_loss(self, x, **kwargs)
        calls["n"] += 1
        if calls["n"] > 4:
            return type(out)(loss=out.loss * float("nan"), terms=out.terms, t=out.t)
        return out

    monkeypatch.setattr(ARDM, "loss", loss)
    with pytest.raises(TrainingDiverged, match="last good checkpoint"):
        train(_cfg("train.steps=10", "train.ckpt_every=2"), tmp_path, progress=False)
    state = load_checkpoint(tmp_path / "ckpt.pt")
    assert state["step"] == 4
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_cooldown_falls_to_zero_at_the_end_of_steps_or_minutes() -> None:
    from ardm.config import TrainConfig
    from ardm.training.train import lr_factor

    plain = TrainConfig(steps=1000, warmup_steps=100)
    assert lr_factor(plain, 9, 0.0) == pytest.approx(0.1)
    assert lr_factor(plain, 999, 1e9) == 1.0  # no cooldown: constant after warm-up
    tc = TrainConfig(steps=1000, warmup_steps=100, cooldown=0.5)
    assert lr_factor(tc, 400, 0.0) == 1.0
    assert lr_factor(tc, 750, 0.0) == pytest.approx(0.5)
    assert lr_factor(tc, 1000, 0.0) == 0.0
    timed = TrainConfig(steps=10**6, minutes=10.0, warmup_steps=100, cooldown=0.5)
    assert lr_factor(timed, 500, 7.5 * 60) == pytest.approx(0.5)  # the time runs out first
    assert lr_factor(timed, 500, 11 * 60) == 0.0
    with pytest.raises(ValueError, match="cooldown"):
        TrainConfig(cooldown=1.5)


def test_resume_may_add_a_cooldown(tmp_path: Path) -> None:
    first = _cfg("train.steps=2", "train.ckpt_every=2", "train.warmup_steps=1")
    train(first, tmp_path, progress=False)
    more = ["train.steps=4", "train.ckpt_every=2", "train.warmup_steps=1", "train.cooldown=0.5"]
    train(_cfg(*more), tmp_path, progress=False)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    lrs = [r["lr"] for r in map(json.loads, lines) if "lr" in r]
    lr = first.train.lr
    assert lrs == [pytest.approx(lr), pytest.approx(0.5 * lr)]  # step 4 ran at (1 - 3/4) / 0.5
