"""A thin, importable training loop: AdamW, warm-up, clipping, EMA, checkpoint and resume.

Launch with ``torchrun --nproc-per-node N -m ardm train ...`` for DistributedDataParallel
(gloo on CPU, NCCL on GPU). Killed runs resume from ``<out>/ckpt.pt`` with the same command:
model, EMA, optimiser, step, data order and RNG states all continue.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from ardm.config import Config, to_dict
from ardm.data import BatchSampler, dataset_spec, load_split
from ardm.data.items import eval_items
from ardm.devices import pick_device
from ardm.errors import ArdmError, CheckpointError
from ardm.modalities.registry import modality_of
from ardm.models.build import build_model
from ardm.training.checkpoint import load_checkpoint, save_checkpoint

# Settings that may change between a run and its resumption (they do not change the model).
RESUMABLE_CHANGES = {
    "steps",
    "minutes",
    "log_every",
    "eval_every",
    "eval_items",
    "ckpt_every",
    "calibrate_passes",
}


class TrainingDiverged(ArdmError):
    """The loss or gradient became NaN or infinite."""


@dataclass
class TrainResult:
    step: int
    out_dir: Path
    rank: int = 0
    last_eval: dict[str, float] = field(default_factory=dict)
    examples_per_s: float = 0.0


def _init_distributed(device: torch.device) -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, device
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    rank = dist.get_rank()
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    return rank, world, device


def _check_resumable(saved: dict[str, Any], now: dict[str, Any], out_dir: Path) -> None:
    for section in ("data", "model"):
        if saved.get(section) != now.get(section):
            raise CheckpointError(
                f"{out_dir}/ckpt.pt was trained with other {section} settings; "
                "use another --out folder or --fresh"
            )
    for key, value in now["train"].items():
        if key not in RESUMABLE_CHANGES and saved["train"].get(key) != value:
            raise CheckpointError(
                f"{out_dir}/ckpt.pt was trained with train.{key}={saved['train'].get(key)!r}; "
                "use another --out folder or --fresh"
            )


def train(
    cfg: Config,
    out_dir: Path | str,
    *,
    device: str = "auto",
    fresh: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Train (or resume) the model of ``cfg`` in ``out_dir``; returns the final state."""
    out_dir = Path(out_dir)
    rank, world, dev = _init_distributed(pick_device(device))
    tc = cfg.train
    spec = dataset_spec(cfg.data.name, seq_len=cfg.data.seq_len)
    data_dir = cfg.data.data_dir or None
    train_data = load_split(cfg.data.name, "train", data_dir=data_dir, seq_len=cfg.data.seq_len)
    test_items = eval_items(cfg, "test", tc.eval_items)

    torch.manual_seed(tc.seed)  # the same initial weights on every rank
    model = build_model(cfg).to(dev)
    if cfg.model.output_bias == "marginal":  # a resumed run loads its own bias below
        model.net.set_output_bias(model.marginal_logits(train_data).to(dev))
    torch.manual_seed(tc.seed + rank)
    core_net = model.net
    ema_net = copy.deepcopy(core_net).requires_grad_(False)
    ema_model = model.with_net(ema_net)
    opt = torch.optim.AdamW(
        core_net.parameters(), lr=tc.lr, betas=tc.betas, weight_decay=tc.weight_decay
    )
    sampler = BatchSampler(
        train_data, spec, tc.batch_size, seed=tc.seed * 1000 + rank, augment=cfg.data.augment
    )
    gen = torch.Generator().manual_seed(tc.seed * 7919 + rank)
    step = 0

    ckpt_path = out_dir / "ckpt.pt"
    if ckpt_path.exists() and not fresh:
        state = load_checkpoint(ckpt_path)
        _check_resumable(state["config"], to_dict(cfg), out_dir)
        core_net.load_state_dict(state["model"])
        ema_net.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
        model.tracker.load_state_dict(state["tracker"])
        step = int(state["step"])
        if len(state["samplers"]) == world:
            sampler.load_state_dict(state["samplers"][rank])
            gen.set_state(state["generators"][rank])
        if rank == 0 and progress:
            print(f"resuming {out_dir} from step {step}")
    elif rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.json").write_text(json.dumps(to_dict(cfg), indent=2))
        (out_dir / "metrics.jsonl").unlink(missing_ok=True)

    if world > 1:
        model.net = nn.parallel.DistributedDataParallel(core_net)
    if tc.compile and dev.type == "cuda":
        model.net = torch.compile(model.net)  # type: ignore[assignment]
    amp = tc.amp and dev.type == "cuda"

    def checkpoint() -> None:
        samplers = [sampler.state_dict()]
        generators = [gen.get_state()]
        if world > 1:
            gathered: list[Any] = [None] * world
            dist.all_gather_object(gathered, (sampler.state_dict(), gen.get_state()))
            samplers = [g[0] for g in gathered]
            generators = [g[1] for g in gathered]
        if rank == 0:
            save_checkpoint(
                ckpt_path,
                {
                    "config": to_dict(cfg),
                    "model": core_net.state_dict(),
                    "ema": ema_net.state_dict(),
                    "optimizer": opt.state_dict(),
                    "tracker": model.tracker.state_dict(),
                    "step": step,
                    "samplers": samplers,
                    "generators": generators,
                    "order_seed": model.order_seed,
                },
            )
        if world > 1:
            dist.barrier()

    def log(record: dict[str, Any]) -> None:
        if rank == 0:
            with open(out_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")

    def evaluate() -> dict[str, float]:
        ema_net.eval()
        g = torch.Generator().manual_seed(1234)
        bpd = ema_model.bound_bpd(test_items.to(dev), passes=1, generator=g)
        return {"test_bound_bpd": float(bpd.mean())}

    result = TrainResult(step=step, out_dir=out_dir, rank=rank)
    bar = tqdm(
        total=tc.steps,
        initial=step,
        disable=not progress or rank != 0,
        unit="step",
        dynamic_ncols=True,
    )
    started = time.perf_counter()
    window_start, window_examples = started, 0
    last_saved = step
    while step < tc.steps:
        if tc.minutes and time.perf_counter() - started > tc.minutes * 60:
            break
        x = next(sampler).to(dev, non_blocking=True)
        for group in opt.param_groups:
            group["lr"] = tc.lr * min(1.0, (step + 1) / max(1, tc.warmup_steps))
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            out = model.loss(x, antithetic=tc.antithetic, generator=gen)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(core_net.parameters(), tc.grad_clip)
        loss_value = float(out.loss.detach())
        if not (math.isfinite(loss_value) and math.isfinite(float(grad_norm))):
            bar.close()
            raise TrainingDiverged(
                f"loss became {loss_value} (grad norm {float(grad_norm)}) at step {step + 1}; "
                f"stopped, the last good checkpoint ({out_dir}/ckpt.pt, step {last_saved}) is kept"
            )
        opt.step()
        with torch.no_grad():
            ema_p = list(ema_net.parameters())
            torch._foreach_lerp_(ema_p, list(core_net.parameters()), 1.0 - tc.ema)
            for eb, b in zip(ema_net.buffers(), core_net.buffers(), strict=True):
                eb.copy_(b)
        model.tracker.update(out.t, out.terms.L_t)
        step += 1
        window_examples += x.shape[0] * world
        bar.update(1)
        if step % tc.log_every == 0 or step == tc.steps:
            now = time.perf_counter()
            result.examples_per_s = window_examples / max(now - window_start, 1e-9)
            window_start, window_examples = now, 0
            record = {
                "step": step,
                "loss": loss_value,
                "train_bound_bpd": float(out.terms.bpd.detach().mean()),
                "lr": opt.param_groups[0]["lr"],
                "grad_norm": float(grad_norm),
                "examples_per_s": result.examples_per_s,
                "elapsed_s": now - started,
            }
            bar.set_postfix(
                bpd=f"{record['train_bound_bpd']:.3f}", ex_s=f"{result.examples_per_s:.0f}"
            )
            log(record)
        if tc.eval_every and step % tc.eval_every == 0:
            result.last_eval = evaluate()
            log({"step": step, **result.last_eval})
        if tc.ckpt_every and step % tc.ckpt_every == 0:
            checkpoint()
            last_saved = step
    bar.close()
    if tc.calibrate_passes > 0 and step > 0:
        ema_net.eval()
        items = modality_of(spec).items(train_data[: 1 << 20])  # text: at most 2^20 characters
        g = torch.Generator().manual_seed(tc.seed + 17)
        show = rank == 0 and progress
        if show:
            steps_L = len(model.tracker.L())
            print(
                f"calibrating L_t with the EMA weights: {tc.calibrate_passes} pass(es) over "
                f"{steps_L} steps ({tc.calibrate_passes * steps_L} examples)",
                flush=True,
            )
        calibrated = ema_model.estimate_L(
            items, passes=tc.calibrate_passes, generator=g, progress=show
        )
        model.tracker.set_all(calibrated)
        last_saved = -1  # the calibrated L_t must reach the checkpoint
    if last_saved != step or not ckpt_path.exists():
        checkpoint()
    result.step = step
    if not result.last_eval or (tc.eval_every and step % tc.eval_every):
        result.last_eval = evaluate()
        log({"step": step, **result.last_eval})
    return result
