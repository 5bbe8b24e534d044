"""The CLI end to end on a tiny preset, and one-line errors for bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from ardm.cli import main
from tests.test_train import TINY


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
