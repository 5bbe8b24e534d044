"""Likelihood evaluation as a table: stochastic bound, exact fixed-order NLL, and budgets.

Every row says what it is: the stochastic bound averaged over passes, then what the model
measures per budget (:meth:`ardm.models.process.Process.budget_nlls`): for an ARDM the exact
NLL for its fixed order (``S * D`` network calls) and the exact NLL of the parallel model under
a DP or naive policy with ``B`` calls, next to the DP's expected cost from the tracked
``L_t``; for D3PM its bound at several step counts.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from ardm.models.process import Process


@dataclass(frozen=True)
class EvalRow:
    method: str  # "bound", "exact", "dp", "naive", "d3pm"
    calls: int  # network calls per item
    bpd: float  # measured, bits per dim
    expected_bpd: float | None  # DP expectation from training L_t
    items: int
    seconds: float
    note: str


@dataclass(frozen=True)
class EvalOptions:
    """What :func:`evaluate` measures: the bound over ``passes`` draws, the exact rows on the
    first ``exact_items`` items (``exact=False`` skips the fixed-order row, ``naive=False``
    the naive-policy rows) at each of ``budgets`` network calls; ``seed`` fixes the draws."""

    passes: int = 4
    exact_items: int = 16
    budgets: Sequence[int] = (10, 50, 100)
    batch_size: int = 256
    seed: int = 0
    exact: bool = True
    naive: bool = True


def evaluate(
    model: Process, items: torch.Tensor, options: EvalOptions | None = None, **changes: Any
) -> list[EvalRow]:
    """Evaluate ``model`` on ``items`` ``(N, *shape)``: the bound, then the model's rows per
    budget (:meth:`~ardm.models.process.Process.budget_nlls`) on the first ``exact_items``.

    ``options`` (default :class:`EvalOptions`) with any of its fields changed by keyword,
    e.g. ``evaluate(model, items, passes=1, budgets=(10,))``.
    """
    opts = dataclasses.replace(options or EvalOptions(), **changes)
    model.eval()
    device = model.device
    g = torch.Generator().manual_seed(opts.seed)
    start = time.perf_counter()
    bound = torch.cat(
        [
            model.bound_bpd(chunk.to(device), passes=opts.passes, generator=g)
            for chunk in items.split(opts.batch_size)
        ]
    )
    seconds = time.perf_counter() - start
    note = f"stochastic bound, {opts.passes} passes"
    rows = [EvalRow("bound", 1, float(bound.mean()), None, len(items), seconds, note)]
    sub = items[: opts.exact_items].to(device)
    measured = model.budget_nlls(
        sub,
        opts.budgets,
        exact=opts.exact,
        naive=opts.naive,
        batch_size=opts.batch_size,
        generator=g,
    )
    start = time.perf_counter()
    for m in measured:  # each is computed as it is asked for, so its time is its own
        seconds = time.perf_counter() - start
        rows.append(
            EvalRow(
                m.method,
                m.calls,
                float(m.nll_bpd.mean()),
                m.expected_bpd,
                len(sub),
                seconds,
                m.note,
            )
        )
        start = time.perf_counter()
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
