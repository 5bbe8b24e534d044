"""The base of every modality: what a caller may ask about the kind of data a model codes."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import torch

from ardm.errors import DataError

MAX_VALUES = 1 << 24
"""Largest input (values: channels x height x width, characters or samples); the file
format's limit (:data:`ardm.coding.container.MAX_D`, checked equal by the tests)."""


class Modality(ABC):
    """The kind of data a model codes: images, text or audio.

    One is chosen per model (:func:`ardm.modalities.registry.modality_for`); callers ask it
    instead of comparing kind strings.
    """

    kind: ClassVar[str]
    """The data kind stored in compressed files' headers: ``image``, ``text`` or ``audio``."""
    unit: ClassVar[str]
    """The unit of code lengths: ``bpd``, ``bpc`` or ``bits/sample``."""
    suffix: ClassVar[str]
    """Suffix of a decompressed file: ``.png``, ``.txt`` or ``.wav``."""
    binary: ClassVar[bool] = True
    """Whether a written item is binary (never printed to a terminal)."""

    @abstractmethod
    def read(self, data: bytes, *, name: str) -> torch.Tensor:
        """File bytes -> one item (its own shape), or a one-line :class:`DataError` naming ``name``."""

    @abstractmethod
    def write(self, x: torch.Tensor) -> bytes:
        """One item -> file bytes that :meth:`read` reads back exactly."""

    def output_name(self, base: str) -> str:
        """The name of a decompressed file whose compressed name without ``.ardm`` is
        ``base``: ``x.wav`` stays, ``x`` and ``x.other`` become ``x.wav`` (audio)."""
        suffix = Path(base).suffix.lower()
        if suffix == self.suffix:
            return base
        return (Path(base).stem if suffix else base) + self.suffix

    def items(self, data: torch.Tensor) -> torch.Tensor:
        """The model-sized items ``(N, *shape)`` of a split as a dataset loader returns it."""
        return data

    @abstractmethod
    def save_samples(self, x: torch.Tensor, output: str | None, *, calls: int) -> str:
        """Save samples ``x (N, *shape)`` to ``output`` (or a default); the line to print."""

    def region_mask(self, region: str, shape: tuple[int, ...], seed: int) -> torch.Tensor:
        """The ``known`` mask hiding a named region of an item (images only)."""
        raise DataError("inpaint needs an image model; use `ardm complete` for text")

    def save_inpainting(
        self, x: torch.Tensor, known: torch.Tensor, filled: torch.Tensor, path: str
    ) -> Path:
        """A picture of items, their known part and their completions (images only)."""
        raise DataError("inpaint needs an image model; use `ardm complete` for text")

    def hole_mask(self, text: str, *, hole: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Ids ``(L,)`` and ``known (L,)`` of text with ``hole`` marking unknowns (text only)."""
        raise DataError("complete needs a text model; use `ardm inpaint` for images")
