"""The command line: argument parsing, host-or-container routing, doctor."""

from cleanroom.cli.app import main

__all__ = ["main"]
