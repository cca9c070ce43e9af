"""verify: every rule of the doctrine as a check.

Each rule is a function from the verify context to findings. The context computes once what
several rules share: git's view of the artifacts in the tree (one walk, by git, with the policy
as the exclude list), the builds and the ignore file each one reads.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from . import policy
from .builds import Build, discover_builds
from .config import Config
from .drift import MISSING, find_drift
from .findings import Finding, human_size
from .gitutil import PolicyFile, artifact_listing, not_ignored, require_repo

if TYPE_CHECKING:
    from .context import BuilderModel
    from .dockerignore import Matcher


def _is_ignore_file(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return name == ".dockerignore" or name.endswith(".dockerignore")


def _is_gitignore(path: str) -> bool:
    return path.rsplit("/", 1)[-1] == ".gitignore"


def _tree_size(path: Path) -> int:
    """Bytes under ``path`` (a file, a link as itself, or a folder, links not followed)."""
    try:
        st = path.lstat()
    except OSError:
        return 0
    if not path.is_dir() or path.is_symlink():
        return st.st_size
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


@dataclass(frozen=True)
class BuildIgnore:
    """A build and the ignore file it reads (per builder when they differ)."""

    build: Build
    builder: str  # "buildkit" or "classic"
    ignore_path: Path | None

    @property
    def label(self) -> str:
        return f"build '{self.build.name}' ({self.builder})"


@dataclass
class VerifyContext:
    repo: Path
    cfg: Config
    out_dir: Path | None = None
    check_generated: bool = False
    _matchers: dict[tuple[Path | None, str], Matcher] = field(default_factory=dict)
    _skipped: dict[tuple[int, str], bool] = field(default_factory=dict)

    def rel(self, p: Path) -> str:
        return os.path.relpath(p, self.repo).replace(os.sep, "/")

    @cached_property
    def patterns(self) -> tuple[str, ...]:
        return self.cfg.artifacts.all_patterns

    @cached_property
    def _listing(self) -> tuple[list[str], list[str], list[str], list[str]]:
        """(tracked artifacts, untracked artifacts on disk, docker ignore files, .gitignore
        files), from one walk by git with the policy (plus the ignore files' names) as the
        exclude list. Untracked artifact folders are one entry ending in "/"."""
        names = [".dockerignore", "*.dockerignore", ".gitignore"]
        with PolicyFile([*self.patterns, *names]) as pf:
            tracked, others = artifact_listing(self.repo, pf)
        both = tracked + others
        ign = sorted(p for p in both if _is_ignore_file(p))
        gi = sorted(p for p in both if _is_gitignore(p))

        def keep(p: str) -> bool:
            return not (_is_ignore_file(p) or _is_gitignore(p))

        return [p for p in tracked if keep(p)], [p for p in others if keep(p)], ign, gi

    @property
    def tracked_artifacts(self) -> list[str]:
        return self._listing[0]

    @property
    def disk_entries(self) -> list[str]:
        """Untracked artifacts on disk; a whole artifact folder is one entry ending in "/"."""
        return self._listing[1]

    @cached_property
    def disk_artifacts(self) -> list[str]:
        """Untracked artifact files on disk, folders expanded (links not followed); a nested
        git repository stays one entry ending in "/" (never looked into)."""
        out: list[str] = []
        for e in self.disk_entries:
            if not e.endswith("/"):
                out.append(e)
                continue
            top = self.repo / e
            if (top / ".git").exists():
                out.append(e)
                continue
            for root, dirs, files in os.walk(top):
                rel = self.rel(Path(root))
                nested = [d for d in dirs if (Path(root) / d / ".git").exists()]
                out += [f"{rel}/{d}/" for d in nested]
                dirs[:] = sorted(d for d in dirs if d not in nested)
                out += [f"{rel}/{f}" for f in sorted(files)]
        return out

    @property
    def ignore_files(self) -> list[str]:
        return self._listing[2]

    @property
    def gitignore_files(self) -> list[str]:
        return self._listing[3]

    @cached_property
    def builds(self) -> list[Build]:
        return discover_builds(self.repo, self.cfg)

    @cached_property
    def build_ignores(self) -> list[BuildIgnore]:
        from .dockerignore import ignore_file_for

        out = []
        for b in self.builds:
            bk = ignore_file_for(b.context, b.dockerfile, buildkit=True)
            classic = ignore_file_for(b.context, b.dockerfile, buildkit=False)
            out.append(BuildIgnore(b, "buildkit", bk))
            if classic != bk:
                out.append(BuildIgnore(b, "classic", classic))
        return out

    # Two git questions are asked in background threads as soon as the listing is known, so
    # that git answers them while the Docker-side rules run in Python.
    @cached_property
    def _pool(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(max_workers=2, thread_name_prefix="cleanroom-git")

    @cached_property
    def untracked_not_ignored(self) -> Future[list[str]]:
        """Untracked artifact entries that the repo's ignore rules do not ignore."""
        candidates = [p for p in self.disk_entries if not self.allowed(p.rstrip("/"))]
        return self._pool.submit(not_ignored, self.repo, candidates)

    @cached_property
    def gitignore_probes(self) -> dict[str, str]:
        """Probe path -> policy pattern: at the root, nested, and in every folder holding a
        .gitignore of its own (where a '!' line could re-include an artifact)."""
        extra = sorted({f.rsplit("/", 1)[0] for f in self.gitignore_files if "/" in f})
        by_probe: dict[str, str] = {}
        for pat in self.patterns:
            ps = policy.probes(pat)
            if not policy.parse(pat).anchored:
                ps += [f"{d}/{ps[0]}" for d in extra]
            for p in ps:
                by_probe.setdefault(p, pat)
        return by_probe

    @cached_property
    def probes_not_ignored(self) -> Future[list[str]]:
        return self._pool.submit(not_ignored, self.repo, list(self.gitignore_probes))

    def prefetch(self) -> None:
        """Start the background git questions."""
        self.untracked_not_ignored  # noqa: B018 (starts it)
        self.probes_not_ignored  # noqa: B018

    @cached_property
    def builder_model(self) -> BuilderModel:
        """The builder a build here would use, modelled (its matching semantics)."""
        from .context import choose_builder

        return choose_builder()

    def matcher(self, bi: BuildIgnore) -> Matcher:
        """Docker's matcher for the file this build reads, with the builder's semantics (as
        this machine's client drives it; current Docker for a builder not in use here)."""
        from .context import model_for
        from .dockerignore import Matcher, read

        model = self.builder_model
        walk = model.walk if model.name == bi.builder else model_for(bi.builder).walk
        key = (bi.ignore_path, walk.name)
        if key not in self._matchers:
            ign = read(bi.ignore_path) if bi.ignore_path else None
            self._matchers[key] = Matcher(ign.patterns if ign else (), walk)
        return self._matchers[key]

    def folder_skipped(self, matcher: Matcher, inner_dir: str) -> bool:
        """Does the context walk skip folder ``inner_dir`` (or a folder above it) whole? As
        ``Matcher.pruned_ancestor``, memoized per folder: artifact paths share their folders."""
        d = inner_dir.rstrip("/")
        if not d:
            return False
        key = (id(matcher), d)
        hit = self._skipped.get(key)
        if hit is None:
            parent = d.rpartition("/")[0]
            hit = self.folder_skipped(matcher, parent) or matcher.may_prune(d)
            self._skipped[key] = hit
        return hit

    def sent(self, matcher: Matcher, inner: str) -> bool:
        """Would the context walk send file ``inner`` (context-relative; need not exist)? As the
        walk decides: a folder above it that is skipped, else the file's own match."""
        return not self.folder_skipped(matcher, inner.rpartition("/")[0]) and not matcher.excluded(inner)

    def allowed(self, path: str) -> bool:
        return policy.allowed(path, self.cfg.artifacts.allow) is not None


Rule = Callable[[VerifyContext], Iterable[Finding]]


def _fmt(v: object) -> str:
    return "(absent)" if v == MISSING else repr(v)


def rule_tracked_artifact(ctx: VerifyContext) -> Iterator[Finding]:
    for path in ctx.tracked_artifacts:
        if ctx.allowed(path):
            continue
        yield Finding(
            "tracked-artifact", path,
            "git tracks a build artifact (the doctrine: artifacts are regenerated, never committed)",
            f"git rm --cached -- '{path}' (keeps the file on disk), and make sure an ignore rule "
            "covers it (`cleanroom verify --fix` adds missing rules)",
        )


def rule_untracked_artifact(ctx: VerifyContext) -> Iterator[Finding]:
    for path in ctx.untracked_not_ignored.result():
        yield Finding(
            "untracked-artifact", path,
            "a build artifact that git shows as untracked: nothing ignores it, so it can be committed",
            "add an ignore rule for it to .gitignore (`cleanroom verify --fix`), or delete it "
            "(`cleanroom clean --yes`)",
        )


def gitignore_gaps(ctx: VerifyContext) -> dict[str, list[str]]:
    """Policy pattern -> the probe paths git does not ignore (empty: fully covered)."""
    per_pattern: dict[str, list[str]] = {}
    for probe in ctx.probes_not_ignored.result():
        per_pattern.setdefault(ctx.gitignore_probes[probe], []).append(probe)
    return per_pattern


def rule_gitignore_gap(ctx: VerifyContext) -> Iterator[Finding]:
    for pat, probes in gitignore_gaps(ctx).items():
        yield Finding(
            "gitignore-gap", ".gitignore",
            f"artifact pattern '{pat}' is not covered: git does not ignore the probe path(s) "
            + ", ".join(f"'{p}'" for p in probes),
            f"add the line `{policy.git_rule(pat)}` to .gitignore (`cleanroom verify --fix` adds it "
            "to a managed block)",
        )


@dataclass(frozen=True)
class DockerGap:
    bi: BuildIgnore
    ignore_name: str  # repo-relative path of the file read (or that should exist)
    pattern: str
    leaked: list[str]


def docker_gaps(ctx: VerifyContext) -> list[DockerGap]:
    """Per build and policy pattern, the probe paths Docker's matcher would send."""
    gaps = []
    for bi in ctx.build_ignores:
        matcher = ctx.matcher(bi)
        ctx_rel = bi.build.rel_context(ctx.repo)
        top = sorted(
            e.name for e in os.scandir(bi.build.context)
            if e.is_dir(follow_symlinks=False) and e.name != ".git"
        ) if bi.build.context.is_dir() else []
        ignore_name = ctx.rel(bi.ignore_path) if bi.ignore_path else (
            f"{ctx_rel}/.dockerignore" if ctx_rel else ".dockerignore")
        for pat in ctx.patterns:
            spec = policy.parse(pat)
            probes = policy.probes(pat)
            if spec.anchored:
                # anchored at the repo root: inside this context only if the context is the root
                if ctx_rel:
                    continue
            else:
                name = probes[0]
                probes += [f"{d}/{name}" for d in top]
            leaked = [p for p in probes if ctx.sent(matcher, p)]
            if leaked:
                gaps.append(DockerGap(bi, ignore_name, pat, leaked))
    return gaps


def rule_dockerignore_gap(ctx: VerifyContext) -> Iterator[Finding]:
    for g in docker_gaps(ctx):
        state = "reads no ignore file" if g.bi.ignore_path is None else f"reads {g.ignore_name}"
        yield Finding(
            "dockerignore-gap", g.ignore_name,
            f"{g.bi.label} {state}: artifact pattern '{g.pattern}' is not excluded from its "
            f"context ({g.bi.build.origin}); Docker would send "
            + ", ".join(f"'{p}'" for p in g.leaked),
            f"add the line `{policy.docker_rule(g.pattern)}` to {g.ignore_name} (Docker anchors "
            "patterns at the context root; `cleanroom verify --fix` adds it)",
        )


def rule_dead_ignore_file(ctx: VerifyContext) -> Iterator[Finding]:
    from .dockerignore import read

    read_by = {bi.ignore_path.resolve() for bi in ctx.build_ignores if bi.ignore_path}
    for rel in ctx.ignore_files:
        path = (ctx.repo / rel).resolve()
        if path not in read_by:
            yield Finding(
                "dead-ignore-file", rel,
                "no build reads this ignore file: Docker reads only <context>/.dockerignore, or "
                "(BuildKit) <Dockerfile>.dockerignore next to the Dockerfile; builds here: "
                + ", ".join(f"{b.name} (context {b.rel_context(ctx.repo) or '.'})" for b in ctx.builds),
                "move its rules into the .dockerignore at the build's context root "
                "(as patterns relative to that root), then delete this file",
            )
    for p in sorted(read_by):
        ign = read(p)
        for pat in ign.dead_lines:
            yield Finding(
                "dead-ignore-file", ctx.rel(p),
                f"line '{pat.text}' can never match: Docker does not support paths outside the "
                "context ('..')",
                "rewrite it relative to the build context root, or remove it",
                line=pat.line,
            )


def rule_context_leak(ctx: VerifyContext) -> Iterator[Finding]:
    entries = sorted(set(ctx.tracked_artifacts) | set(ctx.disk_entries))
    for bi in ctx.build_ignores:
        matcher = ctx.matcher(bi)
        ctx_rel = bi.build.rel_context(ctx.repo)
        prefix = ctx_rel + "/" if ctx_rel else ""
        leaks: list[str] = []
        for entry in entries:
            if not entry.startswith(prefix) or ctx.allowed(entry.rstrip("/")):
                continue
            inner = entry[len(prefix):]
            if entry.endswith("/"):
                if ctx.folder_skipped(matcher, inner) or (ctx.repo / entry / ".git").exists():
                    continue
                # a folder Docker would look into: its files, one by one
                for root, _dirs, files in os.walk(ctx.repo / entry):
                    rel = ctx.rel(Path(root))
                    leaks += [f"{rel}/{f}" for f in files if ctx.sent(matcher, f"{rel}/{f}"[len(prefix):])]
            elif ctx.sent(matcher, inner):
                leaks.append(entry)
        for path in leaks:
            size = _tree_size(ctx.repo / path)
            yield Finding(
                "context-leak", path,
                f"this artifact ({human_size(size)}) would be sent in the context of {bi.label}",
                f"exclude it in {ctx.rel(bi.ignore_path) if bi.ignore_path else (prefix + '.dockerignore')} "
                "(`cleanroom verify --fix`), or delete it (`cleanroom clean --yes`)",
            )


def rule_variant_drift(ctx: VerifyContext) -> Iterator[Finding]:
    v = ctx.cfg.variants
    for d in find_drift(ctx.repo, ctx.cfg):
        yield Finding(
            "variant-drift", v.source,
            f"shared key '{d.key}' differs between the variants: "
            f"{v.binary} has {_fmt(d.binary)}, {v.source} has {_fmt(d.source)}",
            f"make '{d.key}' identical in {v.binary} and {v.source}, or, if it may legitimately "
            "differ, add its section to [variants] may_differ in cleanroom.toml",
        )


def rule_generated(ctx: VerifyContext) -> Iterator[Finding]:
    if not ctx.check_generated or ctx.out_dir is None:
        return
    from . import proto
    from .workspace import Workspace

    st = proto.status(Workspace(ctx.repo, ctx.cfg), ctx.out_dir)
    if st.current:
        return
    yield Finding(
        "generated-missing" if st.missing else "generated-stale",
        str(st.target.package_dir),
        ("the generated protobuf package is missing" if st.missing
         else "the generated protobuf package does not match the sources") + ": " + "; ".join(st.reasons),
        f"cleanroom proto --out {ctx.out_dir}",
    )


RULE_FUNCS: dict[str, Rule] = {
    "tracked-artifact": rule_tracked_artifact,
    "untracked-artifact": rule_untracked_artifact,
    "gitignore-gap": rule_gitignore_gap,
    "dockerignore-gap": rule_dockerignore_gap,
    "dead-ignore-file": rule_dead_ignore_file,
    "context-leak": rule_context_leak,
    "variant-drift": rule_variant_drift,
    "generated": rule_generated,
}


def run_verify(repo: Path, cfg: Config, out_dir: Path | None = None,
               check_generated: bool = False) -> tuple[list[Finding], list[str]]:
    require_repo(repo)
    ctx = VerifyContext(repo=repo, cfg=cfg, out_dir=out_dir, check_generated=check_generated)
    ctx.prefetch()
    findings: list[Finding] = []
    checked = []
    for name in RULE_FUNCS:
        if name == "generated":
            if check_generated:
                checked += ["generated-missing", "generated-stale"]
        else:
            checked.append(name)
    # The rules that wait on git's background answers run last.
    waiting = ("untracked-artifact", "gitignore-gap")
    order = [n for n in RULE_FUNCS if n not in waiting] + list(waiting)
    for name in order:
        if name == "generated" and not check_generated:
            continue
        findings.extend(RULE_FUNCS[name](ctx))
    ctx._pool.shutdown(wait=False)
    return findings, checked


def fix(repo: Path, cfg: Config, dry_run: bool = False) -> list[str]:
    """Add the missing ignore rules to managed blocks; returns the files written."""
    from .fix import fix_plan
    from .plan import execute

    require_repo(repo)
    ctx = VerifyContext(repo=repo, cfg=cfg)
    git_gaps = [(repo / ".gitignore", pat) for pat in gitignore_gaps(ctx)]
    dock = [(repo / g.ignore_name, g.pattern) for g in docker_gaps(ctx)]
    plan = fix_plan(git_gaps, dock)
    execute(plan, dry_run=dry_run)
    return [a.show() for a in plan]
