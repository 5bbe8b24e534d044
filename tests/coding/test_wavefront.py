"""Images coded block by block given the pixels above and left (format v6, waves of blocks).

A tiny U-Net image model with context, frozen to its integer form, codes images of every
awkward size; every pixel is coded exactly once, blocks of one wave never see each other, the
decoder gives the same pixels with any batch, and the stream costs what the model says given
the true pixels around each block.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ardm.coding.chain import ChainPlan, decode_chain, encode_chain, portable_rows
from ardm.coding.chain_files import compress_chain
from ardm.coding.codec import compress, decompress
from ardm.coding.container import CHAIN_VERSION, unpack
from ardm.coding.wavefront import WavefrontLayout
from ardm.core.context import PAD_IMAGE
from ardm.errors import DataError
from ardm.models.ardm import ARDM
from ardm.nets.build import build_net
from ardm.nets.unet import UNetConfig
from ardm.portable.model import freeze
from tests.conftest import perturb

K, TILE, CONTEXT = 16, (2, 8, 8), 4


@pytest.fixture(scope="module")
def image_chain_model() -> ARDM:
    torch.manual_seed(0)
    cfg = UNetConfig(ch=8, ch_mult=(1,), num_res_blocks=1, value_emb_dim=4, groups=4)
    net = perturb(build_net("unet", K=K, shape=TILE, unet=cfg), scale=0.3)
    model = ARDM(net, kind="image", order_seed=3, context=CONTEXT).eval()
    D = math.prod(TILE)
    model.tracker.set_all(np.linspace(4.0, 1.0, D) / D)
    g = torch.Generator().manual_seed(1)
    model.portable = freeze(model, torch.randint(0, K, (8, *TILE), generator=g))
    return model


def smooth_image(shape: tuple[int, int, int], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    C, H, W = shape
    ramp = (torch.arange(H)[:, None] + torch.arange(W)[None, :]) % K
    noise = torch.randint(0, 3, shape, generator=g)
    return ((ramp[None] + noise) % K).expand(C, H, W).clone()


def test_every_pixel_is_coded_once_after_the_blocks_it_sees() -> None:
    for shape in [(2, 1, 1), (2, 5, 7), (2, 8, 8), (2, 13, 20)]:
        layout = WavefrontLayout(shape, TILE, CONTEXT)
        coded_in = torch.full((layout.n,), -1)
        for k, wave in enumerate(layout.waves()):
            for block in wave:
                seen = block.index[block.index >= 0]
                known = torch.ones(block.index.numel(), dtype=torch.bool)
                known[block.coded] = False
                before = block.index[known & (block.index >= 0)]
                assert (coded_in[before] >= 0).all() and (coded_in[before] < k).all()
                assert (coded_in[block.index[block.coded]] == -1).all()
                coded_in[block.index[block.coded]] = k
                assert seen.numel() >= block.coded.numel()
        assert (coded_in >= 0).all()


@pytest.mark.parametrize("shape", [(2, 1, 1), (2, 5, 7), (2, 8, 8), (2, 13, 20)])
@pytest.mark.parametrize("budget", [1, 4, 100])
def test_images_of_any_size_round_trip(image_chain_model: ARDM, shape, budget: int) -> None:  # type: ignore[no-untyped-def]
    x = smooth_image(shape, seed=sum(shape))
    blob = compress(image_chain_model, x, budget=budget)
    header, _ = unpack(blob)
    assert header.version == CHAIN_VERSION and header.shape == shape
    assert torch.equal(decompress(image_chain_model, blob), x)


def test_wave_decoding_does_not_depend_on_the_batch(image_chain_model: ARDM) -> None:
    x = smooth_image((2, 13, 20), seed=5).reshape(-1)
    layout = WavefrontLayout((2, 13, 20), TILE, CONTEXT)
    plan = ChainPlan(image_chain_model.tracker.L(), math.prod(TILE), 3, 9)
    logits, rows = portable_rows(image_chain_model.portable)
    stream = encode_chain(x, layout, plan, logits, rows, initial=77, batch=16)
    assert stream == encode_chain(x, layout, plan, logits, rows, initial=77, batch=1)
    for batch in (1, 3, 16):
        y, rest = decode_chain(stream, layout, plan, logits, rows, batch=batch)
        assert torch.equal(y, x) and rest == 77


@pytest.mark.parametrize("version", [7, 9])
def test_the_stream_costs_what_the_model_says_given_the_true_pixels(
    image_chain_model: ARDM, version: int
) -> None:
    """Version 7 codes a block in ``seeded_order(b, seed)``, version 9 in the spread order of
    its values' places ``(c, y, x)`` in the window."""
    from ardm.core.seeded_order import seeded_order
    from ardm.core.spread_order import spread_ranks
    from ardm.portable.pmf import categorical_pmf, pmf_nll_bits

    shape, budget = (2, 11, 9), 3
    x = smooth_image(shape, seed=2)
    flat = x.reshape(-1)
    D = math.prod(TILE)
    seed = int(image_chain_model.order_seed)
    plan = ChainPlan(image_chain_model.tracker.L(), D, budget, seed)
    bits = 0.0
    for wave in WavefrontLayout(shape, TILE, CONTEXT).waves():
        for block in wave:
            window = torch.where(block.index >= 0, flat[block.index.clamp(min=0)], PAD_IMAGE)
            b = block.coded.numel()
            if version == 7:
                rank = seeded_order(b, seed)
            else:
                C, Th, Tw = TILE
                q = block.coded
                rank = spread_ranks(torch.stack([q // (Th * Tw), q // Tw % Th, q % Tw], 1), C)
            for left, right in plan.block(b).steps:
                known = torch.ones(D, dtype=torch.bool)
                known[block.coded] = rank < left
                net_in = torch.where(known, window, 0).view(1, *TILE)
                out = image_chain_model.portable.net.logits(
                    net_in, known.view(1, *TILE), known.sum()[None]
                ).reshape(D, K)
                coded = block.coded[(rank >= left) & (rank < right)]
                bits += float(pmf_nll_bits(categorical_pmf(out[coded]), window[coded]).sum())
    blob = compress_chain(image_chain_model, x, budget=budget, version=version)
    assert blob[2] == version
    stream_bits = 8 * (len(unpack(blob)[1]) - 2)  # less the segment and context varints
    assert bits + 32 - 8 <= stream_bits <= bits + 32 + 8


def test_images_of_another_channel_count_are_refused(image_chain_model: ARDM) -> None:
    with pytest.raises(DataError, match="2 channels"):
        compress(image_chain_model, torch.zeros(3, 4, 4, dtype=torch.long), budget=2)


def test_a_photo_model_with_a_mixture_head_codes_rgb_crops() -> None:
    """The photo recipe's head (a discretised logistic mixture over 256 values) through the
    chain coder: an RGB crop of a held-out Kodak photo of odd size round-trips."""
    from ardm.config import load_config
    from ardm.data.images import read_png
    from ardm.data.registry import load_split, resolve_data_dir
    from ardm.models.build import build_model

    torch.manual_seed(0)
    overrides = ["model.unet.ch=8", "model.unet.groups=4", "model.mixtures=2"]
    model = build_model(load_config("kodak-photo-cpu", overrides)).eval()
    perturb(model.net, scale=0.05)
    D = math.prod(model.shape)
    model.tracker.set_all(np.linspace(8.0, 4.0, D) / D)
    model.portable = freeze(model, load_split("kodak-photos", "train")[:8].long(), passes=1)
    photo = read_png(resolve_data_dir() / "kodak" / "kodim23.png")  # (H, W, 3), held out
    x = torch.from_numpy(photo[:19, :37].transpose(2, 0, 1).copy()).long()  # (3, 19, 37)
    blob = compress(model, x, budget=2)
    assert unpack(blob)[0].version == CHAIN_VERSION
    assert torch.equal(decompress(model, blob), x)
