"""One harness for "the same bits everywhere": a frozen network's output computed in one batch
on 2 threads, item by item on 1 thread, and in fresh processes under
``ATEN_CPU_CAPABILITY=default`` (plain kernels, 1 thread) and the machine's best (2 threads),
all compared by SHA-256.

A test names what to hash as an expression over ``net, x, known, t`` (``x``, ``known``,
``t`` a slice of the items, rows independent); its value is a tensor or a tuple of tensors,
each concatenated over the slices along the first axis.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import hashlib, sys, torch
net, x, known, t, expr, size = torch.load(sys.argv[1], weights_only=False)
torch.set_num_threads(int(sys.argv[2]))
parts = []
for i in range(0, len(x), size):
    out = eval(expr, {"torch": torch}, {"net": net, "x": x[i:i + size], "known": known[i:i + size], "t": t[i:i + size]})
    parts.append(out if isinstance(out, tuple) else (out,))
print("".join(hashlib.sha256(torch.cat(ts).contiguous().numpy().tobytes()).hexdigest() for ts in zip(*parts)))
"""


def sha(w: torch.Tensor) -> str:
    return hashlib.sha256(w.contiguous().numpy().tobytes()).hexdigest()


def hashed(
    net: Any, expr: str, x: torch.Tensor, known: torch.Tensor, t: torch.Tensor, size: int
) -> str:
    """The SHA-256 of ``expr`` evaluated on slices of ``size`` items, here."""
    parts = []
    for i in range(0, len(x), size):
        scope = {
            "net": net,
            "x": x[i : i + size],
            "known": known[i : i + size],
            "t": t[i : i + size],
        }
        out = eval(expr, {"torch": torch}, scope)
        parts.append(out if isinstance(out, tuple) else (out,))
    return "".join(sha(torch.cat(ts)) for ts in zip(*parts, strict=True))


def assert_same_bits_for_batch_and_threads(
    net: Any, expr: str, x: torch.Tensor, known: torch.Tensor, t: torch.Tensor
) -> None:
    """The whole batch on 2 threads gives the same bits as item by item on 1 thread."""
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        batched = hashed(net, expr, x, known, t, len(x))
        torch.set_num_threads(1)
        single = hashed(net, expr, x, known, t, 1)
    finally:
        torch.set_num_threads(threads)
    assert batched == single


def child_hash(path: Path, capability: str | None, threads: int) -> str:
    """The child's hash under ``ATEN_CPU_CAPABILITY=capability`` (None: the machine's best)."""
    env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
    env["PYTHONPATH"] = str(ROOT / "src")
    if capability is not None:
        env["ATEN_CPU_CAPABILITY"] = capability
    run = [sys.executable, "-c", CHILD, str(path), str(threads)]
    out = subprocess.run(run, env=env, capture_output=True, text=True, timeout=300, check=True)
    return out.stdout.strip().splitlines()[-1]


def assert_same_bits_in_other_processes(
    net: Any,
    expr: str,
    x: torch.Tensor,
    known: torch.Tensor,
    t: torch.Tensor,
    tmp_path: Path,
    *,
    size: int,
) -> None:
    """Fresh processes on plain kernels with 1 thread and on the best kernels with 2, in
    slices of ``size`` items, give the bits of the whole batch here."""
    path = tmp_path / "frozen.pt"
    torch.save((net, x, known, t, expr, size), path)
    here = hashed(net, expr, x, known, t, len(x))
    assert child_hash(path, "default", 1) == here
    assert child_hash(path, None, 2) == here
