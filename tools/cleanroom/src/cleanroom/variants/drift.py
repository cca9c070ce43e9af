"""Variant drift: every key under the shared sections that differs between the variants.

Read with tomllib (values, not comments: drift needs no round trip, and it is on verify's path).
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cleanroom.core.config import Config
from cleanroom.core.errors import BadInput
from cleanroom.core.toml import get_path, parse_toml_file


@dataclass(frozen=True)
class Drift:
    key: str
    binary: Any
    source: Any


MISSING = "<missing>"


def _flatten(node: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _flatten(v, f"{prefix}.{k}" if prefix else str(k))
    else:
        yield prefix, node


def _under(key: str, prefixes: Sequence[str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def load_plain(repo: Path, cfg: Config, name: str) -> dict[str, Any]:
    """A variant as plain data; a missing or malformed file is the same one-line BadInput as
    ``select`` gives (file, and line and column for a parse error)."""
    path = repo / cfg.variants.path_of(name)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInput(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        parse_toml_file(path)  # raises with tomlkit's line and column
        raise BadInput(f"{path}: not valid TOML: {exc}") from None


def find_drift(repo: Path, cfg: Config) -> list[Drift]:
    """Every key path under the shared sections whose value differs between the variants."""
    bdoc = load_plain(repo, cfg, "binary")
    sdoc = load_plain(repo, cfg, "source")
    out: list[Drift] = []
    for section in cfg.variants.shared:
        b = dict(_flatten(get_path(bdoc, section), section)) if get_path(bdoc, section) is not None else {}
        s = dict(_flatten(get_path(sdoc, section), section)) if get_path(sdoc, section) is not None else {}
        for key in sorted(set(b) | set(s)):
            if _under(key, cfg.variants.may_differ):
                continue
            bv, sv = b.get(key, MISSING), s.get(key, MISSING)
            if bv != sv:
                out.append(Drift(key, bv, sv))
    return out
