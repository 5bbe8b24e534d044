"""The CLI end to end on a tiny preset, and one-line errors for bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from ardm.cli.commands import main
from tests.training.test_train import TINY


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    args = ["train", "--preset", "mnist-tiny", "--out", str(out), "--device", "cpu", "--quiet"]
    for s in [*TINY, "train.steps=4"]:
        args += ["--set", s]
    assert main(args) == 0
    return out


def test_train_eval_sample_plan(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(
            [
                "eval",
                str(run_dir),
                "--items",
                "8",
                "--passes",
                "1",
                "--exact-items",
                "1",
                "--budgets",
                "5,10",
                "--json",
                str(tmp_path / "e.json"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "| exact | 784 |" in out and "| dp | " in out and "| naive | " in out
    assert (tmp_path / "e.json").exists()
    assert (
        main(["sample", str(run_dir), "-n", "2", "--budget", "5", "-o", str(tmp_path / "s.png")])
        == 0
    )
    assert (tmp_path / "s.png").stat().st_size > 0
    assert (
        main(["inpaint", str(run_dir), "-n", "2", "--budget", "3", "-o", str(tmp_path / "i.png")])
        == 0
    )
    assert main(["plan", str(run_dir), "--budgets", "1,10,784"]) == 0
    assert "| 10 |" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["eval", "/nonexistent/run"], "no run folder, checkpoint or weights file"),
        (["train", "--preset", "nope"], "unknown preset"),
        (["train", "--set", "train.bogus=1"], "unknown setting"),
        (["train", "--set", 'data.name="imagenet"'], "unknown dataset"),
    ],
)
def test_bad_input_is_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main([*argv, *(["--out", str(tmp_path)] if argv[0] == "train" else [])]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_wrong_kind_and_shape(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["complete", str(run_dir), "hello"]) == 2
    from PIL import Image

    Image.new("L", (10, 10)).save(tmp_path / "small.png")
    assert main(["inpaint", str(run_dir), "--input", str(tmp_path / "small.png")]) == 2
    err = capsys.readouterr().err
    assert "text model" in err and "(1, 10, 10)" in err
    # the one image rule: never converted, refused in one line saying how to convert
    Image.new("RGBA", (28, 28)).save(tmp_path / "alpha.png")
    assert main(["inpaint", str(run_dir), "--input", str(tmp_path / "alpha.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert "mode RGBA" in err and "convert('L')" in err and len(err.splitlines()) == 1


def _tiny_run(out: Path, *extra: str) -> Path:
    args = ["train", "--preset", "mnist-tiny", "--out", str(out), "--device", "cpu", "--quiet"]
    for s in [*TINY, "train.steps=2", "train.calibrate_passes=0", *extra]:
        args += ["--set", s]
    assert main(args) == 0
    return out


def test_upscale_and_d3pm_runs_through_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every command takes an Upscale ARDM (budgets count all stages); D3PM gets its own
    evaluation rows and a one-line refusal where a command is for ARDMs only."""
    up = _tiny_run(tmp_path / "up", "model.process='upscale'", "model.branching=16")
    capsys.readouterr()
    assert main(["plan", str(up), "--budgets", "1,2,10"]) == 0
    out = capsys.readouterr().out
    assert "2 stage(s)" in out and "| 2 |" in out and "| 1 |" not in out
    assert main(["eval", str(up), "--items", "4", "--passes", "1", "--exact-items", "1",
                 "--budgets", "4"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "| exact | 1568 |" in out and "| dp | 4 |" in out
    assert main(["sample", str(up), "-n", "2", "--budget", "3", "-o", str(tmp_path / "u.png")]) == 0
    assert "3 network calls" in capsys.readouterr().out
    assert main(["sample", str(up), "-n", "1", "--budget", "1", "-o", str(tmp_path / "v.png")]) == 2
    assert "at least 2" in capsys.readouterr().err
    assert (
        main(["inpaint", str(up), "-n", "1", "--budget", "4", "-o", str(tmp_path / "i.png")]) == 0
    )

    d3pm = _tiny_run(tmp_path / "d3pm", "model.process='d3pm'", "model.d3pm_steps=50")
    capsys.readouterr()
    assert main(["eval", str(d3pm), "--items", "2", "--passes", "1", "--exact-items", "1"]) == 0
    out = capsys.readouterr().out
    assert "| d3pm | 20 |" in out and "| d3pm | 1000 |" in out
    assert main(["plan", str(d3pm), "--budgets", "10"]) == 2
    assert main(["inpaint", str(d3pm), "-n", "1", "-o", str(tmp_path / "j.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("ardm: error:") == 2 and "D3PM" in err
