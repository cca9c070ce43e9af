"""What the ignore files miss, computed over the repo scan: the gitignore gaps, the
.dockerignore gaps (with whether adding the rule is safe), the leaks into build contexts and the
COPY lines an ignore file empties.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cleanroom.artifacts import policy
from cleanroom.docker.dockerfiles import Source

if TYPE_CHECKING:
    from cleanroom.dockerignore.matcher import Matcher
from cleanroom.artifacts.scan import IgnoreGroup, RepoScan


def gitignore_gaps(ctx: RepoScan) -> dict[str, list[str]]:
    """Policy pattern -> the probe paths git does not ignore (empty: fully covered)."""
    per_pattern: dict[str, list[str]] = {}
    for probe in ctx.probes_not_ignored.result():
        per_pattern.setdefault(ctx.gitignore_probes[probe], []).append(probe)
    return per_pattern


@dataclass(frozen=True)
class DockerGap:
    group: IgnoreGroup
    pattern: str
    leaked: list[str]  # probe paths the context would send (context-relative)
    real: list[str]  # artifact files of this checkout the context would send (repo-relative)
    copied: list[Source]  # what a build copies that the pattern names

    @property
    def ignore_name(self) -> str:
        return self.group.ignore_name

    @property
    def fixable(self) -> bool:
        return not self.copied


def _entries(ctx: RepoScan) -> list[str]:
    return sorted(set(ctx.tracked_artifacts) | set(ctx.disk_entries))


def _leaks(ctx: RepoScan, g: IgnoreGroup) -> list[str]:
    """The repo's artifact files (repo-relative) that some build of ``g`` would send, as
    :func:`docker_gaps` found them (it decides how closely to look)."""
    docker_gaps(ctx)
    return ctx._leaks.get((g.context, g.ignore_path), [])


def _exceptions(ctx: RepoScan, g: IgnoreGroup) -> tuple[set[str], bool]:
    """The ``!`` lines of the group's ignore file(s): (literal paths, whether any has a wildcard)."""
    literal: set[str] = set()
    wild = False
    for bi in g.members:
        for pat in ctx.matcher(bi).patterns:
            if not pat.exclusion:
                continue
            if any(ch in pat.text for ch in "*?[\\"):
                wild = True
            else:
                literal.add(pat.text.strip("/"))
    return literal, wild


def _compute_leaks(ctx: RepoScan, g: IgnoreGroup, entries: list[str], everything: bool) -> list[str]:
    """Which of ``entries`` (repo-relative, inside the context) some build of ``g`` sends.

    Every entry is asked when ``everything``; otherwise (no pattern has a gap, so the ignore file
    excludes every artifact pattern in general) only entries a ``!`` line could re-include: those
    at or below a literal ``!`` path. A ``!`` line with a wildcard makes every entry suspect."""
    ctx_rel = ctx.rel(g.context) if g.context != ctx.repo else ""
    prefix = ctx_rel + "/" if ctx_rel else ""
    literal, wild = _exceptions(ctx, g)
    if not everything and not wild:
        import bisect

        chosen: list[str] = []
        for lit in sorted(literal):
            full = prefix + lit
            k = bisect.bisect_left(entries, full)
            while k < len(entries) and (entries[k].rstrip("/") == full or entries[k].startswith(full + "/")):
                chosen.append(entries[k])
                k += 1
        entries = chosen
    found: set[str] = set()
    for bi in g.members:
        matcher = ctx.matcher(bi)
        for entry in entries:
            if ctx.allowed(entry.rstrip("/")):
                continue
            inner = entry[len(prefix):]
            if entry.endswith("/"):
                if ctx.folder_skipped(matcher, inner) or (ctx.repo / entry / ".git").exists():
                    continue
                for root, _dirs, files in os.walk(ctx.repo / entry):
                    rel = ctx.rel(Path(root))
                    found.update(f"{rel}/{f}" for f in files
                                 if ctx.sent(matcher, f"{rel}/{f}"[len(prefix):]))
            elif ctx.sent(matcher, inner):
                found.add(entry)
    return sorted(found)


def docker_gaps(ctx: RepoScan) -> list[DockerGap]:
    """Per ignore file (group of builds) and policy pattern, what Docker would send (computed
    once per run: two rules read it)."""
    if ctx._docker_gaps is None:
        ctx._docker_gaps = _docker_gaps(ctx)
    return ctx._docker_gaps


def _docker_gaps(ctx: RepoScan) -> list[DockerGap]:
    gaps = []
    all_entries = _entries(ctx)
    for g in ctx.groups:
        ctx_rel = ctx.rel(g.context) if g.context != ctx.repo else ""
        prefix = ctx_rel + "/" if ctx_rel else ""
        entries = [e for e in all_entries if e.startswith(prefix)] if prefix else all_entries
        in_repo = [spec for spec in ctx.specs if spec.pattern in ctx.present]
        present = policy.present([e for e in entries if e in ctx.tracked_set], in_repo,
                                 shallow=[e for e in entries if e not in ctx.tracked_set]) if prefix else ctx.present
        top = sorted(
            e.name for e in os.scandir(g.context)
            if e.is_dir(follow_symlinks=False) and e.name != ".git"
        ) if g.context.is_dir() else []
        kinds = ctx.kinds(g)
        leaked_by: dict[str, list[str]] = {}
        for pat in ctx.patterns:
            spec = policy.parse(pat)
            probes = policy.probes(pat)
            if spec.anchored:
                # anchored at the repo root: inside this context only if the context is the root
                if ctx_rel:
                    continue
            else:
                probes += [f"{d}/{probes[0]}" for d in top]
            kind = policy.KIND.get(pat)
            if kind is not None and kind not in kinds and pat not in present:
                continue  # no such project in this context: the artifact cannot arise there
            leaked_by[pat] = [p for p in probes if any(ctx.sent(ctx.matcher(bi), p) for bi in g.members)]
        real_all = _compute_leaks(ctx, g, entries, everything=any(leaked_by.values()))
        ctx._leaks[(g.context, g.ignore_path)] = real_all
        copied_all = [s for b in g.builds for s in ctx.sources_of(b)]
        for pat, leaked in leaked_by.items():
            spec = policy.parse(pat)
            real = [p for p in real_all if policy.root_of(p, [spec])[1]]
            if leaked or real:
                copied = [s for s in copied_all if not s.glob and policy.matches(
                    pat, s.path + "/x" if (g.context / s.path).is_dir() else s.path)]
                gaps.append(DockerGap(g, pat, leaked, real, copied))
    return gaps


@dataclass(frozen=True)
class CopyProblem:
    dockerfile: str  # repo-relative
    source: Source
    builds: tuple[str, ...]
    why: str  # "excluded by .dockerignore:3 `x`" or "does not exist in the context"
    missing: bool
    artifact: str  # the policy pattern naming the source ("" when none)


def _glob_hits(context: Path, pattern: str) -> list[str]:
    import glob as globmod

    hits = globmod.glob(pattern, root_dir=context, recursive=False, include_hidden=True)
    return sorted(h.replace(os.sep, "/") for h in hits)


def copy_problems(ctx: RepoScan) -> list[CopyProblem]:
    """COPY/ADD (and RUN --mount=type=bind) sources a build cannot have: excluded by its ignore
    file, or not in its context."""
    found: dict[tuple[str, int, str], CopyProblem] = {}
    for bi in ctx.build_ignores:
        b = bi.build
        matcher = ctx.matcher(bi)
        for s in ctx.sources_of(b):
            df = b.rel_dockerfile(ctx.repo)
            key = (df, s.instruction.line, s.path)
            paths = _glob_hits(b.context, s.path) if s.glob else [s.path]
            if not s.glob and not os.path.lexists(b.context / s.path):
                paths = []
            artifact = ctx.pattern_of(f"{b.rel_context(ctx.repo)}/{s.path}".lstrip("/")) or ""
            if not paths:
                why, missing = ("does not exist in the context" if not s.glob
                                else "matches nothing in the context"), True
            else:
                sent = [p for p in paths if _sends(ctx, matcher, b.context, p)]
                if sent:
                    continue
                decided = matcher.match(paths[0])
                pruned = matcher.pruned_ancestor(paths[0])
                if pruned is not None:
                    decided = matcher.match(pruned)
                src = decided.source if decided is not None else ""
                shown = ctx.rel(Path(src)) if src and Path(src).is_absolute() else src
                why = (f"is excluded by {shown}:{decided.line} `{decided}`" if decided is not None
                       else "is not sent")
                missing = False
            old = found.get(key)
            names = tuple(sorted({*(old.builds if old else ()), f"{b.name} ({bi.builder})"}))
            found[key] = CopyProblem(df, s, names, why if old is None else old.why, missing, artifact)
    return [found[k] for k in sorted(found)]


def _sends(ctx: RepoScan, matcher: Matcher, context: Path, inner: str) -> bool:
    """Is ``inner`` (a file, or a folder with anything sent below it) in the context?"""
    full = context / inner
    if not full.is_dir() or full.is_symlink():
        return ctx.sent(matcher, inner)
    if ctx.folder_skipped(matcher, inner):
        return False
    if not matcher.excluded(inner):
        return True
    for root, _dirs, files in os.walk(full):
        rel = os.path.relpath(root, context).replace(os.sep, "/")
        if any(ctx.sent(matcher, f"{rel}/{f}") for f in files):
            return True
    return False
