"""The command line: ``ardm <command>`` (:func:`main`), and the shipped-model demo."""

from ardm.cli.commands import main

__all__ = ["main"]
