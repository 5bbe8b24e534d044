"""Likelihood evaluation as a table: stochastic bound, exact fixed-order NLL, and budgets.

Every row says what it is: the stochastic bound averaged over passes, the exact NLL for the
model's fixed order (``D`` network calls), or the exact NLL of the parallel model under a
DP or naive policy with ``B`` calls, next to the DP's expected cost from the tracked ``L_t``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from ardm.models.d3pm import D3PMAbsorbing


@dataclass(frozen=True)
class EvalRow:
    method: str  # "bound", "exact", "dp", "naive", "d3pm"
    calls: int  # network calls per item
    bpd: float  # measured, bits per dim
    expected_bpd: float | None  # DP expectation from training L_t
    items: int
    seconds: float
    note: str


D3PM_STEPS = (1000, 256, 100, 50, 20)


def evaluate(
    model: Any,
    items: torch.Tensor,
    *,
    passes: int = 4,
    exact_items: int = 16,
    budgets: Sequence[int] = (10, 50, 100),
    batch_size: int = 256,
    seed: int = 0,
    exact: bool = True,
    naive: bool = True,
    d3pm_steps: Sequence[int] = D3PM_STEPS,
) -> list[EvalRow]:
    """Evaluate ``model`` on ``items`` ``(N, *shape)``; the exact rows use the first ``exact_items``.

    * OA-ARDM: the bound, the exact NLL of the fixed order (``D`` calls, skipped with
      ``exact=False``) and the exact NLL under the DP and the naive policy per budget.
    * Upscale ARDM: the same, with ``S * D`` calls for the exact row; a budget is the total
      number of calls, split over the stages by the joint DP (``mode="joint"``).
    * D3PM: the bound at its training ``T``, then its own ``T``-step bound for each of
      ``d3pm_steps`` (one fresh absorption pattern per step and item).

    ``naive=False`` skips the naive-policy rows.
    """
    model.eval()
    device = model.device
    rows: list[EvalRow] = []
    g = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    bound = torch.cat(
        [
            model.bound_bpd(chunk.to(device), passes=passes, generator=g)
            for chunk in items.split(batch_size)
        ]
    )
    rows.append(
        EvalRow(
            "bound",
            1,
            float(bound.mean()),
            None,
            len(items),
            time.perf_counter() - start,
            f"stochastic bound, {passes} passes",
        )
    )
    sub = items[:exact_items].to(device)
    if isinstance(model, D3PMAbsorbing):
        for steps in d3pm_steps:
            start = time.perf_counter()
            nll = model.nll_bound_bpd(sub, steps=steps, batch_size=batch_size, generator=g)
            rows.append(
                EvalRow(
                    "d3pm",
                    steps,
                    float(nll.mean()),
                    None,
                    len(sub),
                    time.perf_counter() - start,
                    f"D3PM-absorbing {steps}-step bound (trained with T={model.T})",
                )
            )
        return rows
    stages = model.S
    if exact:
        start = time.perf_counter()
        nll = model.exact_nll_bpd(sub, batch_size=batch_size)
        rows.append(
            EvalRow(
                "exact",
                stages * model.D,
                float(nll.mean()),
                float(model.tracker.L().sum()),
                len(sub),
                time.perf_counter() - start,
                f"exact NLL, fixed order (seed {model.order_seed})",
            )
        )
    for budget in budgets:
        if budget >= stages * model.D or budget < stages:
            continue
        for evenly in (False, True) if naive else (False,):
            start = time.perf_counter()
            policies = model.stage_policies(budget, mode="joint", naive=evenly)
            nll = model.exact_nll_bpd(sub, policies=policies, batch_size=batch_size)
            calls, expected = sum(len(p) for p in policies), model.expected_bpd(policies)
            rows.append(
                EvalRow(
                    "naive" if evenly else "dp",
                    calls,
                    float(nll.mean()),
                    expected,
                    len(sub),
                    time.perf_counter() - start,
                    f"exact NLL under the {'naive' if evenly else 'DP'} policy, fixed order",
                )
            )
    return rows


def rows_to_markdown(rows: Sequence[EvalRow], *, unit: str = "bpd", title: str = "") -> str:
    """A Markdown table of evaluation rows."""
    lines = [f"### {title}", ""] if title else []
    lines += [
        f"| method | network calls | {unit} (measured) | {unit} (expected from L_t) | items | seconds | what |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        exp = f"{r.expected_bpd:.4f}" if r.expected_bpd is not None else ""
        lines.append(
            f"| {r.method} | {r.calls} | {r.bpd:.4f} | {exp} | {r.items} | {r.seconds:.1f} | {r.note} |"
        )
    return "\n".join(lines) + "\n"


def rows_to_dicts(rows: Sequence[EvalRow]) -> list[dict[str, object]]:
    return [asdict(r) for r in rows]
