"""Lossless compression with ARDMs (paper Sec. 4): entropy coder, file format, codec.

* :mod:`ardm.coding.ans`: the rANS coder (the only module that imports ``constriction``);
* :mod:`ardm.coding.container`: the ``.ardm`` file format (see ``docs/format.md``);
* :mod:`ardm.coding.codec`: a model's step distributions driving the coder.

Typical use::

    blob = compress(model, x, budget=100)  # x: (*shape) int -> bytes
    x = decompress(model, blob)  # raises ardm.errors.FormatError, never returns wrong data
    xs = decompress_many(model, blobs)  # each: the data or its FormatError (v5, v8: batched)
"""

from ardm.coding.codec import compress, decompress, decompress_many
from ardm.coding.lockstep import CodingSetup, decode, encode, single_stage

__all__ = [
    "CodingSetup",
    "compress",
    "decode",
    "decompress",
    "decompress_many",
    "encode",
    "single_stage",
]
