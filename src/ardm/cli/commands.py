"""``ardm <command>``: train, eval, sample, inpaint, complete, plan, compress, decompress, demo.

``main(argv) -> int`` is called directly by the tests. User errors (bad files, settings,
checkpoints) print one line ``ardm: error: ...`` and exit with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ardm.cli.parser import parser
from ardm.errors import ArdmError, DataError
from ardm.generation import fill_in, generate
from ardm.modalities.registry import modality_for


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(COMMANDS[args.command](args) or 0)
    except ArdmError as e:
        print(f"ardm: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ardm: interrupted", file=sys.stderr)
        return 130


# --------------------------------------------------------------------------- commands
def cmd_train(args: argparse.Namespace) -> int:
    from ardm.config import load_config
    from ardm.training.train import train

    cfg = load_config(args.preset, args.overrides)
    out = Path(args.out or f"runs/{Path(args.preset).stem}")
    result = train(cfg, out, device=args.device, fresh=args.fresh, progress=not args.quiet)
    if result.rank != 0:
        return 0
    print(
        f"step {result.step}: "
        + ", ".join(f"{k} {v:.4f}" for k, v in result.last_eval.items())
        + f"; checkpoint {out / 'ckpt.pt'}"
    )
    return 0


def _load(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from ardm.devices import pick_device
    from ardm.training.pretrained import load_model

    return load_model(args.model, device=pick_device(args.device))


def _load_for_coding(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """The model for ``ardm compress/decompress``: on the CPU where it has a portable form
    (the integer coder runs on the CPU on every machine, so that its files decode on every
    other), else on ``--device``."""
    from ardm.devices import pick_device
    from ardm.training.pretrained import load_model

    model = load_model(args.model)  # on the CPU
    device = pick_device(args.device)
    if device.type == "cpu":
        return model
    if getattr(model, "portable", None) is not None:
        print(
            f"note: the integer coder runs on the CPU, not on {device} (its files decode on "
            "every machine); --device applies to models without a portable form",
            file=sys.stderr,
        )
        return model
    return model.to(device)


def _unit(model) -> str:  # type: ignore[no-untyped-def]
    return modality_for(model).unit


def cmd_eval(args: argparse.Namespace) -> int:
    from ardm.data.items import model_items
    from ardm.evaluation import evaluate, rows_to_dicts, rows_to_markdown

    model = _load(args)
    items = model_items(model, args.split, args.items)
    rows = evaluate(
        model, items, passes=args.passes, exact_items=args.exact_items, budgets=args.budgets
    )
    print(
        rows_to_markdown(
            rows, unit=_unit(model), title=f"{model.config['data']['name']} {args.split} split"
        )
    )
    if args.json:
        Path(args.json).write_text(json.dumps(rows_to_dicts(rows), indent=2))
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    model = _load(args)
    g = torch.Generator().manual_seed(args.seed)
    x, calls = generate(
        model,
        args.n,
        budget=args.budget,
        naive=args.naive,
        temperature=args.temperature,
        generator=g,
    )
    print(modality_for(model).save_samples(x, args.output, calls=calls))
    return 0


def cmd_inpaint(args: argparse.Namespace) -> int:
    from ardm.coding.files import read_input
    from ardm.data.items import model_items

    model = _load(args)
    modality = modality_for(model)
    known = modality.region_mask(args.mask, model.shape, args.seed)  # (C, H, W); images only
    if args.input:
        x = modality.read(read_input(args.input), name=args.input)[None]
        if tuple(x.shape[1:]) != model.shape:
            raise DataError(
                f"{args.input} is {tuple(x.shape[1:])} (C, H, W) but the model takes {model.shape}"
            )
    else:
        x = model_items(model, "test", args.index + args.n)[args.index :]
    x = x.long()
    g = torch.Generator().manual_seed(args.seed)
    out = fill_in(model, x.to(model.device), known, budget=args.budget, generator=g).cpu()
    modality.save_inpainting(x, known, out, args.output)
    print(f"wrote {args.output}: rows = original, with the {args.mask} part hidden, completed")
    return 0


def cmd_complete(args: argparse.Namespace) -> int:
    model = _load(args)
    modality = modality_for(model)
    ids, known = modality.hole_mask(args.text, hole=args.hole)  # (L,), (L,); text only
    g = torch.Generator().manual_seed(args.seed)
    x = ids[None].expand(args.n, ids.shape[0])  # (n, L)
    out = fill_in(model, x.to(model.device), known, budget=args.budget, generator=g).cpu()
    for row in out:
        print(modality.write(row).decode("utf-8"))
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    model = _load(args)
    stages, most = model.budget_range()  # a model without policies (D3PM) refuses here
    unit = _unit(model)
    rows = []
    print(
        f"D = {model.D}, {stages} stage(s); sum of L_t = {model.tracker.L().sum():.4f} {unit} "
        f"(one call per variable and stage)\n"
    )
    if stages > 1:
        print(
            f"| budget (all stages) | DP {unit} (expected) | naive {unit} (expected) | calls per stage |"
        )
        print("| ---: | ---: | ---: | --- |")
    else:
        print(f"| budget | DP {unit} (expected) | naive {unit} (expected) | DP steps |")
        print("| ---: | ---: | ---: | ---: |")
    for b in args.budgets:
        if b > most or b < stages:
            continue
        dp = model.stage_policies(b, mode="joint")
        naive = model.stage_policies(b, mode="joint", naive=True)
        policy: list = [p.tolist() for p in dp] if stages > 1 else dp[0].tolist()
        steps = " + ".join(str(len(p)) for p in dp)  # calls per stage
        row = {
            "budget": b,
            "dp_bpd": model.expected_bpd(dp),
            "naive_bpd": model.expected_bpd(naive),
            "policy": policy,
        }
        rows.append(row)
        print(f"| {b} | {row['dp_bpd']:.4f} | {row['naive_bpd']:.4f} | {steps} |")
        if args.show_policy:
            print(f"  policy: {policy}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


def _batches(items: list[torch.Tensor], size: int) -> list[list[int]]:
    """Indices of ``items`` in batches of at most ``size`` items of one shape."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, x in enumerate(items):
        groups.setdefault(tuple(x.shape), []).append(i)
    return [g[s : s + size] for g in groups.values() for s in range(0, len(g), size)]


def _coding_run(args: argparse.Namespace, *, compressing: bool):  # type: ignore[no-untyped-def]
    """Model, modality, input bytes, their data (compressing) and the output paths of
    ``ardm compress/decompress``: every input is read and checked before anything is coded."""
    from ardm.coding import files

    files.check_stdio(args.inputs, args.output)
    raws = [files.read_input(p) for p in args.inputs]
    names = [files.display_name(p) for p in args.inputs]
    if args.model is None:
        args.model = _default_model(raws, names, compressing=compressing)
    model = _load_for_coding(args)
    modality = modality_for(model)
    items = (
        [modality.read(r, name=n) for r, n in zip(raws, names, strict=True)] if compressing else []
    )

    def name(path: str, in_directory: bool) -> str:
        if compressing:
            return files.compressed_name(path, in_directory=in_directory)
        return files.decompressed_name(path, modality)

    outs = files.output_paths(args.inputs, args.output, name, force=args.force)
    binary = compressing or modality.binary
    if binary and outs == [files.STDIO] and sys.stdout.isatty():
        raise DataError("refusing to write binary data to a terminal; use -o FILE or a pipe")
    return model, modality, raws, names, items, outs


def _default_model(raws: list[bytes], names: list[str], *, compressing: bool) -> str:
    """The shipped model for the inputs' kind (compress) or the one the files name."""
    from ardm.defaults import model_for_file, model_for_inputs

    if compressing:
        return model_for_inputs(raws, names)
    chosen = {model_for_file(r, name=n) for r, n in zip(raws, names, strict=True)}
    if len(chosen) > 1:
        raise DataError(
            f"the files were made by different models ({', '.join(sorted(chosen))}); "
            "decompress them separately or give --model"
        )
    return chosen.pop()


DEFAULT_BUDGET = 100
"""Network calls per tile when neither the user nor the model says otherwise."""


def _budget(args: argparse.Namespace, model) -> int:  # type: ignore[no-untyped-def]
    if args.budget is not None:
        return int(args.budget)
    return int(getattr(model, "default_budget", DEFAULT_BUDGET))


def _progress(total: int, quiet: bool, unit: str = "file"):  # type: ignore[no-untyped-def]
    from tqdm import tqdm

    scale = unit != "file"
    return tqdm(
        total=total, unit=unit, unit_scale=scale, disable=True if quiet else None, leave=False
    )


def _by_values(model, n_files: int) -> bool:  # type: ignore[no-untyped-def]
    """Show progress in values, not files: one file coded by a model with context (format
    v9, a chain of blocks or an image in waves: minutes for a large file)."""
    return n_files == 1 and bool(getattr(model, "context", 0))


@dataclass(frozen=True)
class _Summary:
    """What ``ardm compress/decompress`` did, for its one-line summary."""

    verb: str
    n_files: int
    in_bytes: int
    out_bytes: int
    bits: float  # per value of the data, all header bytes included
    unit: str
    seconds: float
    to_stdout: bool
    extra: str = ""


def _summary(s: _Summary) -> None:
    """The one-line summary (on stderr when the data go to stdout)."""
    print(
        f"{s.verb} {s.n_files} file{'s' if s.n_files != 1 else ''}: {s.in_bytes:,} -> "
        f"{s.out_bytes:,} bytes, {s.bits:.4f} {s.unit} (all header bytes included){s.extra}, "
        f"{s.seconds:.2f} s",
        file=sys.stderr if s.to_stdout else sys.stdout,
    )


def cmd_compress(args: argparse.Namespace) -> int:
    import time

    from ardm.coding import files
    from ardm.coding.codec import compress
    from ardm.errors import FormatError

    start = time.perf_counter()
    model, modality, raws, names, items, outs = _coding_run(args, compressing=True)
    budget = _budget(args, model)
    size = 4 * torch.get_num_threads()
    written = 0
    values_bar = _by_values(model, len(items))
    total = items[0].numel() if values_bar else len(items)
    with _progress(total, args.quiet, "value" if values_bar else "file") as bar:
        step = bar.update if values_bar else None
        for batch in _batches(items, size):
            blobs = compress(
                model, torch.stack([items[i] for i in batch]), budget=budget, progress=step
            )
            assert isinstance(blobs, list)
            if args.verify:
                decoded = files.decompress_files(model, blobs, [names[i] for i in batch])
                for i, y in zip(batch, decoded, strict=True):
                    if not torch.equal(y, items[i].long()):
                        raise FormatError(f"{names[i]}: --verify failed: decoded data differ")
            for i, blob in zip(batch, blobs, strict=True):
                files.write_output(outs[i], blob, force=args.force)
                written += len(blob)
            if not values_bar:
                bar.update(len(batch))
    values = sum(x.numel() for x in items)
    _summary(
        _Summary(
            "compressed",
            n_files=len(items),
            in_bytes=sum(len(r) for r in raws),
            out_bytes=written,
            bits=8 * written / values,
            unit=modality.unit,
            seconds=time.perf_counter() - start,
            to_stdout=files.STDIO in outs,
            extra=f", budget {min(budget, model.budget_range()[1])}, model {args.model}"
            + (", verified" if args.verify else ""),
        )
    )
    return 0


def _stored_values(blob: bytes) -> int:
    """The number of values a compressed file's header declares (0 if it cannot be read: the
    decoder then reports what is wrong, with the file's name)."""
    import math

    from ardm.coding.container import unpack

    try:
        header, _ = unpack(blob)
    except Exception:
        return 0
    return math.prod(header.shape) if header.shape else 0


def cmd_decompress(args: argparse.Namespace) -> int:
    import time

    from ardm.coding import files

    start = time.perf_counter()
    model, modality, raws, names, _, outs = _coding_run(args, compressing=False)
    size = 4 * torch.get_num_threads()
    written = values = 0
    values_bar = _by_values(model, len(raws))
    total = _stored_values(raws[0]) if values_bar else len(raws)
    with _progress(total, args.quiet, "value" if values_bar else "file") as bar:
        for s in range(0, len(raws), size):
            batch = list(range(s, min(s + size, len(raws))))
            decoded = files.decompress_files(
                model,
                [raws[i] for i in batch],
                [names[i] for i in batch],
                progress=bar.update if values_bar else None,
            )
            for i, x in zip(batch, decoded, strict=True):
                data = modality.write(x)
                files.write_output(outs[i], data, force=args.force)
                written += len(data)
                values += x.numel()
            if not values_bar:
                bar.update(len(batch))
    read = sum(len(r) for r in raws)
    _summary(
        _Summary(
            "decompressed",
            n_files=len(raws),
            in_bytes=read,
            out_bytes=written,
            bits=8 * read / max(values, 1),
            unit=modality.unit,
            seconds=time.perf_counter() - start,
            to_stdout=files.STDIO in outs,
        )
    )
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    from ardm.config import preset_names

    for name in preset_names():
        print(name)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from ardm.cli.demo import run_demo

    run_demo(Path(args.out), minutes=args.minutes, fresh=args.fresh, train_first=args.train)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from ardm.training.pretrained import export_portable, export_weights, load_model, portable_file

    path = Path(args.output)
    if not args.portable_only:
        model = load_model(args.model)
        dtype = torch.float32 if args.fp32 else torch.float16
        path = export_weights(model, path, dtype=dtype)
        print(f"wrote {path} ({path.stat().st_size:,} bytes)")
        stale = portable_file(path)
        if stale.is_file() and not args.portable:
            stale.unlink()  # frozen from the weights just replaced
            print(f"removed {stale}: it was frozen from the weights this file replaced")
    if args.portable or args.portable_only:
        frozen = export_portable(path, items=args.calib)
        print(f"wrote {frozen} ({frozen.stat().st_size:,} bytes): the portable form")
    return 0


COMMANDS = {
    "train": cmd_train,
    "eval": cmd_eval,
    "sample": cmd_sample,
    "inpaint": cmd_inpaint,
    "complete": cmd_complete,
    "plan": cmd_plan,
    "compress": cmd_compress,
    "decompress": cmd_decompress,
    "presets": cmd_presets,
    "demo": cmd_demo,
    "export": cmd_export,
}
