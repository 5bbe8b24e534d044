"""The paper's comparisons, side by side at a scale this machine allows: ``docs/results.md``.

For each dataset, every configuration trains the *same* network preset with the same batch
for the same number of steps (the same compute, whatever else the machine is doing), then is
evaluated on the same test items:

* OA-ARDM, exact NLL under the DP policy and under the naive policy, per number of calls;
* Upscale ARDMs (b = 2, 4, 16 on 8-bit images; b = 256, 16 on 16-bit audio, direct
  parametrisation), exact NLL with the joint DP (a budget counts *all* calls, split over
  stages);
* the D3PM-absorbing baseline (trained with T = 1000), its own bound at 1000, 256, 100, 50
  and 20 steps (= network calls);
* and the stochastic bound of every model (the full ``D`` or ``S * D`` step likelihood).

Each configuration's result is a JSON file under ``--out``; existing results are reused, so
the runner can be stopped and resumed, or a configuration re-run by deleting its file. The
report (tables and plots, PNG via matplotlib) is rewritten from all results present::

    python -m benchmarks.paper_tables --datasets mnist,english,fsdd
    python -m benchmarks.paper_tables --report-only

Only our stand-in datasets are used; numbers are never comparable in absolute value with the
paper's (tiny networks, minutes of CPU training): compare trends.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ardm.config import Config, from_dict, load_config
from ardm.data import dataset_spec
from ardm.data.items import eval_items
from ardm.evaluation import evaluate, rows_to_dicts
from ardm.nets.build import count_params
from ardm.training.pretrained import load_model
from ardm.training.train import train
from benchmarks.machine import machine

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Run:
    dataset: str  # key of DATASETS
    name: str  # short label in tables and plots
    overrides: tuple[str, ...]  # --set style overrides on the dataset's preset


@dataclass(frozen=True)
class Dataset:
    preset: str
    steps: int  # training steps of every model (same network, batch and steps: same compute)
    budgets: tuple[int, ...]  # network calls for the policy rows
    exact_items: int  # test items for the exact (policy) rows
    bound_items: int  # test items for the stochastic bound
    runs: tuple[Run, ...]
    extra: tuple[str, ...] = ()  # overrides for every run of the dataset


def _runs(dataset: str, *entries: tuple[str, tuple[str, ...]]) -> tuple[Run, ...]:
    return tuple(Run(dataset, name, overrides) for name, overrides in entries)


DATASETS: dict[str, Dataset] = {
    "mnist": Dataset(
        "mnist-tiny",
        700,
        (10, 20, 50, 100, 200),
        16,
        500,
        _runs(
            "mnist",
            ("OA-ARDM", ()),
            ("Upscale b=2", ("model.process='upscale'", "model.branching=2")),
            ("Upscale b=4", ("model.process='upscale'", "model.branching=4")),
            ("Upscale b=16", ("model.process='upscale'", "model.branching=16")),
            ("D3PM-absorbing", ("model.process='d3pm'",)),
        ),
    ),
    "english": Dataset(
        "english-tiny",
        1000,
        (5, 10, 20, 50, 100),
        32,
        256,
        _runs("english", ("OA-ARDM", ()), ("D3PM-absorbing", ("model.process='d3pm'",))),
    ),
    "fsdd": Dataset(
        "fsdd-tiny",
        400,
        (20, 50, 100, 200),
        4,
        64,
        _runs(
            "fsdd",
            ("OA-ARDM (DMoL)", ()),
            (
                "Upscale b=256",
                (
                    "model.process='upscale'",
                    "model.output='categorical'",
                    "model.parametrisation='direct'",
                    "model.branching=256",
                ),
            ),
            (
                "Upscale b=16",
                (
                    "model.process='upscale'",
                    "model.output='categorical'",
                    "model.parametrisation='direct'",
                    "model.branching=16",
                ),
            ),
        ),
        ("train.calibrate_passes=1",),
    ),
}
for _name, _data in list(DATASETS.items()):  # one calibration pass of L_t everywhere (CPU time)
    if "train.calibrate_passes=1" not in _data.extra:
        DATASETS[_name] = dataclasses.replace(
            _data, extra=(*_data.extra, "train.calibrate_passes=1")
        )


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


def _evaluate(model: Any, cfg: Any, data: Dataset, run: Run) -> tuple[list[Any], float]:
    items = eval_items(cfg, "test", max(data.bound_items, data.exact_items))
    start = time.perf_counter()
    rows = evaluate(
        model,
        items[: data.bound_items],
        passes=2,
        exact_items=data.exact_items,
        budgets=data.budgets,
        exact=False,
        naive=run.name.startswith("OA"),  # the naive comparison is for the OA-ARDM
    )
    return rows, time.perf_counter() - start


def reevaluate(run: Run, data: Dataset, result: dict[str, Any], out: Path) -> dict[str, Any]:
    """Evaluate a trained run again with the current code (no training); training fields kept."""
    folder = out / run.dataset / _slug(run.name)
    model = load_model(folder)
    cfg = from_dict(Config, model.config)
    print(f"== {run.dataset} / {run.name}: evaluating {folder} again", flush=True)
    rows, eval_s = _evaluate(model, cfg, data, run)
    return {**result, "rows": rows_to_dicts(rows), "eval_seconds": eval_s, "reevaluated": True}


def run_one(run: Run, data: Dataset, *, scale: float, out: Path) -> dict[str, Any]:
    """Train one configuration for ``scale`` times its dataset's steps and evaluate it."""
    steps = max(1, round(data.steps * scale))
    cfg = load_config(
        data.preset,
        [
            *data.extra,
            *run.overrides,
            f"train.steps={steps}",
            "train.minutes=0",
            "train.eval_every=0",
        ],
    )
    folder = out / run.dataset / _slug(run.name)
    print(f"== {run.dataset} / {run.name}: training {steps} steps in {folder}", flush=True)
    start = time.perf_counter()
    result = train(cfg, folder, device="auto", fresh=True, progress=False)
    train_s = time.perf_counter() - start
    model = load_model(folder)
    rows, eval_s = _evaluate(model, cfg, data, run)
    spec = dataset_spec(cfg.data.name, seq_len=cfg.data.seq_len)
    return {
        "dataset": run.dataset,
        "title": spec.title,
        "D": spec.D,
        "K": spec.K,
        "name": run.name,
        "preset": data.preset,
        "overrides": list(run.overrides),
        "params": count_params(model.net),
        "steps": result.step,
        "train_seconds": train_s,
        "eval_seconds": eval_s,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "machine": machine(),
        "rows": rows_to_dicts(rows),
    }


# ---------------------------------------------------------------------------- report
def _unit(dataset: str) -> str:
    return {"english": "bpc", "fsdd": "bits/sample"}.get(dataset, "bpd")


def _curve(result: dict[str, Any], method: str) -> list[tuple[int, float]]:
    return sorted((r["calls"], r["bpd"]) for r in result["rows"] if r["method"] == method)


def _bound(result: dict[str, Any]) -> float:
    return float(next(r["bpd"] for r in result["rows"] if r["method"] == "bound"))


def _series(result: dict[str, Any]) -> list[tuple[str, list[tuple[int, float]]]]:
    """(label, [(calls, bits)]) of one configuration: DP and naive, or D3PM's steps."""
    name = result["name"]
    if result["rows"] and any(r["method"] == "d3pm" for r in result["rows"]):
        return [(name, _curve(result, "d3pm"))]
    out = [(f"{name}, DP policy", _curve(result, "dp"))]
    if name.startswith("OA"):
        out.append((f"{name}, naive policy", _curve(result, "naive")))
    return out


def _plot(dataset: str, results: list[dict[str, Any]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for result in results:
        for label, points in _series(result):
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(
                    xs, ys, marker="o", label=label, linestyle="--" if "naive" in label else "-"
                )
    ax.set_xscale("log")
    ax.set_xlabel("network calls per data point")
    ax.set_ylabel(f"test {_unit(dataset)} (exact NLL or the model's own bound)")
    ax.set_title(results[0]["title"], fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def _table(dataset: str, results: list[dict[str, Any]]) -> str:
    unit = _unit(dataset)
    calls = sorted({c for r in results for _, pts in _series(r) for c, _ in pts})
    head = [
        "model",
        "params",
        "train",
        f"bound ({unit}, all steps)",
        *[f"{c} calls" for c in calls],
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for result in results:
        for label, points in _series(result):
            by_calls = dict(points)
            cells = [
                label,
                f"{result['params'] / 1e6:.2f} M",
                f"{result['steps']} steps, {result['train_seconds'] / 60:.1f} min "
                f"{result['device'].upper()}",
                f"{_bound(result):.3f}" if "naive" not in label else "",
                *[f"{by_calls[c]:.3f}" if c in by_calls else "" for c in calls],
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(out: Path, docs: Path) -> Path:
    """``docs/results.md`` and its plots from every result under ``out``."""
    docs.mkdir(parents=True, exist_ok=True)
    sections = []
    for dataset in DATASETS:
        files = sorted((out / dataset).glob("*.json"))
        order = [_slug(r.name) for r in DATASETS[dataset].runs]
        results = sorted(
            (json.loads(f.read_text()) for f in files),
            key=lambda r: order.index(_slug(r["name"])) if _slug(r["name"]) in order else 99,
        )
        if not results:
            continue
        first = results[0]
        plot = docs / f"results_{dataset}.png"
        drew = _plot(dataset, results, plot)
        cpu = first["machine"].get("cpu", "unknown CPU")
        text = [
            f"## {first['title']}",
            "",
            f"D = {first['D']}, K = {first['K']}; preset `{first['preset']}` for every model; "
            f"{cpu}, {first['machine'].get('torch_threads')} torch thread(s) per run "
            f"(load average {first['machine'].get('load_avg_1min', math.nan):.1f} when the first "
            f"model finished). Policy rows: exact NLL of the first "
            f"{next(r['items'] for r in first['rows'] if r['method'] != 'bound')} test items "
            f"(fixed order); bound: stochastic bound over "
            f"{next(r['items'] for r in first['rows'] if r['method'] == 'bound')} test items.",
            "",
            _table(dataset, results),
            "",
        ]
        if drew:
            text += [f"![{first['title']}: bits against network calls]({plot.name})", ""]
        sections.append("\n".join(text))
    path = docs / "results.md"
    discussion = docs / "results_discussion.md"  # written by a person after reading the run
    notes = "\n" + discussion.read_text() if discussion.exists() else ""
    path.write_text(HEADER + "\n".join(sections) + FOOTER + notes)
    return path


HEADER = """# Results: the paper's comparisons on our data

Written by `python -m benchmarks.paper_tables` (see that file for the exact protocol). Every
model of a dataset has the same network preset, batch size and number of training steps. These are **tiny models trained for minutes on a CPU**, on stand-in datasets
(never the paper's): compare *trends* with the paper's tables in `../shared/PAPER.md`, not
absolute values.

How to read the tables:

* **bound**: the stochastic bound on the full likelihood (`D` steps, or `S * D` for an
  Upscale ARDM; for D3PM its bound at its training `T = 1000`).
* **N calls**: for ARDMs the exact negative log-likelihood (bits per dimension) of the
  parallel model that makes `N` network calls, under the DP policy (or the naive, evenly
  spaced policy); for Upscale ARDMs `N` counts the calls of all stages together (the joint
  DP splits them). For D3PM, its own `N`-step bound (one call per step).

"""

FOOTER = """
## Compared with the paper

The paper's claims, and what to look for above:

1. *ARDMs need far fewer steps than D3PM for the same likelihood* (text8: OA-ARDM 1.43 bpc
   at 250 steps, D3PM-absorbing 1.45 at 1000 and 1.56 at 20; parallel OA-ARDM 1.51 at 20).
   Compare the OA-ARDM DP row with the D3PM row at equal calls.
2. *The DP policy degrades more gracefully than evenly spaced steps*: DP row vs naive row.
3. *Upscale ARDMs are about as good as or better than OA-ARDMs on images* (CIFAR-10: 2.64
   vs 2.69 bpd) at `S` times the sequential steps.
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scale", type=float, default=1.0, help="multiply every training length")
    p.add_argument("--datasets", default="mnist,english,fsdd")
    p.add_argument("--only", default="", help="comma-separated model names to (re)run")
    p.add_argument("--out", default="runs/paper")
    p.add_argument("--docs", default=str(REPO / "docs"))
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--rerun", action="store_true", help="retrain even if a result exists")
    p.add_argument(
        "--reevaluate", action="store_true", help="evaluate existing runs again (no training)"
    )
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    if not args.report_only:
        only = {s.strip() for s in args.only.split(",") if s.strip()}
        for name in args.datasets.split(","):
            data = DATASETS[name]
            for run in data.runs:
                if only and run.name not in only:
                    continue
                path = out / run.dataset / f"{_slug(run.name)}.json"
                if path.exists() and args.reevaluate:
                    result = reevaluate(run, data, json.loads(path.read_text()), out)
                elif path.exists() and not args.rerun:
                    print(f"== {run.dataset} / {run.name}: have {path}")
                    continue
                else:
                    result = run_one(run, data, scale=args.scale, out=out)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(result, indent=2))
                write_report(out, Path(args.docs))
    print(f"wrote {write_report(out, Path(args.docs))}")


if __name__ == "__main__":
    main()
