"""verify: every rule of the doctrine run over the repo scan, one finding per defect; and
``--fix``. What cannot be checked is a one-line note, never a finding and never a crash.

``cleanroom.toml`` ``[verify]`` (see :func:`selection`) picks the rules: one that is not selected,
or ignored, is not run at all and is listed in ``skipped`` with the reason; ``per-path-ignores``
drops findings by path after the rules ran, and a note says how many.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from cleanroom.artifacts import policy
from cleanroom.artifacts.fix import fix_plan, safe_docker_rules
from cleanroom.artifacts.gaps import DockerGap, docker_gaps, gitignore_gaps
from cleanroom.artifacts.scan import RepoScan
from cleanroom.core.actions import execute
from cleanroom.core.config import CONFIG_NAME, Config
from cleanroom.core.errors import BadInput, ConfigError
from cleanroom.core.git import Listing, require_repo
from cleanroom.core.report import Finding, Result
from cleanroom.verify.rules import RULE_DOCS, RULE_NAMES, RULES, RuleContext

# ------------------------------------------------------------------ [verify] in cleanroom.toml


def glob_parts(glob: str) -> tuple[str, ...]:
    """A ``per-path-ignores`` glob split into its path parts (``**`` twice in a row is once)."""
    parts = [p for p in glob.strip("/").split("/") if p not in ("", ".")]
    return tuple(p for i, p in enumerate(parts) if not (p == "**" and i and parts[i - 1] == "**"))


def glob_match(parts: Sequence[str], path: Sequence[str]) -> bool:
    """Whether the glob's ``parts`` match the path's: each part an fnmatch pattern of one path
    part (``*``, ``?``, ``[...]``, ``[!...]``: ``*`` never crosses a ``/``), and ``**`` as a whole
    part any number of path parts, none too (``tests/**`` matches ``tests`` and all under it)."""
    if not parts:
        return not path
    head, rest = parts[0], parts[1:]
    if head == "**":
        return any(glob_match(rest, path[i:]) for i in range(len(path) + 1))
    return bool(path) and fnmatchcase(path[0], head) and glob_match(rest, path[1:])


@dataclass(frozen=True)
class PathRule:
    """One ``"glob" = ["rule", ...]`` of ``per-path-ignores``."""

    glob: str
    rules: frozenset[str]

    def matches(self, path: str) -> bool:
        """A glob with a ``/`` is matched against the whole repo-relative path; one without,
        against its last part, at any depth (as ruff and .gitignore do). A folder's finding
        (``build/``) is matched as the folder."""
        parts = glob_parts(self.glob)
        segs = [s for s in path.strip("/").split("/") if s not in ("", ".")]
        if "/" not in self.glob.strip("/"):
            segs = segs[-1:]
        return glob_match(parts, segs)


@dataclass(frozen=True)
class Selection:
    """What ``[verify]`` asks for: the rule names that run, why each other one does not, and
    the per-path ignores."""

    active: frozenset[str]
    why_not: dict[str, str]  # rule name -> why it is not run
    per_path: tuple[PathRule, ...]
    config_name: str  # the file's name, for the notes

    def reports(self, rule: str, path: str) -> bool:
        """Whether a finding of ``rule`` at ``path`` would be reported."""
        return rule in self.active and not any(rule in p.rules and p.matches(path) for p in self.per_path)

    def drop(self, findings: Iterable[Finding]) -> tuple[list[Finding], dict[str, int]]:
        """The findings per-path-ignores keeps, and how many it dropped of each rule."""
        kept: list[Finding] = []
        dropped: dict[str, int] = {}
        for f in findings:
            if self.reports(f.rule, f.path):
                kept.append(f)
            else:
                dropped[f.rule] = dropped.get(f.rule, 0) + 1
        return kept, dropped


def _known(name: str, where: str, file: Path) -> None:
    if name in RULE_NAMES:
        return
    import difflib  # only on this error path

    near = difflib.get_close_matches(name, RULE_NAMES, n=1)
    hint = f"did you mean '{near[0]}'?" if near else f"the rules: {', '.join(RULE_NAMES)}"
    raise ConfigError(f"{file}: {where}: unknown rule {name!r} ({hint})")


def selection(cfg: Config) -> Selection:
    """``cfg``'s ``[verify]`` checked against the rule table: an unknown rule name is a
    :class:`ConfigError` naming the file, the key and the name (with the closest rule name)."""
    v = cfg.verify
    file = cfg.source or Path(CONFIG_NAME)
    for i, name in enumerate(v.select or ()):
        _known(name, f"verify.select[{i}]", file)
    for i, name in enumerate(v.ignore):
        _known(name, f"verify.ignore[{i}]", file)
    for p in v.per_path_ignores:
        for i, name in enumerate(p.rules):
            _known(name, f'verify.per-path-ignores."{p.glob}"[{i}]', file)
    why_not: dict[str, str] = {}
    for name in RULE_NAMES:
        if name in v.ignore:
            why_not[name] = f"ignored in {file.name} [verify] ignore"
        elif v.select is not None and name not in v.select:
            why_not[name] = f"not selected in {file.name} [verify] select"
    per_path = tuple(PathRule(p.glob, frozenset(p.rules)) for p in v.per_path_ignores if p.rules)
    return Selection(frozenset(RULE_NAMES) - set(why_not), why_not, per_path, file.name)


# ----------------------------------------------------------------------------------- the run


@dataclass
class Report:
    findings: list[Finding]
    checked: list[str]
    skipped: dict[str, str]  # rule -> why it was not run (did not apply, or not selected)
    notes: list[str]

    def result(self) -> Result:
        """What the formats render, with the rule table."""
        return Result(self.findings, self.checked, self.notes, self.skipped, RULE_DOCS)


def run(repo: Path, cfg: Config, out_dir: Path | None = None, check_generated: bool = False,
        listing: Listing | None = None, engine: bool = False) -> Report:
    """Run every selected rule that applies (``engine``: ``engine-context-diff`` too, which asks
    the Docker engine); then drop what ``[verify] per-path-ignores`` ignores."""
    require_repo(repo)
    sel = selection(cfg)
    ctx = RuleContext(repo=repo, cfg=cfg, out_dir=out_dir, check_generated=check_generated,
                      listing=listing, engine=engine)
    wanted = [r for r in RULES if any(n in sel.active for n in r.names)]
    needs = {n for r in wanted for n in r.needs}
    if "docker" in needs:
        ctx.warm()
    if "probes" in needs:
        ctx.prefetch()
    ctx.undeclared_dockerfiles  # noqa: B018 (its note)
    findings: list[Finding] = []
    checked: list[str] = []
    skipped: dict[str, str] = {}
    try:
        applies = {id(r): r.applies(ctx) for r in wanted}
        ordered = [r for r in wanted if not r.waits_on_git] + [r for r in wanted if r.waits_on_git]
        for rule in ordered:
            if applies[id(rule)]:
                findings.extend(f for f in rule.check(ctx) if f.rule in sel.active)
        for rule in RULES:
            for name in rule.names:
                if name not in sel.active:
                    skipped[name] = sel.why_not[name]
                elif applies[id(rule)]:
                    checked.append(name)
                else:
                    skipped[name] = rule.why_not
    finally:
        ctx._pool.shutdown(wait=False)
    findings, dropped = sel.drop(findings)
    notes = list(ctx.notes)
    if dropped:
        counts = ", ".join(f"{rule} {n}" for rule, n in dropped.items())
        notes.append(f"{sum(dropped.values())} finding(s) ignored by [verify] per-path-ignores in "
                     f"{sel.config_name} ({counts})")
    return Report(findings, checked, skipped, notes)


def run_verify(repo: Path, cfg: Config, out_dir: Path | None = None,
               check_generated: bool = False) -> tuple[list[Finding], list[str]]:
    r = run(repo, cfg, out_dir, check_generated)
    return r.findings, r.checked


@dataclass
class FixResult:
    written: list[str]  # what was (or would be) written, one line each
    refused: list[str]  # rules not added, and why


def fix(repo: Path, cfg: Config, dry_run: bool = False) -> FixResult:
    """Add the missing ignore rules to managed blocks; never a rule that would exclude what a
    build copies, never a line Docker would refuse, never a file outside the repo.

    It fixes what the report would ask for, no more: nothing for a rule that ``[verify]`` does
    not run (``gitignore-gap``, ``dockerignore-gap``), nor in a file whose findings of that rule
    ``per-path-ignores`` drops; each such file is named in ``refused``, with why."""

    require_repo(repo)
    sel = selection(cfg)
    ctx = RepoScan(repo=repo, cfg=cfg)
    refused: list[str] = []
    git_gaps: list[tuple[Path, str]] = []
    if "gitignore-gap" not in sel.active:
        refused.append(f".gitignore: left as it is: gitignore-gap is {sel.why_not['gitignore-gap']}")
    else:
        missing = list(gitignore_gaps(ctx))
        if missing and not sel.reports("gitignore-gap", ".gitignore"):
            refused.append(f".gitignore: not adding {len(missing)} rule(s): its gitignore-gap findings are "
                           f"ignored by [verify] per-path-ignores in {sel.config_name}")
        elif missing and (repo / ".gitignore").is_symlink():
            refused.append(".gitignore: not written: it is a symbolic link, which git (2.32 and later) does "
                           "not read; replace it with a regular file holding its rules, then run --fix again")
        else:
            git_gaps = [(repo / ".gitignore", pat) for pat in missing]
    dock: list[tuple[Path, str]] = []
    by_file: dict[str, list[DockerGap]] = {}
    docker_side = docker_gaps(ctx) if "dockerignore-gap" in sel.active else []
    if "dockerignore-gap" not in sel.active and ctx.builds:
        refused.append(f"Docker ignore files: left as they are: dockerignore-gap is "
                       f"{sel.why_not['dockerignore-gap']}")
    per_path: dict[str, int] = {}
    for g in docker_side:
        if not sel.reports("dockerignore-gap", g.ignore_name):
            per_path[g.ignore_name] = per_path.get(g.ignore_name, 0) + 1
            continue
        if not g.fixable:
            refused.append(f"{g.ignore_name}: not adding `{policy.docker_rule(g.pattern)}`: a build "
                           "copies what it names (see the dockerignore-gap finding)")
            continue
        by_file.setdefault(g.ignore_name, []).append(g)
    refused += [f"{name}: not adding {n} rule(s): its dockerignore-gap findings are ignored by [verify] "
                f"per-path-ignores in {sel.config_name}" for name, n in per_path.items()]
    for name, gaps in by_file.items():
        path = repo / name
        if not _inside(repo, path):
            refused.append(f"{name}: not written: it resolves outside the repo ({path.resolve()})")
            continue
        sources = [s for g in gaps for b in g.group.builds for s in ctx.sources_of(b)]
        ok, why_not = safe_docker_rules(ctx, gaps[0].group, [g.pattern for g in gaps], sources)
        refused += [f"{name}: {w}" for w in why_not]
        dock += [(path, pat) for pat in ok]
    plan = fix_plan(git_gaps, dock)
    execute(plan, dry_run=dry_run)
    return FixResult([a.show() for a in plan], refused)


def _inside(repo: Path, path: Path) -> bool:
    """Whether ``path`` (a link followed) is in the repo: --fix never writes outside it."""
    try:
        real = path.resolve()
    except OSError as exc:
        raise BadInput(f"{path}: cannot resolve: {exc}") from None
    top = repo.resolve()
    return real == top or top in real.parents
