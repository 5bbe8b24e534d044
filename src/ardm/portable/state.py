"""The frozen integer state of a network as safetensors bytes: no pickle, no code from files.

A frozen integer network (:class:`ardm.portable.unet.IntegerUNet` and every integer network
beside it) is an object graph of plain classes of :mod:`ardm.portable` whose ``__dict__``
holds tensors, ``int``/``float``/``bool``/``str``/``None``, lists, tuples, dicts (``str`` or
``int`` keys) and nested such objects. :func:`dump_state` writes it as one safetensors file:

* every tensor under its path name (``"down.0.conv_1.w"``, ``"up.2.3"`` for list items);
* the structure as JSON in the metadata key ``"ardm-portable-state"``: a JSON scalar is itself;
  a tagged object ``{"t": ...}`` is a tensor (``{"t": "tensor", "k": name}``), a list or
  tuple (``{"t": "list"|"tuple", "v": [...]}``), a dict (``{"t": "dict", "v": [[key,
  value], ...]}``) or an object (``{"t": "obj", "c": "ardm.portable.unet:IntegerUNet",
  "d": {attribute: value}}``); floats are written by ``repr`` (exact round trip);
* a SHA-256 of the structure and the tensors in the metadata key ``"sha256"``
  (:func:`state_digest`), checked on loading: a damaged or edited file is refused;
* packed storage: a float or int64 tensor whose values are all integers that fit a narrower
  integer type (most of a frozen network: 8-bit weights, integer tables) is stored as
  ``int8``, ``int16`` or ``int32``, and the metadata key ``"packed"`` (JSON ``{name:
  dtype}``) names its own dtype, to which it is converted back on loading (exactly: every
  such value is an integer below ``2^31``). The digest is of the unpacked tensors, so packing
  changes no state's SHA-256 (and no fingerprint of the files it coded).

:func:`load_state` rebuilds the graph. Files are untrusted: an object's class must be a class
defined in a module of the :mod:`ardm.portable` package (found by name there, never imported
from elsewhere), and anything else (another class, a tag it does not know, a missing tensor,
an unused tensor) is refused with a one-line :class:`ardm.errors.FormatError`. An object is
made with ``object.__new__(cls)`` and its ``__dict__`` filled; no ``__init__`` or
``__setstate__`` runs. Caches stay out of the state: a class's ``__getstate__`` table is
saved when it has one (``IntegerUNet`` drops its time terms there), and the values of
``functools.cached_property`` attributes are never saved (nor accepted from a file).
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import pkgutil
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from ardm.errors import FormatError, first_line

STATE_KEY = "ardm-portable-state"
"""The metadata key of the JSON structure."""

STATE_FORMAT = "ardm-portable-1"
"""The metadata value of ``"format"``."""

PACKAGE = "ardm.portable"
_MAX_DEPTH = 64


def _plain(value: object, module: str) -> bool:
    """A public plain class defined in ``module``: no exception, protocol or torch module."""
    return (
        isinstance(value, type)
        and value.__module__ == module
        and not value.__name__.startswith("_")
        and not issubclass(value, BaseException | nn.Module)
        and not getattr(value, "_is_protocol", False)
    )


@functools.cache
def portable_classes() -> dict[str, type]:
    """The whitelist: ``"module:qualname" -> class`` for every public plain class defined in a
    module of :mod:`ardm.portable` (so networks added there later are covered)."""
    package = importlib.import_module(PACKAGE)
    out: dict[str, type] = {}
    for info in pkgutil.iter_modules(package.__path__):
        if info.name == "ship":  # the command line, no state
            continue
        module = importlib.import_module(f"{PACKAGE}.{info.name}")
        for value in vars(module).values():
            if _plain(value, module.__name__):
                out[f"{module.__name__}:{value.__qualname__}"] = value
    return out


def _class_name(obj: object) -> str:
    cls = type(obj)
    return f"{cls.__module__}:{cls.__qualname__}"


def _is_cache(cls: type, name: str) -> bool:
    """Whether ``name`` is a ``functools.cached_property`` of ``cls`` (a cache, not state)."""
    return isinstance(getattr(cls, name, None), functools.cached_property)


def _attributes(obj: object) -> dict[str, Any]:
    """What of ``obj`` is state: its ``__getstate__`` table if it has one, else its
    ``__dict__``; without the values of cached properties (recomputed after loading)."""
    state: dict[str, Any] = dict(vars(obj))
    getstate = getattr(type(obj), "__getstate__", None)
    if getstate is not None and getstate is not object.__getstate__:
        table = obj.__getstate__()
        if isinstance(table, dict):
            state = dict(table)
    return {k: v for k, v in state.items() if not _is_cache(type(obj), k)}


class _Writer:
    """Walks an object graph into JSON nodes and named tensors."""

    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}
        self.allowed = portable_classes()

    def node(self, value: object, path: str, depth: int) -> Any:
        if depth > _MAX_DEPTH:
            raise ValueError(f"{path}: nested deeper than {_MAX_DEPTH} levels")
        if value is None or isinstance(value, bool | int | str):
            return value
        if isinstance(value, float):
            return {"t": "float", "v": repr(value)}
        if isinstance(value, torch.Tensor):
            self.tensors[path] = value.detach().cpu().contiguous().clone()
            return {"t": "tensor", "k": path}
        if isinstance(value, list | tuple):
            tag = "list" if isinstance(value, list) else "tuple"
            items = [self.node(v, f"{path}.{i}", depth + 1) for i, v in enumerate(value)]
            return {"t": tag, "v": items}
        if isinstance(value, dict):
            pairs = []
            for key, v in value.items():
                if not isinstance(key, str | int) or isinstance(key, bool):
                    raise ValueError(f"{path}: dict keys must be str or int, got {key!r}")
                pairs.append([key, self.node(v, f"{path}.{key}", depth + 1)])
            return {"t": "dict", "v": pairs}
        name = _class_name(value)
        if name not in self.allowed:
            raise ValueError(f"{path}: {name} is not a class of {PACKAGE}")
        attrs = {
            k: self.node(v, f"{path}.{k}" if path else k, depth + 1)
            for k, v in _attributes(value).items()
        }
        return {"t": "obj", "c": name, "d": attrs}


def state_digest(structure: str, tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 (hex) of the JSON structure and every tensor's name, dtype, shape and bytes,
    in name order: the checksum in the metadata key ``"sha256"``."""
    h = hashlib.sha256(structure.encode())
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        h.update(f"\n{name} {t.dtype} {tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def state_sha256(obj: object) -> bytes:
    """The SHA-256 of ``obj``'s serialized state (:func:`state_digest` of what
    :func:`dump_state` writes): the same for equal states, whatever order safetensors gives
    its metadata (a hash map) in the file's bytes."""
    writer = _Writer()
    structure = json.dumps(writer.node(obj, "", 0), sort_keys=True)
    return bytes.fromhex(state_digest(structure, writer.tensors))


_PACK_FROM = {
    "torch.float32": torch.float32,
    "torch.float64": torch.float64,
    "torch.int64": torch.int64,
}
"""The dtypes a stored tensor may be packed from, by name."""
_PACK_TO = (torch.int8, torch.int16, torch.int32)


def _packed(t: torch.Tensor) -> torch.Tensor | None:
    """``t`` as the narrowest integer type that holds every value exactly, or ``None``."""
    if str(t.dtype) not in _PACK_FROM or t.numel() == 0:
        return None
    if t.is_floating_point() and not bool(torch.isfinite(t).all() and (t == t.round()).all()):
        return None
    lo, hi = float(t.min()), float(t.max())
    for dtype in _PACK_TO:
        info = torch.iinfo(dtype)
        if info.min <= lo and hi <= info.max:
            return t.to(dtype)
    return None


def dump_state(obj: object) -> bytes:
    """The safetensors bytes of the frozen object graph ``obj`` (see the module docstring)."""
    writer = _Writer()
    structure = json.dumps(writer.node(obj, "", 0), sort_keys=True)
    stored, packed = {}, {}
    for name, t in writer.tensors.items():
        small = _packed(t)
        stored[name] = t if small is None else small
        if small is not None:
            packed[name] = str(t.dtype)
    metadata = {
        "format": STATE_FORMAT,
        STATE_KEY: structure,
        "sha256": state_digest(structure, writer.tensors),
        "packed": json.dumps(packed, sort_keys=True),
    }
    return bytes(st_save(stored, metadata=metadata))


def _unpack(tensors: dict[str, torch.Tensor], packed: str) -> dict[str, torch.Tensor]:
    """The stored tensors with the packed ones back in their own dtype (``packed``: JSON)."""
    try:
        table = json.loads(packed)
    except ValueError as e:
        raise FormatError(f"corrupt portable state: packed table: {first_line(e)}") from None
    if not isinstance(table, dict):
        raise FormatError("corrupt portable state: the packed table is not a JSON object")
    out = dict(tensors)
    for name, dtype in table.items():
        if name not in tensors or dtype not in _PACK_FROM or tensors[name].dtype not in _PACK_TO:
            raise FormatError(f"corrupt portable state: bad packed entry {str(name)[:60]!r}")
        out[name] = tensors[name].to(_PACK_FROM[dtype])
    return out


class _Reader:
    """Rebuilds an object graph from JSON nodes and named tensors, refusing anything else."""

    def __init__(self, tensors: dict[str, torch.Tensor]) -> None:
        self.tensors = tensors
        self.used: set[str] = set()
        self.allowed = portable_classes()

    def node(self, node: Any, depth: int) -> Any:
        if depth > _MAX_DEPTH:
            raise FormatError(f"corrupt portable state: nested deeper than {_MAX_DEPTH} levels")
        if node is None or isinstance(node, bool | int | str):
            return node
        if not isinstance(node, dict) or not isinstance(node.get("t"), str):
            raise FormatError(f"corrupt portable state: unexpected node {str(node)[:60]!r}")
        return self._tagged(node, node["t"], depth)

    def _tagged(self, node: dict[str, Any], tag: str, depth: int) -> Any:
        value = node.get("v")
        if tag == "float" and isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise FormatError(f"corrupt portable state: bad float {value[:30]!r}") from None
        if tag == "tensor":
            key = node.get("k")
            if not isinstance(key, str) or key not in self.tensors:
                raise FormatError(f"corrupt portable state: no tensor named {str(key)[:60]!r}")
            self.used.add(key)
            return self.tensors[key]
        if tag in ("list", "tuple") and isinstance(value, list):
            items = [self.node(v, depth + 1) for v in value]
            return items if tag == "list" else tuple(items)
        if tag == "dict" and isinstance(value, list):
            out = {}
            for pair in value:
                if not (isinstance(pair, list) and len(pair) == 2 and _is_key(pair[0])):
                    raise FormatError("corrupt portable state: a dict entry is not a [key, value]")
                out[pair[0]] = self.node(pair[1], depth + 1)
            return out
        if tag == "obj":
            return self._object(node, depth)
        raise FormatError(f"corrupt portable state: unknown node tag {tag[:30]!r}")

    def _object(self, node: dict[str, Any], depth: int) -> object:
        name, attrs = node.get("c"), node.get("d")
        if not isinstance(name, str) or name not in self.allowed:
            raise FormatError(
                f"refused portable state: class {str(name)[:80]!r} is not a class of {PACKAGE}"
            )
        if not isinstance(attrs, dict):
            raise FormatError(f"corrupt portable state: {name} has no attribute table")
        cls = self.allowed[name]
        cached = [k for k in attrs if _is_cache(cls, str(k))]
        if cached:
            raise FormatError(f"corrupt portable state: {name} stores its cache {cached[0]!r}")
        obj: object = object.__new__(cls)
        obj.__dict__.update({str(k): self.node(v, depth + 1) for k, v in attrs.items()})
        return obj


def _is_key(key: object) -> bool:
    return isinstance(key, str | int) and not isinstance(key, bool)


def load_state(data: bytes) -> Any:
    """The object graph of :func:`dump_state` bytes; :class:`FormatError` (one line) if the
    bytes are not such a state, name a class outside :mod:`ardm.portable`, or do not add up."""
    try:
        tensors = st_load(bytes(data))
        metadata = _metadata(bytes(data))
    except (SafetensorError, ValueError, OSError, RuntimeError) as e:
        raise FormatError(f"not a portable state: {first_line(e)}") from None
    if metadata.get("format") != STATE_FORMAT or STATE_KEY not in metadata:
        raise FormatError("not a portable state: its metadata has no ardm-portable-1 structure")
    tensors = _unpack(tensors, metadata.get("packed", "{}"))
    if state_digest(metadata[STATE_KEY], tensors) != metadata.get("sha256"):
        raise FormatError("portable state fails its SHA-256 check: it is damaged or was edited")
    try:
        root = json.loads(metadata[STATE_KEY])
    except ValueError as e:
        raise FormatError(f"corrupt portable state: {first_line(e)}") from None
    reader = _Reader(tensors)
    try:
        obj = reader.node(root, 0)
    except RecursionError:
        raise FormatError("corrupt portable state: nested too deeply") from None
    unused = set(tensors) - reader.used
    if unused:
        raise FormatError(f"corrupt portable state: unused tensor {sorted(unused)[0][:60]!r}")
    return obj


def _metadata(data: bytes) -> dict[str, str]:
    """The ``__metadata__`` table of safetensors bytes (the header's JSON)."""
    if len(data) < 8:
        raise ValueError("too short for a safetensors header")
    n = int.from_bytes(data[:8], "little")
    if n > len(data) - 8:
        raise ValueError("the header is longer than the file")
    header = json.loads(data[8 : 8 + n])
    meta = header.get("__metadata__", {}) if isinstance(header, dict) else {}
    return {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}
