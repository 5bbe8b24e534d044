"""Datasets: specs, loaders reading a local data directory, and the batch sampler.

>>> from ardm.data import dataset_spec, load_split, BatchSampler
>>> spec = dataset_spec("mnist")                      # cheap: reads nothing
>>> x = load_split("mnist", "train")                  # (60000, 1, 28, 28) uint8
>>> batches = BatchSampler(x, spec, 128, seed=0)      # infinite, resumable
>>> next(batches).shape                               # (128, 1, 28, 28) int64
>>> clips = load_split("fsdd", "train", seq_len=4000) # (2250, 4000) int32 classes in [0, 2^16)

Nothing is ever downloaded; see :mod:`ardm.data.registry` for the names and file layout.
"""

from ardm.data.audio import (
    SILENCE,
    classes_to_samples,
    read_wav,
    samples_to_classes,
    wav_bytes,
    write_wav,
)
from ardm.data.batches import BatchSampler, augment_images
from ardm.data.registry import (
    DATASETS,
    DataSpec,
    clear_cache,
    dataset_spec,
    default_data_dir,
    load_split,
    resolve_data_dir,
    verify_checksums,
)
from ardm.data.text import (
    SHAKESPEARE_ALPHABET,
    TEXT8_ALPHABET,
    TextAlphabet,
    text8_normalise,
    text_chunks,
)

__all__ = [
    "DATASETS",
    "SHAKESPEARE_ALPHABET",
    "SILENCE",
    "TEXT8_ALPHABET",
    "BatchSampler",
    "DataSpec",
    "TextAlphabet",
    "augment_images",
    "classes_to_samples",
    "clear_cache",
    "dataset_spec",
    "default_data_dir",
    "load_split",
    "read_wav",
    "resolve_data_dir",
    "samples_to_classes",
    "text8_normalise",
    "text_chunks",
    "verify_checksums",
    "wav_bytes",
    "write_wav",
]
