"""Shared fixtures: throwaway git repos built from this workspace's own sources, and the CLI
run as a user runs it (a subprocess)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENGINE_SRC = ROOT / "tools" / "cleanroom" / "src"
SEED_FILES = (
    "pyproject.binary.toml",
    "pyproject.source.toml",
    "poetry.toml",
    "cleanroom.toml",
    ".gitignore",
    ".dockerignore",
)


@dataclass
class Result:
    rc: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def git(repo: Path, *args: str, check: bool = True) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
    }
    p = subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=False)
    if check and p.returncode:
        raise AssertionError(f"git {' '.join(args)} failed: {p.stderr}")
    return p.stdout


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120) -> Result:
    e = {**os.environ, "PYTHONPATH": str(ENGINE_SRC), **(env or {})}
    p = subprocess.run(
        [sys.executable, "-m", "cleanroom", *args],
        cwd=cwd,
        env=e,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Result(p.returncode, p.stdout, p.stderr)


def snapshot(repo: Path) -> dict[str, bytes]:
    """Every file under repo (but .git) with its bytes: proves "nothing changed"."""
    out = {}
    for p in sorted(repo.rglob("*")):
        if ".git" in p.relative_to(repo).parts or not p.is_file():
            continue
        out[str(p.relative_to(repo))] = p.read_bytes()
    return out




def set_config(repo: Path, section: str, key: str, value: object) -> None:
    """Set ``[section] key = value`` in the repo's cleanroom.toml, keeping the rest."""
    import tomlkit

    path = repo / "cleanroom.toml"
    doc = tomlkit.parse(path.read_text()) if path.exists() else tomlkit.document()
    doc.setdefault(section, tomlkit.table())[key] = value
    path.write_text(tomlkit.dumps(doc))
