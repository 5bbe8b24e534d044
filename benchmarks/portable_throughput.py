"""The integer coder (format v5) against the float coder (v4) on the shipped MNIST model.

    PYTHONPATH=src python -m benchmarks.portable_throughput [--items 16] [--budget 20]

Side by side in one run, on the same test items, budget and 2 threads: bytes per file (the
rate cost of the integer tables and of the seeded order), encode and decode items/s (float:
per item, batch 1 on a pool of worker threads, as ``compress`` codes v4 files; integer: items
batched ``PORTABLE_BATCH`` to a network call, as v5 files are coded; decoding is one file at
a time in both), and one network call's time (batch 1, 1 thread; per item at batch 16).
Results: ``benchmarks/results/portable_throughput.json`` / ``.md``.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from typing import Any

import torch

import ardm
from ardm.coding import codec
from ardm.data.items import model_items
from benchmarks.machine import timed, write_results


def _coder_row(m: Any, x: torch.Tensor, budget: int, version: int) -> dict[str, float]:
    blobs, enc_s = timed(lambda: codec.compress(m, x, budget=budget, version=version))
    decoded, dec_s = timed(lambda: [codec.decompress(m, b) for b in blobs])
    assert all(torch.equal(d, x[i]) for i, d in enumerate(decoded))
    assert all(b[2] == version for b in blobs)
    return {
        "bytes_per_file": sum(map(len, blobs)) / len(blobs),
        "encode_items_per_s": len(x) / enc_s,
        "decode_items_per_s": len(x) / dec_s,
    }


def _call_ms(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        _, s = timed(fn)
        times.append(s)
    return 1000 * statistics.median(times)


def _calls(m: Any, x: torch.Tensor, repeats: int) -> dict[str, float]:
    """One network call (ms): batch 1 and per item at batch 16, 1 thread, float vs integer."""
    out = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for B in (1, 16):
            xb = x[:B].repeat(max(1, B // len(x[:B])), 1, 1, 1)[:B]
            known = torch.rand(xb.shape, generator=torch.Generator().manual_seed(0)) < 0.5
            t = known.flatten(1).sum(1)
            with torch.no_grad():
                fl = _call_ms(lambda a=xb, k=known, s=t: m.log_probs(a, k, s), repeats) / B
            it = _call_ms(lambda a=xb, k=known, s=t: m.portable.pmf(a, k, s), repeats) / B
            out[f"float_ms_per_item_batch_{B}"] = round(fl, 2)
            out[f"integer_ms_per_item_batch_{B}"] = round(it, 2)
    finally:
        torch.set_num_threads(threads)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=16)
    ap.add_argument("--budget", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    torch.set_num_threads(2)
    m = ardm.load("mnist")
    x = model_items(m, "test", args.items)
    rows = {
        "float_v4": _coder_row(m, x, args.budget, 4),
        "integer_v5": _coder_row(m, x, args.budget, 5),
    }
    rows = {k: {n: round(v, 3) for n, v in r.items()} for k, r in rows.items()}
    calls = _calls(m, x, args.repeats)
    f, i = rows["float_v4"], rows["integer_v5"]
    payload = {
        "model": "mnist",
        "items": args.items,
        "budget": args.budget,
        "threads": 2,
        "portable_batch": codec.PORTABLE_BATCH,
        "coders": rows,
        "rate_cost_percent": round(100 * (i["bytes_per_file"] / f["bytes_per_file"] - 1), 3),
        "calls": calls,
    }
    lines = [
        "| coder | bytes/file | encode items/s | decode items/s |",
        "|---|---|---|---|",
        *(
            f"| {k} | {r['bytes_per_file']} | {r['encode_items_per_s']} | "
            f"{r['decode_items_per_s']} |"
            for k, r in rows.items()
        ),
        "",
        f"Rate cost of v5: {payload['rate_cost_percent']} % (bytes per file). One network call, "
        "ms per item (1 thread): " + ", ".join(f"{k} {v}" for k, v in calls.items()),
    ]
    write_results("portable_throughput", payload, "\n".join(lines))


if __name__ == "__main__":
    main()
