"""Photos: the natural-photo model with context against classical lossless image codecs.

``python -m benchmarks.photos --model kodak-photo``: the 4 held-out Kodak photos (never seen in
training, :data:`ardm.data.images.KODAK_PHOTOS`), each its own file with all header bytes
counted, side by side in one run with JPEG-XL (efforts 9 and 10), WebP lossless, JPEG 2000
(reversible), JPEG-LS and PNG, and the PNG file as it is stored. ``ardm compress`` and
``ardm decompress`` run as the user runs them (a fresh process each, the model loaded from
disk, ``OMP_NUM_THREADS`` threads); their wall seconds and peak memory (the child's maximum
resident set) are per photo, and every decoded photo is compared with the original.

Also:

- the size against budget curve (calls per block) on one held-out photo, encode seconds in
  this process; and at the default budget, what the context buys: the same model's tiles
  without context (format v8, tiles of its window in spread orders, the same calls per pixel);
- CIFAR-10 subset test images (32 x 32, each its own file) coded by the photo model and by the
  CIFAR model (``cifar10-subset``, tiles, budget 20), against the same classical codecs.

Writes ``benchmarks/results/photos.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ardm.coding.classical import image_codecs
from ardm.coding.codec import compress, decompress
from ardm.data.images import KODAK_PHOTOS
from ardm.data.registry import default_data_dir, load_split
from ardm.modalities.image import read_image
from benchmarks.machine import timed, write_results

CLASSICAL = {"jxl_efforts": (9, 10), "jpeg2000": True}


def run_cli(args: list[str], threads: int) -> tuple[float, float]:
    """Run ``python -m ardm ARGS`` in a fresh process: wall seconds and peak memory (MiB)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ardm", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    err = proc.stderr.read().decode() if proc.stderr else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"ardm {' '.join(args)} failed: {err.strip()}")
    return seconds, usage.ru_maxrss / 1024  # Linux: KiB


def classical_rows(images: list[np.ndarray]) -> dict[str, list[dict[str, float]]]:
    """Per image, per codec: bytes, encode and decode seconds (every one decoded and checked)."""
    codecs, missing = image_codecs(**CLASSICAL)  # type: ignore[arg-type]
    for name, why in missing.items():
        print(f"missing: {name} ({why})", file=sys.stderr)
    codecs.pop("zstd raw", None)
    rows: dict[str, list[dict[str, float]]] = {}
    for arr in images:
        for name, (_, (enc, dec)) in codecs.items():
            blob, t_enc = timed(lambda enc=enc, arr=arr: enc(arr))
            out, t_dec = timed(lambda dec=dec, blob=blob: dec(blob))
            assert np.array_equal(np.asarray(out), arr), f"{name} did not round-trip"
            rows.setdefault(name, []).append({"bytes": len(blob), "enc_s": t_enc, "dec_s": t_dec})
    return rows


def ardm_photo(path: Path, model: str, budget: int | None, threads: int) -> dict[str, float]:
    """``ardm compress`` then ``ardm decompress`` of one photo, as a user runs them."""
    with tempfile.TemporaryDirectory() as tmp:
        packed, out = Path(tmp) / "photo.ardm", Path(tmp) / "photo.png"
        extra = [] if budget is None else ["--budget", str(budget)]
        enc_s, enc_mb = run_cli(
            ["compress", str(path), "-o", str(packed), "--model", model, "--quiet", *extra], threads
        )
        dec_s, dec_mb = run_cli(["decompress", str(packed), "-o", str(out), "--quiet"], threads)
        same = torch.equal(
            read_image(out.read_bytes(), channels=3, name="decoded"),
            read_image(path.read_bytes(), channels=3, name=str(path)),
        )
        assert same, f"{path.name}: the decoded photo differs"
        size = packed.stat().st_size
    return {"bytes": size, "enc_s": enc_s, "dec_s": dec_s, "enc_MiB": enc_mb, "dec_MiB": dec_mb}


def load(name: str) -> Any:
    from ardm.training.pretrained import load_model

    return load_model(name).eval()


def bpsp(nbytes: float, values: int) -> float:
    """Bits per sub-pixel."""
    return 8 * nbytes / values


def photo_table(
    names: list[str],
    arrays: list[np.ndarray],
    pngs: list[int],
    rows: dict[str, list[dict[str, float]]],
) -> list[str]:
    cols = sorted(rows, key=lambda k: sum(r["bytes"] for r in rows[k]))
    lines = [
        "| photo | " + " | ".join(cols) + " | PNG as stored |",
        "| --- | " + " | ".join("---:" for _ in cols) + " | ---: |",
    ]
    for i, (name, arr) in enumerate(zip(names, arrays, strict=True)):
        cells = [f"{bpsp(rows[c][i]['bytes'], arr.size):.3f}" for c in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {bpsp(pngs[i], arr.size):.3f} |")
    total = sum(a.size for a in arrays)
    cells = [f"**{bpsp(sum(r['bytes'] for r in rows[c]), total):.3f}**" for c in cols]
    lines.append("| all 4 | " + " | ".join(cells) + f" | {bpsp(sum(pngs), total):.3f} |")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="kodak-photo")
    p.add_argument("--budget", type=int, default=None, help="calls per block (model default)")
    p.add_argument("--budgets", default="1,2,4,6,8", help="the size-against-budget curve")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--photos", type=int, default=4, help="held-out photos to code (at most 4)")
    p.add_argument("--cifar", type=int, default=50, help="CIFAR-10 subset test images (0: skip)")
    p.add_argument("--name", default="photos")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model = load(args.model)
    budget = args.budget or model.default_budget
    block = model.shape[-1] - model.context
    folder = default_data_dir() / "kodak"
    names = list(KODAK_PHOTOS["test"])[: args.photos]
    paths = [folder / f"{n}.png" for n in names]
    arrays = [read_image(q.read_bytes(), channels=3, name=str(q)).numpy() for q in paths]
    pngs = [q.stat().st_size for q in paths]
    results: dict[str, Any] = {"model": args.model, "budget": budget, "threads": args.threads}

    rows = classical_rows(arrays)
    ours = f"ardm `{args.model}`"
    rows[ours] = []
    for q in paths:
        rows[ours].append(ardm_photo(q, args.model, args.budget, args.threads))
        r = rows[ours][-1]
        print(f"{q.name}: {r['bytes']:,} bytes, {r['enc_s']:.1f} / {r['dec_s']:.1f} s", flush=True)
    results["photos"] = {"names": names, "png_bytes": pngs, "rows": rows}
    lines = [
        f"Model `{args.model}`: blocks of {block}x{block} pixels given {model.context} rows above "
        f"and {model.context} columns left, default budget {budget} network calls per block, "
        f"{args.threads} threads. Held-out Kodak photos (not in training), bits per sub-pixel "
        "with all header bytes, every file decoded and compared.",
        "",
        *photo_table(names, arrays, pngs, rows),
        "",
        "Time and memory per photo (ardm: `ardm compress` / `ardm decompress` in a fresh process, "
        "model loading included; peak resident memory of that process):",
        "",
        "| photo | ardm encode s | ardm decode s | ardm peak MiB (enc / dec) | JPEG-XL e10 "
        "encode / decode s | WebP encode / decode s |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for i, name in enumerate(names):
        r, j, w = rows[ours][i], rows["JPEG-XL e10"][i], rows["WebP lossless"][i]
        lines.append(
            f"| {name} | {r['enc_s']:.1f} | {r['dec_s']:.1f} | {r['enc_MiB']:.0f} / "
            f"{r['dec_MiB']:.0f} | {j['enc_s']:.2f} / {j['dec_s']:.2f} | "
            f"{w['enc_s']:.2f} / {w['dec_s']:.2f} |"
        )
    lines.append("")

    # the size against budget curve, and what the context buys, on the first photo
    x = torch.from_numpy(arrays[0])
    curve: dict[int, dict[str, float]] = {}
    for b in [int(v) for v in args.budgets.split(",") if v]:
        blob, secs = timed(lambda b=b: compress(model, x, budget=b))
        curve[b] = {"bpsp": bpsp(len(blob), x.numel()), "enc_s": secs}
        print(f"budget {b}: {curve[b]['bpsp']:.3f} bpsp, {secs:.1f} s", flush=True)
    tile_budget = -(-budget * model.shape[-1] ** 2 // block**2)  # the same calls per pixel
    blob, secs = timed(lambda: compress(model, x, budget=tile_budget, version=8))
    assert torch.equal(decompress(model, blob), x.long()), "a v8 file did not round-trip"
    tiles = {"budget": tile_budget, "bpsp": bpsp(len(blob), x.numel()), "enc_s": secs}
    results["budget_curve"] = {"photo": names[0], "curve": curve, "tiles_no_context": tiles}
    lines += [
        f"### Size against budget (calls per {block}x{block} block), {names[0]}",
        "",
        "| budget | bits per sub-pixel | encode s (in process) |",
        "| ---: | ---: | ---: |",
        *[f"| {b} | {c['bpsp']:.3f} | {c['enc_s']:.1f} |" for b, c in curve.items()],
        "",
        f"Without context (format v8: the same model on {model.shape[-1]}x{model.shape[-1]} tiles "
        f"coded independently, budget {tile_budget} per tile = the same calls per pixel as "
        f"budget {budget} per block): {tiles['bpsp']:.3f} bits per sub-pixel "
        f"({tiles['enc_s']:.1f} s).",
        "",
    ]

    if args.cifar:
        test = load_split("cifar10-subset", "test")[: args.cifar].to(torch.uint8)
        cifar_rows = classical_rows([t.numpy() for t in test])
        cifar = load("cifar10-subset")
        for label, m, b in ((ours, model, budget), ("ardm `cifar10-subset` (tiles)", cifar, 20)):
            out = []
            for t in test:
                blob, t_enc = timed(lambda m=m, t=t, b=b: compress(m, t, budget=b))
                y, t_dec = timed(lambda m=m, blob=blob: decompress(m, blob))
                assert torch.equal(y, t.long()), "a CIFAR file did not round-trip"
                out.append({"bytes": len(blob), "enc_s": t_enc, "dec_s": t_dec})
            cifar_rows[f"{label}, budget {b}"] = out
        values = test[0].numel()
        results["cifar"] = {"images": len(test), "rows": cifar_rows}
        lines += [
            f"### CIFAR-10 subset test images ({len(test)}, 32x32, each its own file)",
            "",
            "| codec | mean bits per sub-pixel | median encode ms |",
            "| --- | ---: | ---: |",
        ]
        for k, rs in sorted(cifar_rows.items(), key=lambda kv: sum(r["bytes"] for r in kv[1])):
            mean = statistics.mean(bpsp(r["bytes"], values) for r in rs)
            med = 1000 * statistics.median(r["enc_s"] for r in rs)
            lines.append(f"| {k} | {mean:.3f} | {med:.1f} |")
    write_results(args.name, results, "\n".join(lines))


if __name__ == "__main__":
    main()
