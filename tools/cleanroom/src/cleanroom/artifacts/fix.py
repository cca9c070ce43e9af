"""``verify --fix``: safe fixes only. Adds missing ignore rules to a managed block.

The block is marked; each rule carries a comment saying why it is an artifact and how it comes
back. Lines outside the block are never touched; nothing is deleted or untracked.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cleanroom.artifacts import policy
from cleanroom.core.actions import Plan, WriteFile
from cleanroom.core.errors import BadInput
from cleanroom.dockerignore.matcher import DockerignoreError, Matcher, parse

if TYPE_CHECKING:
    from cleanroom.artifacts.scan import IgnoreGroup, RepoScan
    from cleanroom.docker.dockerfiles import Source

BEGIN_PREFIX = "# >>> cleanroom managed block: build artifacts"
END = "# <<< cleanroom managed block <<<"


def begin(by: str = "cleanroom verify --fix") -> str:
    return f"{BEGIN_PREFIX} (added by `{by}`) >>>"


BEGIN = begin()


def _split(text: str) -> tuple[str, list[str], str]:
    """(before, block rule lines with comments, after) of an ignore file's text."""
    lines = text.splitlines()
    try:
        b = next(i for i, ln in enumerate(lines) if ln.startswith(BEGIN_PREFIX))
        e = lines.index(END, b)
    except (StopIteration, ValueError):
        return text, [], ""
    before = "\n".join(lines[:b])
    after = "\n".join(lines[e + 1 :])
    return before, lines[b + 1 : e], after


def with_rules(text: str, rules: Sequence[tuple[str, str]], by: str = "cleanroom verify --fix") -> str:
    """``text`` with ``rules`` ((line, why) pairs) added to its managed block, if not there (a
    new block says which command added it)."""
    before, block, after = _split(text)
    head = next((ln for ln in text.splitlines() if ln.startswith(BEGIN_PREFIX)), begin(by))
    present = {ln for ln in block if ln and not ln.startswith("#")}
    for line, reason in rules:
        if line not in present:
            block += [f"# {reason}", line]
            present.add(line)
    parts = []
    if before.strip():
        parts.append(before.rstrip("\n") + "\n\n")
    parts.append("\n".join([head, *block, END]) + "\n")
    if after.strip():
        parts.append(after.lstrip("\n") if after.endswith("\n") else after.lstrip("\n") + "\n")
    return "".join(parts)


def read_ignore_text(path: Path) -> str:
    """An ignore file's text, to add rules to ("" when absent); one that cannot be read as UTF-8
    text is refused (exit 2) rather than rewritten."""

    try:
        return path.read_text(encoding="utf-8") if path.exists() else ""
    except UnicodeDecodeError as exc:
        raise BadInput(f"{path}: not valid UTF-8 ({exc.reason} at byte {exc.start}): rules cannot be added "
                       "to it safely; fix its encoding") from None
    except OSError as exc:
        raise BadInput(f"{path}: cannot read: {exc.strerror or exc}") from None


def fix_plan(gitignore_gaps: Sequence[tuple[Path, str]], docker_gaps: Sequence[tuple[Path, str]]) -> Plan:
    """Plan writes for (ignore file, missing policy pattern) pairs, grouped by file."""
    per_file: dict[Path, list[tuple[str, str]]] = {}
    for path, pat in gitignore_gaps:
        per_file.setdefault(path, []).append((policy.git_rule(pat), f"{pat}: {policy.why(pat)}"))
    for path, pat in docker_gaps:
        per_file.setdefault(path, []).append((policy.docker_rule(pat), f"{pat}: {policy.why(pat)}"))
    plan: Plan = []
    for path, rules in per_file.items():
        old = read_ignore_text(path)
        new = with_rules(old, rules)
        if new != old:
            plan.append(WriteFile(path, new, f"add {len(rules)} rule(s) to the managed block"))
    return plan


def safe_docker_rules(ctx: RepoScan, group: IgnoreGroup, patterns: Sequence[str],
                      sources: Sequence[Source]) -> tuple[list[str], list[str]]:
    """Of the policy ``patterns`` whose rules would go into ``group``'s ignore file, those that
    are safe: Docker accepts the line, and with it every path the group's builds copy from the
    context (and is sent today) is still sent. Returns (safe patterns, why each other is not)."""

    path = ctx.repo / group.ignore_name
    try:
        old = path.read_text(encoding="utf-8") if path.exists() else ""
    except (OSError, UnicodeDecodeError) as exc:
        return [], [f"not written: cannot read it ({exc})"]
    ok: list[str] = []
    refused: list[str] = []
    for pat in patterns:
        line = policy.docker_rule(pat)
        try:
            Matcher(parse(line, str(path)).patterns)
        except DockerignoreError as exc:
            refused.append(f"not adding `{line}`: Docker would refuse it ({exc.message})")
            continue
        ok.append(pat)
    # Each rule alone: the block holds exclusions only, so a path the whole block excludes is
    # one some rule of it excludes (checked per builder: their matching differs).
    for bi in group.members:
        m_now = ctx.matcher(bi)
        now_sent = _copied_paths(ctx, group, sources, m_now)
        for pat in list(ok):
            text = with_rules(old, [(policy.docker_rule(pat), "")])
            try:
                m_new = Matcher(parse(text, str(path)).patterns, m_now.semantics)
            except DockerignoreError as exc:
                ok.remove(pat)
                refused.append(f"not adding `{policy.docker_rule(pat)}`: the file would not parse "
                               f"({exc.message})")
                continue
            broken = sorted(p for p in now_sent if m_new.excluded(p) or m_new.pruned_ancestor(p))
            if broken:
                ok.remove(pat)
                refused.append(f"not adding `{policy.docker_rule(pat)}`: it would exclude "
                               f"{policy.examples(broken)}, which {group.label} copies")
    return ok, refused


def _copied_paths(ctx: RepoScan, group: IgnoreGroup, sources: Sequence[Source], matcher: object) -> list[str]:
    """The context paths the builds copy that are sent today (a glob: the files it matches now)."""
    import glob as globmod

    out: list[str] = []
    for s in sources:
        paths = (globmod.glob(s.path, root_dir=group.context, include_hidden=True) if s.glob
                 else [s.path])
        out += [p for p in paths if ctx.sent(matcher, p)]  # type: ignore[arg-type]
    return sorted(set(out))
