"""Error types and the exit codes they map to.

The contract (README, "Commands"): 0 all good; 1 findings; 2 bad input or config; 3 a needed tool or
engine is missing. Every error the engine raises on purpose is a :class:`CleanroomError`; the CLI
prints its one-line message (plus optional detail) and exits with its code, never a traceback.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_BAD_INPUT = 2
EXIT_TOOL_MISSING = 3


class CleanroomError(Exception):
    """Base class: ``message`` is one line; ``detail`` (optional) is printed below it."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class BadInput(CleanroomError):
    """Bad arguments, a malformed file, a refused operation: nothing was changed."""

    exit_code = EXIT_BAD_INPUT


class ConfigError(BadInput):
    """``cleanroom.toml`` (or a file it names) is missing, malformed or holds a bad value."""


class ToolMissing(CleanroomError):
    """A program or service the command needs is not there (names it and how to get it)."""

    exit_code = EXIT_TOOL_MISSING


class StepFailed(CleanroomError):
    """A command the engine ran failed (a build stage, protoc, a test run)."""

    exit_code = EXIT_FINDINGS
