"""Fixtures shared by the engine tests (helpers live in helpers.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import ROOT, SEED_FILES, git


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repo holding this workspace's variants, config and ignore files, committed."""
    r = tmp_path / "repo"
    r.mkdir()
    for name in SEED_FILES:
        shutil.copy2(ROOT / name, r / name)
    git(r, "init", "-q", "-b", "main")
    git(r, "add", "-A")
    git(r, "commit", "-q", "-m", "seed")
    return r
