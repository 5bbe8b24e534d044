"""Trained models that ship with ``ardm``: small safetensors files loaded by name.

A shipped model is one ``.safetensors`` file: the EMA weights (fp16 by default), the sorted
per-step losses ``L_t`` (float64), and metadata (the resolved config as JSON, the order
seed, a SHA-256 of all tensors). ``load("mnist")`` checks the SHA-256 before building the
model, so a damaged or edited file is refused instead of silently coding wrong data.

A model may also ship its portable form (the frozen integer network of the integer coder,
format versions 5-9): ``weights/portable/<name>.safetensors`` beside ``weights/<name>.safetensors``
(:func:`portable_file`), written by :func:`export_portable` (``ardm export --portable``,
``python -m ardm.portable.ship <name>``), in :mod:`ardm.portable.state`'s format with its
own SHA-256. :func:`load_weights` attaches it as ``model.portable`` after checking that it
was frozen from exactly these weights (the float model's fingerprint).
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from ardm.config import Config, from_dict
from ardm.errors import CheckpointError, FormatError, first_line
from ardm.filesystem import atomic_write_bytes
from ardm.models.ardm import ARDM
from ardm.models.build import build_model
from ardm.training.checkpoint import load_checkpoint, model_from_state

FORMAT = "ardm-weights-1"
L_KEY = "__L_t__"


def shipped_names() -> list[str]:
    """Names of the models shipped inside the package (``src/ardm/weights/*.safetensors``)."""
    folder = resources.files("ardm") / "weights"
    if not folder.is_dir():
        return []
    return sorted(
        p.name.removesuffix(".safetensors")
        for p in folder.iterdir()
        if p.name.endswith(".safetensors")
    )


def shipped_path(name: str) -> Path:
    """The file of the shipped model ``name``; an error names the shipped ones if none."""
    path = Path(str(resources.files("ardm") / "weights" / f"{name}.safetensors"))
    if not path.is_file():
        known = ", ".join(shipped_names()) or "none"
        raise CheckpointError(f"no shipped model named {name!r}; shipped: {known}")
    return path


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def export_weights(model: ARDM, path: Path | str, *, dtype: torch.dtype = torch.float16) -> Path:
    """Write ``model`` (its current weights, ``L_t`` and config) as a shipped-model file."""
    tensors = {
        k: v.detach().cpu().to(dtype if v.is_floating_point() else v.dtype).contiguous()
        for k, v in model.net.state_dict().items()
    }
    tensors[L_KEY] = torch.from_numpy(model.tracker.L().copy())
    metadata = {
        "format": FORMAT,
        "config": json.dumps(model.config, sort_keys=True),
        "order_seed": str(model.order_seed),
        "sha256": _digest(tensors),
    }
    path = Path(path)
    atomic_write_bytes(path, st_save(tensors, metadata=metadata))
    return path


def load_weights(path: Path | str, *, portable: bool = True) -> ARDM:
    """Load a shipped-model file (checksum verified); weights are cast to float32. With
    ``portable``, the portable form beside it (if any) is attached and checked."""
    path = Path(path)
    data = path.read_bytes()
    try:
        tensors = st_load(data)
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, ValueError, OSError) as e:
        raise CheckpointError(f"cannot read weights {path}: {first_line(e)}") from None
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an ardm weights file")
    if _digest(tensors) != metadata.get("sha256"):
        raise CheckpointError(f"{path} fails its SHA-256 check: the file is damaged or was edited")
    model = build_model(from_dict(Config, json.loads(metadata["config"])))
    L = tensors.pop(L_KEY)
    try:
        model.net.load_state_dict(
            {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
        )
    except RuntimeError as e:
        raise CheckpointError(
            f"{path}: weights do not match their config: {first_line(e)}"
        ) from None
    model.tracker.set_all(L.numpy())
    model.order_seed = int(metadata["order_seed"])
    if portable and portable_file(path).is_file():
        attach_portable(model, portable_file(path))
    return model.eval()


PORTABLE_DIR = "portable"
"""The folder, beside a weights file, of its portable form (same file name)."""


def portable_file(weights: Path | str) -> Path:
    """Where the portable form of the weights file ``weights`` lives."""
    weights = Path(weights)
    return weights.parent / PORTABLE_DIR / weights.name


def attach_portable(model: ARDM, path: Path | str) -> ARDM:
    """Set ``model.portable`` from the portable file ``path``, refused (one line) if it is
    damaged or was frozen from other weights."""
    from ardm.portable.model import portable_from_bytes

    try:
        portable = portable_from_bytes(Path(path).read_bytes())
    except (FormatError, OSError) as e:
        raise CheckpointError(f"cannot read the portable form {path}: {first_line(e)}") from None
    if portable.float_fingerprint != model.fingerprint().hex():
        raise CheckpointError(f"{path} was frozen from other weights than its model's")
    model.portable = portable
    return model


def export_portable(
    weights: Path | str, *, items: int = 64, passes: int = 4, seed: int = 0
) -> Path:
    """Freeze the model of the weights file ``weights`` (as :func:`load_weights` builds it, so
    its fingerprint is the shipped one) into its portable form, calibrated on ``items`` items
    of its training split seen ``passes`` times; write it to :func:`portable_file`.

    Image and audio models calibrate on the first ``items`` training items (the shipped forms
    of the first releases were frozen so); a model with context (``kodak-photo``, whose
    training crops come photo by photo, row by row) on ``items`` crops spread evenly over all
    of them, so that the activation ranges see every photo."""
    from ardm.data.items import model_items, spread_items
    from ardm.portable.model import freeze

    model = load_weights(weights, portable=False)  # an old portable form may be stale
    if getattr(model, "context", 0) and len(model.shape) == 3:
        calib = spread_items(model, "train", items)  # (items, C, H, W)
    else:
        calib = model_items(model, "train", items)
    portable = freeze(model, calib, passes=passes, seed=seed)
    path = portable_file(weights)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, portable.to_bytes())
    return path


def load(name: str, *, device: str | torch.device = "cpu") -> ARDM:
    """A shipped model by name, e.g. ``ardm.load("mnist")``."""
    return load_weights(shipped_path(name)).to(device)


def load_model(path: Path | str, *, device: str | torch.device = "cpu", ema: bool = True) -> ARDM:
    """Load a model for evaluation, sampling or coding.

    ``path`` is a run folder, a checkpoint file, a shipped-weights ``.safetensors`` file, or
    the name of a model shipped with ardm (``mnist``, ``english``, ...).
    """
    path = Path(path)
    if path.suffix == ".safetensors" and path.is_file():
        return load_weights(path).to(device)
    if not path.exists():
        if len(path.parts) == 1 and str(path) in shipped_names():
            return load(str(path), device=device)
        shipped = ", ".join(shipped_names()) or "none yet"
        raise CheckpointError(
            f"no run folder, checkpoint or weights file {path}, and no shipped model of that "
            f"name (shipped: {shipped})"
        )
    if path.is_dir():
        path = path / "ckpt.pt"
    return model_from_state(load_checkpoint(path), ema=ema).to(device)
