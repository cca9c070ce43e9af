"""cleanroom: the build-artifact doctrine as commands."""

__version__ = "0.1.0"
