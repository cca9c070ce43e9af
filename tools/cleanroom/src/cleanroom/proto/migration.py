"""migrate-proto's plan as data: the ignore changes, the Dockerfile checks, the rewrites, the
proofs and notes (made by :mod:`cleanroom.proto.migrate`, shown by
:mod:`cleanroom.proto.migrate_report`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cleanroom.artifacts import policy
from cleanroom.core.config import Config

PROTO_PATTERNS: tuple[str, ...] = ("*_pb2.py", "*_pb2.pyi", "*_pb2_grpc.py", "*_pb2_grpc.pyi")


@dataclass(frozen=True)
class IgnoreChange:
    path: str  # repo-relative
    rules: tuple[str, ...]
    old: str
    new: str


@dataclass(frozen=True)
class DockerfileCheck:
    """Whether one Dockerfile generates the code its image needs; what to add if not."""

    path: str  # repo-relative
    builds: tuple[str, ...]
    ok: bool
    message: str
    add: tuple[str, ...] = ()


@dataclass(frozen=True)
class Note:
    """Something the migration does not do itself, with where it is and why."""

    path: str
    line: int
    code: str
    why: str


@dataclass(frozen=True)
class Rewrite:
    path: str  # repo-relative
    old: bytes
    new: bytes
    what: str
    facade: bool


@dataclass(frozen=True)
class Proof:
    module: str
    status: str  # "proven", "not proven", "failed"
    why: str = ""


@dataclass
class Migration:
    repo: Path
    cfg: Config
    legacy: str
    legacy_dir: str | None
    found: list[str] = field(default_factory=list)  # what was detected, not configured
    ignore: list[IgnoreChange] = field(default_factory=list)
    dockerfiles: list[DockerfileCheck] = field(default_factory=list)
    rewrites: list[Rewrite] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    unparsed: list[tuple[str, str]] = field(default_factory=list)
    untrack: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)  # generated, but no .proto regenerates them
    outside: list[str] = field(default_factory=list)  # generated, outside the legacy module
    proof: list[Proof] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # files that refer to the legacy module, changed or not (they depend on its facade): proven
    users: list[str] = field(default_factory=list)
    # the settings found (not configured), recorded in cleanroom.toml: `cleanroom proto` in a fresh
    # checkout must make the same package from the same sources
    settings: IgnoreChange | None = None

    @property
    def package(self) -> str:
        return self.cfg.proto.package

    @property
    def nothing(self) -> bool:
        return not (self.ignore or self.rewrites or self.untrack)

    @property
    def text_changes(self) -> list[IgnoreChange]:
        return [*self.ignore, *([self.settings] if self.settings else [])]

    @property
    def touched(self) -> list[str]:
        """Repo-relative paths the plan changes (in the work tree or the index)."""
        return [*(i.path for i in self.text_changes), *(r.path for r in self.rewrites), *self.untrack]

    @property
    def failed(self) -> list[Proof]:
        return [p for p in self.proof if p.status == "failed"]

    @property
    def manual(self) -> list[str]:
        """What is left for a person to do (Dockerfile lines, references not rewritten, orphans)."""
        out = [f"{d.path}: {d.message} " + " ; ".join(f"`{a}`" for a in d.add)
               for d in self.dockerfiles if not d.ok]
        out += [f"{n.path}:{n.line}: {n.why}" for n in self.notes]
        if self.orphans:
            out.append(f"{len(self.orphans)} generated file(s) no .proto under {self.cfg.proto.sources} "
                       f"regenerates stay tracked: {policy.examples(self.orphans)}: add their .proto "
                       "sources, or allow them ([[artifacts.allow]] in cleanroom.toml)")
        return out
