"""verify: every rule of the doctrine as a check.

Each rule is a function from the verify context to findings. The context computes once what
several rules share: git's view of the artifacts in the tree (one walk, by git, with the policy
as the exclude list), the builds and the ignore file each one reads.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from . import policy
from .builds import Build, discover_builds
from .config import Config
from .findings import Finding
from .gitutil import PolicyFile, file_size, not_ignored, require_repo, tracked_matching, untracked_matching
from .variants import find_drift


def _is_ignore_file(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return name == ".dockerignore" or name.endswith(".dockerignore")


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
    _cache: dict[str, object] = field(default_factory=dict)

    def rel(self, p: Path) -> str:
        return os.path.relpath(p, self.repo).replace(os.sep, "/")

    @cached_property
    def patterns(self) -> tuple[str, ...]:
        return self.cfg.artifacts.all_patterns

    @cached_property
    def _listing(self) -> tuple[list[str], list[str], list[str]]:
        """(tracked artifacts, untracked-on-disk artifacts, docker ignore files), from git."""
        names = [".dockerignore", "*.dockerignore"]
        with PolicyFile([*self.patterns, *names]) as pf:
            tracked = tracked_matching(self.repo, pf)
            others = untracked_matching(self.repo, pf)
        ign = sorted(p for p in tracked + others if _is_ignore_file(p))
        tracked = [p for p in tracked if not _is_ignore_file(p)]
        others = [p for p in others if not _is_ignore_file(p)]
        return tracked, others, ign

    @property
    def tracked_artifacts(self) -> list[str]:
        return self._listing[0]

    @property
    def disk_artifacts(self) -> list[str]:
        return self._listing[1]

    @property
    def ignore_files(self) -> list[str]:
        return self._listing[2]

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

    def matcher(self, bi: BuildIgnore):  # type: ignore[no-untyped-def]
        from .dockerignore import Matcher, read

        key = f"m:{bi.ignore_path}"
        if key not in self._cache:
            ign = read(bi.ignore_path) if bi.ignore_path else None
            self._cache[key] = (Matcher(ign.patterns if ign else ()), ign)
        return self._cache[key]

    def allowed(self, path: str) -> bool:
        return policy.allowed(path, self.cfg.artifacts.allow) is not None


Rule = Callable[[VerifyContext], Iterable[Finding]]


def _fmt(v: object) -> str:
    return "(absent)" if v == "<missing>" else repr(v)


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


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
    candidates = [p for p in ctx.disk_artifacts if not ctx.allowed(p)]
    for path in not_ignored(ctx.repo, candidates):
        yield Finding(
            "untracked-artifact", path,
            "a build artifact that git shows as untracked: nothing ignores it, so it can be committed",
            "add an ignore rule for it to .gitignore (`cleanroom verify --fix`), or delete it "
            "(`cleanroom clean --yes`)",
        )


def _nested_gitignore_dirs(ctx: VerifyContext) -> list[str]:
    from .gitutil import git, split0

    files = split0(git(ctx.repo, "ls-files", "-z", "--cached", "--others", "--exclude-standard",
                       "--", ":(glob)**/.gitignore"))
    return sorted({f.rsplit("/", 1)[0] for f in files if "/" in f})


def gitignore_gaps(ctx: VerifyContext) -> dict[str, list[str]]:
    """Policy pattern -> the probe paths git does not ignore (empty: fully covered)."""
    extra = _nested_gitignore_dirs(ctx)
    by_probe: dict[str, str] = {}
    for pat in ctx.patterns:
        ps = policy.probes(pat)
        if not policy.parse(pat).anchored:
            name = ps[0]
            ps += [f"{d}/{name}" for d in extra]
        for p in ps:
            by_probe.setdefault(p, pat)
    per_pattern: dict[str, list[str]] = {}
    for probe in not_ignored(ctx.repo, list(by_probe)):
        per_pattern.setdefault(by_probe[probe], []).append(probe)
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
        matcher, _ = ctx.matcher(bi)
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
            leaked = [p for p in probes if not matcher.excluded(p)]
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
    paths = sorted(set(ctx.tracked_artifacts) | set(ctx.disk_artifacts))
    for bi in ctx.build_ignores:
        matcher, _ = ctx.matcher(bi)
        ctx_rel = bi.build.rel_context(ctx.repo)
        prefix = ctx_rel + "/" if ctx_rel else ""
        for path in paths:
            if not path.startswith(prefix) or ctx.allowed(path):
                continue
            inner = path[len(prefix):]
            if matcher.excluded(inner):
                continue
            size = file_size(ctx.repo / path)
            yield Finding(
                "context-leak", path,
                f"this artifact ({_size(size)}) would be sent in the context of {bi.label}",
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
    findings: list[Finding] = []
    checked = []
    for name, func in RULE_FUNCS.items():
        if name == "generated":
            if not check_generated:
                continue
            checked += ["generated-missing", "generated-stale"]
        else:
            checked.append(name)
        findings.extend(func(ctx))
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
