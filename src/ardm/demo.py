"""``ardm demo``: the main job end to end on MNIST, on CPU, in a few minutes.

Train a tiny model for about a minute, report test bits/dim (stochastic bound, exact for a
fixed order, DP and naive budgets), save sample grids under several budgets, inpaint the
bottom half of test digits, animate one generation, and write ``report.md``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from ardm.checkpoint import load_model
from ardm.config import load_config
from ardm.evaluation import evaluate, rows_to_dicts, rows_to_markdown
from ardm.pictures import save_gif, save_grid
from ardm.train import eval_items, train


def run_demo(out: Path, *, minutes: float = 1.0, fresh: bool = False) -> Path:
    started = time.perf_counter()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    cfg = load_config(
        "mnist-tiny", [f"train.minutes={minutes}", "train.steps=100000", "train.eval_every=0"]
    )
    print(
        f"[1/5] training a tiny U-Net on MNIST for {minutes:g} min (resumes if {out}/model exists)"
    )
    result = train(cfg, out / "model", device="cpu", fresh=fresh)
    model = load_model(out / "model")
    print(f"      {result.step} steps, {result.examples_per_s:.0f} examples/s")

    print("[2/5] evaluating on the MNIST test split")
    items = eval_items(cfg, "test", 1000)
    rows = evaluate(model, items, passes=1, exact_items=4, budgets=(10, 50, 100))
    table = rows_to_markdown(rows, unit="bpd", title="MNIST test split, EMA weights")
    print(table)
    (out / "eval.json").write_text(json.dumps(rows_to_dicts(rows), indent=2))

    print(f"[3/5] sampling digits with 20, 100 and {model.D} network calls")
    pictures = []
    for budget, n in ((20, 16), (100, 16), (model.D, 4)):
        g = torch.Generator().manual_seed(0)
        x = model.sample(n, budget=budget, generator=g)
        pictures.append((budget, save_grid(x, out / f"samples_budget{budget}.png", nrow=8)))

    print("[4/5] inpainting the bottom half of 8 test digits (budget 50)")
    x = items[:8]
    known = torch.ones(model.shape, dtype=torch.bool)
    known[:, model.shape[1] // 2 :] = False
    filled = model.complete(x, known, budget=50, generator=torch.Generator().manual_seed(0))
    hidden = torch.where(known, x, torch.full_like(x, 128))
    inpaint = save_grid(torch.cat([x, hidden, filled]), out / "inpaint.png", nrow=8)

    print("[5/5] animating one generation in its random order (budget 50)")
    frames: list[torch.Tensor] = []
    model.sample(
        4,
        budget=50,
        generator=torch.Generator().manual_seed(1),
        on_step=lambda xs, step: frames.append(xs.clone()),
    )
    gif = save_gif(frames + [frames[-1]] * 10, out / "generation.gif", nrow=4)

    report = out / "report.md"
    lines = [
        "# ardm demo: OA-ARDM on MNIST (CPU)",
        "",
        f"Trained {result.step} steps ({minutes:g} min on CPU, {result.examples_per_s:.0f} examples/s).",
        "",
        table,
        "## Samples",
        "",
        *[f"- {b} network calls: ![]({p.name})" for b, p in pictures],
        "",
        "## Inpainting (rows: original, bottom half hidden, completed with 50 calls)",
        "",
        f"![]({inpaint.name})",
        "",
        f"## One generation, step by step\n\n![]({gif.name})",
        "",
    ]
    report.write_text("\n".join(lines))
    print(f"done in {time.perf_counter() - started:.0f} s; report: {report}")
    return report
