"""Audio: strict WAV files, the FSDD clips, the WaveNet and the discretised logistic mixture."""

from __future__ import annotations

import io
import math
import re
import struct
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from ardm.core.dmol import (
    dmol_byte_log_probs,
    dmol_init_bias,
    dmol_log_prob,
    dmol_log_probs_range,
    dmol_sample,
    log_scale_min,
)
from ardm.data import dataset_spec, default_data_dir, load_split
from ardm.data.audio import (
    SILENCE,
    classes_to_samples,
    fit_length,
    fsdd_files,
    read_wav,
    samples_to_classes,
    wav_bytes,
    write_wav,
)
from ardm.errors import ArdmError, DataError
from ardm.models.dmol import DMoLARDM
from ardm.nets.wavenet import WaveNet, WaveNetConfig
from tests.conftest import perturb

FSDD = default_data_dir() / "fsdd" / "recordings"


def _one_line(excinfo: pytest.ExceptionInfo[DataError], *needles: str) -> None:
    msg = str(excinfo.value)
    assert isinstance(excinfo.value, ArdmError) and msg and "\n" not in msg
    for needle in needles:
        assert needle in msg, (needle, msg)


# --- WAV files ------------------------------------------------------------------------------


def test_wav_round_trip_is_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    samples = rng.integers(-32768, 32768, 1001).astype(np.int16)
    samples[:2] = [-32768, 32767]
    path = tmp_path / "a.wav"
    write_wav(path, samples, 8000)
    for source in (path, str(path), path.read_bytes(), io.BytesIO(path.read_bytes())):
        got, rate = read_wav(source)
        assert rate == 8000 and got.dtype == np.int16 and np.array_equal(got, samples)
    buf = io.BytesIO()
    write_wav(buf, torch.from_numpy(samples), 16000)
    assert buf.getvalue() == wav_bytes(samples, 16000)
    got, rate = read_wav(buf.getvalue())
    assert rate == 16000 and np.array_equal(got, samples)
    with wave.open(io.BytesIO(buf.getvalue())) as w:  # a standard file for other readers
        assert (w.getnchannels(), w.getsampwidth(), w.getnframes()) == (1, 2, 1001)
    empty, _ = read_wav(wav_bytes(np.zeros(0, dtype=np.int16), 8000))
    assert empty.shape == (0,)


def _wav(channels: int, width: int, frames: bytes) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(8000)
        w.writeframes(frames)
    return buf.getvalue()


def _float_wav() -> bytes:
    """A WAV with format tag 3 (IEEE float), which must be refused."""
    data = struct.pack("<4f", 0.0, 0.5, -0.5, 1.0)
    fmt = struct.pack("<HHIIHH", 3, 1, 8000, 32000, 4, 32)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


@pytest.mark.parametrize(
    ("data", "needles"),
    [
        (_wav(2, 2, bytes(16)), ("2 channels", "mono")),
        (_wav(1, 1, bytes(8)), ("8-bit", "16-bit")),
        (_wav(1, 3, bytes(12)), ("24-bit", "16-bit")),
        (_wav(1, 2, bytes(200))[:-50], ("truncated", "100 samples", "75")),
        (_wav(1, 2, bytes(200))[:30], ("WAV",)),
        (_float_wav(), ("16-bit PCM",)),
        (b"hello, not audio at all", ("not a WAV file",)),
        (b"", ("not a WAV file",)),
    ],
    ids=[
        "stereo",
        "8-bit",
        "24-bit",
        "truncated-data",
        "truncated-header",
        "float",
        "text",
        "empty",
    ],
)
def test_bad_wavs_are_refused_in_one_line(data: bytes, needles: tuple[str, ...]) -> None:
    with pytest.raises(DataError) as e:
        read_wav(data, name="clip.wav")
    _one_line(e, "clip.wav", *needles)


def test_bad_wav_inputs_to_the_writer(tmp_path: Path) -> None:
    with pytest.raises(DataError) as e:
        wav_bytes(np.zeros(4, dtype=np.int32), 8000)
    _one_line(e, "int16")
    with pytest.raises(DataError) as e:
        wav_bytes(np.zeros((2, 4), dtype=np.int16), 8000)
    _one_line(e, "1-D")
    with pytest.raises(DataError) as e:
        read_wav(tmp_path / "missing.wav")
    _one_line(e, "missing.wav")


def test_classes_are_shifted_int16() -> None:
    samples = np.array([-32768, -1, 0, 1, 32767], dtype=np.int16)
    x = samples_to_classes(samples)
    assert x.dtype == torch.int64 and x.tolist() == [0, 32767, 32768, 32769, 65535]
    assert np.array_equal(classes_to_samples(x), samples)
    assert classes_to_samples(torch.tensor([SILENCE])).tolist() == [0]
    with pytest.raises(DataError):
        classes_to_samples(torch.tensor([65536]))
    with pytest.raises(DataError):
        samples_to_classes(np.zeros(3, dtype=np.int32))


def test_fit_length_centre_crops_and_right_pads() -> None:
    s = np.arange(1, 11, dtype=np.int16)  # 10 samples
    assert fit_length(s, 4).tolist() == [4, 5, 6, 7]  # start (10 - 4) // 2 = 3
    assert fit_length(s, 7).tolist() == [2, 3, 4, 5, 6, 7, 8]  # start 1
    assert fit_length(s, 10).tolist() == s.tolist()
    assert fit_length(s, 13).tolist() == [*s.tolist(), 0, 0, 0]
    with pytest.raises(DataError):
        fit_length(s, 0)


# --- FSDD -----------------------------------------------------------------------------------


def test_fsdd_spec() -> None:
    spec = dataset_spec("fsdd")
    assert (spec.kind, spec.shape, spec.K, spec.D, spec.splits, spec.alphabet) == (
        "audio",
        (4000,),
        65536,
        4000,
        ("train", "test"),
        None,
    )
    assert spec.title == "FSDD spoken digits (8 kHz; stand-in for SC09)"
    assert dataset_spec("fsdd", seq_len=16000).shape == (16000,)


def test_fsdd_splits_follow_the_official_index_rule() -> None:
    names = [p.name for p in FSDD.iterdir() if p.suffix == ".wav"]
    index = [int(re.match(r"\d_[a-z]+_(\d+)\.wav", n)[1]) for n in names]  # type: ignore[index]
    want_test = sum(i <= 4 for i in index)
    want_train = sum(i >= 5 for i in index)
    assert (want_train, want_test) == (2250, 250)
    test_files = fsdd_files(FSDD, "test")
    assert len(test_files) == 250 and len(fsdd_files(FSDD, "train")) == 2250
    assert all(int(p.stem.split("_")[2]) <= 4 for p in test_files)
    train = load_split("fsdd", "train")
    assert train.shape == (2250, 4000) and train.dtype == torch.int32
    test = load_split("fsdd", "test", seq_len=800)
    assert test.shape == (250, 800)
    assert int(test.min()) >= 0 and int(test.max()) < 65536


def test_fsdd_missing_or_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError) as e:
        load_split("fsdd", "test", data_dir=tmp_path)
    _one_line(e, "fsdd", "missing folder")
    (tmp_path / "fsdd" / "recordings").mkdir(parents=True)
    (tmp_path / "fsdd" / "recordings" / "3_x_7.wav").write_bytes(
        wav_bytes(np.zeros(5, np.int16), 8000)
    )
    with pytest.raises(DataError) as e:
        load_split("fsdd", "test", data_dir=tmp_path)
    _one_line(e, "no recordings of the test split")
    clip = load_split("fsdd", "train", data_dir=tmp_path, seq_len=8)
    assert clip.tolist() == [[SILENCE] * 8]
    (tmp_path / "fsdd" / "recordings" / "3_x_8.wav").write_bytes(
        wav_bytes(np.zeros(5, np.int16), 16000)
    )
    with pytest.raises(DataError) as e:
        load_split("fsdd", "train", data_dir=tmp_path, seq_len=9)
    _one_line(e, "3_x_8.wav", "16000 Hz")


def test_fsdd_clips_are_cropped_and_padded() -> None:
    files = fsdd_files(FSDD, "test")
    clips = load_split("fsdd", "test", seq_len=4000)
    lengths = [read_wav(p)[0].shape[0] for p in files]
    short = next(i for i, n in enumerate(lengths) if n < 4000)
    long = next(i for i, n in enumerate(lengths) if n > 4001)
    s, rate = read_wav(files[short])
    assert rate == 8000
    row = clips[short].long()
    assert torch.equal(row[: len(s)], samples_to_classes(s))
    assert bool((row[len(s) :] == SILENCE).all())  # right-padded with silence
    s = read_wav(files[long])[0]
    start = (len(s) - 4000) // 2
    assert torch.equal(clips[long].long(), samples_to_classes(s[start : start + 4000]))


# --- WaveNet --------------------------------------------------------------------------------


def _wavenet(K: int = 65536, L: int = 40, **kw: int) -> WaveNet:
    torch.manual_seed(0)
    cfg = WaveNetConfig(channels=8, blocks=3, dilation_cycle=2, value_emb_dim=4)
    return WaveNet(cfg, K=K, length=L, **kw)


def test_wavenet_shapes_and_config_errors() -> None:
    net = _wavenet(K=300, L=40)
    assert (net.K, net.shape, net.D, net.out_classes) == (300, (40,), 40, 300)
    x = torch.randint(0, 300, (2, 40))
    out = net(x, torch.rand(2, 40) < 0.5, torch.tensor([0, 39]))
    assert out.shape == (2, 40, 300) and out.dtype == torch.float32
    assert torch.equal(out, torch.zeros_like(out))  # zero-initialised output layer
    assert _wavenet(out_classes=90).out_classes == 90
    for bad in (
        {"channels": 6},
        {"blocks": 0},
        {"dilation_cycle": 0},
        {"kernel": 2},
        {"value_emb_dim": 0},
    ):
        with pytest.raises(ValueError, match="wavenet"):
            WaveNetConfig(**bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="stages"):
        _wavenet(stages=0)


def test_wavenet_reads_no_unknown_value() -> None:
    net = perturb(_wavenet()).eval()
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 65536, (3, 40), generator=g)
    known = torch.rand(3, 40, generator=g) < 0.4
    t = known.sum(1)
    other = torch.where(known, x, torch.randint(0, 65536, (3, 40), generator=g))
    assert not torch.equal(other, x)
    torch.testing.assert_close(net(x, known, t), net(other, known, t), rtol=0, atol=0)
    # It does read the known values, and the mask, in both directions (non-causal).
    moved = x.clone()
    moved[:, 35] = (x[:, 35] + 20000) % 65536
    known_35 = known.clone()
    known_35[:, 35] = True
    a, b = net(x, known_35, t), net(moved, known_35, t)
    assert not torch.allclose(a[:, 30], b[:, 30]) and not torch.allclose(a[:, 38], b[:, 38])


def test_wavenet_stages_condition_on_stage_and_read_coarse_values() -> None:
    S, L = 4, 40
    net = perturb(_wavenet(stages=S, L=L)).eval()
    g = torch.Generator().manual_seed(2)
    x = torch.randint(0, 65536, (2, L), generator=g)
    known = torch.rand(2, L, generator=g) < 0.5
    t_in = torch.tensor([3, 17])
    outs = [net(x, known, s * L + t_in) for s in range(S)]
    for s in range(1, S):
        assert not torch.allclose(outs[0], outs[s])
    # Positions not yet upscaled hold the known coarse value: the net reads them.
    other = torch.where(known, x, (x + 12345) % 65536)
    assert not torch.allclose(net(other, known, t_in + L), outs[1])


def test_wavenet_gradients_reach_every_parameter() -> None:
    net = perturb(_wavenet(K=1000, out_classes=12))
    x = torch.randint(0, 1000, (2, 40))
    known = torch.rand(2, 40) < 0.5
    net(x, known, known.sum(1)).square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and bool(p.grad.abs().sum() > 0), name


# --- discretised logistic mixture -----------------------------------------------------------


def _reference_log_probs(params: torch.Tensor, K: int) -> torch.Tensor:
    """float64 log p(k) for every k by CDF differences, taken on the side of the tail that
    keeps them accurate (1 - F on the right of the mean)."""
    logits, mu, log_s = params.double().chunk(3, dim=-1)  # (N, M)
    s = log_s.clamp(min=log_scale_min(K)).exp()
    c = -1.0 + 2.0 * torch.arange(K, dtype=torch.float64) / (K - 1)  # (K,)
    h = 1.0 / (K - 1)
    up = (c[:, None] + h - mu[:, None, :]) / s[:, None, :]  # (N, K, M)
    lo = (c[:, None] - h - mu[:, None, :]) / s[:, None, :]
    up[:, -1], lo[:, 0] = math.inf, -math.inf
    left = torch.sigmoid(up) - torch.sigmoid(lo)
    right = torch.sigmoid(-lo) - torch.sigmoid(-up)
    mass = torch.where(lo + up < 0, left, right)  # (N, K, M)
    return (mass * logits.softmax(-1)[:, None, :]).sum(-1).log()  # (N, K)


def _assert_sums_to_one(log_p: torch.Tensor) -> None:
    total = log_p.double().exp().sum(-1)
    torch.testing.assert_close(total, torch.ones_like(total), rtol=0, atol=1e-6)


def _params(n: int, M: int, log_s: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    p = torch.randn(n, 3 * M, generator=g)
    p[:, M : 2 * M] *= 0.7  # means
    p[:, 2 * M :] = log_s + 0.5 * p[:, 2 * M :]
    return p


@pytest.mark.parametrize("log_s", [0.0, -3.0, -6.0, -20.0])
def test_dmol_small_K_is_normalised_and_exact(log_s: float) -> None:
    K, M = 256, 5
    params = _params(6, M, log_s, seed=0)
    lp = dmol_log_probs_range(params, 0, K, K)  # (6, K)
    assert lp.dtype == torch.float32
    _assert_sums_to_one(lp)
    ref = _reference_log_probs(params, K)
    likely = ref > -30
    torch.testing.assert_close(lp.double()[likely], ref[likely], rtol=1e-5, atol=1e-5)
    x = torch.randint(0, K, (6,))
    torch.testing.assert_close(dmol_log_prob(params, x, K), lp.gather(1, x[:, None])[:, 0])


def test_dmol_edge_bins_take_the_tails() -> None:
    K, M = 256, 1
    far_low = torch.tensor([[0.0, -3.0, -3.0]])  # one component, mean -3, scale e^-3
    far_high = torch.tensor([[0.0, 3.0, -3.0]])
    assert dmol_log_prob(far_low, torch.tensor([0]), K).exp().item() == pytest.approx(1, abs=1e-6)
    assert dmol_log_prob(far_high, torch.tensor([K - 1]), K).exp().item() == pytest.approx(
        1, abs=1e-6
    )
    # Edge bin = tail mass: p(0) = F(c_0 + h), p(K-1) = 1 - F(c_{K-1} - h).
    params = torch.tensor([[0.0, -0.9, -2.0]])
    s = math.exp(-2.0)
    p0 = torch.sigmoid(torch.tensor((-1 + 1 / (K - 1) + 0.9) / s)).item()
    pK = torch.sigmoid(torch.tensor(-(1 - 1 / (K - 1) + 0.9) / s)).item()
    assert dmol_log_prob(params, torch.tensor([0]), K).exp().item() == pytest.approx(p0, rel=1e-5)
    assert dmol_log_prob(params, torch.tensor([K - 1]), K).exp().item() == pytest.approx(
        pK, rel=1e-4
    )
    assert M == 1
    with pytest.raises(ValueError, match="3M"):
        dmol_log_prob(torch.zeros(2, 4), torch.zeros(2, dtype=torch.long), K)


def test_dmol_16_bit_factorises_into_two_bytes() -> None:
    K, M = 65536, 4
    for log_s in (-1.0, -9.0, -14.0):
        params = _params(5, M, log_s, seed=3)
        log_hi = dmol_byte_log_probs(params)  # (5, 256)
        _assert_sums_to_one(log_hi)
        g = torch.Generator().manual_seed(4)
        x = dmol_sample(params, K, g)  # likely values
        x = torch.cat([x, torch.tensor([0, 65535, 256, 255, 40000])])  # and edges, tails
        p = torch.cat([params, params])
        hi, lo = x // 256, x % 256
        log_lo = dmol_byte_log_probs(p, hi)  # (10, 256)
        _assert_sums_to_one(log_lo)
        both = (
            torch.cat([log_hi, log_hi]).gather(1, hi[:, None])[:, 0]
            + log_lo.gather(1, lo[:, None])[:, 0]
        )
        direct = dmol_log_prob(p, x, K)
        torch.testing.assert_close(both, direct, rtol=2e-6, atol=2e-5)
        # The block of a high byte holds exactly that byte's classes.
        block = dmol_log_probs_range(p, hi * 256, hi * 256 + 256, K)
        torch.testing.assert_close(block.gather(1, lo[:, None])[:, 0], direct)


def test_dmol_full_16_bit_distribution_sums_to_one() -> None:
    params = _params(2, 3, -10.0, seed=5)
    lp = dmol_log_probs_range(params, 0, 65536, 65536)  # (2, 65536)
    _assert_sums_to_one(lp)


def test_dmol_samples_follow_the_pmf() -> None:
    K, M, n = 16, 3, 40000
    params = _params(1, M, -1.5, seed=6).expand(n, 3 * M)
    pmf = dmol_log_probs_range(params[:1], 0, K, K)[0].double().exp()  # (K,)
    counts = torch.bincount(dmol_sample(params, K, torch.Generator().manual_seed(7)), minlength=K)
    expected = n * pmf
    keep = expected > 5
    chi2 = (((counts.double() - expected) ** 2) / expected)[keep].sum().item()
    assert chi2 < 45.0, chi2  # ~ chi-square with <= 15 dof: 99.99 % quantile is about 44
    assert counts[~keep].sum() <= 5 * (~keep).sum() + 10
    # Temperature -> 0 keeps a component's bin; the generator makes it reproducible.
    cold = dmol_sample(params[:50], K, torch.Generator().manual_seed(8), temperature=1e-4)
    assert torch.equal(cold, dmol_sample(params[:50], K, torch.Generator().manual_seed(8), 1e-4))
    with pytest.raises(ValueError, match="temperature"):
        dmol_sample(params, K, None, 0.0)


def test_dmol_init_bias_is_near_uniform() -> None:
    M = 30
    bias = dmol_init_bias(M)
    assert bias.shape == (90,)
    assert torch.equal(bias[:M], torch.zeros(M))
    torch.testing.assert_close(bias[M : 2 * M], torch.linspace(-1, 1, M))
    torch.testing.assert_close(bias[2 * M :], torch.full((M,), -math.log(M)))
    log_hi = dmol_byte_log_probs(bias[None])[0]  # (256,)
    bits = -(log_hi.exp() * log_hi).sum().item() / math.log(2)
    assert bits > 7.9  # the high byte is almost uniform (8 bits)


# --- DMoLARDM -------------------------------------------------------------------------------


def _dmol_model(K: int = 65536, L: int = 24, M: int = 5) -> DMoLARDM:
    torch.manual_seed(0)
    cfg = WaveNetConfig(channels=8, blocks=2, dilation_cycle=2, value_emb_dim=4)
    return DMoLARDM(WaveNet(cfg, K=K, length=L, out_classes=3 * M), mixtures=M)


def test_dmol_model_checks_its_net() -> None:
    cfg = WaveNetConfig(channels=8, blocks=1)
    with pytest.raises(ValueError, match="out_classes = 3 \\* 5 = 15"):
        DMoLARDM(WaveNet(cfg, K=256, length=8), mixtures=5)
    model = _dmol_model()
    with pytest.raises(ValueError, match="masked_ll"):
        model.log_probs(
            torch.zeros(1, 24, dtype=torch.long),
            torch.zeros(1, 24, dtype=torch.bool),
            torch.zeros(1, dtype=torch.long),
        )


def test_dmol_model_loss_is_finite_differentiable_and_starts_near_16_bits() -> None:
    model = _dmol_model()
    x = torch.randint(0, 65536, (4, 24))
    out = model.loss(x, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(out.loss) and abs(out.terms.bpd.mean().item() - 16.0) < 0.5
    out.loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(bool(torch.isfinite(g).all()) for g in grads)
    assert any(bool(g.abs().sum() > 0) for g in grads)


def test_dmol_model_likelihoods_agree_with_its_tables() -> None:
    small = _dmol_model(K=256)
    perturb(small.net)
    x = torch.randint(0, 256, (3, 24))
    known = torch.rand(3, 24) < 0.5
    t = known.sum(1)
    table = small.log_probs(x, known, t)  # (3, 24, 256)
    S = table.gather(-1, x[..., None])[..., 0].masked_fill(known, 0).sum(1)
    torch.testing.assert_close(small.masked_ll(x, known, t, ~known), S)
    big = _dmol_model()
    perturb(big.net)
    x = torch.randint(0, 65536, (3, 24))
    hi = big.byte_log_probs(x, known, t)  # (3, 24, 256)
    lo = big.byte_log_probs(x, known, t, hi=x // 256)
    assert hi.shape == lo.shape == (3, 24, 256)
    bytes_ll = hi.gather(-1, (x // 256)[..., None]) + lo.gather(-1, (x % 256)[..., None])
    S = bytes_ll[..., 0].masked_fill(known, 0).sum(1)
    torch.testing.assert_close(big.masked_ll(x, known, t, ~known), S, rtol=1e-5, atol=1e-3)
    with pytest.raises(ValueError, match="65536"):
        small.byte_log_probs(x % 256, known, t)


def test_dmol_model_samples_fill_every_position() -> None:
    model = _dmol_model().eval()
    perturb(model.net)
    g = torch.Generator().manual_seed(0)
    x = model.sample(3, budget=5, generator=g)
    assert x.shape == (3, 24) and x.dtype == torch.int64
    assert bool(((x >= 0) & (x < 65536)).all())
    again = model.sample(3, budget=5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, again)
    given = torch.zeros(24, dtype=torch.bool)
    given[:6] = True
    filled = model.complete(x, given.expand(3, 24), budget=3, generator=g)
    assert torch.equal(filled[:, :6], x[:, :6])
