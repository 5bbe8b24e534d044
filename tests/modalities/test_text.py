"""The byte-level text modality: any bytes in, the same bytes out."""

from __future__ import annotations

import pytest

from ardm.errors import DataError


def test_byte_text_reads_any_bytes_and_writes_them_back() -> None:
    from ardm.modalities.text import ByteTextModality

    m = ByteTextModality(length=16)
    for data in (b"\xef\xbb\xbfwith a byte-order mark\r\n", bytes(range(256)), b"x"):
        x = m.read(data, name="f")
        assert x.shape == (len(data),) and m.write(x) == data
    with pytest.raises(DataError, match="empty"):
        m.read(b"", name="f")
    assert m.output_name("notes.md") == "notes.md" and m.output_name("notes") == "notes.txt"
    x, known = m.hole_mask("ab_\u00e9_", hole="_")
    assert x.shape == (16,) and known[:6].tolist() == [True, True, False, True, True, False]
    assert not known[6:].any()
