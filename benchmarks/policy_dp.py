"""Time the DP over budgets: the fast DP against its targets, and the paper's table DP.

    python benchmarks/policy_dp.py [--repeats 5]

Cases (wall clock, median of the repeats, NumPy/torch threads as they are):

(a) ``optimal_policies`` for D = 3072 (CIFAR-10 sub-pixels), every budget 1..100 in one call;
(b) ``optimal_policy`` for D = 16000 (SC09 audio), budget 1000;
(c) ``reference_dp`` (the paper's O(B * D^2) table) for D = 3072, budget 10, next to the fast
    DP on the same problem, for the speed ratio; their costs must agree.

``L`` is realistic: per-step costs that fall smoothly from about 8 to 1.5 bits as more
variables are known, plus noise, sorted non-increasing and scaled to bits per dim (sum =
bpd). Writes ``benchmarks/results/policy_dp.json`` and ``benchmarks/results/policy_dp.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ardm.core.policy import optimal_policies, optimal_policy, reference_dp

RESULTS = Path(__file__).resolve().parent / "results"


def realistic_L(D: int, *, seed: int = 0) -> np.ndarray:
    """``L_t`` in bits per dim, sorted non-increasing: ``(D,)``."""
    rng = np.random.default_rng(seed)
    t = np.arange(D)
    bits = 1.5 + 6.5 * np.exp(-6.0 * t / D) + 0.05 * rng.standard_normal(D)  # (D,)
    return np.sort(bits / D)[::-1].copy()


def timed(fn: Callable[[], Any], repeats: int) -> tuple[list[float], Any]:
    """Wall-clock seconds of ``repeats`` calls, and the last call's result."""
    samples, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        samples.append(time.perf_counter() - start)
    return samples, result


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _shown_path(path: str) -> str:
    """``path`` relative to the repository when it lies inside it (a result records no folder
    of the machine it ran on)."""
    try:
        return str(Path(path).resolve().relative_to(Path(__file__).resolve().parents[1]))
    except ValueError:
        return path


def environment() -> dict[str, Any]:
    env: dict[str, Any] = {
        "command": shlex.join([_shown_path(sys.executable), *map(_shown_path, sys.argv)]),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "thread_env": {
            k: os.environ.get(k)
            for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
        },
    }
    try:
        import torch

        env["torch"] = torch.__version__
        env["torch_threads"] = torch.get_num_threads()
    except ImportError:
        env["torch"] = None
        env["torch_threads"] = None
    return env


def run(repeats: int, env: dict[str, Any]) -> dict[str, Any]:
    L_3072, L_16000 = realistic_L(3072), realistic_L(16000)
    cases: list[dict[str, Any]] = []

    def add(name: str, D: int, budgets: str, target_s: float | None, fn: Callable[[], Any]) -> Any:
        samples, result = timed(fn, repeats)
        median = statistics.median(samples)
        case = {
            "case": name,
            "D": D,
            "budgets": budgets,
            "target_s": target_s,
            "median_s": median,
            "min_s": min(samples),
            "samples_s": samples,
            "pass": None if target_s is None else median < target_s,
        }
        cases.append(case)
        print(
            f"{name:34s} D={D:<6d} budgets={budgets:8s} median {median:8.4f} s"
            f"  min {min(samples):8.4f} s"
            + ("" if target_s is None else f"  target < {target_s} s: {_verdict(case)}")
        )
        return result

    add(
        "(a) optimal_policies",
        3072,
        "1..100",
        0.1,
        lambda: optimal_policies(L_3072, range(1, 101), presorted=True),
    )
    add(
        "(b) optimal_policy",
        16000,
        "1000",
        2.0,
        lambda: optimal_policy(L_16000, 1000, presorted=True),
    )
    fast = add(
        "(c) optimal_policy (fast)",
        3072,
        "10",
        None,
        lambda: optimal_policy(L_3072, 10, presorted=True),
    )
    ref = add(
        "(c) reference_dp (paper's table)", 3072, "10", None, lambda: reference_dp(L_3072, 10)
    )
    ratio = cases[-1]["median_s"] / cases[-2]["median_s"]
    agree = abs(fast[1] - ref[1]) <= 1e-9 * abs(ref[1])
    print(
        f"reference / fast at D=3072, B=10: {ratio:.0f}x; costs {fast[1]:.9f} vs {ref[1]:.9f} bpd"
    )
    return {
        "environment": env,
        "repeats": repeats,
        "cases": cases,
        "reference_over_fast": ratio,
        "costs_agree": agree,
        "cost_bpd": {"fast": fast[1], "reference": ref[1]},
    }


def _verdict(case: dict[str, Any]) -> str:
    return "n/a" if case["pass"] is None else ("PASS" if case["pass"] else "FAIL")


def markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    lines = [
        "# DP over budgets: timings",
        "",
        f"Command: `{env['command']}` (median of {report['repeats']} repeats, wall clock)",
        "",
        f"CPU: {env['cpu']}, {env['cpu_count']} cores, load average {env['load_average_1m']}; "
        f"numpy {env['numpy']}, torch {env['torch']} ({env['torch_threads']} threads), "
        f"Python {env['python']}",
        "",
        "| case | D | budgets | target | median (s) | min (s) | result |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for c in report["cases"]:
        target = "" if c["target_s"] is None else f"< {c['target_s']} s"
        lines.append(
            f"| {c['case']} | {c['D']} | {c['budgets']} | {target} | {c['median_s']:.4f} "
            f"| {c['min_s']:.4f} | {_verdict(c)} |"
        )
    lines += [
        "",
        f"Reference DP / fast DP at D = 3072, B = 10: {report['reference_over_fast']:.0f}x; "
        f"costs agree: {report['costs_agree']} ({report['cost_bpd']['fast']:.9f} vs "
        f"{report['cost_bpd']['reference']:.9f} bpd).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per case (>= 5)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the results")
    args = parser.parse_args(argv)
    if args.repeats < 5:
        parser.error("--repeats must be at least 5")
    env = environment()
    print(f"command: {env['command']}")
    print(f"cpu: {env['cpu']} ({env['cpu_count']} cores, load average {env['load_average_1m']})")
    print(
        f"numpy {env['numpy']}, torch {env['torch']} ({env['torch_threads']} threads), "
        f"thread env {env['thread_env']}"
    )
    report = run(args.repeats, env)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "policy_dp.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "policy_dp.md").write_text(markdown(report))
    print(f"wrote {args.out / 'policy_dp.json'} and {args.out / 'policy_dp.md'}")
    return 0 if report["costs_agree"] else 1  # a missed time target is reported, not an error


if __name__ == "__main__":
    raise SystemExit(main())
