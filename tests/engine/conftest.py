"""Fixtures shared by the engine tests (helpers live in helpers.py).

The suite is hermetic: nothing a test sees may come from what this machine or an earlier run
happens to hold. So the engine's own cache (``$XDG_CACHE_HOME/cleanroom``) starts empty in a
folder of this run, and Hypothesis keeps no example database between runs (a failing example is
printed, with the blob that replays it).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from helpers import ROOT, SEED_FILES, git
from hypothesis import settings

settings.register_profile("hermetic", database=None, print_blob=True)
settings.load_profile("hermetic")


def pytest_configure(config: pytest.Config) -> None:
    # Set before any test module imports the engine; subprocesses inherit it.
    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="cleanroom-test-cache-")


def pytest_unconfigure(config: pytest.Config) -> None:
    cache = os.environ.get("XDG_CACHE_HOME", "")
    if os.path.basename(cache).startswith("cleanroom-test-cache-"):
        shutil.rmtree(cache, ignore_errors=True)


# A minimal Docker build, laid out as this workspace's (compose file in docker/, context the root).
SEED_COMPOSE = """\
services:
  app:
    build:
      context: ..
      dockerfile: ${CLEANROOM_DOCKERFILE:-docker/Dockerfile}
"""
SEED_DOCKERFILE = "FROM scratch\nCOPY . /ctx/\n"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repo holding this workspace's variants, config and ignore files and a minimal Docker
    build (the .dockerignore has a build to read it), committed."""
    r = tmp_path / "repo"
    r.mkdir()
    for name in SEED_FILES:
        shutil.copy2(ROOT / name, r / name)
    (r / "docker").mkdir()
    (r / "docker" / "docker-compose.yml").write_text(SEED_COMPOSE)
    (r / "docker" / "Dockerfile").write_text(SEED_DOCKERFILE)
    git(r, "init", "-q", "-b", "main")
    git(r, "add", "-A")
    git(r, "commit", "-q", "-m", "seed")
    return r


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Which Compose the container tests ran under (CI shows both ran)."""
    seen: dict[str, dict[str, int]] = {}
    for outcome in ("passed", "failed", "error", "skipped"):
        for rep in terminalreporter.stats.get(outcome, []):
            nodeid = getattr(rep, "nodeid", "")
            if "test_container.py" not in nodeid or getattr(rep, "when", "call") != "call":
                continue
            version = next((v for v in ("compose-v2", "compose-v1") if v in nodeid), None)
            if version:
                seen.setdefault(version, {}).setdefault(outcome, 0)
                seen[version][outcome] += 1
    for version, counts in sorted(seen.items()):
        terminalreporter.write_line(
            f"container tests under {version}: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
