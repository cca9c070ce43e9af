"""Nox sessions: thin front-ends over the cleanroom engine (tools/cleanroom)."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_venv = "yes"

ENGINE = "tools/cleanroom"


def _engine(session: nox.Session, *extras: str) -> None:
    spec = f"{ENGINE}[{','.join(extras)}]" if extras else ENGINE
    session.install("-e", spec)


@nox.session
def tests(session: nox.Session) -> None:
    """Run the workspace's own test suite (engine + sample app); posargs go to pytest."""
    _engine(session, "test")
    session.run("python", "-m", "pytest", *(session.posargs or ["tests"]), env={"PYTHONPATH": "src"})


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff and mypy (strict) on the engine."""
    _engine(session, "lint")
    cfg = f"{ENGINE}/pyproject.toml"
    session.run("ruff", "check", "--config", cfg, f"{ENGINE}/src", "noxfile.py", "tasks.py")
    session.run("mypy", "--config-file", cfg, f"{ENGINE}/src/cleanroom")


@nox.session
def verify(session: nox.Session) -> None:
    """Check every rule of the build-artifact doctrine on this repo (posargs go to verify)."""
    _engine(session)
    session.run("cleanroom", "verify", *session.posargs)
