"""v5 (integer coder) vs v4 (float coder) file sizes on the same test items at budget 20.

``PYTHONPATH=src python benchmarks/portable_v5_sizes.py english 16``: prints both sizes
(summed over the items' files, headers included), the v5 round trip and the times, with one
torch thread (results: benchmarks/results/portable_v5_sizes.md)."""

import sys
import time

import torch

import ardm
from ardm.coding.codec import compress, decompress
from ardm.data.items import model_items


def main() -> None:
    name, n = sys.argv[1], int(sys.argv[2])
    torch.set_num_threads(1)
    m = ardm.load(name)
    x = model_items(m, "test", n)
    t0 = time.time()
    v5 = compress(m, x, budget=20)
    t1 = time.time()
    v4 = compress(m, x, budget=20, version=4)
    assert isinstance(v5, list) and isinstance(v4, list)
    t2 = time.time()
    ok = all(torch.equal(decompress(m, b), xi) for b, xi in zip(v5, x, strict=True))
    t3 = time.time()
    s5, s4 = sum(map(len, v5)), sum(map(len, v4))
    print(
        f"{name} ({n} items): v5 {s5} B, v4 {s4} B, {100 * (s5 / s4 - 1):+.3f} %; "
        f"v5 round trip {ok}; encode v5 {t1 - t0:.1f}s, v4 {t2 - t1:.1f}s, "
        f"decode v5 {t3 - t2:.1f}s"
    )


if __name__ == "__main__":
    main()
