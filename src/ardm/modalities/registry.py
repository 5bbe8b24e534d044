"""The modality of a dataset or of a trained model: chosen once, from the dataset's kind."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ardm.data.audio import FSDD_RATE
from ardm.data.registry import DataSpec, dataset_spec
from ardm.data.text import TextAlphabet
from ardm.errors import DataError
from ardm.modalities.audio import AudioModality
from ardm.modalities.image import ImageModality
from ardm.modalities.modality import Modality
from ardm.modalities.text import ByteTextModality, TextModality


def _text(spec: DataSpec) -> Modality:
    if spec.alphabet is None and spec.K == 256:
        return ByteTextModality(length=spec.shape[0])
    if spec.alphabet is None or len(spec.alphabet) != spec.K:
        raise DataError(f"the dataset {spec.name!r} has no alphabet of K symbols")
    return TextModality(alphabet=TextAlphabet(spec.alphabet), length=spec.shape[0])


MODALITIES: dict[str, Callable[[DataSpec], Modality]] = {
    "image": lambda spec: ImageModality(channels=spec.shape[0]),
    "text": _text,
    "audio": lambda spec: AudioModality(rate=FSDD_RATE),  # the one audio dataset: FSDD
}
"""The modality of each data kind, built from a dataset's spec."""


def modality_of(spec: DataSpec) -> Modality:
    """The modality of a dataset."""
    make = MODALITIES.get(spec.kind)
    if make is None:
        raise DataError(f"files for {spec.kind} data are not supported yet")
    return make(spec)


def modality_for(model: Any) -> Modality:
    """The modality of a trained model (an :class:`ardm.models.ardm.ARDM` or another process
    from a checkpoint), from the dataset in its stored config."""
    data = model.config["data"]
    return modality_of(dataset_spec(data["name"], seq_len=data.get("seq_len")))
