"""Configuration: frozen dataclasses are the single source of truth, presets are TOML files.

A preset (``src/ardm/presets/<dataset>-<size>.toml``) sets some fields; everything else keeps
its default. Command-line overrides ``--set train.lr=3e-4`` are parsed with the field's type,
and unknown keys are errors. Derived values (``D``, ``K``) come from the dataset spec and are
never written back into the config.
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ardm.errors import ConfigError
from ardm.nets.transformer import TransformerConfig
from ardm.nets.unet import UNetConfig
from ardm.nets.wavenet import WaveNetConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass(frozen=True)
class DataConfig:
    name: str = "mnist"
    seq_len: int = 256  # text and audio: values per item
    augment: bool = False  # images: random flips and 90 degree rotations
    data_dir: str = ""  # empty: ARDM_DATA_DIR or ../shared/data


PROCESSES = ("oa", "upscale", "d3pm")
OUTPUTS = ("categorical", "dmol")
PARAMETRISATIONS = ("data", "direct")
OUTPUT_BIASES = ("zero", "marginal")


@dataclass(frozen=True)
class ModelConfig:
    net: str = "unet"  # "unet" (images) | "transformer" (text) | "wavenet" (audio)
    ce_weight: float = 1e-3  # weight of the unweighted cross-entropy term
    # The generative process around the network:
    #   "oa"      order-agnostic ARDM (paper Sec. 3.1)
    #   "upscale" Upscale ARDM: S = ceil(log_b K) stages of base-b digits (paper Sec. 3.2)
    #   "d3pm"    the D3PM-absorbing baseline with d3pm_steps steps (Austin et al. 2021)
    process: str = "oa"
    output: str = "categorical"  # "oa" only: "categorical" (K-way softmax) | "dmol" (audio)
    mixtures: int = 30  # logistic components of the "dmol" output
    branching: int = 4  # "upscale": b
    parametrisation: str = "data"  # "upscale": "data" (K-way head) | "direct" (b-way per stage)
    d3pm_steps: int = 1000  # "d3pm": T
    # Initial bias of the net's output layer: "zero", or "marginal" (the log-frequencies of
    # the training data's classes or digits, so training starts from the marginal model and
    # its gradients are about context; categorical outputs only).
    output_bias: str = "zero"
    # "oa" text only: the known prefix of a coded block (ardm.core.context); > 0 mixes
    # prefix-known examples into training and codes files as chains of blocks.
    context: int = 0
    unet: UNetConfig = field(default_factory=UNetConfig)
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    wavenet: WaveNetConfig = field(default_factory=WaveNetConfig)

    def __post_init__(self) -> None:
        if self.process not in PROCESSES:
            raise ValueError(
                f"model.process must be one of {', '.join(PROCESSES)}, got {self.process!r}"
            )
        if self.output not in OUTPUTS:
            raise ValueError(
                f"model.output must be one of {', '.join(OUTPUTS)}, got {self.output!r}"
            )
        if self.parametrisation not in PARAMETRISATIONS:
            raise ValueError(
                f"model.parametrisation must be one of {', '.join(PARAMETRISATIONS)}, "
                f"got {self.parametrisation!r}"
            )
        if self.output_bias not in OUTPUT_BIASES:
            raise ValueError(
                f"model.output_bias must be one of {', '.join(OUTPUT_BIASES)}, "
                f"got {self.output_bias!r}"
            )
        if self.branching < 2:
            raise ValueError(f"model.branching must be >= 2, got {self.branching}")
        if self.mixtures < 1:
            raise ValueError(f"model.mixtures must be >= 1, got {self.mixtures}")
        if self.context < 0:
            raise ValueError(f"model.context must be >= 0, got {self.context}")
        if self.d3pm_steps < 1:
            raise ValueError(f"model.d3pm_steps must be >= 1, got {self.d3pm_steps}")


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1000
    minutes: float = 0.0  # stop after this much wall time (0: no limit)
    batch_size: int = 32
    lr: float = 1e-3
    warmup_steps: int = 100
    cooldown: float = 0.0  # last fraction of the run (steps or minutes) with lr falling to 0
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = 1.0
    ema: float = 0.999
    antithetic: bool = False  # stratified t across the batch
    seed: int = 0
    log_every: int = 10
    eval_every: int = 500
    eval_items: int = 256  # test items for the periodic bound
    ckpt_every: int = 200
    calibrate_passes: int = 2  # at the end: fresh L_t for every t from the EMA model (0: off)
    policy_budget: int = 0  # coding examples at the coder's steps for this many calls (0: off)
    spread_order: bool = False  # coding examples in the spread coder's order of the block
    init: str = ""  # start from these weights: a shipped model, weights file or run (load_model)
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    compile: bool = False  # torch.compile the network (CUDA only)

    def __post_init__(self) -> None:
        if not 0.0 <= self.cooldown <= 1.0:
            raise ValueError(f"train.cooldown must lie in [0, 1], got {self.cooldown}")
        if self.policy_budget < 0:
            raise ValueError(f"train.policy_budget must be >= 0, got {self.policy_budget}")


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def preset_names() -> list[str]:
    """Names of the presets shipped with the package."""
    folder = resources.files("ardm") / "presets"
    return sorted(
        p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml")
    )


def load_config(preset: str | None = None, overrides: typing.Sequence[str] = ()) -> Config:
    """Build a config from a preset name or TOML path plus ``section.key=value`` overrides."""
    tree: dict[str, Any] = {}
    if preset:
        tree = _read_preset(preset)
    cfg = from_dict(Config, tree)
    for item in overrides:
        cfg = apply_override(cfg, item)
    return cfg


def _read_preset(preset: str) -> dict[str, Any]:
    path = Path(preset)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file not found: {preset}")
        text = path.read_text()
    else:
        res = resources.files("ardm") / "presets" / f"{preset}.toml"
        if not res.is_file():
            raise ConfigError(f"unknown preset {preset!r}; known: {', '.join(preset_names())}")
        text = res.read_text()
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"invalid TOML in {preset}: {e}") from None


def from_dict(cls: type[Any], tree: dict[str, Any], prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a nested dict, checking names and types."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in tree.items():
        if key not in names:
            raise ConfigError(f"unknown setting {prefix}{key}; known: {', '.join(sorted(names))}")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ConfigError(f"setting {prefix}{key} must be a table")
            kwargs[key] = from_dict(typing.cast(type, hint), value, f"{prefix}{key}.")
        else:
            kwargs[key] = _coerce(value, hint, f"{prefix}{key}")
    return _construct(cls, kwargs)


def _construct(cls: type[Any], kwargs: dict[str, Any]) -> Any:
    try:
        return cls(**kwargs)
    except ValueError as e:  # a config's own validation
        raise ConfigError(str(e)) from None


def to_dict(cfg: Any) -> dict[str, Any]:
    """A plain nested dict (tuples as lists), suitable for JSON and checkpoints."""
    return typing.cast(dict[str, Any], _plain(dataclasses.asdict(cfg)))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def apply_override(cfg: Config, item: str) -> Config:
    """Apply one ``section.key=value`` override (value parsed as TOML, else as a string)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form section.key=value")
    dotted, raw = item.split("=", 1)
    parts = dotted.strip().split(".")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return typing.cast(Config, _replace_path(cfg, parts, value, ""))


def _replace_path(obj: Any, parts: list[str], value: Any, prefix: str) -> Any:
    names = {f.name for f in dataclasses.fields(obj)}
    key = parts[0]
    if key not in names:
        raise ConfigError(f"unknown setting {prefix}{key}; known: {', '.join(sorted(names))}")
    hint = typing.get_type_hints(type(obj))[key]
    if len(parts) > 1:
        child = getattr(obj, key)
        if not dataclasses.is_dataclass(child):
            raise ConfigError(f"setting {prefix}{key} has no sub-settings")
        new_child = _replace_path(child, parts[1:], value, f"{prefix}{key}.")
        return _construct(type(obj), {**_fields(obj), key: new_child})
    if dataclasses.is_dataclass(hint):
        raise ConfigError(f"setting {prefix}{key} is a table; set one of its fields")
    return _construct(type(obj), {**_fields(obj), key: _coerce(value, hint, f"{prefix}{key}")})


def _fields(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


def _coerce(value: Any, hint: Any, name: str) -> Any:
    origin = typing.get_origin(hint)
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"setting {name} must be a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], name) for v in value)
        if len(value) != len(args):
            raise ConfigError(f"setting {name} must have {len(args)} items, got {len(value)}")
        return tuple(_coerce(v, a, name) for v, a in zip(value, args, strict=True))
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"setting {name} must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"setting {name} must be an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"setting {name} must be a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"setting {name} must be a string, got {value!r}")
    raise ConfigError(f"setting {name} has an unsupported type {hint}")
