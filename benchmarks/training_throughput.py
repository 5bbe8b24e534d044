"""Training throughput (examples/s) of every preset on this machine's device.

Runs a few optimiser steps per preset after one warm-up step and reports the median step
time. Full presets are GPU-sized: on CPU they run at a small batch so the run stays short
(the batch is in the table).

    python benchmarks/training_throughput.py [--steps 5] [--presets mnist-tiny,english-tiny]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from ardm.config import load_config, preset_names
from ardm.data import dataset_spec
from ardm.models.build import build_model
from ardm.nets.build import count_params, forward_flops
from benchmarks.machine import write_results


def measure(name: str, steps: int, device: torch.device, cpu_full_batch: int) -> dict[str, object]:
    cfg = load_config(name)
    batch = cfg.train.batch_size
    if name.endswith("-full") and device.type == "cpu":
        batch = min(batch, cpu_full_batch)
    spec = dataset_spec(cfg.data.name, seq_len=cfg.data.seq_len)
    torch.manual_seed(0)
    model = build_model(cfg).to(device)
    net = model.net
    if cfg.train.compile and device.type == "cuda":
        model.net = torch.compile(net)  # type: ignore[assignment]
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.train.lr)
    x = torch.randint(0, spec.K, (batch, *spec.shape), device=device)
    amp = cfg.train.amp and device.type == "cuda"
    times = []
    for i in range(steps + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = model.loss(x)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:  # the first step warms up (and compiles)
            times.append(time.perf_counter() - start)
    step_s = statistics.median(times)
    flops = 3 * forward_flops(net, batch)  # forward + backward ~ 3x forward
    return {
        "preset": name,
        "params": count_params(net),
        "batch": batch,
        "median_step_s": step_s,
        "examples_per_s": batch / step_s,
        "tflops_per_s": flops / step_s / 1e12,
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--presets", default=",".join(preset_names()))
    p.add_argument("--cpu-full-batch", type=int, default=8)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    device = torch.device(args.device)
    rows = [measure(n, args.steps, device, args.cpu_full_batch) for n in args.presets.split(",")]
    lines = [
        f"Device: {device}. Median of {args.steps} steps after one warm-up step; random data.",
        "",
        "| preset | params | batch | median step (s) | examples/s | model TFLOP/s |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['preset']} | {r['params']:,} | {r['batch']} | {r['median_step_s']:.3f} "
            f"| {r['examples_per_s']:.1f} | {r['tflops_per_s']:.3f} |"
        )
    write_results("training_throughput", {"rows": rows}, "\n".join(lines))


if __name__ == "__main__":
    main()
