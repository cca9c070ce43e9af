"""verify: every rule of the doctrine as a check.

Each rule is a function from the verify context to findings. The context holds what several
rules share (the config, the repo, git's view of the tree), computed once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from .config import Config
from .findings import Finding
from .variants import find_drift


@dataclass
class VerifyContext:
    repo: Path
    cfg: Config


Rule = Callable[[VerifyContext], Iterable[Finding]]


def _fmt(v: object) -> str:
    return "(absent)" if v == "<missing>" else repr(v)


def rule_variant_drift(ctx: VerifyContext) -> Iterable[Finding]:
    v = ctx.cfg.variants
    for d in find_drift(ctx.repo, ctx.cfg):
        yield Finding(
            rule="variant-drift",
            path=v.source,
            message=(
                f"shared key '{d.key}' differs between the variants: "
                f"{v.binary} has {_fmt(d.binary)}, {v.source} has {_fmt(d.source)}"
            ),
            fix=(
                f"make '{d.key}' identical in {v.binary} and {v.source}, or, if it may "
                "legitimately differ, add its section to [variants] may_differ in cleanroom.toml"
            ),
        )


RULE_FUNCS: dict[str, Rule] = {
    "variant-drift": rule_variant_drift,
}


def run_verify(repo: Path, cfg: Config) -> tuple[list[Finding], list[str]]:
    ctx = VerifyContext(repo=repo, cfg=cfg)
    findings: list[Finding] = []
    for func in RULE_FUNCS.values():
        findings.extend(func(ctx))
    return findings, list(RULE_FUNCS)
