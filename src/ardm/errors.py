"""User-facing errors: the CLI prints their message on one line and exits non-zero."""

from __future__ import annotations


class ArdmError(Exception):
    """An error caused by the user's input (file, setting, checkpoint), not by a bug."""


class DataError(ArdmError):
    """A dataset or input file is missing, malformed or of the wrong shape/alphabet."""


class ConfigError(ArdmError):
    """An unknown preset, an unknown or mistyped setting."""


class CheckpointError(ArdmError):
    """A checkpoint is missing, corrupt, or does not match the model asked for."""


class FormatError(ArdmError):
    """A compressed file is corrupt, truncated, of an unknown version or for another model."""


def first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__
