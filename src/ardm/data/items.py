"""The evaluation items of a dataset, and of the dataset a trained model was built for (from
the resolved config stored with the model)."""

from __future__ import annotations

from typing import Any

import torch

from ardm.config import Config, from_dict
from ardm.data.registry import DataSpec, dataset_spec, load_split
from ardm.data.text import TextAlphabet
from ardm.errors import DataError
from ardm.modalities.registry import modality_of


def eval_items(cfg: Config, split: str = "test", limit: int | None = None) -> torch.Tensor:
    """The evaluation items of a split: images, or consecutive text chunks ``(N, *shape)``."""
    spec = dataset_spec(cfg.data.name, seq_len=cfg.data.seq_len)
    data = load_split(
        cfg.data.name, split, data_dir=cfg.data.data_dir or None, seq_len=cfg.data.seq_len
    )
    items = modality_of(spec).items(data)  # (N, *shape)
    return items[:limit].long() if limit else items.long()


def model_spec(model: Any) -> DataSpec:
    """The dataset spec a trained model was built for (from its stored config)."""
    data = model.config["data"]
    return dataset_spec(data["name"], seq_len=data["seq_len"])


def model_items(model: Any, split: str = "test", limit: int | None = None) -> torch.Tensor:
    """Evaluation items ``(N, *shape)`` of the dataset a trained model was built for."""
    return eval_items(from_dict(Config, model.config), split, limit)


def spread_items(model: Any, split: str, count: int) -> torch.Tensor:
    """``count`` items of ``split`` spread evenly over all of them (first and last included):
    for data stored in an order that matters, e.g. crops photo by photo, row by row."""
    every = model_items(model, split)  # (N, ...)
    return every[torch.linspace(0, len(every) - 1, count).long()]


def model_alphabet(model: Any) -> TextAlphabet:
    """The alphabet of a text model; a one-line error for other models."""
    alphabet = model_spec(model).alphabet
    if alphabet is None:
        raise DataError(f"{model.kind} models have no alphabet")
    return TextAlphabet(alphabet)
