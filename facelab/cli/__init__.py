"""The ``facelab`` command."""

from facelab.cli.main import main

__all__ = ["main"]
