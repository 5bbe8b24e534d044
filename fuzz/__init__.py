"""Fuzzing of the ``.ardm`` decoder: :mod:`fuzz.campaign` (``python -m fuzz.campaign``).

The guarantee under test (``docs/format.md``, "Fuzzing"): on any input bytes
:func:`ardm.coding.codec.decompress` either returns exactly the data that was compressed or
raises :class:`ardm.errors.FormatError`, in time proportional to the policy size and without
large allocations.
"""
