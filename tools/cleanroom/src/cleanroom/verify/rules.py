"""verify's rules: each a function from the repo scan to findings, registered once in
:data:`RULES` with its names, its place in the report order, what each name means, when it
applies and why it may not. Everything else reads that table: the run (``checked``, ``skipped``),
every report format (through :attr:`cleanroom.core.report.Result.rules`), ``cleanroom.toml``'s
``[verify] select``, ``ignore`` and ``per-path-ignores``, and the README's rule list (a test holds
it to the table).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from cleanroom.artifacts import policy
from cleanroom.artifacts.gaps import DockerGap, _leaks, copy_problems, docker_gaps, gitignore_gaps
from cleanroom.artifacts.policy import examples
from cleanroom.artifacts.scan import IgnoreGroup, RepoScan, _tree_size
from cleanroom.core.report import Finding, human_size
from cleanroom.core.workspace import Workspace
from cleanroom.docker.dockerfiles import Source
from cleanroom.docker.engine_context import engine_findings
from cleanroom.dockerignore.matcher import read
from cleanroom.proto import generate as proto
from cleanroom.variants.drift import MISSING, find_drift


@dataclass
class RuleContext(RepoScan):
    """The repo scan, plus what verify was asked for beyond it."""

    engine: bool = False  # --engine: ask the Docker engine what each build context holds


def _fmt(v: object) -> str:
    return "(absent)" if v == MISSING else repr(v)


def rule_tracked_artifact(ctx: RepoScan) -> Iterator[Finding]:
    """One finding per folder: its tracked artifacts go with one `git rm --cached`."""
    groups: dict[str, list[str]] = {}
    for path in ctx.tracked_artifacts:
        if ctx.allowed(path):
            continue
        root, _pattern, is_dir = policy.root_of(path, ctx.specs)
        groups.setdefault(root + "/" if is_dir else path.rpartition("/")[0], []).append(path)
    for where, paths in sorted(groups.items()):
        pats = sorted({ctx.pattern_of(p) for p in paths})
        if len(paths) == 1:
            yield Finding(
                "tracked-artifact", paths[0],
                f"git tracks a build artifact ({pats[0]}: {policy.why(pats[0])}); the doctrine: "
                "artifacts are regenerated, never committed",
                f"git rm --cached -- '{paths[0]}' (keeps the file on disk), and make sure an ignore "
                "rule covers it (`cleanroom verify --fix` adds missing rules)",
            )
            continue
        if where.endswith("/"):
            what, target = f"the folder {where}", where
        else:
            what = f"{where}/" if where else "the repo root"
            target = " ".join(f"'{where}/{policy.parse(p).body}'" if where else f"'{policy.parse(p).body}'"
                              for p in pats)
        yield Finding(
            "tracked-artifact", where or ".",
            f"git tracks {len(paths)} build artifacts in {what} ({', '.join(pats)}): {examples(paths)}; "
            "the doctrine: artifacts are regenerated, never committed",
            f"git rm -r --cached -- {target if where.endswith('/') else target} (keeps the files on "
            "disk), and make sure ignore rules cover them (`cleanroom verify --fix` adds missing rules)",
            related=tuple(paths),
        )


def rule_untracked_artifact(ctx: RepoScan) -> Iterator[Finding]:
    for entry, files in ctx.untracked_not_ignored:
        what = ("a build artifact that git shows as untracked" if not entry.endswith("/") else
                f"an artifact folder whose files git shows as untracked ({examples(files)})")
        yield Finding(
            "untracked-artifact", entry,
            f"{what}: nothing ignores it, so it can be committed",
            "add an ignore rule for it to .gitignore (`cleanroom verify --fix`), or delete it "
            "(`cleanroom clean --yes`)",
            related=tuple(files) if entry.endswith("/") else (),
        )


def rule_gitignore_gap(ctx: RepoScan) -> Iterator[Finding]:
    gaps = gitignore_gaps(ctx)
    if gaps and not ctx.gitignore_files:
        # no .gitignore at all: one defect, one finding naming every line it must hold
        pats = list(gaps)
        yield Finding(
            "gitignore-gap", ".gitignore",
            f"the repo has no .gitignore: git ignores none of the {len(pats)} artifact patterns "
            f"({examples(pats)})",
            f"create .gitignore with the lines {examples([policy.git_rule(p) for p in pats])} "
            "(`cleanroom verify --fix` writes them, with a comment each)",
            related=tuple(pats),
        )
        return
    for pat, probes in gaps.items():
        yield Finding(
            "gitignore-gap", ".gitignore",
            f"artifact pattern '{pat}' is not covered: git does not ignore the probe path(s) "
            + examples(probes),
            f"add the line `{policy.git_rule(pat)}` to .gitignore (`cleanroom verify --fix` adds it "
            "to a managed block)",
        )


def _where_copied(ctx: RepoScan, group: IgnoreGroup, s: Source) -> str:
    for b in group.builds:
        if s in ctx.sources_of(b):
            return f"{b.rel_dockerfile(ctx.repo)}:{s.instruction.line}"
    return f"line {s.instruction.line}"


def rule_dockerignore_gap(ctx: RepoScan) -> Iterator[Finding]:
    gaps = docker_gaps(ctx)
    # A build that reads no ignore file at all has one defect (the missing file), not one per
    # pattern: one finding naming every pattern the file must hold.
    missing: dict[str, list[DockerGap]] = {}
    for g in gaps:
        if g.group.ignore_path is None and g.fixable:
            missing.setdefault(g.ignore_name, []).append(g)
    for name, items in missing.items():
        grp = items[0].group
        real = sorted({r for g in items for r in g.real})
        rules = [policy.docker_rule(g.pattern) for g in items]
        yield Finding(
            "dockerignore-gap", name,
            f"{grp.label} reads no ignore file: {len(items)} artifact pattern(s) are not excluded from "
            f"the context ({examples([g.pattern for g in items])})"
            + (f"; Docker would send {len(real)} file(s) of this checkout: {examples(real)}" if real else ""),
            f"create {name} with the lines {examples(rules)} (`cleanroom verify --fix` writes them, "
            "with a comment each)",
            related=tuple(b.name for b in grp.builds),
        )
    for g in gaps:
        if g.group.ignore_path is None and g.fixable:
            continue
        grp = g.group
        sends = []
        if g.real:
            size = sum(_tree_size(ctx.repo / r) for r in g.real)
            sends.append(f"{len(g.real)} file(s) of this checkout ({human_size(size)}): {examples(g.real)}")
        if g.leaked:
            sends.append(f"probe path(s) {examples(g.leaked)}")
        message = (f"{grp.label} {grp.state}: artifact pattern '{g.pattern}' is not excluded from "
                   f"the context; Docker would send " + "; ".join(sends))
        if g.copied:
            lines = ", ".join(sorted({_where_copied(ctx, grp, s) for s in g.copied}))
            what = ", ".join(sorted({s.path for s in g.copied}))
            message += (f". The Dockerfile copies it ({lines}: {what}), which contradicts the "
                        f"doctrine ({policy.why(g.pattern)})")
            fix = (f"change {lines} so the image makes {what} itself (e.g. copy the manifest only and "
                   f"let the install step create the lock), then add `{policy.docker_rule(g.pattern)}` "
                   f"to {g.ignore_name}; `cleanroom verify --fix` will not add it while the build "
                   "copies it (that would break the build)")
        else:
            fix = (f"add the line `{policy.docker_rule(g.pattern)}` to {g.ignore_name} (Docker anchors "
                   "patterns at the context root; `cleanroom verify --fix` adds it)")
        yield Finding("dockerignore-gap", g.ignore_name, message, fix,
                      related=tuple(b.name for b in grp.builds))


def rule_context_leak(ctx: RepoScan) -> Iterator[Finding]:
    """Artifact files a context would send although the ignore file covers their pattern
    (a '!' line re-includes them, or a nested layout slips past): one finding per deciding line."""
    gapped = {(g.group.ignore_name, g.pattern) for g in docker_gaps(ctx)}
    for grp in ctx.groups:
        ctx_rel = ctx.rel(grp.context) if grp.context != ctx.repo else ""
        prefix = ctx_rel + "/" if ctx_rel else ""
        by_line: dict[str, list[str]] = {}
        for path in _leaks(ctx, grp):
            pattern = ctx.pattern_of(path) or ""
            if (grp.ignore_name, pattern) in gapped:
                continue  # reported as that pattern's dockerignore-gap
            decided = ctx.matcher(grp.members[0]).match(path[len(prefix):])
            why = (f"{ctx.rel(Path(decided.source)) if Path(decided.source).is_absolute() else decided.source}:"
                   f"{decided.line} `{decided}` re-includes it" if decided is not None
                   else "no line of it excludes it")
            by_line.setdefault(why, []).append(path)
        for why, paths in sorted(by_line.items()):
            size = sum(_tree_size(ctx.repo / p) for p in paths)
            yield Finding(
                "context-leak", paths[0] if len(paths) == 1 else grp.ignore_name,
                f"{len(paths)} artifact file(s) ({human_size(size)}) would be sent in the context of "
                f"{grp.label}: {examples(paths)}; {grp.ignore_name}: {why}",
                f"exclude them in {grp.ignore_name} (a line after the one that re-includes them), or "
                "delete them (`cleanroom clean --yes`)",
                related=tuple(paths),
            )


def rule_dead_ignore_file(ctx: RepoScan) -> Iterator[Finding]:
    read_by = {bi.ignore_path.resolve() for bi in ctx.build_ignores if bi.ignore_path}
    # A folder with a Dockerfile no build declares may be the context of that build (a Makefile
    # runs `cd python && docker build ...`): its ignore file is not called dead.
    unknown = {d.rpartition("/")[0] for d in ctx.undeclared_dockerfiles}
    unknown_own = {f"{d}.dockerignore" for d in ctx.undeclared_dockerfiles}
    builds = ", ".join(f"{b.name} (context {b.rel_context(ctx.repo) or '.'})" for b in ctx.builds)
    for rel in ctx.ignore_files:
        path = (ctx.repo / rel).resolve()
        if path in read_by or rel.rpartition("/")[0] in unknown or rel in unknown_own:
            continue
        yield Finding(
            "dead-ignore-file", rel,
            "no build reads this ignore file: Docker reads only <context>/.dockerignore, or "
            "(BuildKit) <Dockerfile>.dockerignore next to the Dockerfile; "
            + (f"builds here: {builds}" if builds else "this repo declares no Docker build"),
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


def rule_variant_drift(ctx: RepoScan) -> Iterator[Finding]:
    v = ctx.cfg.variants
    if not v.enabled:
        return
    missing = [f for f in (v.binary, v.source) if not (ctx.repo / f).is_file()]
    if missing:
        yield Finding(
            "variant-drift", missing[0],
            f"the variant file {missing[0]} is missing"
            + (f" (so is {missing[1]})" if len(missing) > 1 else "")
            + ": a repo with variants needs both (binary and source)",
            f"add {missing[0]} (copy the other variant and change only its dependency sources and "
            "versions), or turn variants off: [variants] enabled = false in cleanroom.toml",
        )
        return
    for d in find_drift(ctx.repo, ctx.cfg):
        yield Finding(
            "variant-drift", v.source,
            f"shared key '{d.key}' differs between the variants: "
            f"{v.binary} has {_fmt(d.binary)}, {v.source} has {_fmt(d.source)}",
            f"make '{d.key}' identical in {v.binary} and {v.source}, or, if it may legitimately "
            "differ, add its section to [variants] may_differ in cleanroom.toml",
        )


def rule_copy_excluded(ctx: RepoScan) -> Iterator[Finding]:
    for p in copy_problems(ctx):
        ins = p.source.instruction
        builds = ", ".join(p.builds)
        message = (f"`{ins.original}` copies {p.source.path}, which {p.why} of build(s) {builds}: "
                   + ("the build fails: it is not in the context" if p.missing else
                      "the build fails: Docker does not send it"))
        if p.artifact:
            message += (f"; {p.source.path} is a build artifact ({p.artifact}: {policy.why(p.artifact)}), "
                        "so the Dockerfile contradicts the doctrine")
            fix = (f"remove {p.source.written} from line {ins.line} of {p.dockerfile}: the image makes it "
                   "itself (e.g. `poetry install` writes the lock inside the image)")
        elif p.missing:
            fix = f"add {p.source.path} to the context, or remove it from line {ins.line} of {p.dockerfile}"
        else:
            fix = (f"stop excluding {p.source.path}: remove or narrow that line, or add "
                   f"`!{p.source.path}` after it")
        yield Finding("copy-excluded", p.dockerfile, message, fix, line=ins.line)


def rule_generated(ctx: RepoScan) -> Iterator[Finding]:
    if not ctx.check_generated or ctx.out_dir is None:
        return

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


def rule_engine_context_diff(ctx: RuleContext) -> Iterator[Finding]:
    yield from engine_findings(ctx.repo, ctx.cfg)


def _always(ctx: RuleContext) -> bool:
    return True


def _has_builds(ctx: RuleContext) -> bool:
    return bool(ctx.builds)


NO_BUILD = "no Docker build in this repo"
NO_GENERATED = "no generated package to check (--out DIR)"


@dataclass(frozen=True, eq=False)
class Rule:
    # Each finding name the rule can give -> what a finding of that name means (one line: the
    # SARIF rule list, the GitHub summary and the README read it).
    docs: Mapping[str, str]
    check: Callable[[RuleContext], Iterable[Finding]]
    applies: Callable[[RuleContext], bool] = _always
    why_not: str = "does not apply"  # why, where ``applies`` says no (a note in ``skipped``)
    # What the run starts early, before any rule, for the rules that will run: "docker" (the
    # Docker side, worked out while git walks the tree), "probes" (git asked about the
    # .gitignore probe paths, in the background).
    needs: tuple[str, ...] = ()
    waits_on_git: bool = False  # run last: it needs a background git answer

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.docs)


# The rules, in report order: registered once, read by the run, every format and the docs.
RULES: tuple[Rule, ...] = (
    Rule({"tracked-artifact": "git tracks a file the artifact policy names (a build output, lockfile, "
                              "generated code or cache)"},
         rule_tracked_artifact),
    Rule({"untracked-artifact": "an artifact in the tree that no .gitignore rule covers"},
         rule_untracked_artifact, waits_on_git=True),
    Rule({"gitignore-gap": "an artifact pattern the .gitignore files do not cover"},
         rule_gitignore_gap, needs=("probes",), waits_on_git=True),
    Rule({"dockerignore-gap": "an artifact pattern a build's .dockerignore does not cover"},
         rule_dockerignore_gap, _has_builds, NO_BUILD, needs=("docker",)),
    Rule({"copy-excluded": "a Dockerfile COPY/ADD names a file its build context leaves out"},
         rule_copy_excluded, _has_builds, NO_BUILD, needs=("docker",)),
    Rule({"dead-ignore-file": "an ignore file no build reads, or a line in one that can never match"},
         rule_dead_ignore_file, needs=("docker",)),
    Rule({"context-leak": "an artifact that exists now and would be sent in a build context"},
         rule_context_leak, _has_builds, NO_BUILD, needs=("docker",)),
    Rule({"variant-drift": "a key of the shared sections differs between the pyproject variants"},
         rule_variant_drift, lambda ctx: bool(ctx.cfg.variants.enabled),
         "no pyproject variants in this repo ([variants] enabled)"),
    Rule({"generated-missing": "the generated protobuf package is missing",
          "generated-stale": "the generated protobuf package does not match the .proto sources"},
         rule_generated, lambda ctx: ctx.check_generated, NO_GENERATED),
    Rule({"engine-context-diff": "the Docker engine's own build context differs from the engine's prediction"},
         rule_engine_context_diff, lambda ctx: ctx.engine, "not asked for (--engine)"),
)


RULE_NAMES: tuple[str, ...] = tuple(n for r in RULES for n in r.names)
# Every rule name, in report order -> what it means (what a report's ``Result.rules`` holds).
RULE_DOCS: dict[str, str] = {n: doc for r in RULES for n, doc in r.docs.items()}
