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

from ardm.config import Config, TrainConfig, to_dict
from ardm.data import BatchSampler, DataSpec, dataset_spec, load_split
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
    "cooldown",
    "log_every",
    "eval_every",
    "eval_items",
    "ckpt_every",
    "calibrate_passes",
    "policy_budget",
    "spread_order",
    "init",
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


@dataclass
class _Run:
    """One training run: its config, model, EMA copy, optimiser, data stream and RNG state.

    ``model`` trains ``core_net`` (wrapped for DDP or compiled once set up); ``ema_model``
    is the same process around ``ema_net``, the weights that are evaluated and shipped.
    """

    cfg: Config
    out_dir: Path
    rank: int
    world: int
    device: torch.device
    spec: DataSpec
    train_data: torch.Tensor
    test_items: torch.Tensor
    model: Any  # an ARDM, Upscale ARDM or D3PM process from build_model
    core_net: nn.Module
    ema_net: nn.Module
    ema_model: Any
    opt: torch.optim.Optimizer
    sampler: BatchSampler
    gen: torch.Generator
    progress: bool
    step: int = 0
    last_saved: int = 0  # the step of the newest checkpoint (-1: the newest state is unsaved)

    @property
    def ckpt_path(self) -> Path:
        return self.out_dir / "ckpt.pt"

    @property
    def amp(self) -> bool:
        return self.cfg.train.amp and self.device.type == "cuda"

    def log(self, record: dict[str, Any]) -> None:
        """Append one JSON line to ``metrics.jsonl`` (rank 0 only)."""
        if self.rank == 0:
            with open(self.out_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")

    def evaluate(self) -> dict[str, float]:
        """The EMA model's stochastic bound on the held-out items, in bits per dimension."""
        self.ema_net.eval()
        g = torch.Generator().manual_seed(1234)
        bpd = self.ema_model.bound_bpd(self.test_items.to(self.device), passes=1, generator=g)
        return {"test_bound_bpd": float(bpd.mean())}

    def checkpoint(self) -> None:
        """Write ``ckpt.pt`` (rank 0) with every rank's sampler and generator state."""
        samplers = [self.sampler.state_dict()]
        generators = [self.gen.get_state()]
        if self.world > 1:
            gathered: list[Any] = [None] * self.world
            dist.all_gather_object(gathered, (self.sampler.state_dict(), self.gen.get_state()))
            samplers = [g[0] for g in gathered]
            generators = [g[1] for g in gathered]
        if self.rank == 0:
            save_checkpoint(
                self.ckpt_path,
                {
                    "config": to_dict(self.cfg),
                    "model": self.core_net.state_dict(),
                    "ema": self.ema_net.state_dict(),
                    "optimizer": self.opt.state_dict(),
                    "tracker": self.model.tracker.state_dict(),
                    "step": self.step,
                    "samplers": samplers,
                    "generators": generators,
                    "order_seed": self.model.order_seed,
                },
            )
        if self.world > 1:
            dist.barrier()
        self.last_saved = self.step


def _set_up(cfg: Config, out_dir: Path, *, device: str, progress: bool) -> _Run:
    """Data, model (with its output bias), EMA copy, optimiser, sampler and generator.

    The seeds make the initial weights equal on every rank and the data and random draws
    differ per rank.
    """
    rank, world, dev = _init_distributed(pick_device(device))
    tc = cfg.train
    spec = dataset_spec(cfg.data.name, seq_len=cfg.data.seq_len)
    data_dir = cfg.data.data_dir or None
    train_data = load_split(cfg.data.name, "train", data_dir=data_dir, seq_len=cfg.data.seq_len)
    test_items = eval_items(cfg, "test", tc.eval_items)

    torch.manual_seed(tc.seed)  # the same initial weights on every rank
    model = build_model(cfg).to(dev)
    if cfg.model.output_bias == "marginal":  # a resumed run loads its own bias later
        model.net.set_output_bias(model.marginal_logits(train_data).to(dev))
    torch.manual_seed(tc.seed + rank)
    core_net = model.net
    ema_net = copy.deepcopy(core_net).requires_grad_(False)
    opt = torch.optim.AdamW(
        core_net.parameters(), lr=tc.lr, betas=tc.betas, weight_decay=tc.weight_decay
    )
    sampler = BatchSampler(
        train_data, spec, tc.batch_size, seed=tc.seed * 1000 + rank, augment=cfg.data.augment
    )
    gen = torch.Generator().manual_seed(tc.seed * 7919 + rank)
    return _Run(
        cfg=cfg,
        out_dir=out_dir,
        rank=rank,
        world=world,
        device=dev,
        spec=spec,
        train_data=train_data,
        test_items=test_items,
        model=model,
        core_net=core_net,
        ema_net=ema_net,
        ema_model=model.with_net(ema_net),
        opt=opt,
        sampler=sampler,
        gen=gen,
        progress=progress,
    )


def _resume_or_begin(run: _Run, *, fresh: bool) -> None:
    """Load ``ckpt.pt`` if there is one (and not ``fresh``); else start the run folder."""
    if run.ckpt_path.exists() and not fresh:
        state = load_checkpoint(run.ckpt_path)
        _check_resumable(state["config"], to_dict(run.cfg), run.out_dir)
        run.core_net.load_state_dict(state["model"])
        run.ema_net.load_state_dict(state["ema"])
        run.opt.load_state_dict(state["optimizer"])
        run.model.tracker.load_state_dict(state["tracker"])
        run.step = run.last_saved = int(state["step"])
        if len(state["samplers"]) == run.world:
            run.sampler.load_state_dict(state["samplers"][run.rank])
            run.gen.set_state(state["generators"][run.rank])
        if run.rank == 0 and run.progress:
            print(f"resuming {run.out_dir} from step {run.step}")
    else:
        if run.cfg.train.init:
            _init_from(run, run.cfg.train.init)
        if run.rank != 0:
            return
        run.out_dir.mkdir(parents=True, exist_ok=True)
        (run.out_dir / "config.json").write_text(json.dumps(to_dict(run.cfg), indent=2))
        (run.out_dir / "metrics.jsonl").unlink(missing_ok=True)


def _init_from(run: _Run, source: str) -> None:
    """Start a fresh run from the weights and ``L_t`` of ``source`` (``train.init``): anything
    :func:`ardm.training.pretrained.load_model` loads (a shipped model's name, a weights file,
    a run folder or checkpoint: its EMA weights), whose network settings must be this run's.
    Both the trained and the EMA weights start there; the optimiser starts fresh."""
    from ardm.training.pretrained import load_model

    model = load_model(source)
    saved: dict[str, Any] = model.config.get("model") or {}
    now: dict[str, Any] = to_dict(run.cfg)["model"]
    if saved != now:
        diff = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
        raise CheckpointError(
            f"train.init={source!r} has other model settings than this run ({', '.join(diff)})"
        )
    run.core_net.load_state_dict(model.net.state_dict())
    run.ema_net.load_state_dict(model.net.state_dict())
    run.model.tracker.set_all(model.tracker.L())
    run.model.order_seed = run.ema_model.order_seed = model.order_seed


def _parallelise(run: _Run) -> None:
    """Wrap the trained net for DDP (several processes) and compile it on CUDA if asked."""
    if run.world > 1:
        run.model.net = nn.parallel.DistributedDataParallel(run.core_net)
    if run.cfg.train.compile and run.device.type == "cuda":
        run.model.net = torch.compile(run.model.net)


@dataclass(frozen=True)
class _StepStats:
    """What one optimiser step reports."""

    loss: float
    grad_norm: float
    bpd: torch.Tensor  # (B,) the batch's bound in bits per dimension, detached

    @property
    def train_bound_bpd(self) -> float:
        return float(self.bpd.mean())


def lr_factor(tc: TrainConfig, step: int, elapsed_s: float) -> float:
    """The learning rate's share of ``train.lr`` before step ``step + 1``: a linear warm-up over
    ``warmup_steps``, then 1, then (``cooldown > 0``) a linear fall to 0 over the last
    ``cooldown`` of the run, whose end is ``train.steps`` or ``train.minutes`` after this
    invocation started, whichever comes first (a resumed run can thus cool down in the time
    it is given)."""
    warm = min(1.0, (step + 1) / max(1, tc.warmup_steps))
    if tc.cooldown <= 0:
        return warm
    done = step / max(1, tc.steps)
    if tc.minutes:
        done = max(done, elapsed_s / (60.0 * tc.minutes))
    return min(warm, max(0.0, (1.0 - done) / tc.cooldown))


def _train_step(run: _Run, x: torch.Tensor, elapsed_s: float = 0.0) -> _StepStats:
    """One AdamW step on the batch ``x`` (learning rate :func:`lr_factor`, clipping), then the
    EMA and L_t updates."""
    tc = run.cfg.train
    for group in run.opt.param_groups:
        group["lr"] = tc.lr * lr_factor(tc, run.step, elapsed_s)
    with torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=run.amp):
        out = run.model.loss(
            x,
            antithetic=tc.antithetic,
            generator=run.gen,
            policy_budget=tc.policy_budget,
            spread_order=tc.spread_order,
        )
    run.opt.zero_grad(set_to_none=True)
    out.loss.backward()
    grad_norm = float(nn.utils.clip_grad_norm_(run.core_net.parameters(), tc.grad_clip))
    loss = float(out.loss.detach())
    if not (math.isfinite(loss) and math.isfinite(grad_norm)):
        raise TrainingDiverged(
            f"loss became {loss} (grad norm {grad_norm}) at step {run.step + 1}; stopped, "
            f"the last good checkpoint ({run.ckpt_path}, step {run.last_saved}) is kept"
        )
    run.opt.step()
    with torch.no_grad():
        ema_p: list[torch.Tensor] = list(run.ema_net.parameters())
        core_p: list[torch.Tensor] = list(run.core_net.parameters())
        torch._foreach_lerp_(ema_p, core_p, 1.0 - tc.ema)
        for eb, b in zip(run.ema_net.buffers(), run.core_net.buffers(), strict=True):
            eb.copy_(b)
    out.track(run.model.tracker)
    run.step += 1
    return _StepStats(loss, grad_norm, out.terms.bpd.detach())


@dataclass
class _Throughput:
    """Examples per second over the steps since the last log line."""

    started: float = field(default_factory=time.perf_counter)
    window_start: float = 0.0
    window_examples: int = 0

    def __post_init__(self) -> None:
        self.window_start = self.started

    def examples_per_s(self) -> tuple[float, float]:
        """The rate over the window and the time now; starts a new window."""
        now = time.perf_counter()
        rate = self.window_examples / max(now - self.window_start, 1e-9)
        self.window_start, self.window_examples = now, 0
        return rate, now


def _loop(run: _Run, result: TrainResult) -> None:
    """Train until ``train.steps`` (or ``train.minutes``), logging, evaluating, saving."""
    tc = run.cfg.train
    clock = _Throughput()
    with tqdm(
        total=tc.steps,
        initial=run.step,
        disable=not run.progress or run.rank != 0,
        unit="step",
        dynamic_ncols=True,
    ) as bar:
        while run.step < tc.steps:
            if tc.minutes and time.perf_counter() - clock.started > tc.minutes * 60:
                break
            x = next(run.sampler).to(run.device, non_blocking=True)
            stats = _train_step(run, x, time.perf_counter() - clock.started)
            clock.window_examples += x.shape[0] * run.world
            bar.update(1)
            if run.step % tc.log_every == 0 or run.step == tc.steps:
                result.examples_per_s, now = clock.examples_per_s()
                bpd = stats.train_bound_bpd
                bar.set_postfix(bpd=f"{bpd:.3f}", ex_s=f"{result.examples_per_s:.0f}")
                run.log(
                    {
                        "step": run.step,
                        "loss": stats.loss,
                        "train_bound_bpd": bpd,
                        "lr": run.opt.param_groups[0]["lr"],
                        "grad_norm": stats.grad_norm,
                        "examples_per_s": result.examples_per_s,
                        "elapsed_s": now - clock.started,
                    }
                )
            if tc.eval_every and run.step % tc.eval_every == 0:
                result.last_eval = run.evaluate()
                run.log({"step": run.step, **result.last_eval})
            if tc.ckpt_every and run.step % tc.ckpt_every == 0:
                run.checkpoint()


def _calibrate(run: _Run) -> None:
    """Replace the running L_t with a fresh estimate from the EMA weights on training data."""
    tc = run.cfg.train
    run.ema_net.eval()
    items = modality_of(run.spec).items(run.train_data[: 1 << 20])  # text: at most 2^20 characters
    g = torch.Generator().manual_seed(tc.seed + 17)
    show = run.rank == 0 and run.progress
    if show:
        steps_L = len(run.model.tracker.L())
        print(
            f"calibrating L_t with the EMA weights: {tc.calibrate_passes} pass(es) over "
            f"{steps_L} steps ({tc.calibrate_passes * steps_L} examples)",
            flush=True,
        )
    calibrated = run.ema_model.estimate_L(
        items, passes=tc.calibrate_passes, generator=g, progress=show
    )
    run.model.tracker.set_all(calibrated)
    run.last_saved = -1  # the calibrated L_t must reach the checkpoint


def train(
    cfg: Config,
    out_dir: Path | str,
    *,
    device: str = "auto",
    fresh: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Train (or resume) the model of ``cfg`` in ``out_dir``; returns the final state."""
    run = _set_up(cfg, Path(out_dir), device=device, progress=progress)
    _resume_or_begin(run, fresh=fresh)
    _parallelise(run)
    result = TrainResult(step=run.step, out_dir=run.out_dir, rank=run.rank)
    _loop(run, result)
    tc = cfg.train
    if tc.calibrate_passes > 0 and run.step > 0:
        _calibrate(run)
    if run.last_saved != run.step or not run.ckpt_path.exists():
        run.checkpoint()
    result.step = run.step
    if not result.last_eval or (tc.eval_every and run.step % tc.eval_every):
        result.last_eval = run.evaluate()
        run.log({"step": run.step, **result.last_eval})
    return result
