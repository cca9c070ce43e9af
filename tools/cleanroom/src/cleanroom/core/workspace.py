"""The workspace a command runs against: the repo root and its loaded config."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cleanroom.core.config import CONFIG_NAME, Config, load_config
from cleanroom.core.errors import BadInput


def in_container() -> bool:
    """True inside the app container (compose sets DOCKER_CONTAINER=1)."""
    return os.environ.get("DOCKER_CONTAINER") == "1"


def find_repo(start: Path) -> Path:
    """The nearest folder at or above ``start`` holding cleanroom.toml or .git, else ``start``."""
    start = start.resolve()
    for d in (start, *start.parents):
        if (d / CONFIG_NAME).is_file() or (d / ".git").exists():
            return d
    return start


@dataclass(frozen=True)
class Workspace:
    repo: Path
    cfg: Config

    @classmethod
    def load(cls, repo: str | Path | None = None, config: str | Path | None = None) -> Workspace:
        if repo is not None:
            root = Path(repo).expanduser()
            try:
                if not root.is_dir():
                    raise BadInput(f"--repo {repo}: {'not a folder' if root.exists() else 'no such folder'}")
                root = root.resolve()
            except OSError as exc:
                shown = str(repo) if len(str(repo)) <= 80 else str(repo)[:77] + "..."
                raise BadInput(f"--repo {shown}: {exc.strerror or exc}") from None
        else:
            try:
                here = Path.cwd()
            except OSError as exc:  # the folder it was started in was removed (or is unreadable)
                raise BadInput(f"the current folder cannot be found ({exc.strerror or exc}): "
                               "cd into the repository or pass --repo PATH") from None
            root = find_repo(here)
        cfg_path = Path(config).expanduser() if config is not None else None
        return cls(root, load_config(root, cfg_path).resolved(root))

    def path(self, rel: str) -> Path:
        p = Path(rel)
        return p if p.is_absolute() else self.repo / p
