"""``ardm <command>``: train, eval, sample, inpaint, complete, plan, compress, decompress, demo.

``main(argv) -> int`` is called directly by the tests. User errors (bad files, settings,
checkpoints) print one line ``ardm: error: ...`` and exit with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from ardm.data.masks import image_mask
from ardm.errors import ArdmError, DataError
from ardm.generation import fill_in, generate


def _budgets(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"budgets must be integers separated by commas, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("budgets must be positive integers")
    return values


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ardm",
        description="Autoregressive Diffusion Models: train, evaluate, sample, compress.",
    )
    sub = p.add_subparsers(dest="command", required=True)

    def add_model(q: argparse.ArgumentParser) -> None:
        q.add_argument("model", help="run folder or checkpoint file (ckpt.pt)")
        q.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")

    q = sub.add_parser("train", help="train a model from a preset")
    q.add_argument(
        "--preset", default="mnist-tiny", help="preset name or TOML file (see `ardm presets`)"
    )
    q.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting, e.g. train.lr=3e-4",
    )
    q.add_argument("--out", help="run folder (default: runs/<preset>)")
    q.add_argument(
        "--fresh", action="store_true", help="start over even if the folder holds a checkpoint"
    )
    q.add_argument("--device", default="auto")
    q.add_argument("--quiet", action="store_true")

    q = sub.add_parser("eval", help="bits/dim: bound, exact fixed order, DP and naive budgets")
    add_model(q)
    q.add_argument("--split", default="test")
    q.add_argument("--items", type=int, default=500, help="items for the stochastic bound")
    q.add_argument("--passes", type=int, default=4)
    q.add_argument("--exact-items", type=int, default=16, help="items for the exact rows")
    q.add_argument("--budgets", type=_budgets, default=[10, 50, 100])
    q.add_argument("--json", help="also write the rows as JSON here")

    q = sub.add_parser(
        "sample", help="generate samples (PNG grid for images, text for text, WAV for audio)"
    )
    add_model(q)
    q.add_argument("-n", type=int, default=16)
    q.add_argument(
        "--budget",
        type=_positive_int,
        help="network calls (default: one per variable; an upscale model's budget counts all "
        "its stages; a D3PM model's is its number of steps)",
    )
    q.add_argument(
        "--naive", action="store_true", help="evenly spaced steps instead of the DP policy"
    )
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--temperature", type=float, default=1.0)
    q.add_argument(
        "-o",
        "--output",
        help="output file (.png / .txt / .wav; default: print text, samples.png or "
        "samples_NNN.wav)",
    )

    q = sub.add_parser("inpaint", help="complete the missing part of images")
    add_model(q)
    q.add_argument("--input", help="image file (default: items of the test split)")
    q.add_argument("--index", type=int, default=0, help="first test item when no --input is given")
    q.add_argument("-n", type=int, default=8, help="test items when no --input is given")
    q.add_argument(
        "--mask",
        default="bottom",
        choices=["bottom", "top", "left", "right", "center", "random"],
        help="which part is missing",
    )
    q.add_argument("--budget", type=int)
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("-o", "--output", default="inpaint.png")

    q = sub.add_parser("complete", help="fill in text: '_' marks a missing character")
    add_model(q)
    q.add_argument("text", help="text with '_' for unknown characters, e.g. 'the qu___ brown fox'")
    q.add_argument("--hole", default="_", help="the character marking unknowns (default: _)")
    q.add_argument("--budget", type=int)
    q.add_argument("-n", type=int, default=4, help="completions")
    q.add_argument("--seed", type=int, default=0)

    q = sub.add_parser("plan", help="the DP policy and its expected cost per budget")
    add_model(q)
    q.add_argument("--budgets", type=_budgets, default=[1, 2, 5, 10, 20, 50, 100, 200, 500])
    q.add_argument("--show-policy", action="store_true", help="print the step boundaries")
    q.add_argument("--json", help="also write the plan as JSON here")

    for name in ("compress", "decompress"):
        q = sub.add_parser(
            name,
            help="compress images or text losslessly into .ardm files"
            if name == "compress"
            else "decompress .ardm files into PNG images or UTF-8 text",
        )
        q.add_argument("inputs", nargs="+", metavar="IN", help="input files ('-': standard input)")
        q.add_argument(
            "-o",
            "--output",
            metavar="OUT",
            help="output file; a directory for several inputs; '-': standard output "
            + ("(default: IN.ardm beside each input)" if name == "compress" else "")
            + ("(default: IN without .ardm, beside it)" if name == "decompress" else ""),
        )
        q.add_argument("--model", required=True, help="run folder or checkpoint file (ckpt.pt)")
        if name == "compress":
            q.add_argument(
                "--budget",
                type=_positive_int,
                default=100,
                help="network calls per item (per tile of the model's shape); more calls "
                "usually give smaller files (default: 100; at most D, or S*D for an upscale "
                "model with S stages, which needs at least S)",
            )
            q.add_argument(
                "--verify", action="store_true", help="decode every file and compare before writing"
            )
        q.add_argument("--force", action="store_true", help="overwrite existing outputs")
        q.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")
        q.add_argument("--quiet", action="store_true", help="no progress bar")

    sub.add_parser("presets", help="list the shipped presets")

    q = sub.add_parser("demo", help="train a tiny MNIST model, evaluate it, sample and inpaint")
    q.add_argument("--out", default="runs/demo")
    q.add_argument("--minutes", type=float, default=1.0, help="training time (default: 1)")
    q.add_argument("--fresh", action="store_true")
    q.add_argument(
        "--train",
        action="store_true",
        help="train a tiny MNIST model first instead of using the shipped models",
    )

    q = sub.add_parser("export", help="write a run's EMA weights as a shipped-weights file")
    q.add_argument("model", help="run folder or checkpoint")
    q.add_argument("-o", "--output", required=True, help="the .safetensors file to write")
    q.add_argument("--fp32", action="store_true", help="keep float32 weights (default: float16)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
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


def _unit(model) -> str:  # type: ignore[no-untyped-def]
    return "bpc" if model.kind == "text" else "bpd"


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
    from ardm.data.items import model_alphabet
    from ardm.pictures import save_grid

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
    if model.kind == "text":
        alphabet = model_alphabet(model)
        text = "\n".join(alphabet.decode(row) for row in x.cpu())
        if args.output:
            Path(args.output).write_text(text + "\n")
            print(f"wrote {args.n} samples ({calls} network calls each) to {args.output}")
        else:
            print(text)
    elif model.kind == "audio":
        from ardm.coding.files import ItemCodec

        codec = ItemCodec.for_model(model)
        target = Path(args.output or "samples.wav")
        paths = (
            [target]
            if args.n == 1
            else [
                target.with_name(f"{target.stem}_{i:03d}{target.suffix or '.wav'}")
                for i in range(args.n)
            ]
        )
        for path, row in zip(paths, x.cpu(), strict=True):
            path.write_bytes(codec.write(row))
        where = paths[0] if args.n == 1 else f"{paths[0]} .. {paths[-1].name}"
        print(f"wrote {args.n} WAV samples ({calls} network calls each) to {where}")
    else:
        out = save_grid(x, args.output or "samples.png")
        print(f"wrote {args.n} samples ({calls} network calls each) to {out}")
    return 0


def cmd_inpaint(args: argparse.Namespace) -> int:
    from ardm.data.items import model_items
    from ardm.pictures import read_image, save_grid

    model = _load(args)
    if model.kind != "image":
        raise DataError("inpaint needs an image model; use `ardm complete` for text")
    if args.input:
        x = read_image(args.input, channels=model.shape[0])[None]
        if tuple(x.shape[1:]) != model.shape:
            raise DataError(
                f"{args.input} is {tuple(x.shape[1:])} (C, H, W) but the model takes {model.shape}"
            )
    else:
        x = model_items(model, "test", args.index + args.n)[args.index :]
    x = x.long()
    known = image_mask(args.mask, model.shape, args.seed)
    g = torch.Generator().manual_seed(args.seed)
    out = fill_in(model, x.to(model.device), known, budget=args.budget, generator=g).cpu()
    shown = torch.where(known, x, torch.full_like(x, 128))
    save_grid(torch.cat([x, shown, out]), args.output, nrow=x.shape[0])
    print(f"wrote {args.output}: rows = original, with the {args.mask} part hidden, completed")
    return 0


def cmd_complete(args: argparse.Namespace) -> int:
    from ardm.data.items import model_alphabet

    model = _load(args)
    if model.kind != "text":
        raise DataError("complete needs a text model; use `ardm inpaint` for images")
    alphabet = model_alphabet(model)
    L = model.shape[0]
    text = args.text
    if len(text) > L:
        raise DataError(f"text has {len(text)} characters; the model takes at most {L}")
    text = text + args.hole * (L - len(text))
    known = torch.tensor([c != args.hole for c in text])
    ids = alphabet.encode(
        "".join(c if c != args.hole else alphabet.symbols[0] for c in text)
    ).long()
    g = torch.Generator().manual_seed(args.seed)
    x = ids[None].expand(args.n, L)
    out = fill_in(model, x.to(model.device), known, budget=args.budget, generator=g).cpu()
    for row in out:
        print(alphabet.decode(row))
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
    """Model, file codec, input bytes, their data (compressing) and the output paths of
    ``ardm compress/decompress``: every input is read and checked before anything is coded."""
    from ardm.coding import files

    files.check_stdio(args.inputs, args.output)
    model = _load(args)
    item_codec = files.ItemCodec.for_model(model)
    raws = [files.read_input(p) for p in args.inputs]
    names = [files.display_name(p) for p in args.inputs]
    items = (
        [item_codec.read(r, name=n) for r, n in zip(raws, names, strict=True)]
        if compressing
        else []
    )

    def name(path: str, in_directory: bool) -> str:
        if compressing:
            return files.compressed_name(path, in_directory=in_directory)
        return files.decompressed_name(path, item_codec)

    outs = files.output_paths(args.inputs, args.output, name, force=args.force)
    binary = compressing or item_codec.kind != "text"
    if binary and outs == [files.STDIO] and sys.stdout.isatty():
        raise DataError("refusing to write binary data to a terminal; use -o FILE or a pipe")
    return model, item_codec, raws, names, items, outs


def _progress(total: int, quiet: bool):  # type: ignore[no-untyped-def]
    from tqdm import tqdm

    return tqdm(total=total, unit="file", disable=True if quiet else None, leave=False)


def _summary(
    verb: str,
    n: int,
    in_bytes: int,
    out_bytes: int,
    bits: float,
    unit: str,
    seconds: float,
    to_stdout: bool,
    extra: str = "",
) -> None:
    """The one-line summary (on stderr when the data go to stdout)."""
    print(
        f"{verb} {n} file{'s' if n != 1 else ''}: {in_bytes:,} -> {out_bytes:,} bytes, "
        f"{bits:.4f} {unit} (all header bytes included){extra}, {seconds:.2f} s",
        file=sys.stderr if to_stdout else sys.stdout,
    )


def cmd_compress(args: argparse.Namespace) -> int:
    import time

    from ardm.coding import files
    from ardm.coding.codec import compress
    from ardm.errors import FormatError

    start = time.perf_counter()
    model, item_codec, raws, names, items, outs = _coding_run(args, compressing=True)
    size = 4 * torch.get_num_threads()
    written = 0
    with _progress(len(items), args.quiet) as bar:
        for batch in _batches(items, size):
            blobs = compress(model, torch.stack([items[i] for i in batch]), budget=args.budget)
            assert isinstance(blobs, list)
            if args.verify:
                decoded = files.decompress_files(model, blobs, [names[i] for i in batch])
                for i, y in zip(batch, decoded, strict=True):
                    if not torch.equal(y, items[i].long()):
                        raise FormatError(f"{names[i]}: --verify failed: decoded data differ")
            for i, blob in zip(batch, blobs, strict=True):
                files.write_output(outs[i], blob, force=args.force)
                written += len(blob)
            bar.update(len(batch))
    values = sum(x.numel() for x in items)
    _summary(
        "compressed",
        len(items),
        sum(len(r) for r in raws),
        written,
        8 * written / values,
        item_codec.unit,
        time.perf_counter() - start,
        files.STDIO in outs,
        f", budget {min(args.budget, model.budget_range()[1])}"
        + (", verified" if args.verify else ""),
    )
    return 0


def cmd_decompress(args: argparse.Namespace) -> int:
    import time

    from ardm.coding import files

    start = time.perf_counter()
    model, item_codec, raws, names, _, outs = _coding_run(args, compressing=False)
    size = 4 * torch.get_num_threads()
    written = values = 0
    with _progress(len(raws), args.quiet) as bar:
        for s in range(0, len(raws), size):
            batch = list(range(s, min(s + size, len(raws))))
            decoded = files.decompress_files(
                model, [raws[i] for i in batch], [names[i] for i in batch]
            )
            for i, x in zip(batch, decoded, strict=True):
                data = item_codec.write(x)
                files.write_output(outs[i], data, force=args.force)
                written += len(data)
                values += x.numel()
            bar.update(len(batch))
    read = sum(len(r) for r in raws)
    _summary(
        "decompressed",
        len(raws),
        read,
        written,
        8 * read / max(values, 1),
        item_codec.unit,
        time.perf_counter() - start,
        files.STDIO in outs,
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
    from ardm.training.pretrained import export_weights, load_model

    model = load_model(args.model)
    path = export_weights(model, args.output, dtype=torch.float32 if args.fp32 else torch.float16)
    print(f"wrote {path} ({path.stat().st_size:,} bytes)")
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
