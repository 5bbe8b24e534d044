"""Dataset names -> specs and loaders, and where the data directory is.

The data are never downloaded: every loader reads files from a data directory, by default
``$ARDM_DATA_DIR`` or ``<repo>/../shared/data``. A loaded split is cached in memory per
(name, split, directory, audio clip length); the returned tensor is shared between callers,
so treat it as read-only.

========================  =====  ===================  =====  ===============================
name                      kind   shape                K      files under the data directory
========================  =====  ===================  =====  ===============================
``mnist``                 image  (1, 28, 28)          256    ``mnist/*-images-idx3-ubyte.gz``
``fashion-mnist``         image  (1, 28, 28)          256    ``fashion-mnist/`` (same layout)
``cifar10-subset``        image  (3, 32, 32)          256    ``cifar10-subset/{train,test}.npz``
``cifar10``               image  (3, 32, 32)          256    ``cifar-10-batches-py/`` (yours)
``kodak32``               image  (3, 32, 32)          256    ``kodak/kodimNN.png``
``kodak-photos``          image  (3, 32, 32)          256    ``kodak/kodimNN.png`` (8 / 4 photos)
``english``               text   (seq_len,)           27     ``english/{train,valid,test}.txt``
``shakespeare``           text   (seq_len,)           65     ``tinyshakespeare/input.txt``
``text8``                 text   (seq_len,)           27     ``text8/text8`` or ``text8`` (yours)
``english-bytes``         text   (seq_len,)           256    ``english/{train,valid,test}.txt``
``fsdd``                  audio  (seq_len,)           65536  ``fsdd/recordings/*.wav``
========================  =====  ===================  =====  ===============================

Image and audio datasets have the splits ``train`` and ``test`` only. Text splits are
``train``, ``valid`` and ``test`` (for ``shakespeare``, ``test`` is the same text as ``valid``).

``seq_len`` is the crop length of text (default 256) and the clip length of audio (default
4000 samples, 0.5 s at 8 kHz; see :mod:`ardm.data.audio` for the crop/pad rule).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Literal

import numpy as np
import torch

from ardm.data import audio, images, text
from ardm.errors import DataError


@dataclass(frozen=True)
class DataSpec:
    """What a model needs to know about a dataset, without reading it."""

    name: str
    kind: Literal["image", "text", "audio"]
    shape: tuple[int, ...]  # (C, H, W) for images, (seq_len,) for text and audio
    K: int  # classes per variable
    alphabet: str | None  # text only: symbol of id i is alphabet[i]
    title: str  # honest human-readable name for reports
    splits: tuple[str, ...]

    @property
    def D(self) -> int:
        """Number of variables of one data point."""
        return math.prod(self.shape)


_IMAGE_SPLITS = ("train", "test")
_TEXT_SPLITS = ("train", "valid", "test")
_DEFAULT_SEQ_LEN = 256
_DEFAULT_AUDIO_LEN = 4000  # 0.5 s at 8 kHz


def _image(name: str, shape: tuple[int, int, int], title: str) -> DataSpec:
    return DataSpec(name, "image", shape, 256, None, title, _IMAGE_SPLITS)


def _text(name: str, alphabet: str, title: str) -> DataSpec:
    return DataSpec(name, "text", (_DEFAULT_SEQ_LEN,), len(alphabet), alphabet, title, _TEXT_SPLITS)


def _audio(name: str, title: str) -> DataSpec:
    return DataSpec(name, "audio", (_DEFAULT_AUDIO_LEN,), audio.K_AUDIO, None, title, _IMAGE_SPLITS)


DATASETS: Mapping[str, DataSpec] = MappingProxyType(
    {
        "mnist": _image("mnist", (1, 28, 28), "MNIST"),
        "fashion-mnist": _image("fashion-mnist", (1, 28, 28), "Fashion-MNIST"),
        "cifar10-subset": _image(
            "cifar10-subset", (3, 32, 32), "CIFAR-10 subset (4000 train / 500 test)"
        ),
        "cifar10": _image("cifar10", (3, 32, 32), "CIFAR-10"),
        "kodak32": _image("kodak32", (3, 32, 32), "Kodak 32x32 tiles (10 train / 2 test photos)"),
        "kodak-photos": _image(
            "kodak-photos", (3, 32, 32), "Kodak photos, 32x32 crops (8 train / 4 held-out photos)"
        ),
        "english": _text("english", text.TEXT8_ALPHABET, "text8-style English"),
        "shakespeare": _text(
            "shakespeare", text.SHAKESPEARE_ALPHABET, "tiny-shakespeare (characters)"
        ),
        "text8": _text("text8", text.TEXT8_ALPHABET, "text8"),
        "english-bytes": DataSpec(
            "english-bytes",
            "text",
            (_DEFAULT_SEQ_LEN,),
            256,
            None,
            "English prose, raw UTF-8 bytes",
            _TEXT_SPLITS,
        ),
        "fsdd": _audio("fsdd", "FSDD spoken digits (8 kHz; stand-in for SC09)"),
    }
)
"""Every dataset by name, with the default ``seq_len`` (256 for text, 4000 for audio)."""


def default_data_dir() -> Path:
    """``$ARDM_DATA_DIR`` if set, else ``<repo root>/../shared/data`` if that exists (the repo
    root found from this file), else ``./../shared/data`` relative to the working directory."""
    env = os.environ.get("ARDM_DATA_DIR")
    if env:
        return Path(env).expanduser()
    beside_repo = Path(__file__).resolve().parents[3].parent / "shared" / "data"
    if beside_repo.is_dir():
        return beside_repo
    return Path.cwd() / ".." / "shared" / "data"


def resolve_data_dir(data_dir: Path | str | None = None) -> Path:
    """The absolute data directory (``None`` or ``""``: :func:`default_data_dir`); must exist."""
    root = Path(data_dir).expanduser() if data_dir else default_data_dir()
    root = root.resolve()
    if not root.is_dir():
        raise DataError(f"data directory {root} does not exist (set ARDM_DATA_DIR or --data-dir)")
    return root


def dataset_spec(name: str, *, seq_len: int | None = None) -> DataSpec:
    """The spec of dataset ``name`` (text: crops of ``seq_len``, audio: clips of ``seq_len``
    samples; ``None``: the dataset's default). Reads no data."""
    spec = DATASETS.get(name)
    if spec is None:
        raise DataError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    if spec.kind == "image" or seq_len is None:
        return spec
    if seq_len < 1:
        raise DataError(f"seq_len must be >= 1; got {seq_len}")
    return dataclasses.replace(spec, shape=(seq_len,))


def _file(path: Path, name: str) -> Path:
    if not path.is_file():
        raise DataError(f"{name}: missing file {path}")
    return path


def _load_idx(folder: str) -> Callable[[Path, str], torch.Tensor]:
    def load(root: Path, split: str) -> torch.Tensor:
        prefix = "train" if split == "train" else "t10k"
        path = _file(root / folder / f"{prefix}-images-idx3-ubyte.gz", folder)
        return torch.from_numpy(images.read_idx_images(path).copy())  # (N, 1, 28, 28)

    return load


def _load_cifar10_subset(root: Path, split: str) -> torch.Tensor:
    path = _file(root / "cifar10-subset" / f"{split}.npz", "cifar10-subset")
    return torch.from_numpy(images.read_cifar_npz(path))  # (N, 3, 32, 32)


def _load_cifar10(root: Path, split: str) -> torch.Tensor:
    candidates = [root / "cifar-10-batches-py", root / "cifar10" / "cifar-10-batches-py"]
    folder = next((c for c in candidates if c.is_dir()), None)
    if folder is None:
        raise DataError(
            f"cifar10: full CIFAR-10 python batches not found at {candidates[0]} or "
            f"{candidates[1]}; the shared data has only 'cifar10-subset'"
        )
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    batches = [images.read_cifar_batch(_file(folder / n, "cifar10")) for n in names]
    return torch.from_numpy(np.concatenate(batches))  # (N, 3, 32, 32)


def _load_kodak32(root: Path, split: str) -> torch.Tensor:
    paths = [_file(root / "kodak" / f"{p}.png", "kodak32") for p in images.KODAK32_PHOTOS[split]]
    return torch.from_numpy(images.read_tiles(paths, 32))  # (N, 3, 32, 32)


def _load_kodak_photos(root: Path, split: str) -> torch.Tensor:
    """Training crops every 8 pixels of the 8 training photos; the held-out photos' crops
    every 32 pixels (no overlap)."""
    stride = 8 if split == "train" else 32
    paths = [_file(root / "kodak" / f"{p}.png", "kodak-photos") for p in images.KODAK_PHOTOS[split]]
    tiles = [images.overlapping_tiles(images.read_png(p), 32, stride) for p in paths]
    return torch.from_numpy(np.concatenate(tiles))  # (N, 3, 32, 32)


def _load_english(root: Path, split: str) -> torch.Tensor:
    return text.read_english(_file(root / "english" / f"{split}.txt", "english"))  # (n,)


def _load_english_bytes(root: Path, split: str) -> torch.Tensor:
    return text.read_bytes(_file(root / "english" / f"{split}.txt", "english-bytes"))  # (n,)


def _load_shakespeare(root: Path, split: str) -> torch.Tensor:
    path = _file(root / "tinyshakespeare" / "input.txt", "shakespeare")
    return text.read_shakespeare(path, split)  # (n,)


def _load_text8(root: Path, split: str) -> torch.Tensor:
    candidates = [root / "text8" / "text8", root / "text8"]
    path = next((c for c in candidates if c.is_file()), None)
    if path is None:
        raise DataError(
            f"text8: the text8 file was not found at {candidates[0]} or {candidates[1]}; "
            "the shared data has 'english' (text8-style English) instead"
        )
    return text.read_text8(path, split)  # (n,)


def _load_fsdd(root: Path, split: str, length: int) -> torch.Tensor:
    return audio.read_fsdd(root / audio.FSDD_FOLDER, split, length)  # (N, length) int32


_LOADERS: Mapping[str, Callable[[Path, str], torch.Tensor]] = MappingProxyType(
    {
        "mnist": _load_idx("mnist"),
        "fashion-mnist": _load_idx("fashion-mnist"),
        "cifar10-subset": _load_cifar10_subset,
        "cifar10": _load_cifar10,
        "kodak32": _load_kodak32,
        "kodak-photos": _load_kodak_photos,
        "english": _load_english,
        "english-bytes": _load_english_bytes,
        "shakespeare": _load_shakespeare,
        "text8": _load_text8,
    }
)


_AUDIO_LOADERS: Mapping[str, Callable[[Path, str, int], torch.Tensor]] = MappingProxyType(
    {"fsdd": _load_fsdd}
)


@functools.lru_cache(maxsize=16)
def _load_cached(name: str, split: str, root: Path, length: int) -> torch.Tensor:
    """``length``: the clip length of audio (part of the key), 0 for other kinds."""
    if name in _AUDIO_LOADERS:
        return _AUDIO_LOADERS[name](root, split, length)
    return _LOADERS[name](root, split)


def clear_cache() -> None:
    """Forget every split loaded so far (the next :func:`load_split` reads the files again)."""
    _load_cached.cache_clear()


def load_split(
    name: str,
    split: str,
    *,
    data_dir: Path | str | None = None,
    seq_len: int | None = None,
) -> torch.Tensor:
    """One split of a dataset, cached in memory (shared: do not modify it in place).

    Images: ``uint8`` ``(N, C, H, W)``. Text: the whole split as one 1-D ``uint8`` stream of
    token ids (at least ``seq_len`` long). Audio: ``int32`` classes ``(N, seq_len)``, one
    fixed-length clip per row. ``seq_len=None``: the dataset's default.
    """
    spec = dataset_spec(name, seq_len=seq_len)
    if split not in spec.splits:
        raise DataError(f"{name} has no split {split!r}; available: {', '.join(spec.splits)}")
    length = spec.shape[0] if spec.kind == "audio" else 0
    data = _load_cached(name, split, resolve_data_dir(data_dir), length)
    if spec.kind == "image" and tuple(data.shape[1:]) != spec.shape:
        raise DataError(
            f"{name} {split}: images of shape {tuple(data.shape[1:])}, not {spec.shape}"
        )
    if spec.kind == "text" and data.numel() < spec.shape[0]:
        raise DataError(
            f"{name} {split}: {data.numel()} tokens, fewer than seq_len={spec.shape[0]}"
        )
    return data


def verify_checksums(data_dir: Path | str | None = None) -> list[str]:
    """Check every file listed in ``SHA256SUMS`` of the data directory.

    Returns one line per problem (``"missing: <file>"`` or ``"checksum mismatch: <file>"``);
    an empty list means every listed file is intact.
    """
    root = resolve_data_dir(data_dir)
    sums = _file(root / "SHA256SUMS", "verify_checksums")
    problems = []
    for line_no, line in enumerate(sums.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        digest, sep, rel = line.partition("  ")
        if not sep or len(digest) != 64:
            raise DataError(f"{sums}: line {line_no} is not '<sha256>  <file>'")
        path = root / rel.strip()
        if not path.is_file():
            problems.append(f"missing: {rel.strip()}")
            continue
        h = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        if h.hexdigest() != digest.lower():
            problems.append(f"checksum mismatch: {rel.strip()}")
    return problems
