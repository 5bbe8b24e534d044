"""The codec beyond one categorical stage: Upscale ARDMs and 16-bit mixture (DMoL) models.

* Upscale ARDMs code ``S`` stages of base-``b`` digits, coarse first, under the joint DP split
  of the budget (data parametrisation on 8-bit images, direct on 16-bit audio).
* A :class:`~ardm.dmol_model.DMoLARDM` over ``K = 65536`` has no 65536-way table: each value
  is coded as a high byte and a low byte given it, both from the step's one network call.

Round trips at the smallest, a middle and the largest budget, native and tiled; coded size
against the model's own likelihood under the same policy plus the 32-bit data checksum the
stream starts from, per file for tiled files (one ANS stream for all tiles, format versions 3
and 4); batch and thread invariance, native and tiled; the network call count; refusals
(budget below ``S``, a file of another model).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
import torch

from ardm.coding import ans, codec, container
from ardm.coding.lockstep import CodingSetup, decode, decode_with_rest, encode
from ardm.coding.stages import CodingModel, Stage
from ardm.coding.tiles import cut_tiles
from ardm.core.dmol import dmol_byte_log_probs
from ardm.core.orders import order_from_seed
from ardm.core.policy import naive_policy, step_bounds
from ardm.core.upscale import num_stages
from ardm.errors import DataError, FormatError
from ardm.models.dmol import DMoLARDM
from ardm.models.upscale import UpscaleARDM
from ardm.nets.build import build_net
from ardm.nets.unet import UNetConfig
from ardm.nets.wavenet import WaveNet, WaveNetConfig
from tests.conftest import perturb

WAVENET = WaveNetConfig(channels=8, blocks=2, dilation_cycle=2, value_emb_dim=4)


def one_line(e: pytest.ExceptionInfo[BaseException]) -> str:
    text = str(e.value)
    assert text and "\n" not in text, f"message is not one line: {text!r}"
    return text


def _distinct_L(n: int, seed: int) -> np.ndarray:
    """A decreasing, noisy ``L`` so the DP policies are not degenerate (an untrained tracker
    is flat, and a flat ``L`` may leave calls unused)."""
    rng = np.random.default_rng(seed)
    return np.linspace(2.0, 0.2, n) * (1.0 + 0.3 * rng.random(n))


def upscale_image_model(
    b: int, *, shape: tuple[int, int, int] = (1, 4, 4), ch: int = 8, seed: int = 0
) -> UpscaleARDM:
    """Data parametrisation, ``K = 256``, a tiny random U-Net."""
    torch.manual_seed(seed)
    S = num_stages(256, b)
    cfg = UNetConfig(ch=ch, ch_mult=(1,), num_res_blocks=1, value_emb_dim=4, groups=4)
    net = build_net("unet", K=256, shape=shape, unet=cfg, stages=S, out_classes=256)
    perturb(net, scale=0.3, seed=seed)
    model = UpscaleARDM(net, kind="image", K=256, branching=b, parametrisation="data").eval()
    model.tracker.set_all(np.tile(_distinct_L(model.D, seed), S))
    return model


def upscale_audio_model(L: int = 16, seed: int = 0) -> UpscaleARDM:
    """Direct parametrisation, ``K = 65536``, ``b = 256`` (two stages), a tiny WaveNet."""
    torch.manual_seed(seed)
    S, b = 2, 256
    net = WaveNet(WAVENET, K=65536, length=L, stages=S, out_classes=S * b)
    perturb(net, scale=0.3, seed=seed)
    model = UpscaleARDM(net, kind="audio", K=65536, branching=b, parametrisation="direct").eval()
    model.tracker.set_all(np.tile(_distinct_L(L, seed), S))
    return model


def dmol_model(L: int = 24, M: int = 3, seed: int = 0, K: int = 65536) -> DMoLARDM:
    torch.manual_seed(seed)
    model = DMoLARDM(WaveNet(WAVENET, K=K, length=L, out_classes=3 * M), mixtures=M).eval()
    perturb(model.net, scale=0.3, seed=seed)
    model.tracker.set_all(_distinct_L(L, seed))
    return model


def clips(n: int, L: int, seed: int = 0, step: float = 1500.0) -> torch.Tensor:
    """``(n, L)`` 16-bit classes: random walks around silence (32768), like audio."""
    g = torch.Generator().manual_seed(seed)
    walk = torch.randn(n, L, generator=g, dtype=torch.float64).cumsum(1) * step
    return (32768 + walk).round().clamp(0, 65535).long()


def images(n: int, shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, *shape), generator=torch.Generator().manual_seed(seed))


def round_trip(model: CodingModel, x: torch.Tensor, budget: int) -> list[bytes]:
    """Compress a batch, check the header budget and that each file decodes alone to its item."""
    files = codec.compress(model, x, budget=budget)
    assert isinstance(files, list) and len(files) == x.shape[0]
    for f, xi in zip(files, x, strict=True):
        assert container.unpack(f)[0].budget == budget
        assert torch.equal(codec.decompress(model, f), xi)
    return files


def payload_bits(blob: bytes) -> int:
    return 8 * len(container.unpack(blob)[1])


@contextmanager
def count_calls(net: torch.nn.Module) -> Iterator[list[int]]:
    """Counts the network's forward calls (one list entry per call)."""
    calls: list[int] = []
    handle = net.register_forward_hook(lambda *_: calls.append(1))
    try:
        yield calls
    finally:
        handle.remove()


# ============================================================================ upscale
@pytest.mark.parametrize("b", [2, 4, 16])
def test_upscale_data_parametrisation_images_round_trip(b: int) -> None:
    model = upscale_image_model(b)
    S, D = model.S, model.D
    x = images(2, model.shape, seed=b)
    for budget in (S, S + D // 2, S * D):
        round_trip(model, x, budget)
    big = images(1, (1, 6, 7), seed=b + 1)[0]  # 2 x 2 tiles, the border ones padded
    blob = codec.compress(model, big, budget=S + 3)
    assert isinstance(blob, bytes)
    header, _ = container.unpack(blob)
    assert (header.shape, header.K, header.budget) == ((1, 6, 7), 256, S + 3)
    assert torch.equal(codec.decompress(model, blob), big)


def test_upscale_direct_parametrisation_audio_round_trip() -> None:
    model = upscale_audio_model(L=16)
    S, D = model.S, model.D
    x = clips(2, D, seed=1)
    for budget in (S, 7, S * D):
        round_trip(model, x, budget)
    for length in (40, 5):  # three tiles, the last padded; one padded tile
        clip = clips(1, length, seed=length)[0]
        blob = codec.compress(model, clip, budget=5)
        assert isinstance(blob, bytes) and container.unpack(blob)[0].shape == (length,)
        assert torch.equal(codec.decompress(model, blob), clip)


def test_upscale_budget_is_clamped_and_below_the_stage_count_refused() -> None:
    model = upscale_image_model(4)  # S = 4
    x = images(1, model.shape)[0]
    assert model.budget_range() == (4, 4 * model.D)
    assert codec.compress(model, x, budget=10_000) == codec.compress(model, x, budget=4 * model.D)
    with pytest.raises(DataError, match="4 stages: it needs a budget of at least 4") as e:
        codec.compress(model, x, budget=3)
    one_line(e)


def test_upscale_one_network_call_per_step() -> None:
    model = upscale_image_model(4)
    x = images(1, model.shape, seed=3)[0]
    budget = 9
    steps = sum(len(p) for p in model.stage_policies(budget, mode="joint"))
    assert model.S <= steps <= budget
    with count_calls(model.net) as calls:
        blob = codec.compress(model, x, budget=budget)
    assert len(calls) == steps
    with count_calls(model.net) as calls:
        assert torch.equal(codec.decompress(model, blob), x)  # type: ignore[arg-type]
    assert len(calls) == steps


def test_upscale_batch_and_thread_invariance() -> None:
    """Encode 6 items at 2 threads; every file is the item's file alone at 1 thread, and
    decodes alone at 1 thread and as a batch at 2 (mirrors the OA test of test_lockstep)."""
    model = upscale_image_model(16, shape=(1, 8, 8), ch=32, seed=1)
    x = images(6, model.shape, seed=4)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        batch = codec.compress(model, x, budget=6)
        assert isinstance(batch, list) and torch.get_num_threads() == 2  # restored
        torch.set_num_threads(1)
        for i in (0, 3, 5):
            assert codec.compress(model, x[i], budget=6) == batch[i]
            assert torch.equal(codec.decompress(model, batch[i]), x[i])
        torch.set_num_threads(2)
        tiles = [container.unpack(f)[1] for f in batch]
        stages = model.coding_stages(6, model.order_seed)
        y, rest = decode_with_rest(CodingSetup(stages, model.shape, 256), tiles)
        assert torch.equal(y, x)
        assert rest == [container.data_crc32(xi.numpy(), 256) for xi in x]  # the checksums
        # Tiled files (2 x 2 tiles, padded; one stream each): the same, batch vs alone.
        big = images(2, (1, 12, 10), seed=5)
        batch = codec.compress(model, big, budget=5)
        assert isinstance(batch, list)
        torch.set_num_threads(1)
        for i in range(2):
            assert codec.compress(model, big[i], budget=5) == batch[i]
            assert torch.equal(codec.decompress(model, batch[i]), big[i])
    finally:
        torch.set_num_threads(threads)


# ============================================================================ DMoL audio
def test_dmol_round_trips_at_every_budget_and_tiled() -> None:
    model = dmol_model(L=24)
    D = model.D
    x = clips(2, D, seed=2)
    for budget in (1, 6, D):
        round_trip(model, x, budget)
    for length in (61, 10):  # three tiles, the last padded; one padded tile
        clip = clips(1, length, seed=length)[0]
        blob = codec.compress(model, clip, budget=4)
        assert isinstance(blob, bytes)
        header, _ = container.unpack(blob)
        assert (header.shape, header.K) == ((length,), 65536)
        assert torch.equal(codec.decompress(model, blob), clip)
    extremes = torch.tensor([[0, 65535, 255, 256, 32767, 32768] * 4])  # byte boundaries
    round_trip(model, extremes, 5)


def test_dmol_one_network_call_per_step() -> None:
    model = dmol_model(L=24)
    x = clips(1, 24, seed=5)[0]
    for budget in (1, 6):
        steps = len(model.policy_for_budget(budget))
        with count_calls(model.net) as calls:
            blob = codec.compress(model, x, budget=budget)
        assert len(calls) == steps
        with count_calls(model.net) as calls:
            assert torch.equal(codec.decompress(model, blob), x)  # type: ignore[arg-type]
        assert len(calls) == steps


@pytest.mark.parametrize("groups", [None, [2, 1], [3]], ids=["alone", "2+1", "shared"])
@pytest.mark.parametrize("per_item", [True, False], ids=["per-item", "batched"])
def test_byte_pair_stage_with_padding(per_item: bool, groups: list[int] | None) -> None:
    """The raw codec: a byte-pair stage with padded variables, alone and as one batch, each
    item its own stream or items sharing one (high and low bytes interleaved per item)."""
    model = dmol_model(L=12)
    x = clips(3, 12, seed=6)
    pad = torch.rand(3, 12, generator=torch.Generator().manual_seed(0)) < 0.3
    pad[2] = True  # an item with nothing to code
    stage = Stage(
        model.params, order_from_seed(12, 1), naive_policy(12, 4), byte_pair=dmol_byte_log_probs
    )
    setup = CodingSetup([stage], (12,), 65536, pad=pad, groups=groups, per_item=per_item)
    payloads = encode(setup, x)
    assert len(payloads) == (3 if groups is None else len(groups))
    assert payloads[-1] == b"" or groups == [3]
    y = decode(setup, payloads)
    assert torch.equal(y, torch.where(pad, 0, x))
    with pytest.raises(ValueError, match="K = 65536"):
        decode(CodingSetup([stage], (12,), 256, pad=pad), payloads)


def test_small_K_mixture_models_use_their_full_table() -> None:
    """A 256-class mixture is coded with its 256-way table, computed (by the stage's ``head``)
    only at each step's variables: the stream is the one the whole-image table gives."""
    model = dmol_model(L=8, K=256)
    stages = model.coding_stages(3, 0)
    assert len(stages) == 1 and stages[0].byte_pair is None and stages[0].head is not None
    x = torch.randint(0, 256, (2, 8), generator=torch.Generator().manual_seed(0))
    round_trip(model, x, 3)
    calls: list[tuple[int, ...]] = []

    def head(out: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(out.shape))
        return model.table(out)

    st = stages[0]
    full = Stage(model.log_probs, st.sigma, st.policy)
    rows = Stage(model.params, st.sigma, st.policy, head=head)
    enc_full = encode(CodingSetup([full], (8,), 256), x)
    assert encode(CodingSetup([rows], (8,), 256), x) == enc_full
    sizes = {right - left for left, right in step_bounds(st.policy, 8)}
    assert {c[1] for c in calls} == sizes and len(calls) == 2 * len(st.policy)  # (n, m, 3M)
    with pytest.raises(ValueError, match="K=5000") as e:
        dmol_model(L=8, K=5000).coding_stages(3, 0)
    one_line(e)


# ============================================================================ size and identity
def _assert_size_close(bits: int, nll_bits: float, symbols: int, K: int, crc: int) -> None:
    """The payload (format version 4) is ``-log2 p`` of the coded values plus the bits of the
    data checksum ``crc`` the stream starts from, rounded up to bytes: measured here -0.4 to
    +7.4 bits over; the bound allows -2 to +12, plus the smoothing's worst cost per value."""
    base = nll_bits + crc.bit_length()
    slack = 12 + symbols * ans.smoothing_cost_bits(K)
    assert base - 2 <= bits <= base + slack, (bits, nll_bits, crc.bit_length())


def test_coded_size_is_the_models_own_nll_under_the_policy() -> None:
    model = dmol_model(L=24)
    x = clips(3, 24, seed=7)
    for budget in (1, 6, 24):
        files = codec.compress(model, x, budget=budget)
        assert isinstance(files, list)
        nll = model.exact_nll_bpd(x, policies=model.stage_policies(budget)) * model.D  # (N,)
        for f, n, xi in zip(files, nll.tolist(), x, strict=True):
            crc = container.data_crc32(xi.numpy(), model.K)
            _assert_size_close(payload_bits(f), n, 2 * model.D, 256, crc)  # two bytes a sample
    up = upscale_audio_model(L=16)
    x = clips(3, 16, seed=8)
    for budget in (up.S, 7, up.S * up.D):
        files = codec.compress(up, x, budget=budget)
        assert isinstance(files, list)
        policies = up.stage_policies(budget, mode="joint")
        nll = up.exact_nll_bpd(x, policies=policies) * up.D
        for f, n, xi in zip(files, nll.tolist(), x, strict=True):
            crc = container.data_crc32(xi.numpy(), up.K)
            _assert_size_close(payload_bits(f), n, up.S * up.D, 256, crc)


@pytest.mark.parametrize("kind", ["upscale-image", "upscale-audio", "dmol"])
def test_a_tiled_file_is_one_stream_near_its_nll(kind: str) -> None:
    """Data of several tiles (no padding): one stream for the file, within the bounds of
    :func:`_assert_size_close` of the model's NLL summed over the tiles plus the checksum's
    bits, and smaller than the tiles' own streams together (format version 2)."""
    model: CodingModel
    if kind == "upscale-image":
        model, budget = upscale_image_model(4), 9  # S = 4
        x = images(1, (1, 8, 12), seed=11)[0]  # 2 x 3 tiles
    elif kind == "upscale-audio":
        model, budget = upscale_audio_model(L=16), 7  # S = 2
        x = clips(1, 64, seed=11)[0]  # 4 tiles
    else:
        model, budget = dmol_model(L=24), 6
        x = clips(1, 96, seed=11)[0]  # 4 tiles
    blob = codec.compress(model, x, budget=budget)
    assert isinstance(blob, bytes)
    header, body = container.unpack(blob)
    assert header.version == 4 and header.shape == tuple(x.shape)
    assert torch.equal(codec.decompress(model, blob), x)
    tiles, pad = cut_tiles(x, tuple(model.shape))
    T, D = tiles.shape[0], model.D
    assert T >= 4 and not pad.any()
    up: UpscaleARDM | DMoLARDM = model  # type: ignore[assignment]
    policies = up.stage_policies(budget, mode="joint")  # the same call for every model
    nll = float(up.exact_nll_bpd(tiles, policies=policies).sum()) * D
    symbols = T * up.S * D if kind.startswith("upscale") else 2 * T * D  # 16-bit: two bytes
    _assert_size_close(8 * len(body), nll, symbols, 256, container.data_crc32(x.numpy(), model.K))
    stages = model.coding_stages(budget, model.order_seed)
    per_tile = encode(CodingSetup(stages, tuple(model.shape), model.K), tiles)
    assert len(body) < sum(len(p) for p in per_tile)


@pytest.mark.parametrize("kind", ["upscale", "dmol"])
def test_a_file_of_another_model_is_refused(kind: str) -> None:
    if kind == "upscale":
        ours, theirs = upscale_image_model(4, seed=0), upscale_image_model(4, seed=1)
        x = images(1, ours.shape, seed=9)[0]
    else:
        ours, theirs = dmol_model(seed=0), dmol_model(seed=1)  # type: ignore[assignment]
        x = clips(1, ours.D, seed=9)[0]
    blob = codec.compress(ours, x, budget=6)
    assert isinstance(blob, bytes)
    with pytest.raises(FormatError, match="another model") as e:
        codec.decompress(theirs, blob)
    one_line(e)
