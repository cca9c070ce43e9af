"""sha256 without importing hashlib where the interpreter has the builtin module: importing
hashlib loads OpenSSL (~3 ms), paid by every command that reads the config."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def sha256() -> Callable[[bytes], Any]:
    """hashlib.sha256 (the constructor), from the builtin module where there is one."""
    try:
        from _sha2 import sha256 as fn  # type: ignore[import-not-found, unused-ignore]  # 3.12+
    except ImportError:
        try:
            from _sha256 import sha256 as fn  # type: ignore[import-not-found, no-redef, unused-ignore]
        except ImportError:
            from hashlib import sha256 as fn  # type: ignore[assignment, unused-ignore]
    return fn  # type: ignore[no-any-return, unused-ignore]
