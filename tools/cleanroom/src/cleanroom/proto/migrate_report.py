"""migrate-proto's report: the plan (or what was done) as text, with diffs of the rewrites.
"""

from __future__ import annotations

import difflib
import shlex
from collections.abc import Iterator

from cleanroom.proto.migration import PROTO_PATTERNS, Migration


def _diff(path: str, old: str, new: str) -> Iterator[str]:
    lines = difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                 fromfile=f"a/{path}", tofile=f"b/{path}")
    return (ln.rstrip("\r\n") for ln in lines)


def render(m: Migration, applied: bool) -> str:
    p = m.cfg.proto
    lines: list[str] = []
    do = "" if applied else "would "
    lines.append("migrate-proto: applied" if applied else
                 "migrate-proto: plan (dry run: nothing is changed; `--apply` carries it out)")
    if m.nothing and not m.orphans and not m.outside:
        lines.append("migrate-proto: nothing to change: git tracks no generated protobuf code and every "
                     "ignore file already covers it")
        return "\n".join(lines + [f"  warning: {w}" for w in m.warnings])
    lines.append(f"  from {m.legacy or '(no legacy module)'}{' in ' + m.legacy_dir if m.legacy_dir else ''} "
                 f"to the generated package {p.package} (made from {p.sources} into {p.out}/{p.package})")
    for f in m.found:
        lines.append(f"  found (not configured): [proto] {f}")
    if m.settings is not None:
        lines.append(f"  {do}record them in {m.settings.path}, so `cleanroom proto` makes the same package:")
        if not applied:
            lines += ["     " + d for d in _diff(m.settings.path, m.settings.old, m.settings.new)]
    for w in m.warnings:
        lines.append(f"  warning: {w}")

    lines += ["", "1. ignore rules for generated protobuf code (.gitignore, .dockerignore)"]
    if not m.ignore:
        lines.append("   nothing to do: git and every build's .dockerignore already ignore "
                     + ", ".join(PROTO_PATTERNS))
    for ic in m.ignore:
        lines.append(f"   {ic.path}: {do}add {', '.join(ic.rules)} to a block marked as added by migrate-proto")
        if not applied:
            lines += ["     " + d for d in _diff(ic.path, ic.old, ic.new)]

    lines += ["", f"2. images that run Python generate the code into {p.out} (checked, never edited)"]
    if not m.dockerfiles:
        lines.append("   nothing to check: no build whose final stage runs Python")
    for d in m.dockerfiles:
        lines.append(f"   {d.path}: {'OK' if d.ok else 'TO DO'}: {d.message}")
        if not d.ok and d.add:
            lines += ["       " + a for a in d.add]

    lines += ["", f"3. references to {m.legacy or 'the legacy module'}'s generated modules -> {p.package}"]
    if not m.rewrites and not m.notes and not m.unparsed:
        lines.append("   nothing to do: no tracked file refers to them")
    for rw in m.rewrites:
        kind = " (a facade: it stays, importing from the package)" if rw.facade else ""
        lines.append(f"   {rw.path}: {do}rewrite {rw.what}{kind}")
        if not applied:
            lines += ["     " + d for d in _diff(rw.path, rw.old.decode("utf-8"), rw.new.decode("utf-8"))]
    for n in m.notes:
        lines.append(f"   {n.path}:{n.line}: not rewritten: `{n.code}`: {n.why}")
    for path, why in m.unparsed:
        lines.append(f"   {path}: skipped: {why}")

    lines += ["", "4. untrack the generated files (git rm --cached: they stay on disk)"]
    if not m.untrack:
        lines.append("   nothing to do")
    for path in m.untrack:
        lines.append(f"   {do}untrack {path}")
    if m.untrack:
        lines.append(f"   {do}run: git rm --cached -q -- " + " ".join(shlex.quote(u) for u in m.untrack))
    for path in m.orphans:
        lines.append(f"   keep {path}: no .proto under {p.sources} regenerates it (an orphan)")

    if m.proof:
        lines += ["", f"5. proof: {len(m.proof)} module(s) imported with the package generated into a "
                      "temporary folder and the untracked files absent"]
        for pr in m.proof:
            lines.append(f"   {pr.status}: {pr.module}" + (f": {pr.why}" if pr.why else ""))

    lines.append("")
    if m.failed:
        lines.append(f"migrate-proto: {len(m.failed)} module(s) that import today would fail after the "
                     "migration: --apply refuses until they import (see 5.)")
    elif m.nothing:
        lines.append("migrate-proto: nothing to change: the repo is migrated")
    elif applied:
        lines.append(f"migrate-proto: done ({len(m.touched)} file(s) changed); review `git status` and "
                     "`git diff`, then commit; `cleanroom verify` checks the result")
    else:
        lines.append(f"migrate-proto: {len(m.touched)} file(s) to change; run `cleanroom migrate-proto --apply`")
    manual = m.manual
    if manual:
        lines.append(f"migrate-proto: left to do by hand ({len(manual)}):")
        lines += [f"  - {x}" for x in manual]
    return "\n".join(lines)
