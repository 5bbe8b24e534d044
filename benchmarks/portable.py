"""The integer coder (format v5, and v8: spread orders) against the float coder (v4), every
shipped tiled model.

    PYTHONPATH=src python -m benchmarks.portable [--models mnist,cifar10-subset,english,fsdd,fsdd-mixture]
        [--items 8] [--budget 20] [--repeats 7]

Side by side in one run, per model, on the same test items, budget and 2 threads:

* bytes per file of the float coder (v4) and the integer coder in seeded orders (v5: the rate
  cost of the integer tables and the seeded order) and in spread orders (v8, what it writes);
* encode and decode items/s of v4 and v8 as a user runs them: ``codec.compress`` on the batch of items
  (float: one item per worker thread at batch 1, as v4 files are coded; integer: items
  batched ``codec.PORTABLE_BATCH`` to a network call) and ``files.decompress_files`` on the
  list of files (float: one file per worker thread; integer: the files decoded together,
  ``codec.decompress_many``, tiles batched as in ``compress``); every file is decoded and
  compared;
* one network call on one thread (median of ``--repeats``): the float32 network and the
  integer network as the integer coder calls it (an Upscale net: the stage's logits only),
  for one item and per item at batch 16, half the variables known, and the integer call
  with its pmf at one step's variables.

Results: ``benchmarks/results/portable.json`` / ``.md``. Targets (issue 13): rate cost at most
1 %, an integer call within 1.5x of a float32 call, items/s at least the float coder's.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import torch

import ardm
from ardm.coding import codec
from ardm.coding.files import decompress_files
from ardm.core.orders import order_from_seed
from ardm.core.upscale import coarsen
from ardm.data.items import model_items
from ardm.models.upscale import UpscaleARDM
from benchmarks.machine import interleaved_median_ms, timed, write_results

MODELS = "mnist,cifar10-subset,english,fsdd,fsdd-mixture"


def coder_row(m: Any, x: torch.Tensor, budget: int, version: int) -> dict[str, float]:
    """Bytes per file and items/s of one coder; every file decoded and compared."""
    blobs, enc_s = timed(lambda: codec.compress(m, x, budget=budget, version=version))
    names = [f"item {i}" for i in range(len(x))]
    decoded, dec_s = timed(lambda: decompress_files(m, blobs, names))
    if not all(torch.equal(d, x[i]) for i, d in enumerate(decoded)):
        raise AssertionError(f"version {version}: a file did not decode to its item")
    if not all(b[2] == version for b in blobs):
        raise AssertionError(f"the coder wrote another version than {version}")
    return {
        "bytes_per_file": sum(map(len, blobs)) / len(blobs),
        "encode_items_per_s": len(x) / enc_s,
        "decode_items_per_s": len(x) / dec_s,
    }


def call_inputs(m: Any, x: torch.Tensor, B: int) -> tuple[torch.Tensor, ...]:
    """A batch of ``B`` copies of the first item with half of its variables known (for an
    Upscale model: its last stage, the unknown ones at their coarse value), and ``t``."""
    D = m.D
    xb = x[:1].expand(B, *x.shape[1:]).contiguous()
    known = (order_from_seed(D, 1) < D // 2).view(1, *x.shape[1:]).expand_as(xb)
    if isinstance(m, UpscaleARDM):
        flat = xb.reshape(B, D)
        coarse = coarsen(flat, 1, b=m.b, S=m.S).view_as(xb)
        return torch.where(known, xb, coarse), known, torch.full((B,), (m.S - 1) * D + D // 2)
    return xb, known, torch.full((B,), D // 2)


@torch.no_grad()
def _three(
    m: Any, inputs: tuple[torch.Tensor, ...], repeats: int, budget: int
) -> tuple[float, float, float]:
    """ms of one call of the float32 net, of the integer net as the coder calls it, and of
    that call with the integer tables at one step's variables (``D / budget`` of them)."""
    call, step = coder_step(m, inputs, budget)
    fl, it, pmf = interleaved_median_ms([lambda: m.net(*inputs), call, step], repeats)
    return fl, it, pmf


def coder_step(
    m: Any, inputs: tuple[torch.Tensor, ...], budget: int
) -> tuple[Callable[[], torch.Tensor], Callable[[], torch.Tensor]]:
    """The integer coder's network call on ``inputs`` and that call with its tables at one
    step's variables (the first ``D / budget``; a 16-bit mixture's high byte, whose low byte
    costs about the same again), exactly as the coder makes them: from the last stage of
    ``PortableModel.coding_stages`` (an Upscale net: that stage's logits only; a net that
    takes the step's positions: their rows only; the float32 call computes everything)."""
    stages = m.portable.coding_stages(m, budget, 0)
    stage = stages[-1]
    x, known, t = inputs
    t = t - (len(stages) - 1) * m.D  # the stage's own count of known variables
    positions = torch.arange(max(1, m.D // budget))

    def call() -> torch.Tensor:
        if stage.at:
            return stage.log_prob_fn(x, known, t, positions)  # (B, m, O)
        return stage.log_prob_fn(x, known, t)  # (B, *shape, O)

    def step() -> torch.Tensor:
        out = call()
        if not stage.at:
            out = out.reshape(out.shape[0], -1, out.shape[-1])[:, positions]  # (B, m, O)
        if stage.byte_pair is not None:
            return stage.byte_pair(out, None)
        return out if stage.head is None else stage.head(out)

    return call, step


def calls(m: Any, x: torch.Tensor, repeats: int, budget: int) -> dict[str, float]:
    """ms per item of one call, 1 thread: float32 net, integer net, integer net + pmf."""
    out: dict[str, float] = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for B in (1, 16):
            fl, it, pmf = _three(m, call_inputs(m, x, B), repeats, budget)
            fl, it, pmf = fl / B, it / B, pmf / B
            out[f"float_ms_batch_{B}"] = round(fl, 2)
            out[f"integer_ms_batch_{B}"] = round(it, 2)
            out[f"integer_pmf_ms_batch_{B}"] = round(pmf, 2)
            out[f"ratio_batch_{B}"] = round(it / fl, 2)
    finally:
        torch.set_num_threads(threads)
    return out


def bench_model(name: str, args: argparse.Namespace) -> dict[str, Any]:
    m = ardm.load(name)
    x = model_items(m, "test", args.items)
    print(f"{name}: {len(x)} test items, budget {args.budget}", flush=True)
    rows = {v: coder_row(m, x, args.budget, v) for v in (4, 5, 8)}
    f, i, s = rows[4], rows[5], rows[8]
    return {
        "model": name,
        "items": len(x),
        "float_v4": {k: round(v, 3) for k, v in f.items()},
        "integer_v5": {k: round(v, 3) for k, v in i.items()},
        "integer_v8": {k: round(v, 3) for k, v in s.items()},
        "rate_cost_percent": round(100 * (i["bytes_per_file"] / f["bytes_per_file"] - 1), 3),
        "v8_against_v4_percent": round(100 * (s["bytes_per_file"] / f["bytes_per_file"] - 1), 3),
        "calls": calls(m, x, args.repeats, args.budget),
    }


def markdown(results: list[dict[str, Any]], budget: int) -> str:
    lines = [
        f"Budget {budget}, 2 threads for the coders; the same test items for every coder. "
        "Rate cost: the integer tables (v5, seeded orders as v4) against the float coder; v8 is "
        "what the integer coder writes now (spread orders); speeds: float v4 against v8.",
        "",
        "| model | items | bytes/file float v4 | integer v5 | rate cost | integer v8 | v8 "
        "against v4 | encode items/s float / integer | decode items/s float / integer |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        f, i, s = r["float_v4"], r["integer_v5"], r["integer_v8"]
        lines.append(
            f"| `{r['model']}` | {r['items']} | {f['bytes_per_file']:.1f} | "
            f"{i['bytes_per_file']:.1f} | {r['rate_cost_percent']:+.2f} % | "
            f"{s['bytes_per_file']:.1f} | {r['v8_against_v4_percent']:+.2f} % | "
            f"{f['encode_items_per_s']:.2f} / {s['encode_items_per_s']:.2f} | "
            f"{f['decode_items_per_s']:.2f} / {s['decode_items_per_s']:.2f} |"
        )
    lines += [
        "",
        "One network call, ms per item, 1 thread (half the variables known); the integer call "
        "as the coder makes it (`fsdd`: the stage's 256 logits of 512; U-Nets: the last conv "
        "at the step's D / budget variables only; the float32 call computes all), and with "
        "its pmf at one step's variables; the three are called in turn, the median of each "
        "(so a change of the machine's load reaches all three alike):",
        "",
        "| model | float32, 1 item | integer, 1 item | ratio | float32, per item at 16 | "
        "integer, per item at 16 | ratio | integer + pmf of a step, per item at 16 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        c = r["calls"]
        lines.append(
            f"| `{r['model']}` | {c['float_ms_batch_1']:.1f} | {c['integer_ms_batch_1']:.1f} | "
            f"{c['ratio_batch_1']:.2f}x | {c['float_ms_batch_16']:.1f} | "
            f"{c['integer_ms_batch_16']:.1f} | {c['ratio_batch_16']:.2f}x | "
            f"{c['integer_pmf_ms_batch_16']:.1f} |"
        )
    lines += [
        "",
        "Targets: rate cost at most 1 %, an integer call within 1.5x of a float32 call, "
        "items/s of the integer coder at least the float coder's.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=MODELS, help=f"comma-separated (default {MODELS})")
    ap.add_argument("--items", type=int, default=8)
    ap.add_argument("--budget", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--name", default="portable", help="results/<name>.json and .md")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    results = [bench_model(n, args) for n in args.models.split(",")]
    payload = {"budget": args.budget, "threads": 2, "results": results}
    write_results(args.name, payload, markdown(results, args.budget))


if __name__ == "__main__":
    main()
