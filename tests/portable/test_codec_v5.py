"""Format version 5, the integer coder: files that decode on every machine.

Encoded in one subprocess and decoded in another under other kernels
(``ATEN_CPU_CAPABILITY=default`` vs the machine's best), thread counts (1 vs 2) and batch
sizes (several items per network call vs one), comparing the decoded data and the SHA-256 of
every probability table; golden v5 files; corrupt v5 files; the coder's exact tables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import constriction
import numpy as np
import pytest
import torch

import ardm
from ardm.coding import container
from ardm.coding.codec import compress, decompress
from ardm.core.orders import order_from_seed
from ardm.core.seeded_order import seeded_order, splitmix64
from ardm.data.items import model_items
from ardm.errors import FormatError
from ardm.models.ardm import ARDM

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"

CHILD = """
import hashlib, json, sys, torch, ardm
from ardm.coding import codec
from ardm.data.items import model_items
from ardm.coding import lockstep
mode, threads, batch, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
name, n, budget = sys.argv[5], int(sys.argv[6]), int(sys.argv[7])
torch.set_num_threads(threads)
codec.PORTABLE_BATCH = batch
tables = []
rows = lockstep._rows
def hashed(table, b, *, exact=False):
    assert exact
    tables.extend(hashlib.sha256(r.contiguous().numpy().tobytes()).hexdigest() for r in table)
    return rows(table, b, exact=exact)
lockstep._rows = hashed  # every table the coder codes with, one hash per item and step
m = ardm.load(name)
x = model_items(m, "test", n)
if mode == "encode":
    blobs = codec.compress(m, x, budget=budget)
    open(path, "w").write(json.dumps([b.hex() for b in blobs]))
    data = x
else:
    blobs = [bytes.fromhex(h) for h in json.loads(open(path).read())]
    data = torch.stack([codec.decompress(m, b) for b in blobs])
digest = hashlib.sha256(data.numpy().tobytes()).hexdigest()
print(json.dumps({"tables": sorted(tables), "data": digest, "v": blobs[0][2]}))
"""


def _child(
    mode: str,
    capability: str | None,
    threads: int,
    batch: int,
    path: Path,
    model: tuple[str, int, int] = ("mnist", 3, 6),
) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
    env["PYTHONPATH"] = str(ROOT / "src")
    if capability is not None:
        env["ATEN_CPU_CAPABILITY"] = capability
    run = [sys.executable, "-c", CHILD, mode, str(threads), str(batch), str(path)]
    run += [str(v) for v in model]
    out = subprocess.run(run, env=env, capture_output=True, text=True, timeout=900, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("encoder", "decoder"),
    [(("default", 1, 16), (None, 2, 1)), ((None, 2, 1), ("default", 1, 16))],
)
def test_v5_decodes_under_other_kernels_threads_and_batches(
    encoder: tuple[str | None, int, int], decoder: tuple[str | None, int, int], tmp_path: Path
) -> None:
    path = tmp_path / "files.json"
    enc = _child("encode", *encoder, path)
    dec = _child("decode", *decoder, path)
    assert enc["v"] == container.PORTABLE_VERSION
    assert dec["data"] == enc["data"]
    assert dec["tables"] == enc["tables"] and len(enc["tables"]) == 3 * 6


CROSS = {
    "english": ("english", 3, 6),
    "cifar10-subset": ("cifar10-subset", 2, 4),
    "fsdd": ("fsdd", 2, 4),  # two digit stages
    "fsdd-mixture": ("fsdd-mixture", 2, 3),  # 16-bit logistic mixture: two bytes per value
    "fsdd-mixture-1": ("fsdd-mixture-1", 2, 3),  # 14-bit inputs of the dilated convs (float64)
}
"""Other model kinds: (name, items, budget), encoded under the default kernels with one thread
and several items per call, decoded under the best kernels with two threads one at a time."""


@pytest.mark.parametrize("name", sorted(CROSS))
def test_v5_other_kinds_decode_under_other_kernels_threads_and_batches(
    name: str, tmp_path: Path
) -> None:
    path = tmp_path / "files.json"
    _, n, budget = CROSS[name]
    enc = _child("encode", "default", 1, 16, path, CROSS[name])
    dec = _child("decode", None, 2, 1, path, CROSS[name])
    assert enc["v"] == container.PORTABLE_VERSION
    assert dec["data"] == enc["data"]
    per_step = 2 if name.startswith("fsdd-mixture") else 1  # a high-byte and a low-byte table
    assert dec["tables"] == enc["tables"] and len(enc["tables"]) == n * budget * per_step


GOLDEN_KINDS = {
    "english": "v5_english_budget20.ardm",
    "cifar10-subset": "v5_cifar10-subset_budget20.ardm",
    "fsdd-1": "v5_fsdd-1_budget20.ardm",
    "fsdd-mixture-1": "v5_fsdd-mixture-1_budget20.ardm",
}
"""Made by the first integer forms of session 12 (``fsdd-1`` and ``fsdd-mixture-1`` are those of
``fsdd`` and ``fsdd-mixture`` until session 15: 14-bit inputs of the dilated convs)."""

V8_GOLDEN = ["mnist", *sorted(GOLDEN_KINDS), "fsdd", "fsdd-mixture"]
"""Every model kind's v8 golden file: the first integer forms (AMD EPYC with AVX-512, session
13) and the WaveNets' forms on 8-bit inputs (session 15, the same kind of machine)."""


@pytest.mark.parametrize("name", sorted(GOLDEN_KINDS))
def test_golden_v5_files_of_other_kinds_decode(name: str) -> None:
    model = ardm.load(name)
    x = model_items(model, "test", 1)[0]
    blob = (GOLDEN / GOLDEN_KINDS[name]).read_bytes()
    assert blob[2] == container.SEEDED_PORTABLE_VERSION
    assert torch.equal(decompress(model, blob), x)


@pytest.mark.parametrize("name", V8_GOLDEN)
def test_golden_v8_files_decode_and_encode_byte_for_byte_on_this_machine(name: str) -> None:
    """Made on other machines (:data:`V8_GOLDEN`) by ``compress(model, first test item,
    budget=20)``: the spread order of the tile (format version 8)."""
    model = ardm.load(name)
    x = model_items(model, "test", 1)[0]
    blob = (GOLDEN / f"v8_{name}_budget20.ardm").read_bytes()
    assert blob[2] == container.PORTABLE_VERSION == 8
    assert torch.equal(decompress(model, blob), x)
    assert compress(model, x, budget=20) == blob


@pytest.fixture(scope="module")
def mnist() -> ARDM:
    return ardm.load("mnist")


def test_shipped_mnist_has_a_portable_form_and_writes_v5(mnist: ARDM) -> None:
    assert mnist.portable is not None
    assert mnist.portable.float_fingerprint == mnist.fingerprint().hex()
    x = model_items(mnist, "test", 1)[0]
    threads = torch.get_num_threads()
    blob = compress(mnist, x, budget=3)  # batched calls with one intra-op thread, then restored
    assert torch.get_num_threads() == threads
    assert isinstance(blob, bytes) and blob[2] == container.PORTABLE_VERSION
    assert blob[6:10] == mnist.portable.fingerprint()[:4]  # budget, seed: one byte each
    float_blob = compress(mnist, x, budget=3, version=4)
    assert isinstance(float_blob, bytes) and float_blob[2] == container.VERSION
    assert torch.equal(decompress(mnist, float_blob), x)


def test_golden_v5_files_decode(mnist: ARDM) -> None:
    x = model_items(mnist, "test", 2)
    native = (GOLDEN / "v5_mnist_budget20.ardm").read_bytes()
    assert native[2] == 5 and torch.equal(decompress(mnist, native), x[0])
    tiled = (GOLDEN / "v5_mnist_tiled_40x28_budget7.ardm").read_bytes()
    big = torch.cat([x[0], x[1]], dim=-1)[..., :40]
    assert tiled[2] == 5 and torch.equal(decompress(mnist, tiled), big)


def _one_line_error(model: object, blob: bytes) -> str:
    with pytest.raises(FormatError) as e:
        decompress(model, blob)  # type: ignore[arg-type]
    assert "\n" not in str(e.value)
    return str(e.value)


def test_corrupt_v5_files_give_one_line_errors(mnist: ARDM) -> None:
    blob = (GOLDEN / "v5_mnist_budget20.ardm").read_bytes()
    for cut in (3, 9, len(blob) // 2, len(blob) - 1):
        _one_line_error(mnist, blob[:cut])
    flipped = bytearray(blob)
    flipped[len(blob) // 2] ^= 0x10
    _one_line_error(mnist, bytes(flipped))
    foreign = bytearray(blob)
    foreign[6] ^= 0xFF  # the fingerprint
    assert "another model" in _one_line_error(mnist, bytes(foreign))
    bare = mnist.with_net(mnist.net)  # the same weights without the portable form
    assert "integer coder" in _one_line_error(bare, blob)


def test_constriction_codes_exactly_w_plus_one() -> None:
    """A decoder at quantile ``q`` pops the symbol whose interval ``[c_s, c_s+1)`` holds ``q``:
    the interval edges of every symbol are exactly the cumulative sums of ``w + 1``."""
    g = np.random.default_rng(0)
    K = 256
    total = (1 << 24) - K
    raw = g.integers(0, 1 << 20, K) * (g.random(K) < 0.7)
    w = raw * total // raw.sum()
    w[np.argmax(w)] += total - w.sum()
    assert w.sum() == total and (w >= 0).all()
    rows = torch.from_numpy(w)[None]
    from ardm.coding.stages import exact_rows

    probs = exact_rows(rows)  # (1, K) float64, unchanged
    edges = np.concatenate([[0], np.cumsum(w + 1)])  # (K+1,)
    model = constriction.stream.model.Categorical(perfect=False)
    for s in range(K):
        for q in (edges[s], edges[s + 1] - 1):
            coder = constriction.stream.stack.AnsCoder(np.array([(1 << 24) + q], np.uint32))
            assert int(coder.decode(model, probs)[0]) == s


def test_seeded_order_is_splitmix64_fisher_yates() -> None:
    assert splitmix64(0)[1] == 0xE220A8397B1DCDAF  # the reference generator's first output
    sigma = seeded_order(784, 0)
    assert torch.equal(torch.sort(sigma).values, torch.arange(784))
    assert torch.equal(seeded_order(784, 0), sigma) and not torch.equal(seeded_order(784, 1), sigma)
    assert not torch.equal(sigma, order_from_seed(784, 0))  # not torch.randperm's
    assert seeded_order(10, 0).tolist() == [6, 3, 2, 9, 8, 1, 4, 7, 0, 5]  # pinned: the format


def test_the_integer_coder_refuses_a_model_off_the_cpu() -> None:
    """The integer coder runs on the CPU only (exactness is proven for CPU kernels): a model
    on another device gets a one-line error, for encoding and decoding alike."""
    from ardm.training.pretrained import load_model

    model = load_model("mnist")
    x = model_items(model, "test", 1)[0]
    blob = compress(model, x, budget=5)
    assert isinstance(blob, bytes)
    model.to("meta")  # a device other than the CPU on every machine
    with pytest.raises(ValueError, match=r"runs on the CPU.*model\.to\('cpu'\)"):
        compress(model, x, budget=5)
    with pytest.raises(ValueError, match="runs on the CPU"):
        decompress(model, blob)
    assert torch.equal(decompress(load_model("mnist"), blob), x.long())
    chain = load_model("english-bytes")  # a model with context: the chain coder
    text = torch.tensor(list(b"a few bytes of text"), dtype=torch.uint8)
    chain_blob = compress(chain, text, budget=chain.default_budget)
    assert isinstance(chain_blob, bytes)
    chain.to("meta")
    with pytest.raises(ValueError, match="runs on the CPU"):
        compress(chain, text, budget=chain.default_budget)
    with pytest.raises(ValueError, match="runs on the CPU"):
        decompress(chain, chain_blob)
