"""Test bits/dim reached by tiny presets after a fixed CPU training time.

For each preset: train for ``--minutes`` (wall clock, this machine), then evaluate with EMA
weights: the stochastic bound over the test items, the exact NLL for the fixed order, and
the exact NLL under DP and naive policies with 10/50/100 network calls. Text rows are put
next to the unigram entropy of the test split (a model that learned nothing but letter
frequencies).

    python -m benchmarks.cpu_training --minutes 10 --presets mnist-tiny,english-tiny
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch

from ardm.config import load_config
from ardm.data.items import eval_items
from ardm.evaluation import evaluate, rows_to_dicts, rows_to_markdown
from ardm.training.pretrained import load_model
from ardm.training.train import train
from benchmarks.machine import write_results


def unigram_bits(items: torch.Tensor, K: int) -> float:
    counts = torch.bincount(items.flatten(), minlength=K).double()
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log2()).sum())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--presets", default="mnist-tiny,english-tiny")
    p.add_argument("--out", default="runs/bench")
    p.add_argument("--exact-items", type=int, default=16)
    p.add_argument("--items", type=int, default=500)
    p.add_argument("--passes", type=int, default=2)
    args = p.parse_args()
    payload: dict[str, object] = {}
    tables = []
    for name in args.presets.split(","):
        cfg = load_config(
            name, [f"train.minutes={args.minutes}", "train.steps=1000000", "train.eval_every=0"]
        )
        out = Path(args.out) / name
        start = time.perf_counter()
        result = train(cfg, out, device="cpu", fresh=True, progress=False)
        seconds = time.perf_counter() - start
        model = load_model(out)
        items = eval_items(cfg, "test", args.items)
        rows = evaluate(model, items, passes=args.passes, exact_items=args.exact_items)
        unit = "bpc" if model.kind == "text" else "bpd"
        note = f"{result.step} steps in {seconds / 60:.1f} min, {result.examples_per_s:.0f} examples/s at the end"
        if model.kind == "text":
            note += f"; unigram entropy of the test split: {unigram_bits(items, model.K):.3f} bpc"
        tables.append(rows_to_markdown(rows, unit=unit, title=f"{name}: {note}"))
        payload[name] = {
            "steps": result.step,
            "train_seconds": seconds,
            "params": sum(p.numel() for p in model.parameters()),
            "rows": rows_to_dicts(rows),
            "unigram_bits": unigram_bits(items, model.K) if model.kind == "text" else math.nan,
        }
    write_results("cpu_training", payload, "\n".join(tables))


if __name__ == "__main__":
    main()
