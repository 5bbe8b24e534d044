"""Which non-increasing ``L`` the DP should use: the paper's sort, or an isotonic fit.

The DP needs ``L_t`` non-increasing. The estimate after training is noisy, mostly at late
steps (few unknown variables are averaged there); sorting moves those noisy values to the
front. For Upscale ARDMs also "split-isotonic": isotonic cost curves to split a joint budget
over the stages, sorted ``L`` for each stage's own DP. For each trained run: policies from
each fit at each budget, the DP's expected bpd,
and the *measured* exact NLL of the same test items under each policy (same order)::

    python -m benchmarks.policy_fit runs/paper/mnist/oa-ardm runs/paper/mnist/upscale-b-2

Writes ``benchmarks/results/policy_fit.{json,md}``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import torch

from ardm.core.policy import (
    monotone_losses,
    optimal_policy,
    policy_cost,
    policy_costs,
    split_budget,
)
from ardm.data.items import model_items
from ardm.training.pretrained import load_model
from benchmarks.machine import write_results


def policies_for(model: Any, budget: int, fit: str) -> tuple[list[np.ndarray], float]:
    """DP policies (one per stage) for ``budget`` calls in all, and their expected bpd."""
    stages = model.S
    raw = model.tracker.L().reshape(stages, model.D)  # (S, D) as tracked, unsorted
    split_fit = "isotonic" if fit == "split-isotonic" else fit  # fit for the stage split
    stage_fit = "sort" if fit == "split-isotonic" else fit  # fit for each stage's own DP
    fitted = [monotone_losses(L, stage_fit) for L in raw]
    if stages == 1:
        calls = [budget]
    else:
        n = min(budget - stages + 1, model.D)
        curves = [policy_costs(monotone_losses(L, split_fit), n, presorted=True) for L in raw]
        calls = split_budget(curves, budget)
    policies = [
        np.arange(model.D) if c >= model.D else optimal_policy(L, c, presorted=True)[0]
        for L, c in zip(fitted, calls, strict=True)
    ]
    expected = sum(policy_cost(L, p) for L, p in zip(fitted, policies, strict=True))
    return policies, float(expected)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+")
    p.add_argument("--budgets", default="10,20,50")
    p.add_argument("--items", type=int, default=16)
    args = p.parse_args()
    budgets = [int(b) for b in args.budgets.split(",")]
    results: list[dict[str, Any]] = []
    lines = [
        "| run | calls | fit | expected bpd | measured bpd (exact NLL) | seconds |",
        "| --- | ---: | --- | ---: | ---: | ---: |",
    ]
    for run in args.runs:
        model = load_model(run).eval()
        x = model_items(model, "test", args.items).to(model.device)
        for budget in budgets:
            fits = ("sort", "isotonic", "split-isotonic") if model.S > 1 else ("sort", "isotonic")
            for fit in fits:
                policies, expected = policies_for(model, budget, fit)
                start = time.perf_counter()
                with torch.no_grad():
                    nll = model.exact_nll_bpd(x, policies=policies)
                seconds = time.perf_counter() - start
                row = {
                    "run": run,
                    "budget": budget,
                    "fit": fit,
                    "calls": [len(q) for q in policies],
                    "expected_bpd": expected,
                    "measured_bpd": float(nll.mean()),
                    "items": len(x),
                }
                results.append(row)
                lines.append(
                    f"| {run} | {budget} ({' + '.join(str(len(q)) for q in policies)}) | {fit} "
                    f"| {expected:.4f} | {row['measured_bpd']:.4f} | {seconds:.1f} |"
                )
                print(lines[-1], flush=True)
    write_results("policy_fit", {"rows": results, "items": args.items}, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
