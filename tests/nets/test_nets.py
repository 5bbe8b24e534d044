"""Networks ``f(x, known, t) -> logits``: shapes, no leak, dependence, gradients, invariances."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ardm.nets.build import build_net, count_params, forward_flops
from ardm.nets.embeddings import apply_rotary, rotary_cos_sin, sinusoidal_embedding
from ardm.nets.transformer import Transformer, TransformerConfig
from ardm.nets.unet import UNet, UNetConfig

TINY_TF = TransformerConfig(dim=32, depth=2, heads=4, mlp_ratio=2.0)
TINY_UNET = UNetConfig(ch=16, ch_mult=(1, 2), num_res_blocks=1, value_emb_dim=4, groups=4)


def make_transformer(*, L: int = 16, K: int = 27, time_cond: bool = False) -> Transformer:
    torch.manual_seed(0)
    cfg = dataclasses.replace(TINY_TF, time_cond=time_cond)
    net = build_net("transformer", K=K, shape=(L,), transformer=cfg)
    assert isinstance(net, Transformer)
    return net.eval()


def make_unet(
    *, shape: tuple[int, int, int] = (1, 8, 8), K: int = 16, time_cond: bool = True, **kw: Any
) -> UNet:
    torch.manual_seed(0)
    cfg = dataclasses.replace(TINY_UNET, time_cond=time_cond, **kw)
    net = build_net("unet", K=K, shape=shape, unet=cfg)
    assert isinstance(net, UNet)
    return net.eval()


Net = TypeVar("Net", bound=nn.Module)
MakeNet = Callable[[], Transformer | UNet]


def perturb(net: Net, scale: float = 0.05) -> Net:
    """Add noise to every parameter so zero-initialised layers cannot hide a dependence."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return net


def random_inputs(
    net: Transformer | UNet, B: int, *, p_known: float = 0.5, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, net.K, (B, *net.shape), generator=g)
    known = torch.rand((B, *net.shape), generator=g) < p_known
    t = known.flatten(1).sum(1)
    return x, known, t


ALL_NETS = [
    pytest.param(lambda: make_transformer(time_cond=False), id="transformer"),
    pytest.param(lambda: make_transformer(time_cond=True), id="transformer-time"),
    pytest.param(lambda: make_unet(time_cond=True), id="unet-time"),
    pytest.param(lambda: make_unet(time_cond=False), id="unet"),
]


# --- shapes -----------------------------------------------------------------------------


@pytest.mark.parametrize("L", [16, 32])
@pytest.mark.parametrize("time_cond", [False, True])
def test_transformer_output_shape(L: int, time_cond: bool) -> None:
    net = make_transformer(L=L, K=27, time_cond=time_cond)
    x, known, t = random_inputs(net, 3)
    logits = net(x, known, t)
    assert logits.shape == (3, L, 27)
    assert logits.dtype == torch.float32
    assert net.K == 27 and net.shape == (L,) and net.D == L
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize(
    ("shape", "K", "ch_mult"),
    [
        ((1, 28, 28), 256, (1, 2)),
        ((1, 28, 28), 2, (1, 2, 2)),
        ((3, 32, 32), 256, (1, 2)),
        ((3, 8, 8), 16, (1,)),
    ],
)
def test_unet_output_shape(shape: tuple[int, int, int], K: int, ch_mult: tuple[int, ...]) -> None:
    net = make_unet(shape=shape, K=K, ch_mult=ch_mult)
    x, known, t = random_inputs(net, 2)
    logits = net(x, known, t)
    assert logits.shape == (2, *shape, K)
    assert logits.dtype == torch.float32
    assert net.K == K and net.shape == shape and math.prod(shape) == net.D
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("make", ALL_NETS)
def test_runs_under_bf16_autocast(make: MakeNet) -> None:
    net = make()
    x, known, t = random_inputs(net, 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = net(x, known, t)
    assert logits.shape == (2, *net.shape, net.K)
    assert torch.isfinite(logits.float()).all()


def test_eval_is_deterministic_with_dropout() -> None:
    torch.manual_seed(0)
    tf = Transformer(TransformerConfig(dim=16, heads=2, dropout=0.3), K=5, seq_len=8)
    un = UNet(UNetConfig(ch=8, groups=4, dropout=0.3), K=5, channels=1, height=4, width=4)
    nets: tuple[Transformer | UNet, ...] = (tf, perturb(un))  # un: dropout before a zero conv
    for net in nets:
        x, known, t = random_inputs(net, 2)
        net.train()
        assert not torch.equal(net(x, known, t), net(x, known, t))  # dropout is on
        net.eval()
        assert torch.equal(net(x, known, t), net(x, known, t))


# --- no leak ----------------------------------------------------------------------------


@pytest.mark.parametrize("make", ALL_NETS)
@pytest.mark.parametrize("mask", ["random", "sparse", "none-known", "all-known"])
def test_no_leak_from_unknown_positions(make: MakeNet, mask: str) -> None:
    net = perturb(make())
    x, known, _ = random_inputs(net, 4, p_known={"random": 0.5, "sparse": 0.1}.get(mask, 0.5))
    if mask == "none-known":
        known = torch.zeros_like(known)
    elif mask == "all-known":
        known = torch.ones_like(known)
    t = known.flatten(1).sum(1)
    g = torch.Generator().manual_seed(7)
    for _ in range(3):
        other = torch.randint(0, net.K, x.shape, generator=g)
        x2 = torch.where(known, x, other)
        assert torch.equal(net(x, known, t), net(x2, known, t))


# --- dependence -------------------------------------------------------------------------


def far_positions(net: Transformer | UNet) -> tuple[tuple[int, ...], tuple[int, ...]]:
    first = tuple(0 for _ in net.shape)
    last = tuple(s - 1 for s in net.shape)
    return first, last


@pytest.mark.parametrize("make", ALL_NETS)
def test_output_depends_on_known_values_elsewhere(make: MakeNet) -> None:
    net = perturb(make())
    x, known, t = random_inputs(net, 1)
    i, j = far_positions(net)
    known[(0, *j)] = True
    t = known.flatten(1).sum(1)
    out = net(x, known, t)
    x2 = x.clone()
    x2[(0, *j)] = (x[(0, *j)] + 1) % net.K
    out2 = net(x2, known, t)
    assert not torch.equal(out[(0, *i)], out2[(0, *i)])


@pytest.mark.parametrize("make", ALL_NETS)
def test_known_absorbing_value_differs_from_unknown(make: MakeNet) -> None:
    """An unknown variable is never confused with a known one of any value (e.g. K/2 -> 0)."""
    net = perturb(make())
    x, known, t = random_inputs(net, 1)
    i, j = far_positions(net)
    x[(0, *j)] = net.K // 2
    known[(0, *j)] = True
    known2 = known.clone()
    known2[(0, *j)] = False
    assert not torch.equal(net(x, known, t)[(0, *i)], net(x, known2, t)[(0, *i)])


@pytest.mark.parametrize("make", ALL_NETS)
def test_time_conditioning(make: MakeNet) -> None:
    net = perturb(make())
    x, known, _ = random_inputs(net, 2)
    t1 = torch.tensor([0, 3])
    t2 = torch.tensor([5, net.D - 1])
    if net.cfg.time_cond:
        assert not torch.equal(net(x, known, t1), net(x, known, t2))
    else:
        assert torch.equal(net(x, known, t1), net(x, known, t2))


def test_time_conditioning_effective_after_one_step_from_init() -> None:
    """The zero-initialised ResBlock convs start learning, after which t matters."""
    net = make_unet(time_cond=True).train()
    x, known, t = random_inputs(net, 4)
    t_other = (t + 17) % net.D
    assert torch.equal(net(x, known, t), net(x, known, t_other))  # zero init hides t at first
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    F.cross_entropy(net(x, known, t).flatten(0, -2), x.flatten()).backward()
    opt.step()
    assert not torch.equal(net(x, known, t), net(x, known, t_other))


# --- training signal --------------------------------------------------------------------


@pytest.mark.parametrize("make", ALL_NETS)
def test_gradient_reaches_every_parameter(make: MakeNet) -> None:
    net = perturb(make()).train()
    x, known, t = random_inputs(net, 2, p_known=0.5)
    w = torch.randn(2, *net.shape, net.K, generator=torch.Generator().manual_seed(3))
    (net(x, known, t) * w).sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("make", ALL_NETS)
def test_fits_a_tiny_batch_from_init(make: MakeNet) -> None:
    net = make().train()
    x, known, t = random_inputs(net, 4, p_known=0.5)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)

    def loss_fn() -> torch.Tensor:
        nll = F.cross_entropy(net(x, known, t).flatten(0, -2), x.flatten(), reduction="none")
        return (nll * (~known).flatten()).sum() / (~known).sum()

    first = loss_fn().item()
    for _ in range(15):
        opt.zero_grad()
        loss_fn().backward()
        opt.step()
    assert loss_fn().item() < 0.8 * first


# --- rotary positions -------------------------------------------------------------------


def test_rotary_score_depends_only_on_relative_offset() -> None:
    g = torch.Generator().manual_seed(0)
    hd = 16
    q, k = (
        torch.randn(hd, generator=g, dtype=torch.float64),
        torch.randn(hd, generator=g, dtype=torch.float64),
    )
    cos, sin = rotary_cos_sin(torch.arange(64), hd)

    def score(m: int, n: int) -> float:
        qm = apply_rotary(q.float()[None], cos[m : m + 1], sin[m : m + 1])[0]
        kn = apply_rotary(k.float()[None], cos[n : n + 1], sin[n : n + 1])[0]
        return float(qm.double() @ kn.double())

    for m, n in [(0, 0), (3, 7), (10, 2), (5, 40)]:
        ref = score(m, n)
        for s in (1, 5, 20):
            assert score(m + s, n + s) == pytest.approx(ref, rel=1e-4, abs=1e-4)
    offsets = {round(score(0, n), 3) for n in range(8)}
    assert len(offsets) == 8  # the score does change with the offset

    x = torch.randn(2, 3, 64, hd, generator=g)
    y = apply_rotary(x, cos, sin)
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1))  # a rotation
    torch.testing.assert_close(y[..., 0, :], x[..., 0, :])  # position 0 is not rotated


def test_transformer_has_no_absolute_position() -> None:
    """Shifting every rotary position by the same amount leaves the output unchanged."""
    net = perturb(make_transformer(L=16))
    x, known, t = random_inputs(net, 2)
    out = net(x, known, t)
    cos, sin = rotary_cos_sin(torch.arange(16) + 37, net.cfg.dim // net.cfg.heads)
    net.cos, net.sin = cos, sin
    torch.testing.assert_close(net(x, known, t), out, rtol=1e-4, atol=1e-4)


def test_sinusoidal_embedding() -> None:
    e = sinusoidal_embedding(torch.tensor([0, 5]), 8)
    assert e.shape == (2, 8)
    torch.testing.assert_close(e[0], torch.tensor([0.0] * 4 + [1.0] * 4))
    torch.testing.assert_close(e[1, 0], torch.tensor(math.sin(5.0)))
    assert sinusoidal_embedding(torch.tensor([1]), 7).shape == (1, 7)


@pytest.mark.slow
@pytest.mark.parametrize("make", ALL_NETS)
def test_compiles_as_one_graph(make: MakeNet) -> None:
    """No data-dependent Python control flow: torch.compile traces forward without breaks."""
    net = make()
    x, known, t = random_inputs(net, 2)
    compiled = torch.compile(net, backend="eager", fullgraph=True)
    assert torch.equal(compiled(x, known, t), net(x, known, t))


# --- batch invariance (matters for entropy coding) --------------------------------------


@pytest.mark.parametrize("make", ALL_NETS)
def test_item_output_is_independent_of_its_batch_companions(make: MakeNet) -> None:
    """Bitwise: at a fixed batch size, one item's output ignores the other items' content."""
    net = perturb(make())
    x, known, t = random_inputs(net, 8, seed=0)
    x2, known2, t2 = random_inputs(net, 8, seed=1)
    x2[3], known2[3], t2[3] = x[3], known[3], t[3]
    a, b = net(x, known, t), net(x2, known2, t2)
    assert torch.equal(a[3], b[3])
    assert torch.equal(a, net(x, known, t))  # and repeatable


@pytest.mark.parametrize("make", ALL_NETS)
def test_item_output_alone_matches_batch(make: MakeNet) -> None:
    """Alone vs inside a batch of 8. Close, but not always bitwise on CPU: oneDNN convs and
    the (B, C) time-MLP matmuls pick batch-size-dependent kernels. A codec must therefore
    run encoder and decoder on identical batch shapes."""
    net = perturb(make())
    x, known, t = random_inputs(net, 8)
    batch = net(x, known, t)
    for i in (0, 5):
        alone = net(x[i : i + 1], known[i : i + 1], t[i : i + 1])[0]
        torch.testing.assert_close(alone, batch[i], rtol=1e-5, atol=1e-5)


# --- build, sizes, FLOPs ----------------------------------------------------------------


def test_build_net_errors() -> None:
    with pytest.raises(ValueError, match="unknown network kind"):
        build_net("cnn", K=4, shape=(8,))
    with pytest.raises(ValueError, match=r"\(L,\)"):
        build_net("transformer", K=4, shape=(4, 4))
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        build_net("unet", K=4, shape=(28, 28))
    with pytest.raises(ValueError, match="must divide the image size"):
        build_net("unet", K=4, shape=(1, 28, 28), unet=UNetConfig(ch=16, ch_mult=(1, 2, 2, 2)))
    with pytest.raises(ValueError, match="groups"):
        UNetConfig(ch=12, groups=8)
    with pytest.raises(ValueError, match="divisible by heads"):
        TransformerConfig(dim=64, heads=3)
    with pytest.raises(ValueError, match="even"):
        TransformerConfig(dim=12, heads=4)
    with pytest.raises(ValueError, match="K >= 2"):
        build_net("transformer", K=1, shape=(8,))


def test_unet_config_accepts_list_ch_mult() -> None:
    cfg = UNetConfig(ch=16, ch_mult=[1, 2], groups=4)  # type: ignore[arg-type]
    assert cfg.ch_mult == (1, 2)
    hash(cfg)


def test_count_params_transformer_by_hand() -> None:
    d, depth, K, hidden = 32, 2, 27, 64
    net = make_transformer(K=K)
    per_block = 2 * 2 * d + 3 * d * d + d * d + (d * hidden + hidden) + (hidden * d + d)
    assert count_params(net) == (K + 1) * d + depth * per_block + 2 * d + d * K + K


def test_forward_flops() -> None:
    d, depth, K, hidden, L = 32, 2, 27, 64, 16
    net = make_transformer(L=L, K=K)
    per_token = 2 * (3 * d * d + d * d + 2 * d * hidden) * depth + 2 * d * K
    attention = 2 * 2 * L * L * d * depth  # q k^T and attn @ v
    assert forward_flops(net, 1) == pytest.approx(L * per_token + attention)
    assert forward_flops(net, 3) == pytest.approx(3 * forward_flops(net, 1))
    unet = make_unet(shape=(1, 8, 8))
    assert forward_flops(unet, 2) == pytest.approx(2 * forward_flops(unet, 1))
    assert forward_flops(unet, 1) > 2 * count_params(unet)  # convs reuse weights over pixels


# --- stage conditioning (Upscale ARDMs) and the output width ----------------------------


def make_stage_net(kind: str, *, stages: int = 3, out_classes: int | None = None) -> nn.Module:
    torch.manual_seed(0)
    if kind == "transformer":
        cfg_t = dataclasses.replace(TINY_TF, time_cond=True)
        net = build_net(
            "transformer",
            K=8,
            shape=(6,),
            transformer=cfg_t,
            stages=stages,
            out_classes=out_classes,
        )
    else:
        net = build_net(
            "unet", K=8, shape=(2, 4, 4), unet=TINY_UNET, stages=stages, out_classes=out_classes
        )
    return perturb(net).eval()


STAGE_KINDS = ["transformer", "unet"]


@pytest.mark.parametrize("kind", STAGE_KINDS)
@pytest.mark.parametrize("out_classes", [None, 6])
def test_stage_net_output_shape(kind: str, out_classes: int | None) -> None:
    net = make_stage_net(kind, out_classes=out_classes)
    x, known, _ = random_inputs(net, 3)  # type: ignore[arg-type]
    t = torch.tensor([0, net.D + 2, 3 * net.D - 1])  # global steps in every stage
    out = net(x, known, t)
    assert out.shape == (3, *net.shape, out_classes or 8)
    assert net.stages == 3 and net.out_classes == (out_classes or 8) and net.K == 8
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("kind", STAGE_KINDS)
def test_out_classes_without_stages(kind: str) -> None:
    net = make_stage_net(kind, stages=1, out_classes=5)
    x, known, t = random_inputs(net, 2)  # type: ignore[arg-type]
    assert net(x, known, t).shape == (2, *net.shape, 5)


@pytest.mark.parametrize("kind", STAGE_KINDS)
def test_stage_net_output_differs_across_stages_and_steps(kind: str) -> None:
    net = make_stage_net(kind)
    x, known, _ = random_inputs(net, 2)  # type: ignore[arg-type]
    D = net.D
    out = [net(x, known, torch.tensor([s * D + 1, s * D + 1])) for s in range(3)]
    assert not torch.equal(out[0], out[1]) and not torch.equal(out[1], out[2])
    # within a stage the time embedding sees t_in
    assert not torch.equal(out[1], net(x, known, torch.tensor([D + 4, D + 4])))


@pytest.mark.parametrize("kind", STAGE_KINDS)
def test_stage_net_reads_x_everywhere_and_known(kind: str) -> None:
    """The current value of an unrefined position (x^(s)) is known at stage s: it is read."""
    net = make_stage_net(kind)
    x, known, _ = random_inputs(net, 1)  # type: ignore[arg-type]
    t = torch.tensor([net.D])
    first = tuple(0 for _ in net.shape)
    last = tuple(s - 1 for s in net.shape)
    known[(0, *last)] = False
    x2 = x.clone()
    x2[(0, *last)] = (x[(0, *last)] + 3) % 8
    assert not torch.equal(net(x, known, t)[(0, *first)], net(x2, known, t)[(0, *first)])
    known2 = known.clone()
    known2[(0, *last)] = True
    assert not torch.equal(net(x, known, t)[(0, *first)], net(x, known2, t)[(0, *first)])


@pytest.mark.parametrize("kind", STAGE_KINDS)
def test_stage_net_gradient_reaches_every_parameter(kind: str) -> None:
    net = make_stage_net(kind, out_classes=6).train()
    x, known, _ = random_inputs(net, 3)  # type: ignore[arg-type]
    t = torch.tensor([0, net.D + 1, 2 * net.D + 2])  # every stage, so every stage row
    w = torch.randn(3, *net.shape, 6, generator=torch.Generator().manual_seed(3))
    (net(x, known, t) * w).sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name


def test_one_stage_nets_keep_their_parameters() -> None:
    """stages=1 (the default) is the plain OA-ARDM net: old checkpoints load."""
    tf = make_transformer(K=27)
    assert tf.tok_emb.num_embeddings == 28 and tf.stages == 1 and tf.out_classes == 27
    assert not any("known_emb" in n or "stage_emb" in n for n in tf.state_dict())
    un = make_unet(K=16)
    assert un.value_emb.num_embeddings == 17 and un.conv_in.in_channels == 2
    staged = make_stage_net("unet")
    assert isinstance(staged, UNet)
    assert staged.conv_in.in_channels == 2 * 2 + 3 and staged.value_emb.num_embeddings == 8
    with pytest.raises(ValueError, match="stages >= 1"):
        build_net("transformer", K=4, shape=(8,), stages=0)
    with pytest.raises(ValueError, match="out_classes >= 1"):
        build_net("unet", K=4, shape=(1, 4, 4), unet=TINY_UNET, out_classes=0)
