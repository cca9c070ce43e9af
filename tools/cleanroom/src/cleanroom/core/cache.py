"""The engine's own cache: ``$XDG_CACHE_HOME/cleanroom`` (default ``~/.cache/cleanroom``).

What is remembered there is always keyed by what it depends on, so a stale entry is never used:
the docker clients' facts (by the client binaries and plugin folders), Compose's reading of a
project (by its files, its .env and the values of the variables it names), and git's answer for
an index (by the index file and the policy). Losing the folder only costs time.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cleanroom"


def read_json(name: str) -> Any:
    """The JSON document ``name`` in the cache, or None when absent or unreadable."""
    try:
        return json.loads((cache_dir() / name).read_text(encoding="utf-8", errors="surrogateescape"))
    except (OSError, ValueError):
        return None


def write_json(name: str, data: Any) -> None:
    """Write ``name`` atomically (a temporary file, then a rename); a failure is ignored: the
    cache only saves time."""
    path = cache_dir() / name
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(data), encoding="utf-8", errors="surrogateescape")
        os.replace(tmp, path)
    except OSError:
        pass
