"""A model's portable form: its frozen integer network and what the integer coder needs.

:func:`freeze` turns a float model (:class:`ardm.models.process.Process`) into a
:class:`PortableModel`: the integer network (:data:`FREEZERS`, by the float network's class),
the head's integer pmf (:data:`HEAD_PMFS`, by the head's kind) and the fingerprint that
files of versions 5 and up carry. Its coding stages (:meth:`PortableModel.coding_stages`) hand
the coder integer weights (``Stage.exact``), spread orders
(:func:`ardm.core.spread_order.spread_order`; version 5: from
:func:`ardm.core.seeded_order.seeded_order`) and the float model's policies (:mod:`ardm.core.policy`, from the stored float64 ``L_t``).

The whole object is saved and loaded by :mod:`ardm.portable.state` (no pickle):
:meth:`PortableModel.to_bytes` / :func:`portable_from_bytes`.

Extension points (one entry each; every integer network follows the contract of
:class:`ardm.portable.unet.IntegerUNet`: ``from_float(net, items, *, passes, seed)`` and
``logits(x, known, t) -> int64 (B, *shape, O)``; a network may also give ``outputs(x, known,
t, positions=None)``, the same as float32 integers, and with ``positions (m,)`` only those
variables' rows ``(B, m, O)``, which the coder then asks for at each step: ``Stage.at``):

* :data:`FREEZERS` -- the float network's class name -> its freezer (``"UNet"``,
  ``"Transformer"``, ``"WaveNet"``);
* :data:`HEAD_PMFS` -- the head kind (:func:`head_kind`) -> integer output ``(B, *shape, O)``
  to the coder's weights (``"categorical"`` and ``"mixture"``, computed only at each step's
  variables, :data:`ROW_HEADS`; ``"digits"``, one stage per call);
* :meth:`PortableModel.coding_stages` -- one exact stage, or ``S`` for a digit (Upscale) model.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import nn

from ardm.coding.stages import Stage, takes_positions
from ardm.core.seeded_order import seeded_order
from ardm.core.spread_order import spread_order
from ardm.portable.allocator import keep_freed_memory
from ardm.portable.pmf import call_stage, categorical_pmf, digit_pmf
from ardm.portable.state import dump_state, load_state, state_sha256
from ardm.portable.transformer import IntegerTransformer
from ardm.portable.unet import IntegerUNet
from ardm.portable.wavenet import IntegerWaveNet


class IntegerNet(Protocol):
    """What every frozen integer network gives: integer outputs in the float net's layout."""

    def logits(self, x: torch.Tensor, known: torch.Tensor, t: torch.Tensor) -> torch.Tensor: ...


Freezer = Callable[..., IntegerNet]
"""``freezer(net, items, passes, seed)``: the frozen integer form of a float network; a
mixture model's freezer also takes ``head_bias=model.head.bias`` (folded into its outputs)."""


def _freeze_unet(
    net: nn.Module,
    items: torch.Tensor,
    passes: int,
    seed: int,
    head_bias: torch.Tensor | None = None,
) -> IntegerNet:
    return IntegerUNet.from_float(net, items, passes=passes, seed=seed, head_bias=head_bias)  # type: ignore[arg-type]


def _freeze_transformer(net: nn.Module, items: torch.Tensor, passes: int, seed: int) -> IntegerNet:
    return IntegerTransformer.from_float(net, items, passes=passes, seed=seed)  # type: ignore[arg-type]


def _freeze_wavenet(
    net: nn.Module,
    items: torch.Tensor,
    passes: int,
    seed: int,
    branching: int | None = None,
    head_bias: torch.Tensor | None = None,
) -> IntegerNet:
    return IntegerWaveNet.from_float(
        net,  # type: ignore[arg-type]
        items,
        passes=passes,
        seed=seed,
        branching=branching,
        head_bias=head_bias,
    )


FREEZERS: dict[str, Freezer] = {
    "UNet": _freeze_unet,
    "Transformer": _freeze_transformer,
    "WaveNet": _freeze_wavenet,
}
"""The float network's class name -> the freezer of its integer form."""


class PortablePending(NotImplementedError):
    """A part of the integer coder that is not built yet (one-line message)."""


HeadPmf = Callable[["PortableModel", torch.Tensor, Any, Any], torch.Tensor]
"""``head_pmf(model, out, x_cur, t)``: the integer output ``(B, *shape, O)`` (and the current
values ``(B, *shape)``, the global steps ``t (B,)``) -> the coder's weights ``(B, *shape, b)``
int64 summing to ``2^24 - b``."""


def _categorical(_model: PortableModel, out: torch.Tensor, _x: Any, _t: Any) -> torch.Tensor:
    return categorical_pmf(out)


def _mixture(model: PortableModel, out: torch.Tensor, _x: Any, _t: Any) -> torch.Tensor:
    if model.K > 256:  # 16-bit: two bytes per value (PortableModel.coding_stages)
        raise ValueError("a 16-bit mixture has no full table: its pmf is net.byte_pmf")
    return model.net.params_pmf(out)  # type: ignore[attr-defined]


def _digits(
    model: PortableModel, out: torch.Tensor, x: torch.Tensor, t: torch.Tensor
) -> torch.Tensor:
    """Stage ``t // D``'s digit pmf (direct parametrisation; one stage per call)."""
    net: Any = model.net
    stage = call_stage(t, net.D)
    b = net.out_classes // net.stages
    return digit_pmf(out, x, stage, b=b, S=net.stages, K=model.K)


HEAD_PMFS: dict[str, HeadPmf] = {
    "categorical": _categorical,
    "mixture": _mixture,
    "digits": _digits,
}
"""The head kind -> its integer pmf; a kind not here has no integer coder yet."""

ROW_HEADS = frozenset({"categorical", "mixture"})
"""Head kinds whose pmf is a function of each variable's output row alone: the coder computes
it only at each step's variables (``Stage.head``), from the integer outputs (a full table of
every variable at every call costs as much as the network); it never needs ``x``."""


def _row_pmf(rows: torch.Tensor) -> torch.Tensor:
    """The integer pmf ``(n, m, b)`` of a step's logit rows (float integers, ``Q_6``)."""
    return categorical_pmf(rows.to(torch.int64))


def head_pmf(kind: str) -> HeadPmf:
    """The integer pmf of the head kind ``kind``; :class:`PortablePending` if not built yet."""
    if kind not in HEAD_PMFS:
        raise PortablePending(f"the integer {kind} head is not built yet (ardm.portable.pmf)")
    return HEAD_PMFS[kind]


def head_kind(model: Any) -> str:
    """The kind of a float model's head: ``"categorical"``, ``"mixture"`` or ``"digits"``."""
    name = type(model.head).__name__
    kinds = {"CategoricalHead": "categorical", "MixtureHead": "mixture", "DigitHead": "digits"}
    if name not in kinds:
        raise PortablePending(f"no integer coder for a model with a {name}")
    return kinds[name]


class PortableModel:
    """The frozen integer network ``net`` of a model with ``K`` classes of ``shape``, its head
    kind, the float model's fingerprint (hex) and its head's settings (``b``, ``S``, ...).

    Its :meth:`pmf` is the same bits on every machine, thread count and batch size."""

    def __init__(
        self, net: IntegerNet, *, head: str, K: int, shape: tuple[int, ...], float_fp: str
    ) -> None:
        self.net = net
        self.head, self.K, self.shape = head, int(K), tuple(int(n) for n in shape)
        self.float_fingerprint = float_fp
        keep_freed_memory()  # its temporaries reuse freed pages (speed only)

    def pmf(self, x: torch.Tensor, known: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The coder's integer weights ``(B, *shape, b)`` given the values ``x`` where
        ``known`` and ``t`` known variables per item."""
        return head_pmf(self.head)(self, self.net.logits(x, known, t), x, t)

    @functools.cached_property
    def _fingerprint(self) -> bytes:
        h = hashlib.sha256(b"ardm-portable-model-1")
        h.update(bytes.fromhex(self.float_fingerprint))
        h.update(self.head.encode())
        h.update(state_sha256(self.net))
        return h.digest()

    def fingerprint(self) -> bytes:
        """SHA-256 of the serialized integer state together with the float model's fingerprint
        (which covers the config, ``L_t`` and the order seed): what files of versions 5-9 carry."""
        return self._fingerprint

    def coding_stages(
        self, model: Any, budget: int, seed: int, *, spread: bool = False
    ) -> list[Stage]:
        """The integer coder's stages of ``model`` (the float model this was frozen from) for
        ``budget`` calls and order seed ``seed``: exact integer tables, orders
        ``seeded_order(D, seed + s)`` (format version 5) or with ``spread`` every stage in the
        spread order of the model's shape (:func:`ardm.core.spread_order.spread_order`, format
        version 8), the float model's (order-fixed) DP policies."""
        D = int(model.D)

        def order(s: int) -> torch.Tensor:
            if spread:
                return spread_order(tuple(int(v) for v in model.shape))
            return seeded_order(D, seed + s)

        if self.head == "digits":  # Upscale: one stage per digit, coarse first
            S, b = int(model.S), int(model.b)
            policies = model.stage_policies(budget, mode="joint")

            stage_outputs: Any = getattr(self.net, "outputs", None)
            if stage_outputs is not None and b**S == self.K:  # every digit valid: rows suffice
                at = takes_positions(stage_outputs)  # then only the step's rows are computed

                # the stage's logits only, and the pmf only at each step's variables
                # (masked_categorical_pmf is categorical_pmf where every digit is valid)
                def stage_fn(s: int) -> Callable[..., torch.Tensor]:
                    def rows(
                        x: torch.Tensor,
                        known: torch.Tensor,
                        t_in: torch.Tensor,
                        positions: torch.Tensor | None = None,
                    ) -> torch.Tensor:
                        t = s * D + t_in
                        return stage_outputs(x, known, t, positions, stage_rows=True)

                    return rows

                head: Callable[[torch.Tensor], torch.Tensor] | None = _row_pmf
            else:
                at = False

                def stage_fn(s: int) -> Callable[..., torch.Tensor]:
                    return lambda x, known, t_in: self.pmf(x, known, s * D + t_in)

                head = None
            return [
                Stage(
                    stage_fn(s),
                    order(s),
                    policies[s],
                    b ** (S - s - 1),
                    b,
                    head=head,
                    exact=True,
                    at=at,
                )
                for s in range(S)
            ]
        policy = model.policy_for_budget(budget)
        if self.head == "mixture" and self.K > 256:  # 16-bit values as byte pairs
            byte_pmf = self.net.byte_pmf  # type: ignore[attr-defined]
            sigma = order(0)
            outputs: Any = getattr(self.net, "outputs", self.net.logits)  # float32 integers
            at = takes_positions(outputs)
            return [Stage(outputs, sigma, policy, byte_pair=byte_pmf, exact=True, at=at)]
        if self.head in ROW_HEADS:
            kind = head_pmf(self.head)
            # float32 integer outputs where the net has them: only the step's rows become int64
            outputs = getattr(self.net, "outputs", self.net.logits)
            # a net whose outputs take the step's positions computes only their rows
            at = takes_positions(outputs)

            def rows(out: torch.Tensor) -> torch.Tensor:  # (n, m, O) -> (n, m, K)
                return kind(self, out.to(torch.int64), None, None)

            return [Stage(outputs, order(0), policy, head=rows, exact=True, at=at)]
        return [Stage(self.pmf, order(0), policy, exact=True)]

    def to_bytes(self) -> bytes:
        """The safetensors bytes of this portable model (:mod:`ardm.portable.state`)."""
        return dump_state(self)


def portable_from_bytes(data: bytes) -> PortableModel:
    """A :class:`PortableModel` from :meth:`PortableModel.to_bytes` (untrusted bytes: refused
    with a one-line :class:`ardm.errors.FormatError` unless they hold one)."""
    from ardm.errors import FormatError

    keep_freed_memory()  # before its tensors are made (speed only)
    obj = load_state(data)
    if not isinstance(obj, PortableModel):
        raise FormatError(f"not a portable model: the state holds a {type(obj).__name__}")
    return obj


@torch.no_grad()
def freeze(model: Any, items: torch.Tensor, *, passes: int = 4, seed: int = 0) -> PortableModel:
    """The portable form of the float ``model``, calibrated on ``items`` ``(N, *shape)``
    (its training data; not portable itself: ship the result)."""
    kind = head_kind(model)
    name = type(model.net).__name__
    if name not in FREEZERS:
        raise PortablePending(f"no integer form of a {name} network yet")
    head_pmf(kind)  # refuse a head without an integer pmf before calibrating
    extra: dict[str, Any] = {}
    if kind == "mixture":
        sixteen = int(model.K) == 1 << 16
        if sixteen != (name == "WaveNet"):
            raise PortablePending(
                f"the integer coder has logistic mixtures of 8-bit images (U-Net) and 16-bit "
                f"audio (WaveNet), not K={model.K} with a {name}"
            )
        extra["head_bias"] = model.head.bias
    if kind == "digits":
        if model.parametrisation != "direct" or name != "WaveNet":
            raise PortablePending("the integer coder of this Upscale model is not built yet")
        extra["branching"] = int(model.b)
    net = FREEZERS[name](model.net.eval(), items.to(model.device), passes, seed, **extra)
    fp = model.fingerprint().hex()
    return PortableModel(net, head=kind, K=model.K, shape=tuple(model.shape), float_fp=fp)
