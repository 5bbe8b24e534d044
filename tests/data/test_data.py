"""The data layer on the real files of ../shared/data (a missing data dir fails, never skips)."""

from __future__ import annotations

import gzip
import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ardm.data import (
    DATASETS,
    SHAKESPEARE_ALPHABET,
    TEXT8_ALPHABET,
    BatchSampler,
    DataSpec,
    TextAlphabet,
    augment_images,
    clear_cache,
    dataset_spec,
    default_data_dir,
    load_split,
    text8_normalise,
    text_chunks,
    verify_checksums,
)
from ardm.data.batches import seeded_generator
from ardm.errors import ArdmError, DataError


@pytest.fixture(scope="module")
def data_dir() -> Path:
    root = default_data_dir()
    assert (root / "SHA256SUMS").is_file(), f"shared data not found at {root} (ARDM_DATA_DIR?)"
    return root


def _one_line_data_error(excinfo: pytest.ExceptionInfo[DataError], *needles: str) -> str:
    msg = str(excinfo.value)
    assert isinstance(excinfo.value, ArdmError)
    assert "\n" not in msg and msg
    for needle in needles:
        assert needle in msg, (needle, msg)
    return msg


# --- registry -------------------------------------------------------------------------------


def test_default_data_dir_env_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ARDM_DATA_DIR", str(tmp_path))
    assert default_data_dir() == tmp_path
    monkeypatch.delenv("ARDM_DATA_DIR")
    assert default_data_dir().resolve() == (Path(__file__).parents[2] / "../shared/data").resolve()


def test_specs_are_cheap_and_honest(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ARDM_DATA_DIR", str(tmp_path / "nowhere"))  # specs read no data
    assert set(DATASETS) == {
        "mnist",
        "fashion-mnist",
        "cifar10-subset",
        "cifar10",
        "kodak32",
        "kodak-photos",
        "english",
        "shakespeare",
        "text8",
        "english-bytes",
        "fsdd",
    }
    mnist = dataset_spec("mnist")
    assert (mnist.kind, mnist.shape, mnist.K, mnist.D, mnist.alphabet) == (
        "image",
        (1, 28, 28),
        256,
        784,
        None,
    )
    assert dataset_spec("cifar10-subset").D == 3072
    english = dataset_spec("english", seq_len=250)
    assert english == DataSpec(
        "english",
        "text",
        (250,),
        27,
        TEXT8_ALPHABET,
        "text8-style English",
        ("train", "valid", "test"),
    )
    assert english.D == 250
    assert dataset_spec("shakespeare").K == 65 and dataset_spec("text8").K == 27
    raw = dataset_spec("english-bytes", seq_len=128)
    assert (raw.kind, raw.shape, raw.K, raw.alphabet) == ("text", (128,), 256, None)
    # Stand-ins never borrow the name of the dataset they stand in for.
    assert dataset_spec("cifar10-subset").title.startswith("CIFAR-10 subset")
    assert dataset_spec("english").title != "text8"
    for spec in DATASETS.values():
        assert spec.splits == (
            ("train", "test") if spec.kind in ("image", "audio") else ("train", "valid", "test")
        )


def test_unknown_names_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(DataError) as e:
        dataset_spec("cifar100")
    _one_line_data_error(e, "'cifar100'", "mnist", "fashion-mnist", "english", "text8")
    with pytest.raises(DataError) as e:
        load_split("mnist", "valid")
    _one_line_data_error(e, "'valid'", "train, test")
    with pytest.raises(DataError) as e:
        load_split("mnist", "train", data_dir=tmp_path / "nowhere")
    _one_line_data_error(e, "does not exist", str(tmp_path / "nowhere"))
    with pytest.raises(DataError) as e:
        load_split("fashion-mnist", "test", data_dir=tmp_path)
    _one_line_data_error(e, "missing file", "t10k-images-idx3-ubyte.gz")
    with pytest.raises(DataError) as e:
        load_split("cifar10", "train", data_dir=tmp_path)
    _one_line_data_error(e, "cifar-10-batches-py", "cifar10-subset")
    with pytest.raises(DataError) as e:
        load_split("text8", "train", data_dir=tmp_path)
    _one_line_data_error(e, "text8", "english")
    with pytest.raises(DataError) as e:
        dataset_spec("english", seq_len=0)
    _one_line_data_error(e, "seq_len")


def test_corrupt_files_are_data_errors(tmp_path: Path) -> None:
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError) as e:
        load_split("mnist", "train", data_dir=tmp_path)
    _one_line_data_error(e, "train-images-idx3-ubyte.gz")
    # A valid gzip with a truncated IDX payload.
    header = bytes.fromhex("00000803") + (2).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    (tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz").write_bytes(
        gzip.compress(header + bytes(100))
    )
    with pytest.raises(DataError) as e:
        load_split("mnist", "test", data_dir=tmp_path)
    _one_line_data_error(e, "corrupt IDX", "2x28x28")


def test_verify_checksums(data_dir: Path, tmp_path: Path) -> None:
    assert verify_checksums(data_dir) == []
    (tmp_path / "a.txt").write_text("hello")
    (tmp_path / "SHA256SUMS").write_text(f"{'0' * 64}  a.txt\n{'1' * 64}  b.txt\n")
    assert verify_checksums(tmp_path) == ["checksum mismatch: a.txt", "missing: b.txt"]


def test_splits_are_cached(data_dir: Path) -> None:
    assert load_split("cifar10-subset", "test") is load_split(
        "cifar10-subset", "test", data_dir=data_dir
    )


# --- images ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "split", "n", "mean"),
    [
        # Published per-pixel means (in [0, 1]) of the training sets.
        ("mnist", "train", 60000, 0.1307),
        ("mnist", "test", 10000, None),
        ("fashion-mnist", "train", 60000, 0.2860),
        ("fashion-mnist", "test", 10000, None),
    ],
)
def test_mnist_like(data_dir: Path, name: str, split: str, n: int, mean: float | None) -> None:
    x = load_split(name, split, data_dir=data_dir)
    assert x.shape == (n, 1, 28, 28) and x.dtype == torch.uint8
    assert x.min() == 0 and x.max() == 255
    if mean is not None:
        assert abs(x.double().mean().item() / 255 - mean) < 5e-4


def test_cifar10_subset_is_nchw(data_dir: Path) -> None:
    for split, n in (("train", 4000), ("test", 500)):
        x = load_split("cifar10-subset", split, data_dir=data_dir)
        assert x.shape == (n, 3, 32, 32) and x.dtype == torch.uint8
        with np.load(data_dir / "cifar10-subset" / f"{split}.npz") as f:
            nhwc = f["x"]
        assert torch.equal(x[7].permute(1, 2, 0), torch.from_numpy(nhwc[7]))
        # Channel means close to the published full-CIFAR-10 ones (R, G, B = .491, .482, .447).
        means = x.double().mean(dim=(0, 2, 3)) / 255
        assert torch.allclose(
            means, torch.tensor([0.4914, 0.4822, 0.4465], dtype=torch.float64), atol=0.02
        )


def test_full_cifar10_python_batches(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    rows = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        rows[name] = rng.integers(0, 256, (3, 3072), dtype=np.uint8)
        blob = pickle.dumps({b"data": rows[name], b"labels": [0, 1, 2]}, protocol=2)
        # The real batches (Python 2) name numpy's module as `numpy.core.multiarray`.
        (folder / name).write_bytes(blob.replace(b"numpy._core.", b"numpy.core."))
    train = load_split("cifar10", "train", data_dir=tmp_path)
    test = load_split("cifar10", "test", data_dir=tmp_path)
    assert train.shape == (15, 3, 32, 32) and test.shape == (3, 3, 32, 32)
    # Row layout: 1024 red, then 1024 green, then 1024 blue bytes, each plane row-major.
    r = rows["data_batch_2"][1]
    assert train[4, 1, 2, 5] == r[1024 + 2 * 32 + 5]
    # The unpickler refuses anything but numpy arrays (a pickle can run code).
    with (folder / "test_batch").open("wb") as f:
        pickle.dump({b"data": Path("x")}, f)
    clear_cache()
    with pytest.raises(DataError) as e:
        load_split("cifar10", "test", data_dir=tmp_path)
    _one_line_data_error(e, "test_batch")


def test_kodak32_tiles(data_dir: Path) -> None:
    train = load_split("kodak32", "train", data_dir=data_dir)
    test = load_split("kodak32", "test", data_dir=data_dir)
    # 768x512 photos give 24 x 16 = 384 non-overlapping tiles each; 10 train, 2 test photos.
    assert train.shape == (3840, 3, 32, 32) and test.shape == (768, 3, 32, 32)
    assert train.dtype == torch.uint8
    first = np.array(Image.open(data_dir / "kodak" / "kodim01.png"))  # (512, 768, 3)
    assert torch.equal(train[0], torch.from_numpy(first[:32, :32]).permute(2, 0, 1))
    assert torch.equal(train[1], torch.from_numpy(first[:32, 32:64]).permute(2, 0, 1))
    assert torch.equal(train[24], torch.from_numpy(first[32:64, :32]).permute(2, 0, 1))
    last = np.array(Image.open(data_dir / "kodak" / "kodim23.png"))
    assert torch.equal(test[-1], torch.from_numpy(last[-32:, -32:]).permute(2, 0, 1))


# --- text -----------------------------------------------------------------------------------


def test_text8_normalise_examples() -> None:
    assert text8_normalise("Hello, World 42!") == "hello world four two "
    assert text8_normalise("0123456789") == " zero one two three four five six seven eight nine "
    assert text8_normalise("  a\n\n\tB  ") == " a b "
    assert text8_normalise("Café Œuvre") == "caf uvre"  # non-ASCII letters are not a-z
    assert text8_normalise("x1y") == "x one y"
    assert text8_normalise("") == ""


_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def _reference_text8(s: str) -> str:
    """A slow character-by-character version of the recipe, independent of the fast one."""
    out = []
    for ch in s:
        if "a" <= ch <= "z":
            out.append(ch)
        elif "A" <= ch <= "Z":
            out.append(ch.lower())
        elif "0" <= ch <= "9":
            out.append(f" {_WORDS[int(ch)]} ")
        else:
            out.append(" ")
    return re.sub(" +", " ", "".join(out))


def test_english_is_text8_style(data_dir: Path) -> None:
    spec = dataset_spec("english")
    assert spec.alphabet == TEXT8_ALPHABET == " abcdefghijklmnopqrstuvwxyz" and spec.K == 27
    alphabet = TextAlphabet(TEXT8_ALPHABET)
    valid = load_split("english", "valid", data_dir=data_dir)
    raw = (data_dir / "english" / "valid.txt").read_text(encoding="utf-8")
    assert alphabet.decode(valid) == _reference_text8(raw)
    sizes = {}
    for split in spec.splits:
        x = load_split("english", split, data_dir=data_dir)
        assert x.dtype == torch.uint8 and x.dim() == 1 and int(x.max()) < 27
        assert not ((x[1:] == 0) & (x[:-1] == 0)).any()  # no double spaces
        sizes[split] = x.numel()
    assert 14_000_000 < sizes["train"] < 15_444_978
    assert 800_000 < sizes["valid"] < 889_968 and 800_000 < sizes["test"] < 905_237
    # A normal letter distribution: space, then 'e', are the most frequent symbols.
    counts = torch.bincount(load_split("english", "train").long(), minlength=27)
    assert counts.argsort(descending=True)[:2].tolist() == [0, 5]


def test_shakespeare(data_dir: Path) -> None:
    raw = (data_dir / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
    spec = dataset_spec("shakespeare")
    assert spec.K == 65 and spec.alphabet == SHAKESPEARE_ALPHABET == "".join(sorted(set(raw)))
    train = load_split("shakespeare", "train", data_dir=data_dir)
    valid = load_split("shakespeare", "valid", data_dir=data_dir)
    test = load_split("shakespeare", "test", data_dir=data_dir)
    assert (train.numel(), valid.numel()) == (1_003_854, 111_540)  # 90 % / 10 % of 1,115,394
    assert torch.equal(valid, test)  # no separate test set: test = valid (documented)
    alphabet = TextAlphabet(SHAKESPEARE_ALPHABET)
    assert alphabet.decode(train[:20]) == "First Citizen:\nBefor"
    assert alphabet.decode(train) + alphabet.decode(valid) == raw


def test_text_alphabet_round_trip_and_errors() -> None:
    alphabet = TextAlphabet(TEXT8_ALPHABET)
    ids = alphabet.encode("hello world")
    assert ids.dtype == torch.uint8 and ids.tolist() == [8, 5, 12, 12, 15, 0, 23, 15, 18, 12, 4]
    assert alphabet.decode(ids) == "hello world" and alphabet.decode([1, 26]) == "az"
    with pytest.raises(DataError) as e:
        alphabet.encode("Hello\nWorld!!")
    msg = _one_line_data_error(e, "5 characters outside the alphabet of 27 symbols", "4 distinct")
    assert "'!' x2" in msg and "'\\n' x1" in msg and "'H' x1" in msg
    with pytest.raises(DataError) as e:
        alphabet.encode("ABCDEFG")
    _one_line_data_error(e, "and 2 more")
    with pytest.raises(DataError):
        alphabet.decode([27])
    greek = TextAlphabet("αβγ\n😀")
    assert greek.decode(greek.encode("γ😀\nα")) == "γ😀\nα" and greek.encode("😀").tolist() == [4]
    with pytest.raises(DataError) as e:
        TextAlphabet("abca")
    _one_line_data_error(e, "repeated", "'a'")
    with pytest.raises(DataError):
        TextAlphabet("")


def test_text_chunks() -> None:
    stream = torch.arange(10, dtype=torch.uint8)
    chunks = text_chunks(stream, 3)
    assert chunks.tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    with pytest.raises(DataError):
        text_chunks(stream, 11)


def _write_fake_text8(path: Path, n: int, *, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    s = "".join(rng.choice(list(TEXT8_ALPHABET), n))
    path.write_text(s, encoding="ascii")
    return s


def test_real_text8_format(tmp_path: Path) -> None:
    (tmp_path / "text8").mkdir()
    s = _write_fake_text8(tmp_path / "text8" / "text8", 2000)
    alphabet = TextAlphabet(TEXT8_ALPHABET)
    parts = [
        load_split("text8", split, data_dir=tmp_path, seq_len=50)
        for split in ("train", "valid", "test")
    ]
    assert [p.numel() for p in parts] == [1800, 100, 100]  # 90 % / 5 % / 5 % (90M/5M/5M)
    assert "".join(alphabet.decode(p) for p in parts) == s
    # The bare file layout `<data_dir>/text8`, with a trailing newline, also works.
    other = tmp_path / "flat"
    other.mkdir()
    s2 = _write_fake_text8(other / "text8", 1000, seed=1)
    (other / "text8").write_text(s2 + "\n", encoding="ascii")
    assert alphabet.decode(load_split("text8", "test", data_dir=other, seq_len=10)) == s2[950:]
    # Anything but a-z and space is a corrupt file.
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "text8").write_text("abc " * 25 + "Hello" + "abc " * 100, encoding="ascii")
    with pytest.raises(DataError) as e:
        load_split("text8", "train", data_dir=bad, seq_len=10)
    _one_line_data_error(e, "not a text8 file", "'H'", "offset 100")


# --- batches --------------------------------------------------------------------------------


def _image_spec(shape: tuple[int, int, int]) -> DataSpec:
    return DataSpec("toy", "image", shape, 256, None, "toy images", ("train", "test"))


def _toy_images(n: int, shape: tuple[int, int, int] = (1, 2, 2)) -> torch.Tensor:
    """Image i is filled with the value i, so a batch tells which examples it holds."""
    return torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, *shape).clone()


def test_sampler_epochs_are_permutations_and_deterministic() -> None:
    data, spec = _toy_images(10), _image_spec((1, 2, 2))
    sampler = BatchSampler(data, spec, 3, seed=5)
    seen = torch.cat([next(sampler)[:, 0, 0, 0] for _ in range(20)])  # 60 examples = 6 epochs
    assert next(BatchSampler(data, spec, 3, seed=5)).dtype == torch.int64
    epochs = seen.view(6, 10)
    for epoch in epochs:
        assert sorted(epoch.tolist()) == list(range(10))
    assert len({tuple(e.tolist()) for e in epochs}) == 6  # reshuffled every epoch
    again = BatchSampler(data, spec, 3, seed=5)
    assert torch.equal(torch.cat([next(again)[:, 0, 0, 0] for _ in range(20)]), seen)
    other = BatchSampler(data, spec, 3, seed=6)
    assert not torch.equal(torch.cat([next(other)[:, 0, 0, 0] for _ in range(20)]), seen)


@pytest.mark.parametrize("kind", ["image", "image-augment", "text"])
def test_sampler_resumes_exactly(data_dir: Path, kind: str) -> None:
    if kind == "text":
        spec = dataset_spec("shakespeare", seq_len=64)
        data = load_split("shakespeare", "valid", data_dir=data_dir, seq_len=64)
    else:
        spec = dataset_spec("cifar10-subset")
        data = load_split("cifar10-subset", "test", data_dir=data_dir)
    augment = kind == "image-augment"
    first = BatchSampler(data, spec, 48, seed=3, augment=augment)
    for _ in range(12):  # crosses the 500-image epoch boundary (48 * 12 = 576)
        next(first)
    state = first.state_dict()
    assert json.loads(json.dumps(state)) == state  # small, plain values, no data
    expected = [next(first) for _ in range(15)]
    resumed = BatchSampler(data, spec, 48, seed=999, augment=augment)  # the state's seed wins
    resumed.load_state_dict(state)
    for want in expected:
        got = next(resumed)
        assert got.shape == (48, *spec.shape) and got.dtype == torch.int64
        assert torch.equal(got, want)
    with pytest.raises(DataError) as e:
        BatchSampler(data, spec, 32, seed=3, augment=augment).load_state_dict(state)
    _one_line_data_error(e, "batch_size")


def _dihedral(img: torch.Tensor) -> list[torch.Tensor]:
    return [torch.rot90(f, k, dims=(-2, -1)) for f in (img, img.flip(-1)) for k in range(4)]


def test_augmentation_is_a_random_dihedral_transform(data_dir: Path) -> None:
    spec = dataset_spec("cifar10-subset")
    data = load_split("cifar10-subset", "test", data_dir=data_dir)
    plain = next(BatchSampler(data, spec, 64, seed=1))
    augmented = next(BatchSampler(data, spec, 64, seed=1, augment=True))  # same images
    assert torch.equal(augmented.flatten(1).sort(dim=1).values, plain.flatten(1).sort(dim=1).values)
    which = []
    for a, p in zip(augmented, plain, strict=True):
        matches = [i for i, t in enumerate(_dihedral(p)) if torch.equal(t, a)]
        assert matches, "augmented image is not a flip/rotation of the original"
        which.append(matches[0])
    assert len(set(which)) >= 6  # all 8 transforms are drawn; 64 images show most of them
    # Non-square images are only flipped.
    x = torch.arange(2 * 3 * 4 * 5).view(2, 3, 4, 5).repeat(16, 1, 1, 1)  # (32, 3, 4, 5)
    y = augment_images(x, generator=seeded_generator(0, 0, 0))
    flipped = torch.tensor([torch.equal(b, a.flip(-1)) for a, b in zip(x, y, strict=True)])
    kept = torch.tensor([torch.equal(b, a) for a, b in zip(x, y, strict=True)])
    assert (flipped | kept).all() and flipped.any() and kept.any()


def test_text_crops_are_contiguous(data_dir: Path) -> None:
    stream = torch.arange(200, dtype=torch.uint8)
    spec = DataSpec("toy", "text", (16,), 256, None, "toy text", ("train",))
    sampler = BatchSampler(stream, spec, 32, seed=0)
    starts = []
    for _ in range(10):
        x = next(sampler)  # (32, 16)
        assert torch.equal(x - x[:, :1], torch.arange(16).expand(32, 16))
        starts += x[:, 0].tolist()
    assert min(starts) >= 0 and max(starts) <= 200 - 16 and len(set(starts)) > 100
    # Real data: each crop is a substring of the decoded stream.
    alphabet = TextAlphabet(TEXT8_ALPHABET)
    valid = load_split("english", "valid", data_dir=data_dir)
    text = alphabet.decode(valid)
    for row in next(BatchSampler(valid, dataset_spec("english", seq_len=64), 8, seed=0)):
        assert alphabet.decode(row) in text
    with pytest.raises(DataError):
        BatchSampler(stream, spec, 4, seed=0, augment=True)
    with pytest.raises(DataError):
        BatchSampler(stream[:10], spec, 4, seed=0)


def test_audio_clips_are_sampled_like_images(data_dir: Path) -> None:
    spec = dataset_spec("fsdd", seq_len=500)
    assert spec.kind == "audio" and spec.shape == (500,) and spec.K == 65536
    assert dataset_spec("fsdd").shape == (4000,)  # default clip length: 0.5 s at 8 kHz
    clips = load_split("fsdd", "test", data_dir=data_dir, seq_len=500)  # (250, 500) int32
    assert clips is load_split("fsdd", "test", seq_len=500)  # cached per clip length
    assert load_split("fsdd", "test", seq_len=400).shape == (250, 400)
    sampler = BatchSampler(clips, spec, 100, seed=1)
    rows = []
    for _ in range(5):  # 500 = two epochs of 250 clips
        x = next(sampler)
        assert x.shape == (100, 500) and x.dtype == torch.int64
        rows.append(x)
    seen = torch.cat(rows)  # (500, 500)
    # Every clip once per epoch (clips are distinct, so compare whole rows).
    key = {tuple(c.tolist()): i for i, c in enumerate(clips)}
    ids = torch.tensor([key[tuple(r.tolist())] for r in seen])
    assert sorted(ids[:250].tolist()) == list(range(250))
    assert sorted(ids[250:].tolist()) == list(range(250))
    state = sampler.state_dict()
    resumed = BatchSampler(clips, spec, 100, seed=7)
    resumed.load_state_dict(state)
    assert torch.equal(next(resumed), next(sampler))
    with pytest.raises(DataError) as e:
        BatchSampler(clips, spec, 4, seed=0, augment=True)
    _one_line_data_error(e, "images only")
    with pytest.raises(DataError) as e:
        BatchSampler(clips[:, :100], spec, 4, seed=0)
    _one_line_data_error(e, "clips", "(500,)")
    with pytest.raises(DataError) as e:
        load_split("fsdd", "valid")
    _one_line_data_error(e, "'valid'", "train, test")
    with pytest.raises(DataError) as e:
        load_split("fsdd", "test", data_dir=data_dir.parent / "nowhere-empty-dir-xyz")
    _one_line_data_error(e, "does not exist")


def test_english_bytes_are_the_raw_file(tmp_path: Path) -> None:
    from ardm.data.text import read_bytes

    raw = 'Caf\u00e9 \u2014 "quoted"\n\n1790.'.encode()
    (tmp_path / "f.txt").write_bytes(raw)
    ids = read_bytes(tmp_path / "f.txt")
    assert ids.dtype == torch.uint8 and bytes(ids.tolist()) == raw
