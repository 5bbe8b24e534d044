"""Batched integer (v5) coding time with 1 vs 2 torch threads.

``PYTHONPATH=src python benchmarks/portable_threads.py mnist 8``: compress ``N`` test items at
budget 20 (batched calls), then decompress one, alternating 1 and 2 threads (results:
benchmarks/results/portable_threads.md)."""

import sys
import time

import torch

import ardm
from ardm.coding.codec import compress, decompress
from ardm.data.items import model_items


def main() -> None:
    name, n = sys.argv[1], int(sys.argv[2])
    m = ardm.load(name)
    x = model_items(m, "test", n)
    for threads in (1, 2, 1, 2):
        torch.set_num_threads(threads)
        t0 = time.time()
        blobs = compress(m, x, budget=20)
        assert isinstance(blobs, list)
        t1 = time.time()
        decompress(m, blobs[0])
        t2 = time.time()
        print(
            f"{name} threads {threads}: compress {n} items {t1 - t0:.2f}s, "
            f"decompress 1 {t2 - t1:.2f}s",
            flush=True,
        )


if __name__ == "__main__":
    main()
