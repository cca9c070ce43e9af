"""Findings and their reports: text grouped by rule, JSON, and GitHub annotations."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass

RULES: tuple[str, ...] = (
    "tracked-artifact",
    "untracked-artifact",
    "gitignore-gap",
    "dockerignore-gap",
    "dead-ignore-file",
    "context-leak",
    "variant-drift",
    "generated-missing",
    "generated-stale",
    "engine-context-diff",
)


def human_size(n: int) -> str:
    """Bytes for people: ``512 B``, ``2.0 KiB``, ``3.4 MiB``."""
    v = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if v < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{v:.1f} {unit}"
        v /= 1024
    return f"{n} B"


@dataclass(frozen=True)
class Finding:
    rule: str
    path: str
    message: str
    fix: str
    severity: str = "error"
    line: int | None = None

    def sort_key(self) -> tuple[int, str, int, str]:
        return (RULES.index(self.rule) if self.rule in RULES else 99, self.path, self.line or 0,
                self.message)


def render_text(findings: Sequence[Finding], checked: Sequence[str]) -> str:
    lines: list[str] = []
    by_rule: dict[str, list[Finding]] = {}
    for f in sorted(findings, key=Finding.sort_key):
        by_rule.setdefault(f.rule, []).append(f)
    for rule, items in by_rule.items():
        lines.append(f"{rule} ({len(items)})")
        for f in items:
            loc = f"{f.path}:{f.line}" if f.line else f.path
            lines.append(f"  {loc}: {f.message}")
            lines.append(f"    fix: {f.fix}")
        lines.append("")
    if findings:
        rules = ", ".join(f"{r} {len(v)}" for r, v in by_rule.items())
        lines.append(f"verify: {len(findings)} finding(s) ({rules}); {len(checked)} rules checked")
    else:
        lines.append(f"verify: clean, no findings ({len(checked)} rules checked: {', '.join(checked)})")
    return "\n".join(lines)


def render_json(findings: Sequence[Finding], checked: Sequence[str]) -> str:
    return json.dumps(
        {
            "findings": [asdict(f) for f in sorted(findings, key=Finding.sort_key)],
            "checked": list(checked),
            "summary": {"count": len(findings)},
        },
        indent=2,
        ensure_ascii=False,
    )


def _gh_escape(s: str, prop: bool = False) -> str:
    s = s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if prop:
        s = s.replace(":", "%3A").replace(",", "%2C")
    return s


def render_github(findings: Sequence[Finding], checked: Sequence[str]) -> str:
    out = []
    for f in sorted(findings, key=Finding.sort_key):
        level = "error" if f.severity == "error" else "warning"
        props = f"file={_gh_escape(f.path, True)}"
        if f.line:
            props += f",line={f.line}"
        props += f",title={_gh_escape(f.rule, True)}"
        out.append(f"::{level} {props}::{_gh_escape(f'{f.message} Fix: {f.fix}')}")
    out.append(f"verify: {len(findings)} finding(s)")
    return "\n".join(out)
