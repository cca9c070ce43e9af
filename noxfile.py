"""Nox sessions: thin front-ends over the cleanroom engine (tools/cleanroom)."""

from __future__ import annotations

from pathlib import Path

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
    # The app imports spectralmc_proto: generate it (host: .cleanroom/proto) onto this venv's path.
    session.run("cleanroom", "proto", "--pth")
    session.run("python", "-m", "pytest", *(session.posargs or ["tests"]), env={"PYTHONPATH": "src"})


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff and mypy (strict) on the engine."""
    _engine(session, "lint")
    cfg = f"{ENGINE}/pyproject.toml"
    session.run("ruff", "check", "--config", cfg, f"{ENGINE}/src", "noxfile.py", "tasks.py")
    session.run("mypy", "--config-file", cfg, f"{ENGINE}/src/cleanroom")


@nox.session
def proto(session: nox.Session) -> None:
    """Generate the protobuf package (host: .cleanroom/proto; container: /opt); posargs go to proto."""
    _engine(session)
    session.run("cleanroom", "proto", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Run benchmarks/bench_*.py (posargs pick some: proto verify ...): ratios to baselines, PASS/MISS."""
    _engine(session, "test")  # invoke, for bench_container's `invoke test-all` row
    for script in sorted(Path("benchmarks").glob("bench_*.py")):
        if not session.posargs or script.stem.removeprefix("bench_") in session.posargs:
            session.run("python", str(script))


@nox.session
def verify(session: nox.Session) -> None:
    """Check every rule of the build-artifact doctrine on this repo (posargs go to verify)."""
    _engine(session)
    session.run("cleanroom", "verify", *session.posargs)


@nox.session(name="build-binary")
def build_binary(session: nox.Session) -> None:
    """The main job, binary variant: select, build, up, test-all, verify (posargs: --no-tests, --rebuild)."""
    _engine(session)
    session.run("cleanroom", "build", "binary", *session.posargs)


@nox.session(name="build-source")
def build_source(session: nox.Session) -> None:
    """The main job, source variant (native deps compiled from source; posargs: --no-tests, --rebuild)."""
    _engine(session)
    session.run("cleanroom", "build", "source", *session.posargs)


@nox.session(name="base-image")
def base_image(session: nox.Session) -> None:
    """Build the offline base image cleanroom-base:offline from Debian packages (posargs: --rebuild)."""
    _engine(session)
    session.run("cleanroom", "base-image", *session.posargs)
