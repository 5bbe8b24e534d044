"""Float coder (format v4) against the integer coder (v5), side by side in one run.

``python -m benchmarks.codec_versions --model mnist --items 8 --repeats 3``: encode the first
``items`` test items as one batch of files and decode them one file at a time, with the
caller's torch threads (2 by default), at budget 20; medians of ``repeats`` rounds, v4 and v5
alternating; every decoded file is checked. Writes ``benchmarks/results/codec_versions.*``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import ardm
from ardm.coding.codec import compress, decompress
from ardm.data.items import model_items
from benchmarks.machine import write_results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="mnist")
    p.add_argument("--items", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--budget", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model = ardm.load(args.model)
    x = model_items(model, "test", args.items)
    times: dict[str, list[float]] = {
        k: [] for k in ("v4 encode", "v4 decode", "v5 encode", "v5 decode")
    }
    sizes: dict[int, int] = {}
    for _ in range(args.repeats):
        for version in (4, 5):
            start = time.perf_counter()
            blobs = compress(model, x, budget=args.budget, version=version)
            times[f"v{version} encode"].append(time.perf_counter() - start)
            start = time.perf_counter()
            decoded = [decompress(model, blob) for blob in blobs]
            times[f"v{version} decode"].append(time.perf_counter() - start)
            assert all(torch.equal(y, item) for y, item in zip(decoded, x, strict=True))
            sizes[version] = sum(len(blob) for blob in blobs)
    rate = {k: args.items / statistics.median(v) for k, v in times.items()}
    rows = [f"| {k} | {statistics.median(v):.2f} | {rate[k]:.2f} |" for k, v in times.items()]
    table = "\n".join(
        [
            f"{args.model}, {args.items} test items, budget {args.budget}, {args.threads} threads",
            "",
            "| coder | seconds (median) | items/s |",
            "| --- | ---: | ---: |",
            *rows,
            "",
            f"Bytes: v4 {sizes[4]}, v5 {sizes[5]} ({100 * (sizes[5] / sizes[4] - 1):+.2f} %).",
        ]
    )
    print(table)
    write_results("codec_versions", {"times": times, "items_per_s": rate, "bytes": sizes}, table)


if __name__ == "__main__":
    main()
