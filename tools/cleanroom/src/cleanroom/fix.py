"""``verify --fix``: safe fixes only. Adds missing ignore rules to a managed block.

The block is marked; each rule carries a comment saying why it is an artifact and how it comes
back. Lines outside the block are never touched; nothing is deleted or untracked.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from . import policy
from .plan import Plan, WriteFile

BEGIN = "# >>> cleanroom managed block: build artifacts (added by `cleanroom verify --fix`) >>>"
END = "# <<< cleanroom managed block <<<"


def _split(text: str) -> tuple[str, list[str], str]:
    """(before, block rule lines with comments, after) of an ignore file's text."""
    lines = text.splitlines()
    try:
        b = lines.index(BEGIN)
        e = lines.index(END, b)
    except ValueError:
        return text, [], ""
    before = "\n".join(lines[:b])
    after = "\n".join(lines[e + 1 :])
    return before, lines[b + 1 : e], after


def with_rules(text: str, rules: Sequence[tuple[str, str]]) -> str:
    """``text`` with ``rules`` ((line, why) pairs) added to its managed block, if not there."""
    before, block, after = _split(text)
    present = {ln for ln in block if ln and not ln.startswith("#")}
    for line, reason in rules:
        if line not in present:
            block += [f"# {reason}", line]
            present.add(line)
    parts = []
    if before.strip():
        parts.append(before.rstrip("\n") + "\n\n")
    parts.append("\n".join([BEGIN, *block, END]) + "\n")
    if after.strip():
        parts.append(after.lstrip("\n") if after.endswith("\n") else after.lstrip("\n") + "\n")
    return "".join(parts)


def fix_plan(gitignore_gaps: Sequence[tuple[Path, str]], docker_gaps: Sequence[tuple[Path, str]]) -> Plan:
    """Plan writes for (ignore file, missing policy pattern) pairs, grouped by file."""
    per_file: dict[Path, list[tuple[str, str]]] = {}
    for path, pat in gitignore_gaps:
        per_file.setdefault(path, []).append((policy.git_rule(pat), f"{pat}: {policy.why(pat)}"))
    for path, pat in docker_gaps:
        per_file.setdefault(path, []).append((policy.docker_rule(pat), f"{pat}: {policy.why(pat)}"))
    plan: Plan = []
    for path, rules in per_file.items():
        old = path.read_text(encoding="utf-8") if path.exists() else ""
        new = with_rules(old, rules)
        if new != old:
            plan.append(WriteFile(path, new, f"add {len(rules)} rule(s) to the managed block"))
    return plan
