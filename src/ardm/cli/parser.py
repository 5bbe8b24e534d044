"""The argument parser of ``ardm <command>``: one function per group of commands.

:func:`parser` builds it; ``ardm.cli.commands.main`` parses ``argv`` with it and dispatches
on ``args.command``.
"""

from __future__ import annotations

import argparse
from typing import TypeAlias

# What ``ArgumentParser.add_subparsers`` returns.
_Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def budgets(text: str) -> list[int]:
    """``--budgets 10,50,100``: positive integers separated by commas."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"budgets must be integers separated by commas, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("budgets must be positive integers")
    return values


def positive_int(text: str) -> int:
    """An option that takes a positive integer."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def parser() -> argparse.ArgumentParser:
    """The parser of every ``ardm`` command."""
    p = argparse.ArgumentParser(
        prog="ardm",
        description="Autoregressive Diffusion Models: train, evaluate, sample, compress.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    _add_training(sub)
    _add_evaluation(sub)
    _add_generation(sub)
    _add_coding(sub)
    return p


def _add_model(q: argparse.ArgumentParser) -> None:
    q.add_argument("model", help="run folder or checkpoint file (ckpt.pt)")
    q.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")


def _add_training(sub: _Subparsers) -> None:
    """``train``, ``presets``, ``demo`` and ``export``."""
    q = sub.add_parser("train", help="train a model from a preset")
    q.add_argument(
        "--preset", default="mnist-tiny", help="preset name or TOML file (see `ardm presets`)"
    )
    q.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting, e.g. train.lr=3e-4",
    )
    q.add_argument("--out", help="run folder (default: runs/<preset>)")
    q.add_argument(
        "--fresh", action="store_true", help="start over even if the folder holds a checkpoint"
    )
    q.add_argument("--device", default="auto")
    q.add_argument("--quiet", action="store_true")

    sub.add_parser("presets", help="list the shipped presets")

    q = sub.add_parser("demo", help="train a tiny MNIST model, evaluate it, sample and inpaint")
    q.add_argument("--out", default="runs/demo")
    q.add_argument("--minutes", type=float, default=1.0, help="training time (default: 1)")
    q.add_argument("--fresh", action="store_true")
    q.add_argument(
        "--train",
        action="store_true",
        help="train a tiny MNIST model first instead of using the shipped models",
    )

    q = sub.add_parser("export", help="write a run's EMA weights as a shipped-weights file")
    q.add_argument("model", help="run folder or checkpoint")
    q.add_argument("-o", "--output", required=True, help="the .safetensors file to write")
    q.add_argument("--fp32", action="store_true", help="keep float32 weights (default: float16)")
    q.add_argument(
        "--portable",
        action="store_true",
        help="also freeze the portable (integer) form for the integer coder's files (format v8, v9), in portable/ beside it",
    )
    q.add_argument(
        "--portable-only",
        action="store_true",
        help="only freeze the portable form of the existing weights file OUTPUT",
    )
    q.add_argument(
        "--calib", type=int, default=64, help="training items to calibrate the integer form on"
    )


def _add_evaluation(sub: _Subparsers) -> None:
    """``eval`` and ``plan``."""
    q = sub.add_parser("eval", help="bits/dim: bound, exact fixed order, DP and naive budgets")
    _add_model(q)
    q.add_argument("--split", default="test")
    q.add_argument("--items", type=int, default=500, help="items for the stochastic bound")
    q.add_argument("--passes", type=int, default=4)
    q.add_argument("--exact-items", type=int, default=16, help="items for the exact rows")
    q.add_argument("--budgets", type=budgets, default=[10, 50, 100])
    q.add_argument("--json", help="also write the rows as JSON here")

    q = sub.add_parser("plan", help="the DP policy and its expected cost per budget")
    _add_model(q)
    q.add_argument("--budgets", type=budgets, default=[1, 2, 5, 10, 20, 50, 100, 200, 500])
    q.add_argument("--show-policy", action="store_true", help="print the step boundaries")
    q.add_argument("--json", help="also write the plan as JSON here")


def _add_generation(sub: _Subparsers) -> None:
    """``sample``, ``inpaint`` and ``complete``."""
    q = sub.add_parser(
        "sample", help="generate samples (PNG grid for images, text for text, WAV for audio)"
    )
    _add_model(q)
    q.add_argument("-n", type=int, default=16)
    q.add_argument(
        "--budget",
        type=positive_int,
        help="network calls (default: one per variable; an upscale model's budget counts all "
        "its stages; a D3PM model's is its number of steps)",
    )
    q.add_argument(
        "--naive", action="store_true", help="evenly spaced steps instead of the DP policy"
    )
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--temperature", type=float, default=1.0)
    q.add_argument(
        "-o",
        "--output",
        help="output file (.png / .txt / .wav; default: print text, samples.png or "
        "samples_NNN.wav)",
    )

    q = sub.add_parser("inpaint", help="complete the missing part of images")
    _add_model(q)
    q.add_argument("--input", help="image file (default: items of the test split)")
    q.add_argument("--index", type=int, default=0, help="first test item when no --input is given")
    q.add_argument("-n", type=int, default=8, help="test items when no --input is given")
    q.add_argument(
        "--mask",
        default="bottom",
        choices=["bottom", "top", "left", "right", "center", "random"],
        help="which part is missing",
    )
    q.add_argument("--budget", type=int)
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("-o", "--output", default="inpaint.png")

    q = sub.add_parser("complete", help="fill in text: '_' marks a missing character")
    _add_model(q)
    q.add_argument("text", help="text with '_' for unknown characters, e.g. 'the qu___ brown fox'")
    q.add_argument("--hole", default="_", help="the character marking unknowns (default: _)")
    q.add_argument("--budget", type=int)
    q.add_argument("-n", type=int, default=4, help="completions")
    q.add_argument("--seed", type=int, default=0)


def _add_coding(sub: _Subparsers) -> None:
    """``compress`` and ``decompress``."""
    for name in ("compress", "decompress"):
        q = sub.add_parser(
            name,
            help="compress images or text losslessly into .ardm files"
            if name == "compress"
            else "decompress .ardm files into PNG images or UTF-8 text",
        )
        q.add_argument("inputs", nargs="+", metavar="IN", help="input files ('-': standard input)")
        q.add_argument(
            "-o",
            "--output",
            metavar="OUT",
            help="output file; a directory for several inputs; '-': standard output "
            + ("(default: IN.ardm beside each input)" if name == "compress" else "")
            + ("(default: IN without .ardm, beside it)" if name == "decompress" else ""),
        )
        q.add_argument(
            "--model",
            help="shipped model name, run folder or checkpoint file (default: "
            + (
                "the shipped model for the file's kind: text, grayscale or colour image, WAV)"
                if name == "compress"
                else "the shipped model the file names)"
            ),
        )
        if name == "compress":
            q.add_argument(
                "--budget",
                type=positive_int,
                help="network calls per item (per tile of the model's shape; per block of a "
                "model with context); more calls usually give smaller files (default: the "
                "model's: one per 8 bytes of a text block, 6 per photo block, 100 for most others; at most D, "
                "or S*D for an upscale model with S stages, which needs at least S)",
            )
            q.add_argument(
                "--verify", action="store_true", help="decode every file and compare before writing"
            )
        q.add_argument("--force", action="store_true", help="overwrite existing outputs")
        q.add_argument(
            "--device",
            default="cpu",
            help="cpu, cuda or auto (default: cpu); a model with a portable form (every shipped "
            "one) codes on the CPU whatever this says, so that its files decode on every machine",
        )
        q.add_argument("--quiet", action="store_true", help="no progress bar")
