"""Lossless compression: the ARDM codec against classical codecs, side by side, same items.

    python -m benchmarks.compression --model-mnist runs/bench/mnist-tiny \\
        --model-fashion-mnist runs/bench/fashion-mnist-tiny --model-english runs/bench/english-tiny

Per dataset with a model (test split; the first ``--items`` items):

* the model codec (:func:`ardm.coding.codec.compress`, one ``.ardm`` file per item) at each
  budget of ``--budgets``: bits per dim of the files *including every header byte*, header
  bytes per file, the model's own NLL of the same items under the same order and policy
  (``model.exact_nll_bpd``, bits per dim), so the coder's overhead (payload − the 32-bit
  checksum the stream carries − NLL) is visible,
  encode and decode speed, and decode == input checked for every file. A row codes
  ``min(--items, --max-calls // budget)`` items (one network call per step and item); its
  column "best classical, same items" compares on exactly those items.
* classical codecs on every item, each item its own file, every file decoded back and
  compared: PNG (Pillow, optimize, level 9), WebP lossless (Pillow, quality 100, method 6,
  exact), JPEG-XL lossless at effort 10 and JPEG-LS (``imagecodecs``, if installed), zstd -19
  on the raw bytes; for text xz -9e, zstd -19, bzip2 -9, brotli q11 and PPMd (var. I, best
  order on the whole test text), per chunk, on one file of the same chunks, and on the
  whole test split.
* coder-only throughput (``ans.Encoder.push_step`` / ``ans.Decoder.pop_step`` with the
  probability rows ready, one thread), and the cost of the log-prob -> row conversion.

Writes ``benchmarks/results/compression.{json,md}`` (with the machine and codec versions).
Install the classical codecs with ``pip install -e '.[bench]'``; missing ones are reported
and skipped, never faked.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from ardm.coding import classical
from ardm.coding.stages import coding_probs
from benchmarks.machine import write_results

Codec = tuple[Callable[[Any], bytes], Callable[[bytes], Any]]
"""``(encode, decode)``: an item (``uint8`` array or ``bytes``) -> file bytes -> the item."""


@dataclass
class Row:
    """One codec on one set of items; sizes are per file, every header byte included."""

    codec: str
    setting: str
    items: int
    bits: float  # bits per dim (images) or per character (text), mean over items
    header_bytes: float | None = None
    payload_bits: float | None = None  # payload only (no header), per dim
    nll_bits: float | None = None  # model's -log2 p under the same order and policy, per dim
    expected_bits: float | None = None  # the DP's prediction from the stored L_t
    best_classical: str | None = None  # best classical codec on the same items
    encode_items_s: float = 0.0
    decode_items_s: float = 0.0
    verified: str = ""  # "n/n" items decoded exactly
    extra: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------- classical
image_codecs = classical.image_codecs
text_codecs = classical.text_codecs
codec_versions = classical.codec_versions
_same = classical.same


def bench_classical(
    name: str, setting: str, codec: Codec, items: list[Any], dims: int | list[int]
) -> tuple[Row, np.ndarray]:
    """Encode every item into its own file, decode it back, compare. Returns the row and the
    per-item sizes in bits per dim. ``dims``: values per item, one count for all or one per
    item (clips of different lengths); the row's size is all bits over all values."""
    encode, decode = codec
    t = time.perf_counter()
    blobs = [encode(x) for x in items]
    t_enc = time.perf_counter() - t
    t = time.perf_counter()
    back = [decode(b) for b in blobs]
    t_dec = time.perf_counter() - t
    ok = sum(_same(a, b) for a, b in zip(items, back, strict=True))
    values = np.broadcast_to(np.asarray(dims, dtype=np.float64), (len(blobs),))
    sizes = np.array([8 * len(b) for b in blobs], dtype=np.float64)  # bits per file
    bits = sizes / values
    row = Row(
        codec=name,
        setting=setting,
        items=len(items),
        bits=float(sizes.sum() / values.sum()),
        encode_items_s=len(items) / max(t_enc, 1e-9),
        decode_items_s=len(items) / max(t_dec, 1e-9),
        verified=f"{ok}/{len(items)}",
    )
    return row, bits


# ---------------------------------------------------------------------------- model codec
def bench_model(
    model: Any,
    x: torch.Tensor,
    budget: int,
    *,
    whole: bool = False,
    nll_batch: int = 256,
) -> Row:
    """The model codec on items ``x (N, *shape)``: one file per item (``whole``: all items
    concatenated along the first axis into one tiled file)."""
    from ardm.coding import codec, container, files

    D = model.D
    budget = min(budget, model.S * D)
    # budget = all calls; an Upscale ARDM splits them over its stages by the joint DP
    policies = model.stage_policies(budget, mode="joint")
    calls, expected = sum(len(p) for p in policies), model.expected_bpd(policies)
    data = x.reshape(-1) if whole else x  # (N*L,) one text, or (N, *shape)
    t = time.perf_counter()
    blobs = codec.compress(model, data, budget=budget)
    t_enc = time.perf_counter() - t
    blobs = [blobs] if isinstance(blobs, bytes) else blobs
    t = time.perf_counter()
    back = files.decompress_files(model, blobs, [f"item {i}" for i in range(len(blobs))])
    t_dec = time.perf_counter() - t
    want = [data] if whole else list(data)
    ok = sum(torch.equal(a.long().cpu(), b.long().cpu()) for a, b in zip(want, back, strict=True))
    values = data.numel()
    headers = [len(b) - len(container.unpack(b)[1]) for b in blobs]
    total = sum(len(b) for b in blobs)
    t = time.perf_counter()
    nll = model.exact_nll_bpd(x.to(model.device), policies=policies, batch_size=nll_batch)
    t_nll = time.perf_counter() - t
    n = x.shape[0]
    nll_total = float(nll.sum()) * D  # bits, all items
    payload_minus_nll = (8 * (total - sum(headers)) - nll_total) / len(blobs)  # bits per file
    return Row(
        codec="ARDM (this model)" if not whole else "ARDM, one tiled file",
        setting=f"budget {budget}"
        + (" (one call per variable and stage)" if budget == model.S * D else ""),
        items=n,
        bits=8 * total / values,
        header_bytes=float(np.mean(headers)),
        payload_bits=8 * (total - sum(headers)) / values,
        nll_bits=float(nll.mean()),
        expected_bits=float(expected),
        encode_items_s=n / t_enc,
        decode_items_s=n / t_dec,
        verified=f"{ok}/{len(blobs)}" + (f" file ({n} chunks)" if whole else ""),
        extra={
            "nll_seconds": t_nll,
            "network_calls_per_tile": calls,
            "payload_minus_nll_bits_per_file": payload_minus_nll,
            # format v4: each stream starts from the file's 32-bit crc, which it carries
            "coder_overhead_bits_per_file": payload_minus_nll - CRC_BITS,
        },
    )


# ---------------------------------------------------------------------------- coder only
def coder_throughput(K: int, m: int, *, steps: int, repeats: int, seed: int = 0) -> dict[str, Any]:
    """Symbols/s of the coder alone (rows ready), of the row conversion, and of one read of
    the rows (``probs.sum``: the memory traffic every coder call must at least pay)."""
    from ardm.coding import ans, codec

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the codec (every item single-threaded)
    try:
        return _coder_throughput(ans, codec, K, m, steps=steps, repeats=repeats, seed=seed)
    finally:
        torch.set_num_threads(threads)


def _coder_throughput(
    ans: Any, codec: Any, K: int, m: int, *, steps: int, repeats: int, seed: int
) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    logits = torch.from_numpy((3 * rng.standard_normal((steps, m, K))).astype(np.float32))
    log_probs = torch.log_softmax(logits, dim=-1)  # (steps, m, K)
    conv, probs = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        probs = [coding_probs(lp) for lp in log_probs]  # steps x (m, K) float64
        conv.append(time.perf_counter() - t)
    cdf = [np.cumsum(p, axis=1) for p in probs]
    symbols = [
        np.minimum((c < rng.random((m, 1)) * c[:, -1:]).sum(axis=1), K - 1).astype(np.int32)
        for c in cdf
    ]  # (m,) each, drawn from the rows
    enc_t, dec_t, read_t = [], [], []
    payload = b""
    for _ in range(repeats):
        enc = ans.Encoder()
        t = time.perf_counter()
        for s in reversed(range(steps)):
            enc.push_step(symbols[s], probs[s])
        enc_t.append(time.perf_counter() - t)
        payload = enc.get_bytes()
        dec = ans.Decoder(payload)
        t = time.perf_counter()
        out = [dec.pop_step(probs[s]) for s in range(steps)]
        dec_t.append(time.perf_counter() - t)
        assert dec.finished() and all(
            np.array_equal(o, s) for o, s in zip(out, symbols, strict=True)
        )
        t = time.perf_counter()
        for p in probs:
            p.sum(axis=1)
        read_t.append(time.perf_counter() - t)
    shared_t, f32_t = _constriction_diagnostics(probs, symbols, repeats)
    n = steps * m
    nll = -sum(
        np.log2(p[np.arange(m), s] / p.sum(1)).sum() for p, s in zip(probs, symbols, strict=True)
    )
    return {
        "K": K,
        "symbols_per_step": m,
        "steps": steps,
        "encode_symbols_s": n / statistics.median(enc_t),
        "decode_symbols_s": n / statistics.median(dec_t),
        "conversion_symbols_s": n / statistics.median(conv),
        "row_read_symbols_s": n / statistics.median(read_t),
        "shared_row_encode_symbols_s": n / shared_t,
        "float32_rows_encode_symbols_s": n / f32_t,
        "row_bytes": 8 * K,
        "payload_bits_over_nll": 8 * len(payload) - float(nll),
    }


def _constriction_diagnostics(
    probs: list[np.ndarray], symbols: list[np.ndarray], repeats: int
) -> tuple[float, float]:
    """Why the coder is slow, measured on ``constriction`` itself (a diagnostic, not the
    codec: ARDM needs one row per value): median seconds to encode the same symbols (a) with
    ONE shared row, the coder's core speed, and (b) with every row in float32."""
    import constriction

    model = constriction.stream.model.Categorical(perfect=False)
    shared = constriction.stream.model.Categorical(probs[0][0], perfect=False)
    f32 = [p.astype(np.float32) for p in probs]
    shared_t, f32_t = [], []
    for _ in range(repeats):
        coder = constriction.stream.stack.AnsCoder()
        t = time.perf_counter()
        for s in symbols:
            coder.encode_reverse(s, shared)
        shared_t.append(time.perf_counter() - t)
        coder = constriction.stream.stack.AnsCoder()
        t = time.perf_counter()
        for s, p in zip(symbols, f32, strict=True):
            coder.encode_reverse(s, model, p)
        f32_t.append(time.perf_counter() - t)
    return statistics.median(shared_t), statistics.median(f32_t)


# ---------------------------------------------------------------------------- datasets
def _arrays(x: torch.Tensor) -> list[np.ndarray]:
    return [a.numpy().astype(np.uint8) for a in x.cpu()]


def _subset_best(per_item: dict[str, np.ndarray], n: int) -> str | None:
    if not per_item:
        return None
    name = min(per_item, key=lambda k: per_item[k][:n].mean())
    return f"{name} {per_item[name][:n].mean():.3f}"


def bench_images(
    model: Any, x: torch.Tensor, title: str, args: argparse.Namespace
) -> dict[str, Any]:
    codecs, missing = image_codecs()
    D = model.D
    rows: list[Row] = []
    per_item: dict[str, np.ndarray] = {}
    arrays = _arrays(x)
    for name, (setting, c) in codecs.items():
        row, bits = bench_classical(name, setting, c, arrays, D)
        rows.append(row)
        per_item[name] = bits
        _log(f"{title}: {name} {row.bits:.3f} bpd")
    for budget in _budgets(args.budgets, D, model.S):
        n = _row_items(len(x), budget, args.max_calls)
        row = bench_model(model, x[:n], budget)
        row.best_classical = _subset_best(per_item, n)
        rows.insert(len(rows) - len(codecs), row)
        _log(f"{title}: budget {budget}, {n} items: {row.bits:.3f} bpd, NLL {row.nll_bits:.3f}")
    return {
        "title": title,
        "unit": "bpd",
        "D": D,
        "items": len(x),
        "rows": rows,
        "missing": missing,
    }


def bench_audio(model: Any, title: str, args: argparse.Namespace) -> dict[str, Any]:
    """WAV clips of the FSDD test split at their natural lengths, each its own file: the model
    codec (clips longer than the model's window are tiled, the last tile padded and the
    padding not coded) against FLAC and general-purpose compressors on the raw samples."""
    from ardm.coding import codec, container
    from ardm.data import resolve_data_dir
    from ardm.data.audio import FSDD_RATE, natural_clips, samples_to_classes

    root = resolve_data_dir(model.config["data"].get("data_dir"))
    clips = natural_clips(root, "test", args.items)  # spread evenly over the test clips
    samples = sum(len(c) for c in clips)
    codecs, missing = classical.audio_codecs(FSDD_RATE)
    rows: list[Row] = []
    per_item: dict[str, np.ndarray] = {}
    lengths = [len(c) for c in clips]
    for name, (setting, c) in codecs.items():
        row, bits = bench_classical(name, setting, c, clips, lengths)
        rows.append(row)
        per_item[name] = bits * np.array(lengths)  # bits per clip
        _log(f"{title}: {name} {rows[-1].bits:.3f} bits/sample")
    for budget in _budgets(args.budgets, model.D, model.S):
        items = [samples_to_classes(a) for a in clips]
        n = _row_items(
            len(items), budget * math.ceil(samples / len(clips) / model.D), args.max_calls
        )
        items = items[:n]
        t = time.perf_counter()
        blobs = [codec.compress(model, x, budget=budget) for x in items]
        t_enc = time.perf_counter() - t
        t = time.perf_counter()
        back = [codec.decompress(model, b) for b in blobs]  # type: ignore[arg-type]
        t_dec = time.perf_counter() - t
        ok = sum(torch.equal(a, b) for a, b in zip(items, back, strict=True))
        count = sum(len(x) for x in items)
        headers = [len(b) - len(container.unpack(b)[1]) for b in blobs]  # type: ignore[arg-type]
        total = sum(len(b) for b in blobs)
        best = min(per_item, key=lambda k: per_item[k][:n].sum()) if per_item else None
        rows.insert(
            len(rows) - len(codecs),
            Row(
                codec="ARDM (this model)",
                setting=f"budget {budget} per {model.D}-sample window",
                items=n,
                bits=8 * total / count,
                header_bytes=float(np.mean(headers)),
                payload_bits=8 * (total - sum(headers)) / count,
                best_classical=f"{best} {per_item[best][:n].sum() / count:.3f}" if best else None,
                encode_items_s=n / t_enc,
                decode_items_s=n / t_dec,
                verified=f"{ok}/{n}",
            ),
        )
        _log(
            f"{title}: budget {budget}, {n} clips: {rows[len(rows) - len(codecs) - 1].bits:.3f} bits/sample"
        )
    return {
        "title": title + ", natural-length test clips",
        "unit": "bits/sample",
        "D": model.D,
        "items": len(clips),
        "rows": rows,
        "missing": missing,
    }


def bench_text(model: Any, stream: torch.Tensor, title: str, args: argparse.Namespace) -> dict:
    from ardm.data import text_chunks
    from ardm.modalities.registry import modality_for
    from ardm.modalities.text import TextModality

    modality = modality_for(model)
    assert isinstance(modality, TextModality)
    alphabet = modality.alphabet
    L = model.D
    x = text_chunks(stream, L)[: args.items].long()  # (N, L)
    whole_text = alphabet.decode(stream).encode("utf-8")  # the whole test split, 1 byte/char
    chunks = [alphabet.decode(c).encode("utf-8") for c in x]
    codecs, missing = text_codecs(whole_text)
    rows: list[Row] = []
    per_item: dict[str, np.ndarray] = {}
    for name, (setting, c) in codecs.items():
        row, bits = bench_classical(name, setting + ", each chunk its own file", c, chunks, L)
        rows.append(row)
        per_item[name] = bits
    joined = b"".join(chunks)
    for name, (setting, c) in codecs.items():
        row, _ = bench_classical(
            name, setting + f", the {len(x)} chunks in one file", c, [joined], len(joined)
        )
        row.items = len(x)
        rows.append(row)
    for name, (setting, c) in codecs.items():
        row, _ = bench_classical(
            name, setting + f", whole test split in one file ({len(whole_text):,} chars)",
            c, [whole_text], len(whole_text),
        )  # fmt: skip
        row.items = 1
        rows.append(row)
        _log(f"{title}: {name} whole {row.bits:.3f} bpc")
    model_rows = []
    for budget in _budgets(args.budgets, L):
        n = _row_items(len(x), budget, args.max_calls)
        row = bench_model(model, x[:n], budget)
        row.best_classical = _subset_best(per_item, n)
        model_rows.append(row)
        _log(f"{title}: budget {budget}, {n} chunks: {row.bits:.3f} bpc, NLL {row.nll_bits:.3f}")
        if args.text_whole:
            whole = bench_model(model, x[:n], budget, whole=True)
            joined_n = b"".join(chunks[:n])
            sizes = {
                k: 8 * len(enc(joined_n)) / len(joined_n) for k, (_, (enc, _)) in codecs.items()
            }
            best = min(sizes, key=lambda k: sizes[k])
            whole.best_classical = f"{best} {sizes[best]:.3f} (one file)"
            model_rows.append(whole)
    return {
        "title": title,
        "unit": "bpc",
        "D": L,
        "items": len(x),
        "rows": model_rows + rows,
        "missing": missing,
    }


def _budgets(text: str, D: int, stages: int = 1) -> list[int]:
    """Budgets of ``--budgets`` (``D``: one call per variable and stage) a model can use."""
    out: list[int] = []
    for part in text.split(","):
        b = stages * D if part.strip().upper() == "D" else int(part)
        if stages <= b <= stages * D and b not in out:
            out.append(b)
    return out


def _row_items(n: int, budget: int, max_calls: int) -> int:
    return max(1, min(n, max_calls // budget))


def _log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- report
def _fmt(v: float | None, digits: int = 3) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def _speed(v: float) -> str:
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}" if v >= 1 else f"{v:.3f}"


def markdown(datasets: list[dict[str, Any]], coder: list[dict[str, Any]], notes: list[str]) -> str:
    out = []
    for ds in datasets:
        u = ds["unit"]
        out.append(f"## {ds['title']} (test split, first {ds['items']} items, D = {ds['D']})\n")
        out.append(
            f"| codec | setting | items | {u} (files, all headers) | header B/file | "
            f"NLL {u} (same order, policy) | size − NLL {u} | coder overhead bits/file | "
            f"DP expected {u} | best classical, same items | enc items/s | dec items/s | "
            "decoded = input |"
        )
        out.append(
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | --- |"
        )
        for r in ds["rows"]:
            gap = None if r.nll_bits is None else r.bits - r.nll_bits
            per_file = r.extra.get("coder_overhead_bits_per_file")
            out.append(
                f"| {r.codec} | {r.setting} | {r.items} | **{r.bits:.3f}** | "
                f"{_fmt(r.header_bytes, 1)} | {_fmt(r.nll_bits)} | {_fmt(gap)} | "
                f"{_fmt(per_file, 1)} | {_fmt(r.expected_bits)} | {r.best_classical or '—'} | "
                f"{_speed(r.encode_items_s)} | {_speed(r.decode_items_s)} | {r.verified} |"
            )
        for name, why in ds["missing"].items():
            out.append(f"\n- {name}: skipped ({why})")
        out.append("")
    if coder:
        out.append("## Coder only (one thread, probability rows ready)\n")
        out.append(
            "| K | symbols/step | steps | encode M sym/s | decode M sym/s | log-probs → rows "
            "M sym/s | one read of the rows M sym/s | constriction, float32 rows M sym/s | "
            "constriction, one shared row M sym/s | row bytes | payload − NLL (bits) |"
        )
        out.append("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for c in coder:
            out.append(
                f"| {c['K']} | {c['symbols_per_step']} | {c['steps']} | "
                f"{c['encode_symbols_s'] / 1e6:.2f} | {c['decode_symbols_s'] / 1e6:.2f} | "
                f"{c['conversion_symbols_s'] / 1e6:.2f} | {c['row_read_symbols_s'] / 1e6:.2f} | "
                f"{c['float32_rows_encode_symbols_s'] / 1e6:.2f} | "
                f"{c['shared_row_encode_symbols_s'] / 1e6:.1f} | "
                f"{c['row_bytes']} | {c['payload_bits_over_nll']:.1f} |"
            )
        out.append("")
    out.extend(f"- {n}" for n in notes)
    return "\n".join(out)


CRC_BITS = 32
"""The data checksum a format-v4 stream starts from and carries (a header field until v3)."""

NOTES = [
    "Sizes are per file with every header byte (the ARDM header is 10–11 bytes for a native "
    "item in format v4, more for a tiled one); bpd = 8 × bytes / values, mean over the row's "
    "items.",
    "ARDM rows code min(--items, --max-calls / budget) items: 'best classical, same items' "
    "compares on exactly those items. The classical rows use all items.",
    "NLL = −Σ log2 p of the same items under the model's coding order and the same policy "
    "(unsmoothed float32 log-probs, model.exact_nll_bpd). size − NLL is everything the file "
    "adds to the model's information content (header + coder). Coder overhead (bits per file) "
    "= payload − 32 − NLL: since format v4 the ANS stream starts from the file's 32-bit data "
    "checksum (which v3 stored as 4 header bytes) and carries it, so the overhead is the "
    "coder's own part: the probability smoothing (≤ 0.0074 bits/value for K = 256, 0.0011 "
    "for K = 27), the 24-bit quantisation "
    "and the rounding of the stream to whole bytes (a checksum below 2^24 leaves the start "
    "state small, so the first values can cost less and the overhead can be negative). "
    "Since format v3 a tiled file is one ANS stream: one final state per file, not per tile.",
    "WebP has no gray mode: gray items come back as RGB and count as decoded exactly only "
    "when all three channels equal the input. 'zstd raw' stores no shape (the benchmark "
    "knows it).",
    "Speeds: ARDM encode/decode run every item alone (batch 1) on a pool of torch-thread "
    "workers (the codec's determinism rule); classical codecs run one item at a time on one "
    "thread. This machine is shared: compare rows of the same run, not across runs.",
    "Coder only (one thread; torch at one thread, as in the codec): ANS itself is fast "
    "(constriction with one shared row: the 'one shared row' column), but every ARDM value "
    "has its own categorical, and constriction's lazy categorical reads, normalises and "
    "quantises the whole float64 row of each value (2 KiB for K = 256) and, decoding, "
    "searches it: the cost is O(K) per value and memory-bound ('one read of the rows' = a "
    "single numpy pass over the same rows; float32 rows halve the traffic). 10 M values/s "
    "at K = 256 would need > 20 GB/s of row reads on one core; it is reached at K = 27.",
]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model-mnist", help="MNIST model (run folder or checkpoint)")
    p.add_argument("--model-fashion-mnist", help="Fashion-MNIST model")
    p.add_argument("--model-cifar", help="CIFAR-10 subset model (3x32x32)")
    p.add_argument("--model-kodak", help="an RGB 32x32 model, run on the Kodak test tiles")
    p.add_argument("--model-english", help="text8-style English model")
    p.add_argument("--model-fsdd", help="FSDD audio model (16-bit, upscale or DMoL)")
    p.add_argument("--items", type=int, default=200, help="test items per dataset (default 200)")
    p.add_argument("--budgets", default="20,100,500,D", help="network calls; D = one per variable")
    p.add_argument(
        "--max-calls",
        type=int,
        default=2000,
        help="network calls per ARDM row (items x budget); caps the row's items (default 2000)",
    )
    p.add_argument(
        "--no-text-whole", dest="text_whole", action="store_false",
        help="skip the ARDM 'one tiled file of all chunks' text rows",
    )  # fmt: skip
    p.add_argument("--coder-repeats", type=int, default=5)
    p.add_argument("--no-coder", dest="coder", action="store_false")
    p.add_argument("--device", default="cpu")
    p.add_argument("--name", default="compression", help="results/<name>.json and .md")
    args = p.parse_args(argv)

    from ardm.config import Config, from_dict
    from ardm.data import dataset_spec, load_split
    from ardm.data.items import eval_items
    from ardm.training.pretrained import load_model

    datasets = []
    jobs = [
        (args.model_mnist, None),
        (args.model_fashion_mnist, None),
        (args.model_cifar, None),
        (args.model_kodak, "kodak32"),
        (args.model_english, None),
        (args.model_fsdd, None),
    ]
    for path, override in jobs:
        if not path:
            continue
        model = load_model(path, device=args.device)
        data = model.config["data"]
        name = override or data["name"]
        title = dataset_spec(name).title
        _log(f"{title}: model {path}, D = {model.D}, K = {model.K}")
        if model.kind == "audio":
            datasets.append(bench_audio(model, title, args))
        elif model.kind == "text":
            stream = load_split(
                name, "test", data_dir=data.get("data_dir") or None, seq_len=model.D
            )
            datasets.append(bench_text(model, stream, title, args))
        else:
            if override:
                x = load_split(name, "test").long()[: args.items]
                if tuple(x.shape[1:]) != model.shape:
                    raise SystemExit(
                        f"{path}: model shape {model.shape}, {name} tiles {tuple(x.shape[1:])}"
                    )
            else:
                x = eval_items(from_dict(Config, model.config), "test", args.items)
            datasets.append(bench_images(model, x, title, args))
        datasets[-1]["model"] = path
    coder = []
    if args.coder:
        for K, m, steps in [
            (256, 784, 16),
            (256, 3072, 4),
            (27, 3072, 4),
            (16, 3072, 4),
            (4, 3072, 4),
            (2, 3072, 4),
        ]:
            coder.append(coder_throughput(K, m, steps=steps, repeats=args.coder_repeats))
            _log(f"coder K={K} m={m}: {coder[-1]['encode_symbols_s'] / 1e6:.2f} M sym/s encode")
    table = markdown(datasets, coder, NOTES)
    payload = {
        "codec_versions": codec_versions(),
        "args": vars(args),
        "datasets": [
            {
                **{k: v for k, v in ds.items() if k != "rows"},
                "rows": [asdict(r) for r in ds["rows"]],
            }
            for ds in datasets
        ],
        "coder_only": coder,
        "notes": NOTES,
    }
    table += "\n\nCodec versions: " + ", ".join(f"{k} {v}" for k, v in codec_versions().items())
    write_results(args.name, payload, table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
