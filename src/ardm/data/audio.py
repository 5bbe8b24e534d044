"""Audio: a strict WAV reader/writer and the FSDD spoken-digit clips (stand-in for SC09).

A WAV file is read exactly as it is or refused with a one-line :class:`DataError`: only
uncompressed mono 16-bit PCM is accepted (the format of SC09 and FSDD); stereo, 8/24/32-bit,
float or compressed encodings and truncated files are refused, never converted.

Values are int16 samples shifted to classes ``x = sample + 32768`` in ``[0, K)``, ``K = 65536``
(paper Sec. 5.3), so silence is class 32768, which the networks see as the value 0.

FSDD (``fsdd/recordings/{digit}_{speaker}_{index}.wav``, 8 kHz): the official split puts
index 0-4 in ``test`` and 5-49 in ``train`` (250 / 2250 clips). Every clip is brought to a
fixed length ``L``: a longer clip keeps its centre ``L`` samples (starting at
``(n - L) // 2``), a shorter one is right-padded with silence, as the paper pads SC09.
"""

from __future__ import annotations

import io
import re
import wave
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt
import torch

from ardm.errors import DataError, first_line

I16Array = npt.NDArray[np.int16]

K_AUDIO = 65536
"""Classes of a 16-bit sample."""

SILENCE = 32768
"""The class of the sample value 0 (padding)."""

FSDD_RATE = 8000
"""Sample rate of the FSDD recordings (Hz)."""

FSDD_TEST_INDICES = range(5)
"""Recording indices of the official FSDD test split (the rest, 5-49, are train)."""

_FSDD_NAME = re.compile(r"^(\d)_([a-z]+)_(\d+)\.wav$")


# ---------------------------------------------------------------------------- values
def samples_to_classes(samples: npt.NDArray[np.integer] | torch.Tensor) -> torch.Tensor:
    """int16 samples -> int64 classes ``sample + 32768`` in ``[0, 65536)``."""
    x = samples if isinstance(samples, torch.Tensor) else torch.from_numpy(np.asarray(samples))
    if x.dtype != torch.int16:
        raise DataError(f"audio samples must be int16; got {x.dtype}")
    return x.long() + SILENCE


def classes_to_samples(x: torch.Tensor | npt.NDArray[np.integer]) -> I16Array:
    """Classes in ``[0, 65536)`` -> int16 samples ``x - 32768`` (numpy)."""
    arr = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= K_AUDIO):
        raise DataError(
            f"audio classes must lie in [0, {K_AUDIO}); got values in [{arr.min()}, {arr.max()}]"
        )
    return (arr - SILENCE).astype(np.int16)


def fit_length(samples: I16Array, length: int) -> I16Array:
    """``samples`` (n,) brought to ``length``: centre crop (start ``(n - length) // 2``) or
    right-pad with silence (0)."""
    if length < 1:
        raise DataError(f"clip length must be >= 1; got {length}")
    n = samples.shape[0]
    if n >= length:
        start = (n - length) // 2
        return samples[start : start + length]
    return np.concatenate([samples, np.zeros(length - n, dtype=np.int16)])


# ---------------------------------------------------------------------------- WAV files
def read_wav(
    source: str | Path | bytes | BinaryIO, *, name: str | None = None
) -> tuple[I16Array, int]:
    """A mono 16-bit PCM WAV file as ``(samples (n,) int16, sample rate)``.

    ``source`` is a path, the file's bytes, or a binary file object; ``name`` is how the
    file is called in error messages (default: the path, or ``"WAV data"``).
    """
    if name is None:
        name = str(source) if isinstance(source, (str, Path)) else "WAV data"
    if isinstance(source, (str, Path)):
        try:
            data = Path(source).read_bytes()
        except OSError as e:
            raise DataError(f"cannot read {name}: {e.strerror or e}") from None
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        data = source.read()
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise DataError(f"{name}: not a WAV file (no RIFF/WAVE header)")
    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
            n = w.getnframes()
            raw = w.readframes(n)
    except wave.Error as e:  # unknown format tag (float, A-law, ADPCM, ...), missing chunks
        raise DataError(
            f"{name}: unsupported or corrupt WAV ({first_line(e)}); need 16-bit PCM"
        ) from None
    except (EOFError, ValueError, OSError) as e:  # header cut short
        raise DataError(f"{name}: truncated or corrupt WAV header ({first_line(e)})") from None
    if channels != 1:
        raise DataError(f"{name}: {channels} channels; only mono WAV files are supported")
    if width != 2:
        raise DataError(f"{name}: {8 * width}-bit samples; only 16-bit PCM WAV files are supported")
    if rate < 1:
        raise DataError(f"{name}: invalid sample rate {rate}")
    if len(raw) != 2 * n:
        raise DataError(
            f"{name}: truncated WAV: header says {n} samples, data holds {len(raw) // 2}"
        )
    return np.frombuffer(raw, dtype="<i2").astype(np.int16), rate


def wav_bytes(samples: npt.NDArray[np.int16] | torch.Tensor, rate: int) -> bytes:
    """The bytes of a mono 16-bit PCM WAV file of ``samples`` (n,) int16 at ``rate`` Hz."""
    arr = np.asarray(samples.cpu() if isinstance(samples, torch.Tensor) else samples)
    if arr.dtype != np.int16 or arr.ndim != 1:
        raise DataError(f"WAV samples must be a 1-D int16 array; got {arr.dtype} {arr.shape}")
    if not 1 <= rate < 2**32:
        raise DataError(f"invalid sample rate {rate}")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(arr.astype("<i2").tobytes())
    return buf.getvalue()


def write_wav(
    dest: str | Path | BinaryIO, samples: npt.NDArray[np.int16] | torch.Tensor, rate: int
) -> None:
    """Write a mono 16-bit PCM WAV file to a path or a binary file object."""
    data = wav_bytes(samples, rate)
    if isinstance(dest, (str, Path)):
        try:
            Path(dest).write_bytes(data)
        except OSError as e:
            raise DataError(f"cannot write {dest}: {e.strerror or e}") from None
    else:
        dest.write(data)


# ---------------------------------------------------------------------------- FSDD
def fsdd_files(folder: Path, split: str) -> list[Path]:
    """The recordings of an FSDD split, sorted by (digit, speaker, index)."""
    if not folder.is_dir():
        raise DataError(f"fsdd: missing folder {folder}")
    files = []
    for path in folder.iterdir():
        m = _FSDD_NAME.match(path.name)
        if m is None:
            continue
        digit, speaker, index = int(m[1]), m[2], int(m[3])
        if (index in FSDD_TEST_INDICES) == (split == "test"):
            files.append(((digit, speaker, index), path))
    if not files:
        raise DataError(f"fsdd: no recordings of the {split} split in {folder}")
    return [p for _, p in sorted(files)]


FSDD_FOLDER = Path("fsdd") / "recordings"
"""Where the FSDD clips are, under the data directory."""


def natural_clips(root: Path, split: str, count: int) -> list[I16Array]:
    """``count`` clips of an FSDD split at their natural lengths, spread evenly over the sorted
    files (sorted by digit, speaker and index), from the data directory ``root``."""
    files = fsdd_files(root / FSDD_FOLDER, split)
    return [read_wav(p)[0] for p in files[:: max(1, len(files) // count)][:count]]


def read_fsdd(folder: Path, split: str, length: int) -> torch.Tensor:
    """An FSDD split as int32 classes ``(N, length)`` (centre-cropped / silence-padded clips)."""
    clips = []
    for path in fsdd_files(folder, split):
        samples, rate = read_wav(path)
        if rate != FSDD_RATE:
            raise DataError(f"{path}: sample rate {rate} Hz, expected {FSDD_RATE} Hz")
        clips.append(fit_length(samples, length))
    x = np.stack(clips).astype(np.int32) + SILENCE  # (N, length) in [0, 65536)
    return torch.from_numpy(x)
