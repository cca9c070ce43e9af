"""Nox sessions: thin front-ends over the cleanroom engine (tools/cleanroom)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import nox

# The oldest nox this file works with (reuse_venv = "yes" came in 2024.03.02); CI installs the
# exact version tools/constraints.txt pins.
nox.needs_version = ">=2024.3.2"
nox.options.sessions = ["tests"]
nox.options.reuse_venv = "yes"

ENGINE = "tools/cleanroom"
# The one place exact tool versions are pinned (pip constraints): every install below uses it.
CONSTRAINTS = "tools/constraints.txt"


def _engine(session: nox.Session, *extras: str) -> None:
    """Install the engine (editable) into the session's venv, unless it is there already: an
    editable install follows source edits by itself, so only a change of the engine's
    pyproject.toml (dependencies, entry points), of the pins or of the extras asks for a new install (nox
    would otherwise reinstall on every run: 3.5 s of a 5 s no-change build)."""
    spec = f"{ENGINE}[{','.join(extras)}]" if extras else ENGINE
    want = hashlib.sha256(Path(ENGINE, "pyproject.toml").read_bytes() + Path(CONSTRAINTS).read_bytes()
                          + spec.encode()).hexdigest()
    venv = getattr(session.virtualenv, "location", None)
    stamp = Path(venv, ".cleanroom-engine") if venv else None
    if stamp is not None and stamp.is_file() and stamp.read_text() == want:
        return
    session.install("-c", CONSTRAINTS, "-e", spec)
    if stamp is not None:
        stamp.write_text(want)


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
    """The main job, binary variant: select, build, up, test-all, verify (posargs: --no-tests, --rebuild, --dry-run)."""
    _engine(session)
    session.run("cleanroom", "build", "binary", *session.posargs)


@nox.session(name="build-source")
def build_source(session: nox.Session) -> None:
    """The main job, source variant (native deps compiled from source; posargs: --no-tests, --rebuild, --dry-run)."""
    _engine(session)
    session.run("cleanroom", "build", "source", *session.posargs)


@nox.session(name="base-image")
def base_image(session: nox.Session) -> None:
    """Build the offline base image cleanroom-base:offline from Debian packages (posargs: --rebuild)."""
    _engine(session)
    session.run("cleanroom", "base-image", *session.posargs)
