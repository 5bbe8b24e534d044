"""Audio: mono 16-bit PCM WAV files (read strictly by :func:`ardm.data.audio.read_wav`) at the
model's sample rate, and waveform pictures of clips."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from PIL import Image, ImageDraw

from ardm.data.audio import classes_to_samples, read_wav, samples_to_classes, wav_bytes
from ardm.errors import DataError
from ardm.modalities.modality import Modality


# ---------------------------------------------------------------------------- pictures
def waveform_strip(
    samples: np.ndarray,
    *,
    width: int = 800,
    height: int = 90,
    known: np.ndarray | None = None,
    peak: float = 32768.0,
) -> np.ndarray:
    """A ``(height, width, 3)`` uint8 picture of int16 ``samples (L,)``: each pixel column
    spans the min..max of its samples and the last sample before them (a connected line),
    ``±peak`` the strip's height; the samples where ``known (L,)`` is True are gray, the rest
    blue."""
    x = np.clip(np.asarray(samples, dtype=np.float64) / peak, -1.0, 1.0)  # (L,)
    L = len(x)
    if L == 0:
        raise ValueError("cannot draw an empty waveform")
    out = np.full((height, width, 3), 255, dtype=np.uint8)  # (height, width, 3)
    out[height // 2, :] = (220, 220, 220)  # the zero line
    given = None if known is None else np.asarray(known, dtype=bool)  # (L,)
    edges = np.linspace(0, L, width + 1).astype(np.int64)  # (width + 1,)
    for c in range(width):
        lo, hi = edges[c], max(edges[c + 1], edges[c] + 1)
        seg = x[max(lo - 1, 0) : hi]
        top = round(float(1 - seg.max()) * (height - 1) / 2)
        bottom = round(float(1 - seg.min()) * (height - 1) / 2)
        gray = given is not None and bool(given[lo:hi].all())
        out[top : bottom + 1, c] = (150, 150, 150) if gray else (31, 94, 168)
    return out


def save_waveforms(
    strips: list[tuple[str, np.ndarray, np.ndarray | None]], path: Path | str, *, width: int = 800
) -> Path:
    """Save a PNG of labelled waveform strips ``(label, int16 samples, known or None)``, all
    on one vertical scale: the largest absolute sample of any strip fills a strip's height."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    label_h, strip_h = 14, 90
    peak = max(1.0, *(float(np.abs(np.asarray(a, dtype=np.float64)).max()) for _, a, _ in strips))
    canvas = Image.new("RGB", (width, len(strips) * (label_h + strip_h)), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (label, samples, known) in enumerate(strips):
        y = i * (label_h + strip_h)
        draw.text((2, y + 1), label, fill=(0, 0, 0))
        strip = waveform_strip(samples, width=width, height=strip_h, known=known, peak=peak)
        canvas.paste(Image.fromarray(strip), (0, y + label_h))
    canvas.save(path)
    return path


# ---------------------------------------------------------------------------- modality
@dataclass(frozen=True)
class AudioModality(Modality):
    """Mono 16-bit audio at ``rate`` Hz, the sample rate the model was trained on; an item is
    ``(n,)`` classes ``sample + 32768``."""

    rate: int

    kind: ClassVar[str] = "audio"
    unit: ClassVar[str] = "bits/sample"
    suffix: ClassVar[str] = ".wav"

    def read(self, data: bytes, *, name: str) -> torch.Tensor:
        samples, rate = read_wav(data, name=name)  # (n,) int16
        if rate != self.rate:
            raise DataError(
                f"{name}: {rate} Hz audio; the model is for {self.rate} Hz (resample it first)"
            )
        if len(samples) == 0:
            raise DataError(f"{name}: the WAV file holds no samples")
        return samples_to_classes(samples)  # (n,)

    def write(self, x: torch.Tensor) -> bytes:
        return wav_bytes(classes_to_samples(x), self.rate)

    def save_samples(self, x: torch.Tensor, output: str | None, *, calls: int) -> str:
        """One WAV file per sample: ``output`` for one, ``output_NNN.wav`` for several."""
        target = Path(output or "samples.wav")
        n = x.shape[0]
        suffix = target.suffix or ".wav"
        paths = (
            [target]
            if n == 1
            else [target.with_name(f"{target.stem}_{i:03d}{suffix}") for i in range(n)]
        )
        for path, row in zip(paths, x.cpu(), strict=True):
            path.write_bytes(self.write(row))
        where = paths[0] if n == 1 else f"{paths[0]} .. {paths[-1].name}"
        return f"wrote {n} WAV samples ({calls} network calls each) to {where}"
