"""TOML helpers shared by the variants and the config: a file parsed with tomlkit (comments and
order kept; its errors with line and column), and a dotted key looked up in parsed data."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from cleanroom.core.errors import BadInput

if TYPE_CHECKING:
    from tomlkit.toml_document import TOMLDocument


def get_path(doc: Any, dotted: str) -> Any:
    """``doc['a']['b']`` for ``'a.b'``, or None when a part is missing."""
    node = doc
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def parse_toml_file(path: Path) -> TOMLDocument:
    """``path`` parsed with tomlkit; a missing, unreadable or malformed file is a one-line
    BadInput (with line and column). tomlkit is imported here: verify's path reads TOML with
    tomllib and needs it only to word an error."""
    import tomlkit
    from tomlkit.exceptions import ParseError

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: cannot read: {exc}") from None
    try:
        return tomlkit.parse(text)
    except ParseError as exc:
        raise BadInput(f"{path}:{exc.line}:{exc.col}: not valid TOML: {exc}") from None
