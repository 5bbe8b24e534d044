"""``ardm demo``: the main job end to end on CPU, in a few minutes.

With the models shipped in the package (the default): compress and decompress real test
images and text with each model, sizes next to classical codecs on the same files; samples
under several budgets; inpainting half of each image; an animation of one generation in its
random order; everything collected in ``report.md``. With ``--train`` (or when no model is
shipped): train a tiny MNIST model for about a minute first and do the same with it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ardm.coding import classical
from ardm.coding.codec import compress, decompress
from ardm.config import load_config
from ardm.data import resolve_data_dir
from ardm.data.audio import classes_to_samples, natural_clips, samples_to_classes
from ardm.data.items import model_items, model_spec, spread_items
from ardm.evaluation import evaluate, rows_to_markdown
from ardm.generation import fill_in, generate
from ardm.modalities.audio import AudioModality, save_waveforms
from ardm.modalities.image import ImageModality, save_gif, save_grid
from ardm.modalities.modality import Modality
from ardm.modalities.registry import modality_for
from ardm.modalities.text import ByteTextModality, TextModality
from ardm.models.ardm import ARDM
from ardm.training.pretrained import load_model, shipped_names
from ardm.training.train import train


def _measure(
    label: str,
    items: list[Any],
    encode_all: Callable[[list[Any]], list[bytes]],
    decode: Callable[[bytes], Any],
    same: Callable[[Any, Any], bool],
    dims: int,
) -> dict[str, Any] | None:
    """Encode every item into its own file, decode each back; ``None`` if one differs."""
    start = time.perf_counter()
    files = encode_all(items)
    encode_s = time.perf_counter() - start
    start = time.perf_counter()
    ok = all(same(a, decode(f)) for a, f in zip(items, files, strict=True))
    decode_s = time.perf_counter() - start
    if not ok:
        return None
    n = len(files)
    bits = 8 * sum(len(f) for f in files) / (n * dims)
    return {"codec": label, "bpd": bits, "enc_s": encode_s / n, "dec_s": decode_s / n}


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.equal(a.long(), b.long())


def _as_list(blobs: bytes | list[bytes]) -> list[bytes]:
    return blobs if isinstance(blobs, list) else [blobs]


def _each(encode: Callable[[Any], bytes]) -> Callable[[list[Any]], list[bytes]]:
    """An encoder of one item -> an encoder of each item of a list into its own file."""
    return lambda xs: [encode(a) for a in xs]


def _ardm_rows(
    model: ARDM,
    label: str,
    x: list[torch.Tensor],
    budgets: tuple[int, ...],
    dims: int,
    *,
    batched: bool = False,
) -> list[dict[str, Any] | None]:
    """The model codec under each budget, every item of ``x`` its own file (``label`` has
    ``{budget}``); ``batched``: the items (of one shape) are coded in one call."""
    rows = []
    for budget in budgets:

        def encode_all(xs: list[Any], budget: int = budget) -> list[bytes]:
            if batched:
                return _as_list(compress(model, torch.stack(xs), budget=budget))
            return [f for v in xs for f in _as_list(compress(model, v, budget=budget))]

        rows.append(
            _measure(
                label.format(budget=budget), x, encode_all, partial(decompress, model), _same, dims
            )
        )
    return rows


def _classical_rows(
    codecs: dict[str, tuple[str, classical.Codec]], items: list[Any], dims: int
) -> list[dict[str, Any] | None]:
    """Classical codecs on the same items, each its own file."""
    return [
        _measure(name, items, _each(enc), dec, classical.same, dims)
        for name, (_, (enc, dec)) in codecs.items()
    ]


def _image_rows(
    model: ARDM, modality: ImageModality, name: str, items: int, budgets: tuple[int, ...]
) -> list[dict[str, Any] | None]:
    x = list(model_items(model, "test", items))  # (C, H, W) each
    arrays = [a.numpy().astype("uint8") for a in x]
    return [
        *_ardm_rows(model, f"ardm {name}, {{budget}} calls", x, budgets, model.D, batched=True),
        *_classical_rows(classical.image_codecs()[0], arrays, model.D),
    ]


def _audio_rows(
    model: ARDM, modality: AudioModality, name: str, items: int, budgets: tuple[int, ...]
) -> list[dict[str, Any] | None]:
    root = resolve_data_dir(model.config["data"].get("data_dir"))
    clips = natural_clips(root, "test", items)  # spread evenly over the test clips
    x = [samples_to_classes(c) for c in clips]  # (n,) each, natural lengths
    dims = sum(len(c) for c in clips) // len(clips)  # bits per sample, on average
    label = f"ardm {name}, {{budget}} calls per {model.D}-sample window"
    wav = _measure(
        "WAV (16-bit PCM)",
        x,
        _each(modality.write),
        lambda b: modality.read(b, name="wav"),
        _same,
        dims,
    )
    return [
        *_ardm_rows(model, label, x, budgets, dims),
        wav,
        *_classical_rows(classical.audio_codecs(modality.rate)[0], clips, dims),
    ]


def _text_rows(
    model: ARDM, modality: TextModality, name: str, items: int, budgets: tuple[int, ...]
) -> list[dict[str, Any] | None]:
    text = modality.alphabet.decode(model_items(model, "test", items).reshape(-1))
    raw = text.encode()
    x = modality.alphabet.encode(text).long()  # (n,) one file
    label = f"ardm {name}, {{budget}} calls per {modality.length} chars"
    return [
        *_ardm_rows(model, label, [x], budgets, len(raw)),
        *_classical_rows(classical.text_codecs(raw)[0], [raw], len(raw)),
    ]


def _byte_text_rows(
    model: ARDM, modality: ByteTextModality, name: str, items: int, budgets: tuple[int, ...]
) -> list[dict[str, Any] | None]:
    """A real text file of ``items`` KB cut from the test split after a blank line, coded as a
    chain of blocks with context (format v9)."""
    raw = demo_text(items * 1000)
    label = f"ardm {name}, {{budget}} calls per {model.D - model.context}-byte block"
    x = torch.tensor(list(raw), dtype=torch.uint8)
    return [
        *_ardm_rows(model, label, [x], budgets, len(raw)),
        *_classical_rows(classical.text_codecs(raw)[0], [raw], len(raw)),
    ]


def demo_photo() -> torch.Tensor:
    """A 128 x 192 crop from the middle of the first held-out Kodak photo, ``(3, 128, 192)``."""
    from ardm.data.images import KODAK_PHOTOS, read_png

    photo = read_png(resolve_data_dir() / "kodak" / f"{KODAK_PHOTOS['test'][0]}.png")  # (H, W, 3)
    top, left = photo.shape[0] // 2 - 64, photo.shape[1] // 2 - 96
    crop = photo[top : top + 128, left : left + 192]
    return torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1)))


def _photo_rows(
    model: ARDM, modality: ImageModality, name: str, items: int, budgets: tuple[int, ...]
) -> list[dict[str, Any] | None]:
    """A crop of a held-out photo coded in blocks given the pixels above and left (v9)."""
    x = demo_photo()
    block = model.shape[-1] - model.context
    label = f"ardm {name}, {{budget}} calls per {block}x{block} block"
    return [
        *_ardm_rows(model, label, [x], budgets, x.numel()),
        *_classical_rows(classical.image_codecs()[0], [x.numpy()], x.numel()),
    ]


def _photo_pictures(
    model: ARDM, modality: ImageModality, name: str, out: Path, budgets: tuple[int, ...], gif: bool
) -> list[str]:
    """The coder's situation, sampled: windows of held-out photos whose bottom-right block is
    hidden, filled in given the pixels above and left of it (20 calls)."""
    from ardm.core.context import context_region

    path = save_grid(demo_photo()[None], out / f"{name}_crop.png", nrow=1)
    x = spread_items(model, "test", 8)  # (8, C, H, W) crops spread over the held-out photos
    known = context_region(tuple(model.shape), model.context).view(model.shape)  # (C, H, W)
    filled = model.complete(x, known, budget=20, generator=torch.Generator().manual_seed(0))
    grid = modality.save_inpainting(x, known, filled, str(out / f"{name}_blocks.png"))
    return [
        f"- the coded crop: ![]({path.name})",
        f"- rows: held-out {model.shape[-1]}x{model.shape[-1]} windows, their block hidden, the "
        f"block filled in given the {model.context} rows above and columns left (20 calls): "
        f"![]({grid.name})",
    ]


def demo_text(size: int) -> bytes:
    """``size`` bytes of the English test split from its first blank line on."""
    text = (resolve_data_dir() / "english" / "test.txt").read_bytes()
    start = text.index(b"\n\n") + 2
    return text[start : start + size]


def compression_rows(
    model: ARDM, name: str, *, items: int, budgets: tuple[int, ...]
) -> list[dict[str, Any]]:
    """Per-file sizes of the model codec (decoded and checked) next to classical codecs."""
    modality = modality_for(model)
    rows = _section(model, modality).rows(model, modality, name, items, budgets)
    if any(r is None for r in rows[: len(budgets)]):
        raise RuntimeError(f"{name}: a file decoded to data that differs from the original")
    return [r for r in rows if r is not None]


def _table(rows: list[dict[str, Any]], unit: str) -> str:
    lines = [
        f"| codec | {unit} (per file, headers included) | encode s/file | decode s/file |",
        "| --- | ---: | ---: | ---: |",
    ]
    best = min(r["bpd"] for r in rows)
    for r in rows:
        mark = " **(best)**" if r["bpd"] == best else ""
        lines.append(
            f"| {r['codec']}{mark} | {r['bpd']:.3f} | {r['enc_s']:.4f} | {r['dec_s']:.4f} |"
        )
    return "\n".join(lines) + "\n"


def _image_pictures(
    model: ARDM, modality: ImageModality, name: str, out: Path, budgets: tuple[int, ...], gif: bool
) -> list[str]:
    lines = []
    for budget in budgets:
        x = model.sample(16, budget=budget, generator=torch.Generator().manual_seed(0))
        path = save_grid(x, out / f"{name}_samples_{budget}.png", nrow=8)
        lines.append(f"- {budget} network calls: ![]({path.name})")
    x = model_items(model, "test", 8)  # (8, C, H, W)
    known = modality.region_mask("bottom", model.shape, 0)  # (C, H, W)
    filled = model.complete(x, known, budget=100, generator=torch.Generator().manual_seed(0))
    path = modality.save_inpainting(x, known, filled, str(out / f"{name}_inpaint.png"))
    lines.append(
        f"- inpainting (rows: test images, bottom half hidden, completed with 100 calls): ![]({path.name})"
    )
    if gif:
        frames: list[torch.Tensor] = []
        model.sample(
            4,
            budget=100,
            generator=torch.Generator().manual_seed(1),
            on_step=lambda xs, s: frames.append(xs.clone()),
        )
        path = save_gif([*frames, *[frames[-1]] * 15], out / f"{name}_generation.gif", nrow=4)
        lines.append(f"- one generation in its random order, 100 calls: ![]({path.name})")
    return lines


def _audio_pictures(
    model: ARDM, modality: AudioModality, name: str, out: Path, budgets: tuple[int, ...], gif: bool
) -> list[str]:
    lines, strips = [], []
    for budget in budgets:
        g = torch.Generator().manual_seed(0)
        x, calls = generate(model, 2, budget=budget, naive=False, temperature=1.0, generator=g)
        for i, row in enumerate(x.cpu()):
            path = out / f"{name}_sample_{calls}_{i}.wav"
            path.write_bytes(modality.write(row))
            lines.append(f"- {calls} network calls: [{path.name}]({path.name})")
            strips.append((f"sample {i + 1}, {calls} calls", classes_to_samples(row), None))
    # Infill: the second half of a test clip, given its first half.
    clip = model_items(model, "test", 1)  # (1, D) the first test clip (padded window)
    known = torch.arange(model.D) < model.D // 2  # (D,) the first half is given
    calls = 20 * model.S
    filled = fill_in(model, clip, known, budget=calls, generator=torch.Generator().manual_seed(0))
    path = out / f"{name}_infill.wav"
    path.write_bytes(modality.write(filled[0].cpu()))
    lines.append(
        f"- the second half of a test clip, filled in with {calls} calls given the first half: "
        f"[{path.name}]({path.name})"
    )
    given: list[tuple[str, np.ndarray, np.ndarray | None]] = [
        ("test clip", classes_to_samples(clip[0]), None),
        (
            f"its second half filled in ({calls} calls; gray: given)",
            classes_to_samples(filled[0]),
            known.numpy(),
        ),
    ]
    path = save_waveforms([*given, *strips], out / f"{name}_waveforms.png")
    lines.append(f"- waveforms (a test clip, its infill, samples): ![]({path.name})")
    return lines


def _text_pictures(
    model: ARDM, modality: TextModality, name: str, out: Path, budgets: tuple[int, ...], gif: bool
) -> list[str]:
    lines = []
    alphabet = modality.alphabet
    for budget in budgets:
        x = model.sample(2, budget=min(budget, model.D), generator=torch.Generator().manual_seed(0))
        for row in x:
            lines.append(f"- {min(budget, model.D)} calls: `{alphabet.decode(row)}`")
    prompt = "the president said that "
    x = alphabet.encode(prompt + " " * (model.D - len(prompt))).long()[None]  # (1, D)
    known = torch.zeros(model.D, dtype=torch.bool)  # (D,)
    known[: len(prompt)] = True
    out_text = model.complete(x, known, budget=32, generator=torch.Generator().manual_seed(0))
    lines.append(f"- completion of `{prompt}` (32 calls): `{alphabet.decode(out_text[0])}`")
    return lines


def _byte_text_pictures(
    model: ARDM,
    modality: ByteTextModality,
    name: str,
    out: Path,
    budgets: tuple[int, ...],
    gif: bool,
) -> list[str]:
    """The model continuing a test passage: the first ``context`` bytes known, the block
    generated with 16 calls (what the coder does, with sampling instead of coding)."""
    prompt = demo_text(model.context)
    x = torch.tensor(list(prompt) + [32] * (model.D - model.context)).long()[None]  # (1, D)
    known = torch.arange(model.D) < model.context  # (D,)
    lines = []
    for seed in (0, 1):
        g = torch.Generator().manual_seed(seed)
        out_bytes = modality.write(model.complete(x, known, budget=16, generator=g)[0])
        shown = out_bytes[model.context :].decode("utf-8", errors="replace")
        lines.append(f"- continuation {seed + 1} (16 calls): `{shown!r}`")
    start = prompt.decode("utf-8", errors="replace")
    return [f"- the known {model.context} bytes: `{start!r}`", *lines]


def pictures(
    model: ARDM, name: str, out: Path, budgets: tuple[int, ...], *, gif: bool
) -> list[str]:
    """Sample grids, inpainting and (optionally) a GIF; returns Markdown lines."""
    modality = modality_for(model)
    return _section(model, modality).pictures(model, modality, name, out, budgets, gif)


@dataclass(frozen=True)
class _Section:
    """The demo's part for one modality: its compression rows, its pictures, how many test
    items it compresses (given the model) and how it says what they are."""

    rows: Callable[..., list[dict[str, Any] | None]]
    pictures: Callable[..., list[str]]
    items: Callable[[Any], int]
    what: str  # formatted with n (items) and chars (characters)


_SECTIONS: dict[type[Modality], _Section] = {
    ImageModality: _Section(
        _image_rows,
        _image_pictures,
        lambda model: 2 if model.D > 1000 else 8,
        "first {n} test items, each its own file",
    ),
    AudioModality: _Section(
        _audio_rows,
        _audio_pictures,
        lambda model: 5,
        "{n} test clips (spread over the digits) at their natural lengths, each its own file",
    ),
    TextModality: _Section(
        _text_rows, _text_pictures, lambda model: 2, "first {chars} test characters, one file"
    ),
    ByteTextModality: _Section(
        _byte_text_rows,
        _byte_text_pictures,
        lambda model: 4,
        "{n} KB of the English test split (raw UTF-8) as one file, coded with context",
    ),
}


_PHOTO_SECTION = _Section(
    _photo_rows,
    _photo_pictures,
    lambda model: 1,
    "a 128x192 crop of a held-out Kodak photo as one file, coded in blocks with context",
)


def _section(model: ARDM, modality: Modality) -> _Section:
    """The demo's part for a model: by modality; an image model with context codes photos."""
    if isinstance(modality, ImageModality) and getattr(model, "context", 0):
        return _PHOTO_SECTION
    return _SECTIONS[type(modality)]


def run_shipped_demo(out: Path, names: list[str]) -> Path:
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    report = ["# ardm demo: shipped models on CPU", ""]
    results: dict[str, Any] = {}
    for i, name in enumerate(names, 1):
        model = load_model(name)
        modality = modality_for(model)
        section = _section(model, modality)
        print(
            f"[{i}/{len(names)}] {name}: {model_spec(model).title}, {sum(p.numel() for p in model.parameters()):,} parameters"
        )
        items = section.items(model)
        budgets = (20, 50) if model.D > 1000 else (20, 100)
        if getattr(model, "context", 0):  # calls per block of a chain
            budgets = (2, 4) if isinstance(modality, ImageModality) else (4, 8)
        rows = compression_rows(model, name, items=items, budgets=budgets)
        what = section.what.format(n=items, chars=items * model.D)
        table = _table(rows, modality.unit)
        print(f"compression ({what}), every file decoded and checked:\n{table}")
        pics = pictures(
            model,
            name,
            out,
            (20, 100),
            gif=name in ("mnist", "cifar10-subset"),
        )
        report += [
            f"## {name}: {model_spec(model).title}",
            "",
            f"Lossless compression, {what}:",
            "",
            table,
            *pics,
            "",
        ]
        results[name] = rows
    (out / "compression.json").write_text(json.dumps(results, indent=2))
    path = out / "report.md"
    path.write_text("\n".join(report))
    print(f"done in {time.perf_counter() - started:.0f} s; report with pictures: {path}")
    return path


def run_training_demo(out: Path, *, minutes: float, fresh: bool) -> Path:
    cfg = load_config(
        "mnist-tiny", [f"train.minutes={minutes}", "train.steps=100000", "train.eval_every=0"]
    )
    print(f"training a tiny U-Net on MNIST for {minutes:g} min (resumes if {out}/model exists)")
    result = train(cfg, out / "model", device="cpu", fresh=fresh)
    model = load_model(out / "model")
    print(f"{result.step} steps, {result.examples_per_s:.0f} examples/s")
    rows = evaluate(
        model, model_items(model, "test", 1000), passes=1, exact_items=4, budgets=(10, 50, 100)
    )
    table = rows_to_markdown(rows, unit="bpd", title="MNIST test split, EMA weights")
    print(table)
    pics = pictures(model, "mnist", out, (20, 100, model.D), gif=True)
    path = out / "report.md"
    path.write_text(
        "\n".join(["# ardm demo: a tiny MNIST model trained on CPU", "", table, *pics, ""])
    )
    print(f"report with pictures: {path}")
    return path


def run_demo(
    out: Path, *, minutes: float = 1.0, fresh: bool = False, train_first: bool = False
) -> Path:
    names = [
        n
        for n in (
            "mnist",
            "fashion-mnist",
            "cifar10-subset",
            "kodak-photo",
            "english",
            "english-bytes",
            "fsdd",
        )
        if n in shipped_names()
    ]
    if train_first or not names:
        return run_training_demo(out, minutes=minutes, fresh=fresh)
    return run_shipped_demo(out, names)
