"""The ``zuna-lab`` command line: main (the commands) and study (embed-many, reconstruct-many)."""
from .commands import main

__all__ = ["main"]
