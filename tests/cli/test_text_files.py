"""Real text files through the command line with the shipped byte-level model and no
``--model``: the file says what it is, the compressed file says which model made it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ardm.cli.commands import main
from ardm.coding.container import CHAIN_VERSION, SEEDED_CHAIN_VERSION, unpack
from tests.cli.cross_machine import assert_decodes_elsewhere
from tests.coding.chain_versions import as_v6

PROSE = (
    "It was the best of times, it was the worst of times; it was the age of wisdom.\n\n"
    "\u201cCall me Ishmael,\u201d he said \u2014 and the caf\u00e9 fell silent. 1790: $4.50!\n"
)


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err and "\n" not in err and "Traceback" not in err
    return err


def test_a_text_file_round_trips_without_naming_a_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "notes.txt"
    src.write_bytes(b"\xef\xbb\xbf" + PROSE.encode())  # with a byte-order mark
    assert main(["compress", str(src), "--quiet"]) == 0
    assert "model english-bytes" in capsys.readouterr().out
    packed = tmp_path / "notes.txt.ardm"
    assert unpack(packed.read_bytes())[0].version == CHAIN_VERSION
    src.rename(tmp_path / "original.txt")
    assert main(["decompress", str(packed), "--quiet"]) == 0
    assert (tmp_path / "notes.txt").read_bytes() == (tmp_path / "original.txt").read_bytes()


def test_bad_text_inputs_get_one_line_errors_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    assert main(["compress", str(empty)]) == 2
    assert "empty" in one_line_error(capsys)
    binary = tmp_path / "data.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    assert main(["compress", str(binary)]) == 2
    assert "no default model" in one_line_error(capsys)
    big = tmp_path / "big.txt"
    big.write_bytes(b"all work and no play makes jack a dull boy\n" * 240_000)  # 10 MB
    assert main(["compress", str(big)]) == 2
    assert "split the file" in one_line_error(capsys)
    assert not list(tmp_path.glob("*.ardm"))


def test_binary_bytes_round_trip_with_the_byte_model_named(tmp_path: Path) -> None:
    binary = tmp_path / "data.bin"
    binary.write_bytes(bytes(range(256)) + b"\x00\xff" * 20)
    assert main(["compress", str(binary), "--model", "english-bytes", "--quiet"]) == 0
    binary.rename(tmp_path / "original.bin")
    assert main(["decompress", str(tmp_path / "data.bin.ardm"), "--quiet"]) == 0
    assert binary.read_bytes() == (tmp_path / "original.bin").read_bytes()


def test_the_shipped_byte_model_decodes_under_other_kernels_threads_and_batches(
    tmp_path: Path,
) -> None:
    text = ("The \u201cquick\u201d brown fox, 1790.\n\n" + PROSE * 6).encode()
    x = torch.tensor(list(text), dtype=torch.uint8)
    assert_decodes_elsewhere("english-bytes", x, tmp_path, budget=4, segment_bytes=256)


GOLDEN = Path(__file__).resolve().parents[1] / "golden"


def golden_text() -> bytes:
    """The golden files' text: 300 bytes of the English test split after its first blank line."""
    from ardm.cli.demo import demo_text

    return demo_text(300)


@pytest.mark.parametrize("name", ["english-bytes-1", "english-bytes-2"])
def test_the_golden_chain_files_decode_and_encode_byte_for_byte_on_this_machine(name: str) -> None:
    """Made on another machine (AMD EPYC, AVX2) by ``compress_chain(model, text, budget=8,
    segment_bytes=128)`` in format v6: this CPU must decode them and write the same bytes.
    ``english-bytes-1`` and ``-2`` are the earlier byte-level models, still shipped so that
    their files decode; ``ardm decompress`` finds each file's model by the fingerprint it
    carries."""
    import ardm
    from ardm.coding.chain_files import compress_chain
    from ardm.coding.codec import decompress
    from ardm.defaults import model_for_file

    path = GOLDEN / f"v6_{name}_300_budget8.ardm"
    model = ardm.load(name)
    text = golden_text()
    blob = path.read_bytes()
    assert blob[2] == 6  # written before version 7 stored the context (the model's, 64)
    assert model_for_file(blob, name=path.name) == name
    assert bytes(decompress(model, blob).tolist()) == text
    x = torch.tensor(list(text), dtype=torch.uint8)
    v7 = compress_chain(model, x, budget=8, segment_bytes=128, context=64, version=7)
    assert as_v6(v7, 64) == blob
    assert bytes(decompress(model, v7).tolist()) == text


@pytest.mark.parametrize("name", ["english-bytes-3", "english-bytes-4", "english-bytes"])
def test_the_golden_v9_chain_files_decode_and_encode_byte_for_byte_on_this_machine(
    name: str,
) -> None:
    """Made on other machines (AMD EPYCs with AVX-512; ``english-bytes-3`` in session 13,
    ``english-bytes-4`` in session 14, each the model shipped then as ``english-bytes``;
    ``english-bytes`` in session 15) by
    ``compress_chain(model, text, budget=14, segment_bytes=128)``: each block in its spread
    order (format version 9)."""
    import ardm
    from ardm.coding.chain_files import compress_chain
    from ardm.coding.codec import decompress
    from ardm.defaults import model_for_file

    model = ardm.load(name)
    text = golden_text()
    path = GOLDEN / f"v9_{name}_300_budget14.ardm"
    blob = path.read_bytes()
    assert blob[2] == CHAIN_VERSION == 9
    assert model_for_file(blob, name=path.name) == name
    assert bytes(decompress(model, blob).tolist()) == text
    x = torch.tensor(list(text), dtype=torch.uint8)
    assert compress_chain(model, x, budget=14, segment_bytes=128) == blob


@pytest.mark.parametrize("name", ["english-bytes-2", "english-bytes-3"])
def test_the_golden_v7_chain_files_decode_and_encode_byte_for_byte_on_this_machine(
    name: str,
) -> None:
    """Made on another machine (AMD EPYC, AVX2) by ``compress_chain(model, text, budget=14,
    segment_bytes=128)`` (the default context, 16 bytes before each 112-byte block)."""
    import ardm
    from ardm.coding.chain_files import compress_chain
    from ardm.coding.codec import decompress
    from ardm.defaults import model_for_file

    model = ardm.load(name)
    text = golden_text()
    path = GOLDEN / f"v7_{name}_300_budget14.ardm"
    blob = path.read_bytes()
    assert blob[2] == SEEDED_CHAIN_VERSION == 7
    assert model_for_file(blob, name=path.name) == name
    assert bytes(decompress(model, blob).tolist()) == text
    x = torch.tensor(list(text), dtype=torch.uint8)
    assert compress_chain(model, x, budget=14, segment_bytes=128, version=7) == blob
