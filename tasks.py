"""Invoke tasks: the developer's daily loop, thin front-ends over the cleanroom engine."""

from __future__ import annotations

import sys
from pathlib import Path

from invoke import Context, Exit, task

try:
    from cleanroom.cli import main as cleanroom
except ImportError:  # not installed: use the engine from this checkout
    sys.path.insert(0, str(Path(__file__).parent / "tools" / "cleanroom" / "src"))
    try:
        from cleanroom.cli import main as cleanroom
    except ImportError as exc:
        raise SystemExit(
            f"invoke: the cleanroom engine cannot be imported ({exc}); "
            "run: python3 -m pip install -e tools/cleanroom"
        ) from None


def _run(*argv: str) -> None:
    rc = cleanroom(list(argv))
    if rc:
        raise Exit(code=rc)


@task(
    help={
        "variant": "binary or source",
        "without": "optional dependency group to leave out (repeatable)",
        "force": "overwrite a hand-edited pyproject.toml",
    },
    iterable=["without"],
)
def select(c: Context, variant: str, without: list[str] | None = None, force: bool = False) -> None:
    """Write pyproject.toml from pyproject.<variant>.toml (generated; never edit it)."""
    _run("select", variant, *[f"--without={g}" for g in without or []], *(["--force"] if force else []))


@task(help={"json": "JSON report", "format": "text, json or github"})
def verify(c: Context, json: bool = False, format: str = "text") -> None:
    """Check every rule of the build-artifact doctrine (exit 1 on findings)."""
    _run("verify", f"--format={'json' if json else format}")
