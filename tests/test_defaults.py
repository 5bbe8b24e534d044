"""The shipped model a file gets when the user names none (:mod:`ardm.defaults`)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from ardm.defaults import (
    AUDIO_MODEL,
    COLOUR_MODEL,
    GRAY_MODEL,
    PHOTO_MODEL,
    TEXT_MODEL,
    model_for_input,
    model_for_inputs,
)
from ardm.errors import DataError


def png(mode: str, size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, format="PNG")
    return buf.getvalue()


def test_each_kind_gets_its_model() -> None:
    assert model_for_input(png("L", (28, 28)), name="a.png") == GRAY_MODEL
    assert model_for_input(png("RGB", (32, 32)), name="b.png") == COLOUR_MODEL
    assert model_for_input(png("RGB", (1, 1)), name="b.png") == COLOUR_MODEL
    assert model_for_input(png("RGB", (33, 20)), name="b.png") == PHOTO_MODEL
    assert model_for_input(png("RGB", (768, 512)), name="b.png") == PHOTO_MODEL
    assert model_for_input(png("L", (20, 28)), name="a.png") == GRAY_MODEL
    wav = b"RIFF" + (36).to_bytes(4, "little") + b"WAVEfmt " + bytes(24)
    assert model_for_input(wav, name="c.wav") == AUDIO_MODEL
    assert model_for_input("naïve café\n".encode(), name="d.txt") == TEXT_MODEL
    assert model_for_input(b"\xef\xbb\xbfwith a BOM", name="e.txt") == TEXT_MODEL


def test_binary_empty_and_mixed_inputs_get_one_line_errors() -> None:
    binary = np.random.default_rng(0).integers(0, 256, 1000, dtype=np.uint8).tobytes()
    with pytest.raises(DataError, match="no default model") as e:
        model_for_input(binary, name="x.bin")
    assert "\n" not in str(e.value) and TEXT_MODEL in str(e.value)
    with pytest.raises(DataError, match="empty"):
        model_for_input(b"", name="y.txt")
    with pytest.raises(DataError, match="truncated or corrupt"):
        model_for_input(png("L", (8, 8))[:30], name="z.png")
    with pytest.raises(DataError, match="different models"):
        model_for_inputs([b"text", png("L", (4, 4))], ["a.txt", "b.png"])


@pytest.mark.parametrize("mode", ["L", "1"])
def test_a_grayscale_image_larger_than_a_digit_has_no_default(mode: str) -> None:
    """The shipped grayscale model knows 28 x 28 digits: on a grayscale photo its file is
    larger than the PNG (2.6x on a Kodak crop), so no model is picked, in one line that says
    how to code it anyway."""
    with pytest.raises(DataError, match="29x28 grayscale image has no default model") as e:
        model_for_input(png(mode, (29, 28)), name="photo.png")
    assert "\n" not in str(e.value) and f"--model {GRAY_MODEL}" in str(e.value)
