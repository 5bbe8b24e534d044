"""Encode on one machine configuration, decode on another: a shipped model with context
(format v6) in two fresh processes, plain kernels with 1 thread and one window per network
call against the machine's best kernels with 2 threads and 16 windows per call. Both print a
SHA-256 of every table the coder used and of the data; they must be equal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import hashlib, json, sys, torch, ardm
from ardm.coding import chain, chain_files, codec
mode, threads, batch, name, packed, data_path, kw = sys.argv[1:8]
torch.set_num_threads(int(threads))
chain.CHAIN_BATCH = int(batch)
tables = []
portable_rows = chain_files.portable_rows
def hashed(portable):
    logits, rows = portable_rows(portable)
    def each(out):
        r = rows(out)
        tables.append(hashlib.sha256(r.tobytes()).hexdigest())
        return r
    return logits, each
chain_files.portable_rows = hashed  # every table the coder codes with
m = ardm.load(name)
if mode == "encode":
    x = torch.load(data_path)
    open(packed, "wb").write(chain_files.compress_chain(m, x, **json.loads(kw)))
    data = x.long()
else:
    data = codec.decompress(m, open(packed, "rb").read())
print(json.dumps({"tables": sorted(tables), "data": hashlib.sha256(data.numpy().tobytes()).hexdigest()}))
"""


def assert_decodes_elsewhere(model: str, x: torch.Tensor, tmp_path: Path, **kw: Any) -> None:
    """``compress_chain(model, x, **kw)`` under plain kernels, 1 thread, one window per call;
    decoded under the best kernels, 2 threads, 16 windows per call: the same tables and data."""
    env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
    env["PYTHONPATH"] = str(ROOT / "src")
    data, packed = tmp_path / "data.pt", tmp_path / "f.ardm"
    torch.save(x, data)
    results = []
    for mode, capability, threads, batch in (("encode", "default", 1, 1), ("decode", None, 2, 16)):
        run_env = dict(env, **({"ATEN_CPU_CAPABILITY": capability} if capability else {}))
        run = [sys.executable, "-c", CHILD, mode, str(threads), str(batch), model]
        run += [str(packed), str(data), json.dumps(kw)]
        out = subprocess.run(run, env=run_env, capture_output=True, text=True, timeout=900)
        assert out.returncode == 0, out.stderr[-2000:]
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    assert results[0]["tables"] and results[0] == results[1]
