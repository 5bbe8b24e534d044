"""Test bits/dim of the models shipped in ``src/ardm/weights`` (the fp16 files users load).

For each name: the stochastic bound over ``--items`` test items, the exact NLL of the fixed
coding order on the first ``--exact-items``, and the exact NLL under the DP and naive
policies for ``--budgets`` network calls (an Upscale ARDM: calls in all, split over its
stages by the joint DP). Writes ``benchmarks/results/shipped_models.{json,md}``.

    python -m benchmarks.shipped_models --names cifar10-subset,fsdd --exact-items 2
"""

from __future__ import annotations

import argparse
import time

import torch

from ardm.data.items import model_items
from ardm.evaluation import evaluate, rows_to_dicts, rows_to_markdown
from ardm.training.pretrained import load, shipped_names
from benchmarks.machine import write_results

UNITS = {"text": "bpc", "audio": "bits/sample"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--names", default=",".join(shipped_names()))
    p.add_argument("--items", type=int, default=500)
    p.add_argument("--passes", type=int, default=1)
    p.add_argument("--exact-items", type=int, default=4)
    p.add_argument("--budgets", default="20,100")
    p.add_argument(
        "--no-exact", action="store_true", help="skip the exact row (S * D calls per item)"
    )
    p.add_argument("--name", default="shipped_models", help="results file name")
    args = p.parse_args()
    budgets = tuple(int(b) for b in args.budgets.split(","))
    payload: dict[str, object] = {}
    tables = []
    for name in args.names.split(","):
        start = time.perf_counter()
        model = load(name)
        items = model_items(model, "test", args.items)
        with torch.no_grad():
            rows = evaluate(
                model,
                items,
                passes=args.passes,
                exact_items=args.exact_items,
                budgets=budgets,
                exact=not args.no_exact,
            )
        params = sum(p.numel() for p in model.parameters())
        title = (
            f"{name}: {params:,} parameters, {len(items)} test items for the bound, "
            f"{min(args.exact_items, len(items))} for the exact rows "
            f"({time.perf_counter() - start:.0f} s)"
        )
        tables.append(rows_to_markdown(rows, unit=UNITS.get(model.kind, "bpd"), title=title))
        payload[name] = {"params": params, "items": len(items), "rows": rows_to_dicts(rows)}
        print(f"{name}: done", flush=True)
    write_results(args.name, payload, "\n".join(tables))


if __name__ == "__main__":
    main()
