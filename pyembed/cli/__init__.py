"""The `pyembed` command line: thin wrappers over pyembed's public functions."""

from pyembed.cli.main import main

__all__ = ["main"]
