"""Image file formats: every reader returns ``uint8`` arrays in ``(N, C, H, W)`` layout.

- IDX (gzipped), the format of MNIST and Fashion-MNIST.
- The CIFAR-10 subset ``.npz`` files of the shared data (``x``: NHWC uint8).
- The standard full CIFAR-10 python batches (``cifar-10-batches-py/``), read with an
  unpickler that only admits numpy arrays (a pickle can otherwise run arbitrary code).
- PNG photos cut into non-overlapping square tiles (``kodak32``).
"""

from __future__ import annotations

import gzip
import pickle
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ardm.errors import DataError
from ardm.modalities.image import read_image

U8Array = npt.NDArray[np.uint8]
_NUMPY_MAJOR = int(np.__version__.split(".")[0])

KODAK32_PHOTOS: dict[str, tuple[str, ...]] = {
    "train": tuple(f"kodim{i:02d}" for i in range(1, 20, 2)),  # kodim01, 03, ..., 19
    "test": ("kodim21", "kodim23"),
}
"""The 12 Kodak photos of the shared data: 10 for training tiles, 2 for test tiles."""


KODAK_PHOTOS: dict[str, tuple[str, ...]] = {
    "train": tuple(f"kodim{i:02d}" for i in range(1, 16, 2)),  # kodim01, 03, ..., 15
    "test": ("kodim17", "kodim19", "kodim21", "kodim23"),
}
"""The natural-photo split: 8 of the 12 Kodak photos for training crops, 4 held out."""


def overlapping_tiles(image: U8Array, size: int, stride: int) -> U8Array:
    """``size x size`` tiles of an ``(H, W, C)`` image every ``stride`` pixels, row-major, as
    ``(n, C, size, size)`` (crops at many offsets: the training items of a photo model)."""
    h, w, _ = image.shape
    tiles = [
        image[y : y + size, x : x + size].transpose(2, 0, 1)
        for y in range(0, h - size + 1, stride)
        for x in range(0, w - size + 1, stride)
    ]
    return np.ascontiguousarray(np.stack(tiles))


def read_idx_images(path: Path) -> U8Array:
    """A gzipped IDX file of ``uint8`` images (magic ``0x00000803``) as ``(N, 1, H, W)``."""
    try:
        raw = gzip.decompress(path.read_bytes())
    except OSError as e:  # missing/unreadable file, or gzip.BadGzipFile
        raise DataError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    except (EOFError, zlib.error) as e:
        raise DataError(f"corrupt gzip file {path}: {e}") from None
    if len(raw) < 16 or raw[:4] != b"\x00\x00\x08\x03":
        raise DataError(f"{path} is not an IDX file of uint8 images (magic {raw[:4].hex()})")
    n, h, w = (int.from_bytes(raw[i : i + 4], "big") for i in (4, 8, 12))
    if len(raw) - 16 != n * h * w:
        raise DataError(
            f"corrupt IDX file {path}: header says {n}x{h}x{w} pixels, found {len(raw) - 16} bytes"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, 1, h, w)


def read_cifar_npz(path: Path) -> U8Array:
    """A ``.npz`` with ``x`` = ``(N, 32, 32, 3)`` uint8 NHWC, returned as ``(N, 3, 32, 32)``."""
    try:
        with np.load(path) as f:
            x = f["x"]
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None
    except (KeyError, ValueError, zlib.error, EOFError) as e:
        raise DataError(f"corrupt npz file {path}: {e}") from None
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise DataError(f"{path}: expected x of uint8 (N, H, W, 3); got {x.dtype} {x.shape}")
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))  # (N, 3, H, W)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Resolves only the globals a pickled numpy array needs; anything else is refused.

    The original batches were written by Python 2 and name ``numpy.core.multiarray``, which
    numpy 2 calls ``numpy._core.multiarray`` (the old name still works but warns).
    """

    _ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("_codecs", "encode"),  # bytes in protocol-2 pickles written by Python 3
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if module == "numpy.core.multiarray" and _NUMPY_MAJOR >= 2:
            module = "numpy._core.multiarray"
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing global {module}.{name}")
        return super().find_class(module, name)


def read_cifar_batch(path: Path) -> U8Array:
    """One CIFAR-10 python batch (``data_batch_i`` / ``test_batch``) as ``(N, 3, 32, 32)``.

    Each row of ``b"data"`` is 3072 bytes: the red plane, then green, then blue, each
    row-major 32x32, so a plain reshape gives CHW.
    """
    try:
        with path.open("rb") as f:
            batch = _NumpyOnlyUnpickler(f, encoding="bytes").load()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None
    except Exception as e:  # any unpickling failure means a corrupt or foreign file
        raise DataError(f"corrupt CIFAR-10 batch {path}: {e}") from None
    data = batch.get(b"data") if isinstance(batch, dict) else None
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise DataError(f"corrupt CIFAR-10 batch {path}: no uint8 (N, 3072) array b'data'")
    if data.shape[1] != 3 * 32 * 32:
        raise DataError(f"corrupt CIFAR-10 batch {path}: rows of {data.shape[1]} bytes, not 3072")
    return data.reshape(-1, 3, 32, 32)


def read_png(path: Path) -> U8Array:
    """An 8-bit RGB image as ``(H, W, 3)`` uint8, read by the one strict image reader
    (:func:`ardm.modalities.image.read_image`: no conversion, a one-line error otherwise)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None
    x = read_image(data, channels=3, name=str(path))  # (3, H, W)
    return x.permute(1, 2, 0).numpy()  # (H, W, 3)


def tile_image(image: U8Array, size: int) -> U8Array:
    """Non-overlapping ``size x size`` tiles of an ``(H, W, C)`` image, row-major, as
    ``(n, C, size, size)``; a remainder at the right or bottom edge is dropped."""
    h, w, c = image.shape
    rows, cols = h // size, w // size
    tiles = image[: rows * size, : cols * size].reshape(rows, size, cols, size, c)
    return np.ascontiguousarray(tiles.transpose(0, 2, 4, 1, 3)).reshape(-1, c, size, size)


def read_tiles(paths: list[Path], size: int) -> U8Array:
    """Tiles of several photos, photo by photo, as ``(N, 3, size, size)``."""
    return np.concatenate([tile_image(read_png(p), size) for p in paths])
