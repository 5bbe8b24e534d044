"""What every benchmark prints and stores: the command, the machine and the versions."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


KERNEL_KNOBS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")
"""Environment variables that choose the CPU kernels of torch, oneDNN and MKL."""


def _shown(arg: str) -> str:
    """``arg``, relative to the repository when it is an absolute path inside it."""
    if not os.path.isabs(arg):
        return arg
    try:
        return str(Path(arg).resolve().relative_to(REPO))
    except ValueError:
        return arg


def command() -> str:
    """The command line that ran this benchmark, with paths relative to the repository (a
    result records no folder of the machine it ran on)."""
    return shlex.join([Path(sys.executable).name, *(_shown(a) for a in sys.argv)])


def machine() -> dict[str, Any]:
    """The command, the CPU (and GPU), the thread count and the library versions."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "command": command(),
        "cpu": cpu,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu_kernels": torch.backends.cpu.get_cpu_capability(),  # ATen's vector kernels
    }
    for knob in KERNEL_KNOBS:  # a run on another machine's kernels says so
        if knob in os.environ:
            info[knob] = os.environ[knob]
    with contextlib.suppress(OSError):
        info["load_avg_1min"] = os.getloadavg()[0]
    return info


def write_results(name: str, payload: dict[str, Any], table: str) -> None:
    """Write ``results/<name>.json`` and ``results/<name>.md`` and print the table."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    info = machine()
    (RESULTS / f"{name}.json").write_text(json.dumps({"machine": info, **payload}, indent=2))
    header = "\n".join(f"- {k}: {v}" for k, v in info.items())
    (RESULTS / f"{name}.md").write_text(f"# {name}\n\n{header}\n\n{table}\n")
    print(header)
    print(table)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """``fn()`` and its wall seconds."""
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    """The median milliseconds of ``repeats`` calls of ``fn``, after one call to warm up."""
    return interleaved_median_ms([fn], repeats)[0]


def interleaved_median_ms(fns: Sequence[Callable[[], object]], repeats: int) -> list[float]:
    """The median milliseconds of ``repeats`` calls of each of ``fns``, called in turn (one
    call of each, ``repeats`` times, after one call each to warm up): on a shared machine a
    change of load then reaches every function alike, so their ratios hold where medians
    measured one function after the other do not."""
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, out in zip(fns, times, strict=True):
            out.append(timed(fn)[1])
    return [1000 * statistics.median(t) for t in times]
