"""Spread orders against seeded random orders: the same models, budgets and data, side by side.

    PYTHONPATH=src python -m benchmarks.orders [--items 16] [--text-files 4] [--photo-crop 192]

Every shipped kind, exact file bytes with every header byte, every file decoded and compared:

* tiles (``codec.compress``): version 5 (``seeded_order``) against version 8 (spread order),
  ``--items`` test items of ``mnist``, ``cifar10-subset``, ``english``, ``fsdd`` and
  ``fsdd-mixture`` at budget 20;
* text chains: version 7 against version 9, ``english-bytes`` on ``--text-files`` files of
  4 KB cut at document starts from the English *test* split, at 14, 18 (the default) and 28
  calls per 112-byte block, with encode and decode bytes per second;
* photos: version 7 against version 9, ``kodak-photo`` on a centred ``--photo-crop`` square
  of each of the 4 held-out Kodak photos (kodim17, 19, 21, 23), at 2, 4 (the default) and 8
  calls per block.

Results: ``benchmarks/results/orders.json`` / ``.md``.
"""

from __future__ import annotations

import argparse
from typing import Any

import torch

import ardm
from ardm.coding.codec import compress, decompress, decompress_many
from ardm.data.images import read_png
from ardm.data.items import model_items
from ardm.data.registry import default_data_dir
from benchmarks.machine import timed, write_results
from benchmarks.text_files import cut_files

TILE_MODELS = ("mnist", "cifar10-subset", "english", "fsdd", "fsdd-mixture")
HELD_OUT = ("kodim17", "kodim19", "kodim21", "kodim23")


def change(new: float, old: float) -> str:
    return f"{100 * (new / old - 1):+.2f} %"


def tiles(items: int) -> tuple[dict[str, Any], list[str]]:
    out: dict[str, Any] = {}
    lines = [
        f"### Tiles: {items} test items per model, budget 20 (bytes per file)",
        "",
        "| model | v5 seeded | v8 spread | change |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name in TILE_MODELS:
        model = ardm.load(name)
        x = model_items(model, "test", items)
        sizes = {}
        for version in (5, 8):
            blobs = compress(model, x, budget=20, version=version)
            decoded = decompress_many(model, blobs)
            if not all(torch.equal(d, x[i]) for i, d in enumerate(decoded)):  # type: ignore[arg-type]
                raise AssertionError(f"{name} v{version}: a file did not decode to its item")
            sizes[version] = sum(map(len, blobs)) / len(blobs)
        out[name] = {"v5": sizes[5], "v8": sizes[8]}
        lines.append(
            f"| `{name}` | {sizes[5]:,.1f} | {sizes[8]:,.1f} | {change(sizes[8], sizes[5])} |"
        )
    return out, lines


def text(count: int) -> tuple[dict[str, Any], list[str]]:
    model = ardm.load("english-bytes")
    raw = (default_data_dir() / "english" / "test.txt").read_bytes()
    files = cut_files(raw, 4000, count)
    n = sum(map(len, files))
    out: dict[str, Any] = {}
    lines = [
        f"### Text chains: `english-bytes`, {len(files)} files of 4 KB (test split), bits per byte",
        "",
        "| calls per block | v7 seeded | v9 spread | change | v7 encode / decode B/s | v9 encode / decode B/s |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for budget in (14, 18, 28):
        row: dict[str, Any] = {}
        for version in (7, 9):
            xs = [torch.tensor(list(f)) for f in files]
            blobs, enc = timed(
                lambda xs=xs, v=version, b=budget: [  # type: ignore[misc]
                    compress(model, x, budget=b, version=v) for x in xs
                ]
            )
            back, dec = timed(lambda blobs=blobs: [decompress(model, b) for b in blobs])  # type: ignore[misc]
            if not all(bytes(y.tolist()) == f for y, f in zip(back, files, strict=True)):
                raise AssertionError(f"v{version}: a text did not decode")
            row[f"v{version}"] = {
                "bpc": 8 * sum(map(len, blobs)) / n,
                "enc_Bps": n / enc,
                "dec_Bps": n / dec,
            }
        out[str(budget)] = row
        a, b = row["v7"], row["v9"]
        lines.append(
            f"| {budget} | {a['bpc']:.3f} | {b['bpc']:.3f} | {change(b['bpc'], a['bpc'])} | "
            f"{a['enc_Bps']:,.0f} / {a['dec_Bps']:,.0f} | {b['enc_Bps']:,.0f} / {b['dec_Bps']:,.0f} |"
        )
    return out, lines


def photos(crop: int) -> tuple[dict[str, Any], list[str]]:
    model = ardm.load("kodak-photo")
    crops = []
    for name in HELD_OUT:
        img = read_png(default_data_dir() / "kodak" / f"{name}.png")  # (H, W, 3)
        H, W = img.shape[:2]
        y, x = (H - crop) // 2, (W - crop) // 2
        crops.append(torch.from_numpy(img[y : y + crop, x : x + crop].copy()).permute(2, 0, 1))
    values = sum(c.numel() for c in crops)
    out: dict[str, Any] = {}
    lines = [
        f"### Photos: `kodak-photo`, a centred {crop} x {crop} crop of each held-out photo "
        "(kodim17, 19, 21, 23), bits per sub-pixel",
        "",
        "| calls per block | v7 seeded | v9 spread | change |",
        "| ---: | ---: | ---: | ---: |",
    ]
    for budget in (2, 4, 8):
        row = {}
        for version in (7, 9):
            total = 0
            for c in crops:
                blob = compress(model, c.contiguous(), budget=budget, version=version)
                if not torch.equal(decompress(model, blob), c.long()):
                    raise AssertionError(f"v{version}: a photo did not decode")
                total += len(blob)
            row[f"v{version}"] = 8 * total / values
        out[str(budget)] = row
        lines.append(
            f"| {budget} | {row['v7']:.3f} | {row['v9']:.3f} | {change(row['v9'], row['v7'])} |"
        )
    return out, lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--items", type=int, default=16)
    p.add_argument("--text-files", type=int, default=4)
    p.add_argument("--photo-crop", type=int, default=192)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    results: dict[str, Any] = {}
    lines = [
        "Seeded random orders (versions 5 and 7) against spread orders (versions 8 and 9): the "
        f"same shipped models, data and budgets, {args.threads} threads, every file decoded.",
        "",
    ]
    for key, (res, part) in (
        ("tiles", tiles(args.items)),
        ("text", text(args.text_files)),
        ("photos", photos(args.photo_crop)),
    ):
        results[key] = res
        lines += [*part, ""]
        print("\n".join(part), flush=True)
    write_results("orders", results, "\n".join(lines))


if __name__ == "__main__":
    main()
