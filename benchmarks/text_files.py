"""Real text files: the byte-level model with context against classical compressors.

``python -m benchmarks.text_files --model english-bytes``: files of 1, 4, 20 and 100 KB cut
from the English *test* split, each starting after a blank line (a document or section start),
each its own file with all header bytes counted; side by side in one run with PPMd (variant I,
best order on the file itself), bzip2 -9, xz -9e, zstd -19 and brotli -q 11, the same model's
tiled path without context (format v8, tiles of the window in spread orders, the same calls per byte) and the
text8-style ``english`` model's tiled path (on the text8-normalised text: lossy, so its size is
not comparable, shown for reference). Every ardm file is decoded and compared.

Also, on the 4 KB files: the size against budget curve (calls per block) and the size for
each context (known bytes before a block: the block is the rest of the window) at the same
calls per byte; and what the segments (independent chains, decoded as one batch) cost in
size on the 20 KB files.
Writes ``benchmarks/results/text_files.{json,md}``.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import torch

from ardm.coding.chain import (
    CHAIN_BYTES_PER_CALL,
    MAX_SEGMENTS,
    MIN_SEGMENT_BYTES,
    chain_budget,
)
from ardm.coding.chain_files import coder_context, compress_chain
from ardm.coding.classical import text_codecs
from ardm.coding.codec import compress, decompress
from ardm.data.registry import default_data_dir
from ardm.data.text import read_english
from benchmarks.machine import timed, write_results

SIZES = {"1 KB": 1000, "4 KB": 4000, "20 KB": 20000, "100 KB": 100000}


def cut_files(text: bytes, size: int, count: int) -> list[bytes]:
    """``count`` files of ``size`` bytes starting after blank lines, spread over ``text``."""
    starts = [0] + [m.end() for m in re.finditer(rb"\n\n", text)]
    starts = [s for s in starts if s + size <= len(text)]
    picked: list[int] = []
    for i in range(count):
        want = starts[int(i * len(starts) / count)]
        if picked and want < picked[-1] + size:  # no overlap: the next start after the last
            later = [s for s in starts if s >= picked[-1] + size]
            if not later:
                break
            want = later[0]
        picked.append(want)
    return [text[s : s + size] for s in picked]


def load(name: str) -> Any:
    """A model by name or run folder, with its portable form (frozen here if it has none)."""
    from ardm.data.registry import load_split
    from ardm.portable.model import freeze
    from ardm.training.pretrained import load_model

    model = load_model(name).eval()
    if model.portable is None:
        train = load_split(model.config["data"]["name"], "train")
        g = torch.Generator().manual_seed(0)
        starts = torch.randint(0, train.numel() - model.D, (64,), generator=g)
        items = torch.stack([train[s : s + model.D] for s in starts]).long()
        model.portable = freeze(model, items)
    return model


def ardm_row(model: Any, files: list[bytes], budget: int, **kw: Any) -> dict[str, float]:
    """Bytes and speeds of the chain coder (or ``version=8``: tiles) on ``files``."""
    size = enc_s = dec_s = 0.0
    for data in files:
        x = torch.tensor(list(data), dtype=torch.uint8)
        blob, t_enc = timed(lambda x=x: compress(model, x, budget=budget, **kw))
        y, t_dec = timed(lambda blob=blob: decompress(model, blob))
        assert torch.equal(y, x.long()), "a file did not round-trip"
        size, enc_s, dec_s = size + len(blob), enc_s + t_enc, dec_s + t_dec
    n = sum(len(f) for f in files)
    return {"bytes": size, "bpc": 8 * size / n, "enc_Bps": n / enc_s, "dec_Bps": n / dec_s}


def classical_rows(files: list[bytes]) -> dict[str, dict[str, float]]:
    rows: dict[str, dict[str, float]] = {}
    n = sum(len(f) for f in files)
    for data in files:
        codecs, _missing = text_codecs(data)
        for name, (_, (enc, dec)) in codecs.items():
            blob, t_enc = timed(lambda enc=enc, data=data: enc(data))
            out, t_dec = timed(lambda dec=dec, blob=blob: dec(blob))
            assert bytes(out) == data, f"{name} did not round-trip"
            r = rows.setdefault(name, {"bytes": 0, "enc_s": 0.0, "dec_s": 0.0})
            r["bytes"] += len(blob)
            r["enc_s"] += t_enc
            r["dec_s"] += t_dec
    return {
        k: {
            "bytes": r["bytes"],
            "bpc": 8 * r["bytes"] / n,
            "enc_Bps": n / r["enc_s"],
            "dec_Bps": n / r["dec_s"],
        }
        for k, r in rows.items()
    }


def text8_row(files: list[bytes], budget: int) -> dict[str, float]:
    """The text8-style model's tiled path on the normalised files (lossy: for reference)."""
    import tempfile

    import ardm

    model = ardm.load("english").eval()
    size = 0
    for data in files:
        with tempfile.NamedTemporaryFile(suffix=".txt") as f:
            f.write(data)
            f.flush()
            ids = read_english(Path(f.name))
        size += len(compress(model, ids, budget=budget))
    n = sum(len(f) for f in files)
    return {"bytes": size, "bpc": 8 * size / n}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="english-bytes")
    p.add_argument("--files", default="8,4,2,1", help="files of 1, 4, 20, 100 KB")
    p.add_argument("--budget", type=int, default=None, help="calls per block (model default)")
    p.add_argument("--budgets", default="4,7,14,18,28,56", help="the size-against-budget curve")
    p.add_argument("--contexts", default="64,32,16,8", help="contexts at the same calls per byte")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--segment-files", type=int, default=2, help="20 KB files (0: skip)")
    p.add_argument("--name", default="text_files")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model = load(args.model)
    budget = args.budget or model.default_budget
    block = model.D - coder_context(model)
    text = (default_data_dir() / "english" / "test.txt").read_bytes()
    counts = [int(c) for c in args.files.split(",")]
    results: dict[str, Any] = {"budget": budget, "sizes": {}}
    lines = [
        f"Model `{args.model}`, default budget {budget} calls per {block}-byte block, "
        f"{args.threads} threads. Bits per character (byte) with all header bytes; speeds in "
        "bytes per second of the original file.",
        "",
    ]
    for (label, size), count in zip(SIZES.items(), counts, strict=False):
        if count <= 0:
            continue
        files = cut_files(text, size, count)
        rows = classical_rows(files)
        rows["ardm (context chain)"] = ardm_row(model, files, budget)
        if size <= 20000:
            tile_budget = budget * model.D // block  # the same calls per byte
            rows["ardm tiles, no context (v8)"] = ardm_row(model, files, tile_budget, version=8)
        if size <= 4000:
            rows["text8-style `english`, tiled (lossy, reference)"] = text8_row(files, 100)
        results["sizes"][label] = {"files": len(files), "rows": rows}
        lines += [
            f"### {label}: {len(files)} files, {sum(len(f) for f in files):,} bytes",
            "",
            "| codec | bytes | bpc | encode B/s | decode B/s |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for name, r in sorted(rows.items(), key=lambda kv: kv[1]["bpc"]):
            speeds = f"{r['enc_Bps']:,.0f} | {r['dec_Bps']:,.0f}" if "enc_Bps" in r else "- | -"
            lines.append(f"| {name} | {r['bytes']:,.0f} | {r['bpc']:.3f} | {speeds} |")
        lines.append("")
    files4 = cut_files(text, SIZES["4 KB"], counts[1] if len(counts) > 1 else 4)
    budgets = [int(v) for v in args.budgets.split(",") if v]
    n4 = sum(len(f) for f in files4)
    curve = {}
    for b in budgets:
        blobs, secs = timed(
            lambda b=b: [compress(model, torch.tensor(list(f)), budget=b) for f in files4]
        )
        curve[b] = {"bpc": 8 * sum(len(x) for x in blobs) / n4, "enc_Bps": n4 / secs}
    results["budget_curve_4KB"] = curve
    lines += [
        f"### Size against budget (calls per {block}-byte block), the {len(files4)} files of 4 KB",
        "",
        "| budget | bpc | encode B/s |",
        "| ---: | ---: | ---: |",
        *[f"| {b} | {c['bpc']:.3f} | {c['enc_Bps']:,.0f} |" for b, c in curve.items()],
        "",
    ]
    contexts = [int(v) for v in args.contexts.split(",") if v and 0 < int(v) <= model.context]
    by_context = {}
    for c in contexts:
        b = chain_budget(model.D, c)
        blobs = [compress_chain(model, torch.tensor(list(f)), budget=b, context=c) for f in files4]
        by_context[c] = {"budget": b, "bpc": 8 * sum(len(x) for x in blobs) / n4}
    results["contexts_4KB"] = by_context
    lines += [
        f"### Context (known bytes before a block), one call per {CHAIN_BYTES_PER_CALL} block "
        f"bytes, the {len(files4)} files of 4 KB",
        "",
        "| context | block | calls per block | bpc |",
        "| ---: | ---: | ---: | ---: |",
        *[
            f"| {c} | {model.D - c} | {r['budget']} | {r['bpc']:.3f} |"
            for c, r in by_context.items()
        ],
        "",
    ]
    files20 = cut_files(text, SIZES["20 KB"], args.segment_files) if args.segment_files else []
    n20 = sum(len(f) for f in files20)
    seg_rows: dict[str, dict[str, float]] = {}
    choices = (
        ("one chain", 0),
        ("4096 bytes", 4096),
        (f"up to {MAX_SEGMENTS}, of {MIN_SEGMENT_BYTES} bytes or more (default)", None),
    )
    for label, seg in choices if files20 else ():
        x20 = [torch.tensor(list(f)) for f in files20]
        blobs = [compress_chain(model, x, budget=budget, segment_bytes=seg) for x in x20]
        _, secs = timed(lambda blobs=blobs: [decompress(model, b) for b in blobs])
        seg_rows[label] = {"bpc": 8 * sum(len(b) for b in blobs) / n20, "dec_Bps": n20 / secs}
    if files20:
        results["segments_20KB"] = seg_rows
        lines += [
            f"### Segments (independent chains decoded as one batch), {len(files20)} files of "
            "20 KB",
            "",
            "| segments | bpc | decode B/s |",
            "| --- | ---: | ---: |",
            *[f"| {k} | {r['bpc']:.3f} | {r['dec_Bps']:,.0f} |" for k, r in seg_rows.items()],
        ]
    table = "\n".join(lines)
    write_results(args.name, results, table)


if __name__ == "__main__":
    main()
