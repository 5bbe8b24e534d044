"""A fuzz campaign against :func:`ardm.coding.codec.decompress`.

    python -m fuzz.campaign --count 100000 --seed 0 [--workers 2]

1. Build two tiny deterministic models (a U-Net image ARDM, ``K = 16``, shape ``(1, 4, 4)``;
   a transformer text ARDM, ``K = 27``, ``L = 8``), the image model with a portable form
   (its frozen integer U-Net: it writes format version 5, the integer coder; its seed files
   come first) and *foreign* models of the same architectures with other weights.
2. Compress seed items with them: native and tiled shapes, several budgets, random,
   low-entropy and all-zero data (in format version 3 an all-zero item often had an empty
   payload; in version 4 the stream holds at least the data checksum); two tiled items are
   also written as format version 2 files (one stream per tile), which are still read.
3. Feed ``decompress`` inputs derived from the seed files: a systematic phase (each file
   unchanged, cut at every length, every single-bit flip of its header, every value of its
   version and flags bytes) and then random mutations (bit flips, byte substitutions,
   insertions, deletions, truncations, splices of two files, header field mutations such as
   huge or non-minimal varints and absurd shapes, random bytes) until ``count`` inputs.
4. Judge every input. Allowed outcomes: the exact original data of the file(s) it came from,
   or a one-line :class:`~ardm.errors.FormatError` (any other :class:`~ardm.errors.ArdmError`
   is counted separately). Failures: any other exception, a result that differs from the
   original (``wrong_data``), a time above the bound (``slow``), a jump of the peak RSS
   (``memory``), a multi-line message, a hang (the watchdog kills the worker).

   One more outcome is reported on its own, ``valid_other_data``: the decoder returned data
   other than the original, *and* the input is byte for byte the file that
   :func:`~ardm.coding.codec.compress` writes for that data (checked by re-encoding). The
   decoder was right, the mutation turned one valid file into another (format version 1,
   whose checksum did not cover the stored shape, allowed it; see ``docs/format.md``,
   "Fuzzing").

Time bound per input: ``BASE_S + SLACK * call_s * calls`` where ``call_s`` is the measured
median time of one network call of the decoding model and ``calls = tiles * min(budget, D)``
from the input's own header, with ``tiles <= len(body) + 1`` (versions 3 and 4: the payload of a
tiled file has at least ``tiles - 1`` bytes; version 2: every tile but the last needs a length
byte), i.e. proportional to the policy size. A watchdog (``faulthandler``) kills a
worker whose input runs past ``--hard-timeout`` seconds and the campaign reports the input.

Each input is a pure function of ``(seed, index)``: ``--only INDEX`` replays one. Results go
to ``benchmarks/results/fuzz.json`` and ``fuzz.md`` (:func:`benchmarks.machine.write_results`).
"""

from __future__ import annotations

import argparse
import faulthandler
import hashlib
import math
import multiprocessing as mp
import random
import re
import resource
import statistics
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import astuple, dataclass, field, replace
from typing import Any

import numpy as np
import torch

from ardm.coding import codec, container
from ardm.coding.chain_files import compress_chain, file_layout
from ardm.coding.lockstep import CodingSetup, encode
from ardm.coding.tiles import cut_tiles, tile_grid
from ardm.errors import ArdmError, FormatError
from ardm.models.ardm import ARDM
from ardm.models.heads import MixtureHead
from ardm.nets.build import build_net
from ardm.nets.transformer import TransformerConfig
from ardm.nets.unet import UNetConfig
from ardm.portable.model import freeze

BASE_S = 0.5
"""Constant part of the time bound: header parsing, model fingerprint, policy DP, Python."""
SLACK = 20.0
"""Factor on ``call_s * calls`` in the time bound (the machine may be busy)."""
RSS_JUMP_MIB = 256.0
"""A rise of the peak RSS by more than this during one input is a ``memory`` failure."""

OK_OUTCOMES = ("exact", "FormatError", "ArdmError", "valid_other_data")

KIND_WEIGHTS: dict[str, float] = {
    "bitflip": 18,
    "byte_sub": 12,
    "insert": 8,
    "delete": 8,
    "truncate": 8,
    "append": 3,
    "splice": 8,
    "header_field": 22,
    "random_bytes": 5,
    "random_after_prefix": 5,
    "none": 3,
}
"""Mix of the random phase (relative weights)."""


# ============================================================================ models and seeds
def _perturb(net: torch.nn.Module, seed: int, scale: float = 0.3) -> torch.nn.Module:
    """Add seeded noise to every parameter (zero-initialised layers would make flat outputs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return net


def _loss_profile(D: int, K: int) -> np.ndarray:
    """A decreasing ``L_t`` (bits per dim) so that the DP makes real, uneven policies."""
    t = np.arange(D, dtype=np.float64)
    return (math.log2(K) / D) * (1.0 - 0.8 * t / D) ** 2


def image_model(seed: int = 0) -> ARDM:
    """A tiny U-Net image ARDM: ``K = 16``, shape ``(1, 4, 4)``, order seed 3."""
    torch.manual_seed(seed)
    cfg = UNetConfig(ch=8, ch_mult=(1,), num_res_blocks=1, value_emb_dim=4, groups=4)
    net = build_net("unet", K=16, shape=(1, 4, 4), unet=cfg)
    model = ARDM(_perturb(net, seed), kind="image", order_seed=3)
    model.tracker.set_all(_loss_profile(model.D, model.K))
    return model.eval()


def text_model(seed: int = 0) -> ARDM:
    """A tiny transformer text ARDM: ``K = 27``, ``L = 8``, a 4-byte-varint order seed."""
    torch.manual_seed(seed)
    cfg = TransformerConfig(dim=16, depth=1, heads=2, time_cond=True)
    net = build_net("transformer", K=27, shape=(8,), transformer=cfg)
    model = ARDM(_perturb(net, seed), kind="text", order_seed=123_456_789)
    model.tracker.set_all(_loss_profile(model.D, model.K))
    return model.eval()


def portable_image_model(seed: int = 0) -> ARDM:
    """:func:`image_model` with a portable form (its frozen integer U-Net, calibrated on seeded
    random items): it writes format version 5, the integer coder."""
    model = image_model(seed)
    g = torch.Generator().manual_seed(1000 + seed)
    model.portable = freeze(model, torch.randint(0, model.K, (8, *model.shape), generator=g))
    return model


def chain_model(seed: int = 0) -> ARDM:
    """A tiny byte-level text ARDM with context (``K = 256``, window 16, the first 8 known):
    it writes format version 7 (chains of blocks) through its portable form."""
    torch.manual_seed(seed)
    cfg = TransformerConfig(dim=16, depth=1, heads=2)
    net = build_net("transformer", K=256, shape=(16,), transformer=cfg)
    model = ARDM(_perturb(net, seed), kind="text", order_seed=7, context=8)
    model.tracker.set_all(_loss_profile(model.D, model.K))
    g = torch.Generator().manual_seed(2000 + seed)
    model.portable = freeze(model, torch.randint(0, 256, (8, 16), generator=g))
    return model.eval()


def photo_chain_model(seed: int = 0) -> ARDM:
    """A tiny RGB photo ARDM with context and a logistic-mixture head (``K = 256``, window
    ``(3, 8, 8)``, the top 4 rows and left 4 columns known): it writes format version 7,
    blocks in waves (:mod:`ardm.coding.wavefront`), through its portable form."""
    torch.manual_seed(seed)
    cfg = UNetConfig(ch=8, ch_mult=(1,), num_res_blocks=1, value_emb_dim=4, groups=4)
    head = MixtureHead(256, 2)
    net = build_net("unet", K=256, shape=(3, 8, 8), unet=cfg, out_classes=head.out_classes)
    model = ARDM(_perturb(net, seed, 0.05), kind="image", order_seed=11, context=4, head=head)
    model.tracker.set_all(_loss_profile(model.D, model.K))
    g = torch.Generator().manual_seed(3000 + seed)
    model.portable = freeze(model, torch.randint(0, 256, (8, 3, 8, 8), generator=g), passes=1)
    return model.eval()


def build_models() -> dict[str, ARDM]:
    """The decoding models (``image``, ``text``, ``image-v5`` with a portable form) and the
    foreign ones (``*-foreign``)."""
    return {
        "image": image_model(0),
        "text": text_model(0),
        "image-v5": portable_image_model(0),
        "bytes-v7": chain_model(0),
        "photo-v7": photo_chain_model(0),
        "image-foreign": image_model(1),
        "text-foreign": text_model(1),
        "image-v5-foreign": portable_image_model(1),
        "bytes-v7-foreign": chain_model(1),
        "photo-v7-foreign": photo_chain_model(1),
    }


def build_file(model: Any, x: torch.Tensor, *, budget: int, seed: int, version: int) -> bytes:
    """The file of ``x`` that ardm writes (``version`` 4, as :func:`codec.compress` with order
    seed ``seed``: the stream starts from the data checksum) or wrote (version 3: a ``crc32``
    field and a stream from the empty state; version 2: also one ANS stream per tile, each but
    the last after its length; version 5: version 4 by the integer coder of the model's
    portable form; version 8: version 5 in spread orders; versions 7 and 9: the chains of
    blocks of a model with context, in seeded and spread orders). The judge rebuilds files
    with it; the codec writes versions 4, 8 and 9, and 5 and 7 on request."""
    if version in container.CHAIN_WRITE_VERSIONS:
        return compress_chain(model, x, budget=budget, seed=seed, version=version)
    native = tuple(x.shape) == tuple(model.shape)
    if native:
        tiles, pad = x[None], torch.zeros((1, *model.shape), dtype=torch.bool)
    else:
        tiles, pad = cut_tiles(x, tuple(model.shape))
    coder = codec._coder(model, version)
    stages = coder.stages(budget, seed)
    crc = container.data_crc32(x.numpy(), model.K)
    field = version in container.CRC_VERSIONS  # versions 2, 3: a header field; 4: in the stream
    header = container.Header(
        kind=model.kind,
        budget=budget,
        seed=seed,
        fingerprint=coder.fingerprint,
        crc32=crc if field else None,
        K=None if native else model.K,
        shape=None if native else tuple(x.shape),
        version=version,
    )
    setup = CodingSetup(
        stages, tuple(model.shape), model.K, pad=pad, per_item=coder.per_item, batch=coder.batch
    )
    if version == 2:
        body = container.join_tiles(encode(setup, tiles))
    else:
        count = tiles.shape[0]
        initial = None if field else [crc]
        streams = encode(replace(setup, groups=[count]), tiles, initial=initial)
        body = container.pack_stream(streams[0], count)
    return container.pack(header, body)


@dataclass(frozen=True)
class Item:
    """A seed file: made by ``maker``, decoded by ``model``; ``x`` is its original data."""

    name: str
    model: str
    maker: str
    x: torch.Tensor
    budget: int
    blob: bytes


# name, maker model, shape (None: the model's), data pattern, budget; the names ending in
# "-v2", "-v5" or "-v7" are written as format version 2, 5 or 7 files (:func:`build_file`); the
# others as the codec writes them (versions 4, 8 and 9)
_ITEM_SPECS: tuple[tuple[str, str, tuple[int, ...] | None, str, int], ...] = (
    # format version 5 (the integer coder) first: a short campaign's systematic phase covers it
    ("img5-native-b4", "image-v5", None, "random", 4),
    ("img5-tiled-7x9-b3", "image-v5", (1, 7, 9), "random", 3),
    ("img5-native-zero-b3", "image-v5", None, "zero", 3),
    ("img5-native-low-b16", "image-v5", None, "low", 16),
    ("img5-tiled-2ch-b5", "image-v5", (2, 4, 4), "low", 5),
    ("img5-foreign-b4", "image-v5-foreign", None, "random", 4),
    # format version 6 (chains of blocks with context): any length, segments of 4096 values
    ("bytes7-40-b3", "bytes-v7", (40,), "random", 3),
    ("bytes7-1-b2", "bytes-v7", (1,), "random", 2),
    ("bytes7-100-low-b8", "bytes-v7", (100,), "low", 8),
    ("bytes7-33-zero-b4", "bytes-v7", (33,), "zero", 4),
    ("bytes7-foreign-24-b3", "bytes-v7-foreign", (24,), "random", 3),
    # format version 6 images: blocks of 4x4 in waves given the pixels above and left
    ("photo7-9x13-b2", "photo-v7", (3, 9, 13), "random", 2),
    ("photo7-1x1-b1", "photo-v7", (3, 1, 1), "random", 1),
    ("photo7-8x8-low-b5", "photo-v7", (3, 8, 8), "low", 5),
    ("photo7-foreign-5x6-b3", "photo-v7-foreign", (3, 5, 6), "random", 3),
    # the seeded orders of versions 5 and 7, still read
    ("img5-tiled-7x9-b3-v5", "image-v5", (1, 7, 9), "random", 3),
    ("bytes7-40-b3-v7", "bytes-v7", (40,), "random", 3),
    ("photo7-9x13-b2-v7", "photo-v7", (3, 9, 13), "random", 2),
    ("img-native-b1", "image", None, "random", 1),
    ("img-native-b4", "image", None, "random", 4),
    ("img-native-b16", "image", None, "random", 16),
    ("img-native-low-b5", "image", None, "low", 5),
    ("img-native-zero-b4", "image", None, "zero", 4),
    ("img-native-one-b6", "image", None, "one", 6),
    ("img-tiled-7x9-b3", "image", (1, 7, 9), "random", 3),
    ("img-tiled-3x2-b16", "image", (1, 3, 2), "random", 16),
    ("img-tiled-4x8-b4", "image", (1, 4, 8), "random", 4),
    ("img-tiled-4x8-zero-b2", "image", (1, 4, 8), "zero", 2),
    ("img-tiled-4x8-const-b3", "image", (1, 4, 8), "constant", 3),
    ("img-tiled-2ch-b5", "image", (2, 4, 4), "low", 5),
    ("img-foreign-b4", "image-foreign", None, "random", 4),
    ("txt-native-b8", "text", None, "random", 8),
    ("txt-native-b2", "text", None, "random", 2),
    ("txt-native-low-b3", "text", None, "low", 3),
    ("txt-tiled-3-b8", "text", (3,), "random", 8),
    ("txt-tiled-21-b4", "text", (21,), "random", 4),
    ("txt-tiled-16-zero-b3", "text", (16,), "zero", 3),
    ("txt-foreign-b5", "text-foreign", None, "random", 5),
    ("img-tiled-7x9-b3-v2", "image", (1, 7, 9), "random", 3),
    ("txt-tiled-21-b4-v2", "text", (21,), "random", 4),
)


def _data(model: ARDM, shape: tuple[int, ...], pattern: str, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if pattern == "random":
        return torch.randint(0, model.K, shape, generator=g)
    if pattern == "low":
        return torch.randint(0, 3, shape, generator=g)
    if pattern == "constant":  # a flat image of one non-zero value
        return torch.full(shape, 7, dtype=torch.long)
    if pattern == "one":  # a single non-zero value
        x = torch.zeros(shape, dtype=torch.long)
        x.view(-1)[-1] = model.K - 1
        return x
    return torch.zeros(shape, dtype=torch.long)


def build_items(models: dict[str, ARDM]) -> list[Item]:
    """Compress the seed items (deterministic: same bytes in every process)."""
    items = []
    for i, (name, maker, shape, pattern, budget) in enumerate(_ITEM_SPECS):
        model = models[maker]
        x = _data(model, shape or model.shape, pattern, seed=100 + i)
        written = container.PORTABLE_VERSION if model.portable is not None else container.VERSION
        written = container.CHAIN_VERSION if model.context else written
        version = int(name[-1]) if name[-3:] in ("-v2", "-v5", "-v7") else written
        blob = build_file(model, x, budget=budget, seed=model.order_seed, version=version)
        if version == written:  # the judge rebuilds what the codec writes exactly
            assert codec.compress(model, x, budget=budget) == blob, name
        assert torch.equal(codec.decompress(model, blob), x), name
        home = maker.removesuffix("-foreign")
        items.append(Item(name, home, maker, x, budget, blob))
    return items


# ============================================================================ header layout
@dataclass(frozen=True)
class Field:
    """One field of a valid file: ``blob[start:end]``; ``kind`` is ``byte``/``varint``/``raw``."""

    name: str
    start: int
    end: int
    kind: str


def header_fields(blob: bytes, model_shape: tuple[int, ...]) -> list[Field]:
    """The fields of a *valid* file, in order, including the tile length varints (version 2)."""
    header, _ = container.unpack(blob)
    fields = [Field("magic", 0, 2, "raw"), Field("version", 2, 3, "byte")]
    fields.append(Field("flags", 3, 4, "byte"))
    pos = 4
    for name in ("budget", "seed"):
        _, end = container.read_varint(blob, pos, name)
        fields.append(Field(name, pos, end, "varint"))
        pos = end
    if header.shape is not None:
        _, end = container.read_varint(blob, pos, "K")
        fields.append(Field("K", pos, end, "varint"))
        fields.append(Field("ndim", end, end + 1, "byte"))
        pos = end + 1
        for axis in range(len(header.shape)):
            _, end = container.read_varint(blob, pos, "dim")
            fields.append(Field(f"dim{axis}", pos, end, "varint"))
            pos = end
    fields.append(Field("fingerprint", pos, pos + 4, "raw"))
    pos += 4
    if header.crc32 is not None:  # versions 2 and 3
        fields.append(Field("crc32", pos, pos + 4, "raw"))
        pos += 4
    if header.shape is not None and header.version == 2:
        count = math.prod(tile_grid(header.shape, model_shape))
        for i in range(count - 1):
            n, end = container.read_varint(blob, pos, "tile length")
            fields.append(Field(f"tile_len{i}", pos, end, "varint"))
            pos = end + n
    return fields


def header_length(blob: bytes) -> int:
    """Bytes before the payload of a valid file."""
    _, payload = container.unpack(blob)
    return len(blob) - len(payload)


# ============================================================================ mutations
@dataclass(frozen=True)
class FuzzInput:
    """One input: ``blob`` decoded with the model of ``items[item]``; a returned value must
    equal the original data of one of ``sources``."""

    index: int
    kind: str
    item: int
    sources: tuple[int, ...]
    blob: bytes
    note: str = ""


def _interesting_int(rng: random.Random, D: int) -> int:
    choices = [0, 1, 2, D - 1, D, D + 1, 127, 128, 255, 256, 16383, 16384]
    choices += [(1 << k) + d for k in (20, 24, 25, 28, 32, 35, 49, 56, 63, 64, 69) for d in (-1, 0)]
    if rng.random() < 0.3:
        return rng.getrandbits(rng.randrange(1, 71))
    return rng.choice(choices)


def _varint_bytes(rng: random.Random, value: int) -> tuple[bytes, str]:
    """An encoding of ``value``: usually minimal, sometimes non-minimal or over-long."""
    minimal = container.write_varint(value)
    r = rng.random()
    if r < 0.7:
        return minimal, "minimal"
    if r < 0.85:  # non-minimal: extend with zero groups
        extra = rng.randint(1, 3)
        body = bytes(b | 0x80 for b in minimal) + b"\x80" * (extra - 1) + b"\x00"
        return body, "non-minimal"
    if r < 0.95:
        return b"\xff" * rng.randint(10, 12) + b"\x01", "over-long"
    return b"\x80" * rng.randint(1, 4), "unterminated"


def _mutate_field(rng: random.Random, blob: bytes, f: Field, D: int) -> tuple[bytes, str]:
    head, old, tail = blob[: f.start], blob[f.start : f.end], blob[f.end :]
    if f.kind == "byte":
        return head + bytes([rng.randrange(256)]) + tail, f"{f.name}=random byte"
    if f.kind == "raw":
        if rng.random() < 0.5:
            flipped = bytearray(old)
            bit = rng.randrange(8 * len(old))
            flipped[bit // 8] ^= 1 << (bit % 8)
            return head + bytes(flipped) + tail, f"{f.name} bit {bit}"
        return head + rng.randbytes(len(old)) + tail, f"{f.name}=random"
    value = _interesting_int(rng, D)
    enc, how = _varint_bytes(rng, value)
    if how == "unterminated":
        return head + enc, f"{f.name} unterminated at the end"
    return head + enc + tail, f"{f.name}={value} {how}"


def _header_mutation(
    rng: random.Random, item: Item, model_shape: tuple[int, ...], D: int, K: int
) -> tuple[bytes, str]:
    blob = item.blob
    fields = header_fields(blob, model_shape)
    by_name = {f.name: f for f in fields}
    dims = [f for f in fields if f.name.startswith("dim")]
    r = rng.random()
    if dims and r < 0.12:  # permute the stored shape (same product)
        header, _ = container.unpack(blob)
        assert header.shape is not None
        shape = list(header.shape)
        rng.shuffle(shape)
        geometry = b"".join(container.write_varint(n) for n in shape)
        return blob[: dims[0].start] + geometry + blob[dims[-1].end :], f"shape -> {shape}"
    if dims and r < 0.2:  # absurd shape: every axis huge or one axis empty
        n = rng.choice([0, container.MAX_D, container.MAX_D + 1, 1 << 40, 1 << 12])
        geometry = b"".join(container.write_varint(n) for _ in dims)
        return blob[: dims[0].start] + geometry + blob[dims[-1].end :], f"all dims={n}"
    if not dims and r < 0.2:  # declare a geometry in a native file
        shape = [rng.choice([1, 2, 3, 4, 5, 8, 9, 1 << 12, 1 << 20]) for _ in model_shape]
        if rng.random() < 0.3:
            shape = list(model_shape)
        ndim = len(shape) if rng.random() < 0.8 else rng.randrange(256)
        flags = blob[3] | 0x04
        geometry = container.write_varint(K) + bytes([ndim])
        geometry += b"".join(container.write_varint(n) for n in shape)
        fp = by_name["fingerprint"]
        out = blob[:3] + bytes([flags]) + blob[4 : fp.start] + geometry + blob[fp.start :]
        return out, f"add geometry ndim={ndim} shape={shape}"
    if dims and r < 0.25:  # drop the geometry of a tiled file
        flags = blob[3] & ~0x04
        k = by_name["K"]
        return blob[:3] + bytes([flags]) + blob[4 : k.start] + blob[dims[-1].end :], "drop geometry"
    f = rng.choice(fields)
    return _mutate_field(rng, blob, f, D)


def _flip_bits(rng: random.Random, blob: bytes, n: int) -> bytes:
    out = bytearray(blob)
    for _ in range(n):
        bit = rng.randrange(8 * len(out))
        out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


class Fuzzer:
    """Models, seed files, the input generator and the judge of one campaign."""

    def __init__(self, seed: int, *, systematic: bool = True) -> None:
        self.seed = seed
        self.models = build_models()
        self.items = build_items(self.models)
        homes = ("image", "text", "image-v5", "bytes-v7", "photo-v7")
        self.call_s = {name: _time_one_call(self.models[name]) for name in homes}
        self.systematic = self._systematic_inputs() if systematic else []
        self.kinds = list(KIND_WEIGHTS)
        self.weights = [KIND_WEIGHTS[k] for k in self.kinds]

    def digest(self) -> str:
        """Hash of the seed files (every worker must build the same ones)."""
        h = hashlib.sha256()
        for item in self.items:
            h.update(item.blob)
        return h.hexdigest()[:16]

    # ------------------------------------------------------------------ inputs
    def _systematic_inputs(self) -> list[tuple[str, int, bytes, str]]:
        out: list[tuple[str, int, bytes, str]] = []
        for i, item in enumerate(self.items):
            blob = item.blob
            out.append(("none", i, blob, "unchanged"))
            out.extend(("truncate", i, blob[:n], f"first {n} bytes") for n in range(len(blob)))
            for bit in range(8 * header_length(blob)):
                flipped = bytearray(blob)
                flipped[bit // 8] ^= 1 << (bit % 8)
                out.append(("header_bitflip", i, bytes(flipped), f"bit {bit}"))
            for pos, name in ((2, "version"), (3, "flags")):
                for value in range(256):
                    if value != blob[pos]:
                        mutated = blob[:pos] + bytes([value]) + blob[pos + 1 :]
                        out.append(("header_byte", i, mutated, f"{name}={value}"))
        return out

    def make_input(self, index: int) -> FuzzInput:
        """Input ``index`` of the campaign (a pure function of the seed and the index)."""
        if index < len(self.systematic):
            kind, i, blob, note = self.systematic[index]
            sources: tuple[int, ...] = (i,)
        else:
            kind, i, sources, blob, note = self._random_input(index)
        if kind == "none" and self.items[i].maker != self.items[i].model:
            kind = "other_model"  # an unchanged file of a foreign model
        return FuzzInput(index, kind, i, sources, blob, note)

    def _random_input(self, index: int) -> tuple[str, int, tuple[int, ...], bytes, str]:
        rng = random.Random(f"ardm-fuzz:{self.seed}:{index}")
        kind = rng.choices(self.kinds, self.weights)[0]
        i = rng.randrange(len(self.items))
        item = self.items[i]
        model = self.models[item.model]
        blob = item.blob
        sources: tuple[int, ...] = (i,)
        note = ""
        if kind == "none":
            note = "unchanged"
        elif kind == "bitflip":
            n = rng.choice([1, 1, 1, 2, 3, 8])
            blob, note = _flip_bits(rng, blob, n), f"{n} bits"
        elif kind == "byte_sub":
            out = bytearray(blob)
            for _ in range(rng.randint(1, 3)):
                out[rng.randrange(len(out))] = rng.randrange(256)
            blob, note = bytes(out), "bytes substituted"
        elif kind == "insert":
            pos, n = rng.randrange(len(blob) + 1), rng.randint(1, 4)
            blob, note = blob[:pos] + rng.randbytes(n) + blob[pos:], f"{n} at {pos}"
        elif kind == "delete":
            pos, n = rng.randrange(len(blob)), rng.randint(1, 4)
            blob, note = blob[:pos] + blob[pos + n :], f"{n} at {pos}"
        elif kind == "truncate":
            n = rng.randrange(len(blob))
            blob, note = blob[:n], f"first {n} bytes"
        elif kind == "append":
            tail = rng.choice([b"\x00", b"\x01", rng.randbytes(rng.randint(1, 8))])
            blob, note = blob + tail, f"{len(tail)} bytes appended"
        elif kind == "splice":
            j = rng.randrange(len(self.items))
            other = self.items[j].blob
            if self.items[j].model == item.model:
                sources = (i, j)
            r = rng.random()
            if r < 0.4:  # header of one file, payload of another
                blob = blob[: header_length(blob)] + other[header_length(other) :]
                note = f"header of {item.name}, payload of {self.items[j].name}"
            elif r < 0.8:
                a, b = rng.randrange(len(blob) + 1), rng.randrange(len(other) + 1)
                blob, note = blob[:a] + other[b:], f"{item.name}[:{a}] + {self.items[j].name}[{b}:]"
            else:
                blob, note = blob + other, f"{item.name} + {self.items[j].name}"
        elif kind == "header_field":
            blob, note = _header_mutation(rng, item, model.shape, model.D, model.K)
        elif kind == "random_bytes":
            blob = rng.randbytes(rng.choice([0, 1, 2, 3, 5, 10, 20, 50, 200]))
            note = f"{len(blob)} random bytes"
        elif kind == "random_after_prefix":
            keep = rng.choice([2, 3, 4, header_length(blob)])
            blob = blob[:keep] + rng.randbytes(rng.randint(0, 60))
            note = f"first {keep} bytes kept, random rest"
        return kind, i, sources, blob, note

    # ------------------------------------------------------------------ judging
    def time_bound(self, inp: FuzzInput) -> tuple[float, int]:
        """``(bound in seconds, network calls)`` declared by the input's own header."""
        model = self.models[self.items[inp.item].model]
        try:
            header, body = container.unpack(inp.blob)
        except FormatError:
            return BASE_S, 0
        tiles = 1
        if header.version in container.CHAIN_VERSIONS and not model.context:
            return BASE_S, 0  # refused at once: this model codes no chains
        if header.version in container.CHAIN_VERSIONS and header.shape is not None:
            try:  # the decoder's own layout: its blocks and the most values of one
                _, blocks, most = file_layout(model, tuple(header.shape), 0)
            except ValueError:  # a shape the decoder refuses before any network call
                return BASE_S, 0
            # a chain's payload has at least blocks - 1 bytes
            calls = min(blocks, len(body) + 1) * min(header.budget, most)
            return BASE_S + SLACK * self.call_s[self.items[inp.item].model] * calls, calls
        if header.shape is not None:
            try:
                tiles = math.prod(tile_grid(header.shape, model.shape))
            except FormatError:
                tiles = 0
            tiles = min(tiles, len(body) + 1)  # a payload has at least tiles - 1 bytes
        calls = tiles * min(header.budget, model.D)
        return BASE_S + SLACK * self.call_s[self.items[inp.item].model] * calls, calls

    def reencodes_to(self, model: ARDM, blob: bytes, y: torch.Tensor) -> bool:
        """True iff ``blob`` is exactly the file that compressing ``y`` with the header's
        budget, order seed and format version writes (the input is a valid file of ``y``)."""
        header, _ = container.unpack(blob)
        rebuilt = build_file(
            model, y, budget=header.budget, seed=header.seed, version=header.version
        )
        return rebuilt == blob

    def run(self, inp: FuzzInput) -> Record:
        """Decode one input and judge the outcome."""
        model = self.models[self.items[inp.item].model]
        bound, calls = self.time_bound(inp)
        rss_before = peak_rss_mib()
        detail = ""
        y: torch.Tensor | None = None
        start = time.perf_counter()
        try:
            y = codec.decompress(model, inp.blob)
        except FormatError as e:
            outcome, detail = "FormatError", str(e)
        except ArdmError as e:
            outcome, detail = "ArdmError", f"{type(e).__name__}: {e}"
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as e:  # constriction panics derive from BaseException
            outcome, detail = "exception", f"{type(e).__module__}.{type(e).__name__}: {e}"
        seconds = time.perf_counter() - start
        failure = ""
        if y is not None:
            if any(_same(y, self.items[s].x) for s in inp.sources):
                outcome = "exact"
            elif self.reencodes_to(model, inp.blob, y):
                outcome, detail = "valid_other_data", f"returned shape {tuple(y.shape)}"
            else:
                outcome = "wrong_data"
                detail = f"returned shape {tuple(y.shape)}"
        if outcome == "wrong_data" or outcome == "exception":
            failure = outcome
        elif outcome in ("FormatError", "ArdmError") and ("\n" in detail or not detail):
            failure = "message"
        elif seconds > bound:
            failure = "slow"
        elif peak_rss_mib() - rss_before > RSS_JUMP_MIB:
            failure = "memory"
        return Record(
            inp.index,
            inp.kind,
            outcome,
            message_class(detail) if outcome in ("FormatError", "ArdmError") else detail,
            seconds,
            bound,
            calls,
            failure,
        )


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return tuple(a.shape) == tuple(b.shape) and torch.equal(a.long(), b.long())


def _time_one_call(model: ARDM, repeats: int = 30) -> float:
    """Median seconds of one batch-1 network call of ``model`` at one thread."""
    x = torch.zeros((1, *model.shape), dtype=torch.long)
    known = torch.zeros_like(x, dtype=torch.bool)
    t = torch.zeros(1, dtype=torch.long)
    times = []
    call = model.log_probs if model.portable is None else model.portable.pmf  # v5: integer
    with torch.no_grad():
        for _ in range(repeats):
            start = time.perf_counter()
            call(x, known, t)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_rss_mib() -> float:
    """Peak resident set size of this process in MiB (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


_DETAIL = re.compile(r"\s*\([^)]*\)")
_NUMBER = re.compile(r"0x[0-9a-f]+|\b\d+\b")


def message_class(message: str) -> str:
    """An error message without its numbers and parenthesised details: its class."""
    return _NUMBER.sub("#", _DETAIL.sub("", message)).strip()


# ============================================================================ records and report
@dataclass(frozen=True)
class Record:
    """The outcome of one input."""

    index: int
    kind: str
    outcome: str
    detail: str
    seconds: float
    bound: float
    calls: int
    failure: str


@dataclass
class Report:
    """Aggregated outcomes of a campaign."""

    count: int = 0
    kinds: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    messages: Counter[str] = field(default_factory=Counter)
    seconds: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    failures: list[dict[str, Any]] = field(default_factory=list)
    other_valid: list[dict[str, Any]] = field(default_factory=list)
    max_ratio: float = 0.0
    max_calls: int = 0
    peak_rss_mib: float = 0.0
    baseline_rss_mib: float = 0.0
    records: list[Record] | None = None  # every record, when a list is given

    def add(self, rec: Record, inp: FuzzInput | None = None, *, examples: bool = True) -> None:
        """Count one record; keep it as an example (failure, valid other data) if ``examples``."""
        if self.records is not None:
            self.records.append(rec)
        self.count += 1
        self.kinds[rec.kind][rec.outcome] += 1
        if rec.failure:
            self.kinds[rec.kind]["failures"] += 1
        if rec.outcome in ("FormatError", "ArdmError"):
            self.messages[rec.detail] += 1
        self.seconds[rec.kind].append(rec.seconds)
        self.max_ratio = max(self.max_ratio, rec.seconds / rec.bound)
        self.max_calls = max(self.max_calls, rec.calls)
        example = {
            "index": rec.index,
            "kind": rec.kind,
            "outcome": rec.outcome,
            "failure": rec.failure,
            "detail": rec.detail,
            "seconds": round(rec.seconds, 4),
        }
        if inp is not None:
            example |= {"note": inp.note, "hex": inp.blob.hex()}
        if examples and rec.failure and len(self.failures) < 50:
            self.failures.append(example)
        if examples and rec.outcome == "valid_other_data" and len(self.other_valid) < 20:
            self.other_valid.append(example)

    @property
    def num_failures(self) -> int:
        return sum(c["failures"] for c in self.kinds.values())

    def all_seconds(self) -> list[float]:
        return [s for v in self.seconds.values() for s in v]

    def summary(self) -> dict[str, Any]:
        times = self.all_seconds()
        outcomes: Counter[str] = Counter()
        for c in self.kinds.values():
            outcomes.update({k: v for k, v in c.items() if k != "failures"})
        return {
            "count": self.count,
            "failures": self.num_failures,
            "outcomes": dict(outcomes),
            "max_seconds": max(times, default=0.0),
            "median_seconds": statistics.median(times) if times else 0.0,
            "max_time_over_bound": self.max_ratio,
            "max_declared_calls": self.max_calls,
            "peak_rss_mib": self.peak_rss_mib,
            "baseline_rss_mib": self.baseline_rss_mib,
        }

    def table(self) -> str:
        cols = ["exact", "FormatError", "ArdmError", "valid_other_data", "failures"]
        lines = [
            "| mutation | tried | " + " | ".join(cols) + " | median ms | max ms |",
            "| --- | ---: | " + " | ".join("---:" for _ in cols) + " | ---: | ---: |",
        ]
        for kind in sorted(self.kinds):
            c, s = self.kinds[kind], self.seconds[kind]
            cells = " | ".join(str(c.get(col, 0)) for col in cols)
            lines.append(
                f"| {kind} | {len(s)} | {cells} | {1e3 * statistics.median(s):.3f} | "
                f"{1e3 * max(s):.1f} |"
            )
        total: Counter[str] = Counter()
        for c in self.kinds.values():
            total.update(c)
        times = self.all_seconds()
        cells = " | ".join(f"**{total.get(col, 0)}**" for col in cols)
        lines.append(
            f"| **all** | **{self.count}** | {cells} | {1e3 * statistics.median(times):.3f} | "
            f"{1e3 * max(times):.1f} |"
        )
        lines += ["", "| FormatError / ArdmError message class | count |", "| --- | ---: |"]
        lines += [f"| {msg} | {n} |" for msg, n in self.messages.most_common()]
        summ = self.summary()
        lines += [
            "",
            f"- inputs: {summ['count']}, failures: {summ['failures']}",
            f"- time per input: median {1e3 * summ['median_seconds']:.3f} ms, max "
            f"{1e3 * summ['max_seconds']:.1f} ms; max time / bound {summ['max_time_over_bound']:.3f} "
            f"(bound = {BASE_S} s + {SLACK:g} x call time x tiles x min(budget, D); largest "
            f"declared {summ['max_declared_calls']} calls)",
            f"- peak RSS {summ['peak_rss_mib']:.0f} MiB (after setup {summ['baseline_rss_mib']:.0f} MiB)",
        ]
        return "\n".join(lines)


# ============================================================================ running
def run_campaign(
    count: int,
    seed: int,
    *,
    systematic: bool = True,
    workers: int = 1,
    hard_timeout: float | None = None,
    progress: Callable[[str], None] | None = None,
) -> Report:
    """Run ``count`` inputs (systematic phase first) and return the report."""
    if workers <= 1:
        return _run_range(range(count), seed, systematic, hard_timeout, progress)
    ctx = mp.get_context("spawn")
    queue: Any = ctx.Queue()
    inflight = [ctx.Value("q", -1) for _ in range(workers)]
    procs = [
        ctx.Process(
            target=_worker,
            args=(w, workers, count, seed, systematic, hard_timeout, queue, inflight[w]),
        )
        for w in range(workers)
    ]
    for p in procs:
        p.start()
    report = Report()
    digests: set[str] = set()
    done = 0
    while done < workers:
        try:
            msg = queue.get(timeout=5.0)
        except Exception:  # queue.Empty: check that the workers are alive
            for w, p in enumerate(procs):
                if p.exitcode not in (None, 0):
                    raise RuntimeError(
                        f"worker {w} died (exit {p.exitcode}) on input {inflight[w].value}: "
                        f"a hang or crash; replay with --only {inflight[w].value}"
                    ) from None
            continue
        if msg[0] == "progress":
            if progress:
                progress(msg[1])
            continue
        _, digest, records, failures, others, peak, baseline = msg
        digests.add(digest)
        for rec in records:
            report.add(Record(*rec), examples=False)  # the worker sends its examples
        report.failures += failures
        report.other_valid += others
        report.peak_rss_mib = max(report.peak_rss_mib, peak)
        report.baseline_rss_mib = max(report.baseline_rss_mib, baseline)
        done += 1
    for p in procs:
        p.join()
    if len(digests) != 1:
        raise RuntimeError(f"workers built different seed files: {digests}")
    return report


def _worker(
    w: int,
    workers: int,
    count: int,
    seed: int,
    systematic: bool,
    hard_timeout: float | None,
    queue: Any,
    inflight: Any,
) -> None:
    def say(text: str) -> None:
        queue.put(("progress", f"[worker {w}] {text}"))

    report, digest = _run_range_with_digest(
        range(w, count, workers), seed, systematic, hard_timeout, say, inflight
    )
    records = [astuple(r) for r in report.records or []]
    queue.put(
        (
            "done",
            digest,
            records,
            report.failures,
            report.other_valid,
            report.peak_rss_mib,
            report.baseline_rss_mib,
        )
    )


def _run_range(
    indices: Sequence[int],
    seed: int,
    systematic: bool,
    hard_timeout: float | None,
    progress: Callable[[str], None] | None,
) -> Report:
    return _run_range_with_digest(indices, seed, systematic, hard_timeout, progress, None)[0]


def _run_range_with_digest(
    indices: Sequence[int],
    seed: int,
    systematic: bool,
    hard_timeout: float | None,
    progress: Callable[[str], None] | None,
    inflight: Any,
) -> tuple[Report, str]:
    torch.set_num_threads(1)
    fuzzer = Fuzzer(seed, systematic=systematic)
    if progress:
        progress(
            f"{len(fuzzer.items)} seed files ({fuzzer.digest()}), {len(fuzzer.systematic)} "
            f"systematic inputs; call time "
            + ", ".join(f"{k} {1e3 * v:.2f} ms" for k, v in fuzzer.call_s.items())
        )
    report = run_inputs(
        fuzzer,
        indices,
        hard_timeout=hard_timeout,
        progress=progress,
        inflight=inflight,
        keep_records=inflight is not None,
    )
    return report, fuzzer.digest()


def run_inputs(
    fuzzer: Fuzzer,
    indices: Sequence[int],
    *,
    hard_timeout: float | None = None,
    progress: Callable[[str], None] | None = None,
    inflight: Any = None,
    keep_records: bool = False,
) -> Report:
    """Run the inputs ``indices`` of ``fuzzer``'s campaign in this process.

    ``hard_timeout``: the watchdog (``faulthandler``) ends the process, printing every
    thread's stack, when one input runs ``hard_timeout`` seconds past its bound.
    """
    report = Report(records=[] if keep_records else None)
    report.baseline_rss_mib = peak_rss_mib()
    start = time.perf_counter()
    for n, index in enumerate(indices):
        inp = fuzzer.make_input(index)
        if inflight is not None:
            inflight.value = index
        if hard_timeout is not None:
            faulthandler.dump_traceback_later(hard_timeout + fuzzer.time_bound(inp)[0], exit=True)
        rec = fuzzer.run(inp)
        if hard_timeout is not None:
            faulthandler.cancel_dump_traceback_later()
        report.add(rec, inp)
        if progress and (n + 1) % 5000 == 0:
            progress(
                f"{n + 1}/{len(indices)} inputs, {report.num_failures} failures, "
                f"{time.perf_counter() - start:.0f} s"
            )
    report.peak_rss_mib = peak_rss_mib()
    return report


def replay(index: int, seed: int, *, systematic: bool = True) -> Record:
    """Run one input of a campaign and print what it was and what happened."""
    torch.set_num_threads(1)
    fuzzer = Fuzzer(seed, systematic=systematic)
    inp = fuzzer.make_input(index)
    rec = fuzzer.run(inp)
    item = fuzzer.items[inp.item]
    print(f"input {index}: {inp.kind} of {item.name} ({inp.note}), {len(inp.blob)} bytes")
    print(f"  hex: {inp.blob.hex()}")
    print(f"  outcome: {rec.outcome} {rec.detail!r} in {1e3 * rec.seconds:.1f} ms")
    print(f"  failure: {rec.failure or 'none'}")
    return rec


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz.campaign", description=__doc__)
    parser.add_argument("--count", type=int, default=100_000, help="number of inputs")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random phase")
    parser.add_argument("--workers", type=int, default=1, help="processes (1 thread each)")
    parser.add_argument("--no-systematic", action="store_true", help="random phase only")
    parser.add_argument(
        "--hard-timeout", type=float, default=120.0, help="watchdog seconds above the bound"
    )
    parser.add_argument("--only", type=int, default=None, help="replay one input")
    parser.add_argument("--no-write", action="store_true", help="do not write results")
    args = parser.parse_args(argv)
    systematic = not args.no_systematic
    if args.only is not None:
        return 1 if replay(args.only, args.seed, systematic=systematic).failure else 0
    start = time.perf_counter()
    report = run_campaign(
        args.count,
        args.seed,
        systematic=systematic,
        workers=args.workers,
        hard_timeout=args.hard_timeout,
        progress=lambda text: print(text, flush=True),
    )
    wall = time.perf_counter() - start
    summary = report.summary() | {"wall_seconds": wall, "seed": args.seed}
    payload = {
        "summary": summary,
        "settings": {
            "count": args.count,
            "seed": args.seed,
            "workers": args.workers,
            "systematic": systematic,
            "base_s": BASE_S,
            "slack": SLACK,
            "rss_jump_mib": RSS_JUMP_MIB,
        },
        "kinds": {k: dict(v) for k, v in sorted(report.kinds.items())},
        "messages": dict(report.messages.most_common()),
        "failures": report.failures,
        "valid_other_data": report.other_valid,
    }
    table = report.table() + f"\n- wall time {wall:.0f} s with {args.workers} worker(s)"
    if report.failures:
        table += "\n\nFailures (first ones):\n" + "\n".join(
            f"- input {f['index']} ({f['kind']}, {f.get('note', '')}): {f['failure']}: "
            f"{f['detail']}"
            for f in report.failures[:10]
        )
    if args.no_write:
        print(table)
    else:
        from benchmarks.machine import write_results

        write_results("fuzz", payload, table)
    return 1 if report.num_failures else 0


if __name__ == "__main__":
    sys.exit(main())
