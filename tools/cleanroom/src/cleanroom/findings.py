"""Findings and their reports: text grouped by rule, concise (one line each), JSON, and GitHub
annotations. Notes (what could not be checked, and why) go with every format."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

RULES: tuple[str, ...] = (
    "tracked-artifact",
    "untracked-artifact",
    "gitignore-gap",
    "dockerignore-gap",
    "copy-excluded",
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
    # What else the one defect covers: the files of a group, the builds a gap affects.
    related: tuple[str, ...] = ()

    def sort_key(self) -> tuple[int, str, int, str]:
        return (RULES.index(self.rule) if self.rule in RULES else 99, self.path, self.line or 0,
                self.message)

    @property
    def location(self) -> str:
        return f"{self.path}:{self.line}" if self.line else self.path


@dataclass(frozen=True)
class Result:
    """What a verify run reports."""

    findings: Sequence[Finding]
    checked: Sequence[str]
    notes: Sequence[str] = ()
    skipped: Mapping[str, str] | None = None


def _summary(r: Result, by_rule: Mapping[str, int]) -> str:
    if r.findings:
        rules = ", ".join(f"{k} {v}" for k, v in by_rule.items())
        return f"verify: {len(r.findings)} finding(s) ({rules}); {len(r.checked)} rules checked"
    return f"verify: clean, no findings ({len(r.checked)} rules checked: {', '.join(r.checked)})"


def _counts(findings: Sequence[Finding]) -> dict[str, int]:
    out: dict[str, int] = {}
    for f in sorted(findings, key=Finding.sort_key):
        out[f.rule] = out.get(f.rule, 0) + 1
    return out


def render_text(r: Result) -> str:
    lines: list[str] = []
    by_rule: dict[str, list[Finding]] = {}
    for f in sorted(r.findings, key=Finding.sort_key):
        by_rule.setdefault(f.rule, []).append(f)
    for rule, items in by_rule.items():
        lines.append(f"{rule} ({len(items)})")
        for f in items:
            lines.append(f"  {f.location}: {f.message}")
            lines.append(f"    fix: {f.fix}")
        lines.append("")
    for n in r.notes:
        lines.append(f"note: {n}")
    if r.notes:
        lines.append("")
    if r.skipped:
        lines.append("not applicable: " + "; ".join(f"{k} ({v})" for k, v in r.skipped.items()))
    lines.append(_summary(r, _counts(r.findings)))
    return "\n".join(lines)


def render_concise(r: Result) -> str:
    """One line per finding, ``path:line: rule: message`` (like ruff's concise output)."""
    lines = [f"{f.location}: {f.rule}: {f.message}" for f in sorted(r.findings, key=Finding.sort_key)]
    lines += [f"note: {n}" for n in r.notes]
    lines.append(f"verify: {len(r.findings)} finding(s)")
    return "\n".join(lines)


def utf8(s: str) -> str:
    """``s`` as valid UTF-8: a file name byte that is not UTF-8 (read by git with
    surrogateescape) becomes ``\\xNN``."""
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        return s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def render_json(r: Result) -> str:
    escaped = False

    def clean(s: str) -> str:
        nonlocal escaped
        out = utf8(s)
        escaped = escaped or out != s
        return out

    def doc(f: Finding) -> dict[str, object]:
        d = {k: clean(v) if isinstance(v, str) else v for k, v in asdict(f).items()}
        d["related"] = [clean(x) for x in f.related]
        return d

    findings = [doc(f) for f in sorted(r.findings, key=Finding.sort_key)]
    notes = [clean(n) for n in r.notes]
    if escaped:
        notes.append("file names that are not valid UTF-8 are shown with \\xNN escapes for their bytes")
    return json.dumps(
        {
            "findings": findings,
            "checked": list(r.checked),
            "skipped": dict(r.skipped or {}),
            "notes": notes,
            "summary": {"count": len(r.findings), **_counts(r.findings)},
        },
        indent=2,
        ensure_ascii=False,
    )


def _gh_escape(s: str, prop: bool = False) -> str:
    s = s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if prop:
        s = s.replace(":", "%3A").replace(",", "%2C")
    return s


def render_github(r: Result) -> str:
    out = []
    for f in sorted(r.findings, key=Finding.sort_key):
        level = "error" if f.severity == "error" else "warning"
        props = f"file={_gh_escape(f.path, True)}"
        if f.line:
            props += f",line={f.line}"
        props += f",title={_gh_escape(f.rule, True)}"
        out.append(f"::{level} {props}::{_gh_escape(f'{f.message} Fix: {f.fix}')}")
    out += [f"::notice title=cleanroom verify::{_gh_escape(n)}" for n in r.notes]
    out.append(f"verify: {len(r.findings)} finding(s)")
    return "\n".join(out)


RENDERERS = {"text": render_text, "concise": render_concise, "json": render_json, "github": render_github}
