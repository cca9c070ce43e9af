"""verify: every rule of the doctrine run over the repo scan, one finding per defect; and
``--fix``. What cannot be checked is a one-line note, never a finding and never a crash.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cleanroom.artifacts import policy
from cleanroom.core.config import Config
from cleanroom.core.errors import BadInput
from cleanroom.core.git import Listing, require_repo
from cleanroom.core.report import Finding

if TYPE_CHECKING:
    pass
from cleanroom.artifacts.fix import fix_plan, safe_docker_rules
from cleanroom.artifacts.gaps import DockerGap, docker_gaps, gitignore_gaps
from cleanroom.artifacts.scan import VerifyContext
from cleanroom.core.actions import execute
from cleanroom.verify.rules import _SKIP_WHY, RULES


@dataclass
class Report:
    findings: list[Finding]
    checked: list[str]
    skipped: dict[str, str]  # rule -> why it did not apply
    notes: list[str]


def run(repo: Path, cfg: Config, out_dir: Path | None = None, check_generated: bool = False,
        listing: Listing | None = None) -> Report:
    require_repo(repo)
    ctx = VerifyContext(repo=repo, cfg=cfg, out_dir=out_dir, check_generated=check_generated,
                        listing=listing)
    ctx.warm()
    ctx.prefetch()
    ctx.undeclared_dockerfiles  # noqa: B018 (its note)
    findings: list[Finding] = []
    checked: list[str] = []
    skipped: dict[str, str] = {}
    try:
        ordered = [r for r in RULES if not r.waits_on_git] + [r for r in RULES if r.waits_on_git]
        for rule in ordered:
            if rule.applies(ctx):
                findings.extend(rule.check(ctx))
        for rule in RULES:
            for name in rule.names:
                if rule.applies(ctx):
                    checked.append(name)
                else:
                    skipped[name] = _SKIP_WHY.get(name, "does not apply")
    finally:
        ctx._pool.shutdown(wait=False)
    return Report(findings, checked, skipped, ctx.notes)


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
    build copies, never a line Docker would refuse, never a file outside the repo."""

    require_repo(repo)
    ctx = VerifyContext(repo=repo, cfg=cfg)
    refused: list[str] = []
    git_gaps = [(repo / ".gitignore", pat) for pat in gitignore_gaps(ctx)]
    dock: list[tuple[Path, str]] = []
    by_file: dict[str, list[DockerGap]] = {}
    for g in docker_gaps(ctx):
        if not g.fixable:
            refused.append(f"{g.ignore_name}: not adding `{policy.docker_rule(g.pattern)}`: a build "
                           "copies what it names (see the dockerignore-gap finding)")
            continue
        by_file.setdefault(g.ignore_name, []).append(g)
    for name, gaps in by_file.items():
        path = repo / name
        try:
            real = path.resolve()
        except OSError as exc:
            raise BadInput(f"{path}: cannot resolve: {exc}") from None
        if real != repo.resolve() and repo.resolve() not in real.parents:
            refused.append(f"{name}: not written: it resolves outside the repo ({real})")
            continue
        sources = [s for g in gaps for b in g.group.builds for s in ctx.sources_of(b)]
        ok, why_not = safe_docker_rules(ctx, gaps[0].group, [g.pattern for g in gaps], sources)
        refused += [f"{name}: {w}" for w in why_not]
        dock += [(path, pat) for pat in ok]
    plan = fix_plan(git_gaps, dock)
    execute(plan, dry_run=dry_run)
    return FixResult([a.show() for a in plan], refused)
