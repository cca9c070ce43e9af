"""Findings and their reports: text grouped by rule, concise (one line each), JSON, GitHub
annotations (with a step summary) and SARIF 2.1.0. Notes (what could not be checked, and why) go
with every format.

This layer knows no rule: the verify layer's rule table (:data:`cleanroom.verify.rules.RULES`)
comes with each :class:`Result`, as ``rules`` (every rule name in report order, with its
description), and orders the findings and fills the SARIF rule list."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field


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
    # Every rule name in report order -> its one-line description (the verify layer's table).
    rules: Mapping[str, str] = field(default_factory=dict)

    def ordered(self) -> list[Finding]:
        """The findings in report order: by rule (the table's order), path, line, message."""
        order = {name: i for i, name in enumerate(self.rules)}
        return sorted(self.findings, key=lambda f: (order.get(f.rule, len(order)), f.path, f.line or 0,
                                                    f.message))


def _summary(r: Result, by_rule: Mapping[str, int]) -> str:
    if r.findings:
        rules = ", ".join(f"{k} {v}" for k, v in by_rule.items())
        return f"verify: {len(r.findings)} finding(s) ({rules}); {len(r.checked)} rules checked"
    return f"verify: clean, no findings ({len(r.checked)} rules checked: {', '.join(r.checked)})"


def _counts(r: Result) -> dict[str, int]:
    out: dict[str, int] = {}
    for f in r.ordered():
        out[f.rule] = out.get(f.rule, 0) + 1
    return out


def render_text(r: Result) -> str:
    lines: list[str] = []
    by_rule: dict[str, list[Finding]] = {}
    for f in r.ordered():
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
    lines.append(_summary(r, _counts(r)))
    return "\n".join(lines)


def render_concise(r: Result) -> str:
    """One line per finding, ``path:line: rule: message`` (like ruff's concise output)."""
    lines = [f"{f.location}: {f.rule}: {f.message}" for f in r.ordered()]
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

    findings = [doc(f) for f in r.ordered()]
    notes = [clean(n) for n in r.notes]
    if escaped:
        notes.append("file names that are not valid UTF-8 are shown with \\xNN escapes for their bytes")
    return json.dumps(
        {
            "findings": findings,
            "checked": list(r.checked),
            "skipped": dict(r.skipped or {}),
            "notes": notes,
            "summary": {"count": len(r.findings), **_counts(r)},
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
    for f in r.ordered():
        level = "error" if f.severity == "error" else "warning"
        props = f"file={_gh_escape(f.path, True)}"
        if f.line:
            props += f",line={f.line}"
        props += f",title={_gh_escape(f.rule, True)}"
        out.append(f"::{level} {props}::{_gh_escape(f'{f.message} Fix: {f.fix}')}")
    out += [f"::notice title=cleanroom verify::{_gh_escape(n)}" for n in r.notes]
    out.append(f"verify: {len(r.findings)} finding(s)")
    return "\n".join(out)


def github_summary(r: Result) -> str:
    """Markdown for ``$GITHUB_STEP_SUMMARY``: every finding, since GitHub shows at most 10
    annotations of a step in the run's view."""
    lines = ["## cleanroom verify", ""]
    if not r.findings:
        lines.append(f"Clean: no findings ({len(r.checked)} rules checked).")
    else:
        counts = ", ".join(f"{k} {v}" for k, v in _counts(r).items())
        lines += [f"**{len(r.findings)} finding(s)**: {counts}.", "",
                  "| rule | where | what | fix |", "| --- | --- | --- | --- |"]

        def cell(text: str) -> str:
            return utf8(text).replace("|", "\\|").replace("\n", " ")

        for f in r.ordered():
            lines.append(f"| `{f.rule}` | `{cell(f.location)}` | {cell(f.message)} | {cell(f.fix)} |")
    if r.notes:
        lines += ["", *[f"- note: {utf8(n)}" for n in r.notes]]
    return "\n".join(lines) + "\n"


SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


def _uri(path: str) -> str:
    """A repo-relative path as a SARIF URI reference (percent-encoded, forward slashes)."""
    from urllib.parse import quote

    return quote(utf8(path).replace("\\", "/") or ".", safe="/")


def _location(path: str, line: int | None = None) -> dict[str, object]:
    physical: dict[str, object] = {"artifactLocation": {"uri": _uri(path), "uriBaseId": "%SRCROOT%"}}
    if line:
        physical["region"] = {"startLine": line}
    return {"physicalLocation": physical}


def render_sarif(r: Result, error: str | None = None) -> str:
    """SARIF 2.1.0 (one run; the rule list from ``r.rules``; the fix in each result's message and
    properties), for GitHub code scanning and other SARIF viewers. With ``error`` (verify could
    not run): no results, and the run says it did not succeed, and why."""
    from cleanroom import __version__

    index = {name: i for i, name in enumerate(r.rules)}
    results = []
    for f in r.ordered():
        res: dict[str, object] = {
            "ruleId": f.rule,
            **({"ruleIndex": index[f.rule]} if f.rule in index else {}),
            "level": "error" if f.severity == "error" else "warning",
            "message": {"text": utf8(f"{f.message} Fix: {f.fix}")},
            # a finding about a folder (a group of files in it) is shown at its first file
            "locations": [_location(f.related[0] if f.path in ("", ".") and f.related else f.path, f.line)],
            "properties": {"fix": utf8(f.fix)},
        }
        if f.related:
            res["relatedLocations"] = [{"id": i, **_location(p)} for i, p in enumerate(f.related)]
        results.append(res)
    rules = [{"id": name, "name": name, "shortDescription": {"text": doc},
              "defaultConfiguration": {"level": "error"}} for name, doc in r.rules.items()]
    invocation: dict[str, object] = {"executionSuccessful": error is None}
    notes = [{"level": "note", "message": {"text": utf8(n)}} for n in r.notes]
    if error is not None:
        notes.insert(0, {"level": "error", "message": {"text": utf8(error)}})
    if notes:
        invocation["toolExecutionNotifications"] = notes
    doc = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "cleanroom", "version": __version__, "semanticVersion": __version__,
                                "rules": rules}},
            "invocations": [invocation],
            "columnKind": "unicodeCodePoints",
            "results": results,
        }],
    }
    return json.dumps(doc, indent=2, ensure_ascii=False)


RENDERERS = {"text": render_text, "concise": render_concise, "json": render_json, "github": render_github,
             "sarif": render_sarif}
