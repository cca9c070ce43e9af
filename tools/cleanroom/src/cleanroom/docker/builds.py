"""The repo's Docker builds, discovered as Docker and Compose define them, and none invented.

A build is a context folder and a Dockerfile. They come from:

* the compose files (:mod:`cleanroom.docker.compose`: those Compose reads at the repo root, and each
  file ``[docker] compose`` names), one build per service with a ``build``;
* Dockerfiles at the repo root (``Dockerfile``, ``Dockerfile.*``, ``*.Dockerfile``): ``docker
  build .`` there, context the root;
* the variants' Dockerfiles (``[docker] binary_dockerfile``/``source_dockerfile``, context the
  root) in a repo with variants, ``[docker] dockerfiles`` (context the root) and
  ``[[docker.builds]]`` (a Dockerfile with its own context, e.g. ``cd python && docker build -f
  sklearn.Dockerfile .``).

No Dockerfile and no compose file: no build. A build whose context is remote (a git URL, ``-``),
outside the repo or missing is not checkable: it becomes a one-line note, never a traceback.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from cleanroom.core.config import Config
from cleanroom.docker import compose
from cleanroom.docker.compose import interpolate

__all__ = ["Build", "Discovery", "discover", "discover_builds", "interpolate", "is_dockerfile_name"]

_DOCKERFILE_NAME = re.compile(r"^(Dockerfile(\..+)?|.+\.[Dd]ockerfile|[Dd]ockerfile)$")


def is_dockerfile_name(name: str) -> bool:
    """``Dockerfile``, ``Dockerfile.source``, ``app.Dockerfile`` (not ``x.Dockerfile.dockerignore``)."""
    return bool(_DOCKERFILE_NAME.match(name)) and not name.endswith(".dockerignore")


@dataclass(frozen=True)
class Build:
    name: str
    context: Path  # absolute
    dockerfile: Path  # absolute (for an inline Dockerfile: where BuildKit would look, unused)
    origin: str  # where it was declared
    inline: str | None = None  # compose's dockerfile_inline
    also: tuple[str, ...] = ()  # other names for the same build (compose services sharing it)

    def rel_context(self, repo: Path) -> str:
        rel = os.path.relpath(self.context, repo)
        return "" if rel == "." else rel.replace(os.sep, "/")

    def rel_dockerfile(self, repo: Path) -> str:
        return "(inline)" if self.inline is not None else os.path.relpath(self.dockerfile, repo).replace(os.sep, "/")

    def dockerfile_text(self) -> str | None:
        """The Dockerfile's text (None when it cannot be read: the build fails anyway)."""
        if self.inline is not None:
            return self.inline
        try:
            return self.dockerfile.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError, ValueError):  # ValueError: a NUL in the path
            return None


@dataclass
class Discovery:
    builds: list[Build] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    compose_files: list[Path] = field(default_factory=list)


def _inside(path: Path, repo: Path) -> bool:
    return path == repo or repo in path.parents


def _rel(path: Path, repo: Path) -> str:
    return os.path.relpath(path, repo).replace(os.sep, "/")


def _projects(repo: Path, cfg: Config, d: Discovery) -> list[list[Path]]:
    projects: list[list[Path]] = []
    root = compose.root_files(repo)
    if root:
        projects.append(root)
    for rel in cfg.docker.compose:
        f = Path(rel) if Path(rel).is_absolute() else repo / rel
        f = Path(os.path.normpath(f))
        if any(f in p for p in projects):
            continue
        if not _inside(f, repo):
            d.notes.append(f"[docker] compose {rel}: outside the repo: not checkable, skipped")
        elif f.is_file():
            projects.append([f])
        elif f.exists():
            d.notes.append(f"[docker] compose {rel}: not a file, skipped")
    return projects


def _add_compose(repo: Path, files: list[Path], d: Discovery) -> Iterable[Build]:
    proj = compose.read_project(files)
    d.compose_files += files
    d.notes += proj.notes
    shown = _rel(files[0], repo)
    for cb in proj.builds:
        where = f"{shown} service {cb.service}"
        if cb.remote:
            d.notes.append(f"{where}: build context {cb.context!r} is remote: not checkable, skipped")
            continue
        ctx = Path(os.path.normpath(cb.context))
        if not _inside(ctx, repo):
            d.notes.append(f"{where}: build context {os.path.relpath(ctx, repo)} is outside the repo: "
                           "not checkable, skipped")
            continue
        if not ctx.is_dir():
            d.notes.append(f"{where}: build context {_rel(ctx, repo)} does not exist: the build fails; "
                           "skipped")
            continue
        df = ctx / "Dockerfile" if cb.dockerfile is None else Path(os.path.normpath(ctx / cb.dockerfile))
        if cb.inline is None and not df.is_file():
            d.notes.append(f"{where}: its Dockerfile {_rel(df, repo)} does not exist: the build fails")
        yield Build(cb.service, ctx, df, where, cb.inline)


def discover(repo: Path, cfg: Config) -> Discovery:
    """Every build of the repo, and a note for each declared build that cannot be checked."""
    repo = repo.resolve()
    d = Discovery()
    found: list[Build] = []
    for files in _projects(repo, cfg, d):
        found.extend(_add_compose(repo, files, d))
    root_dfs = sorted(e.name for e in os.scandir(repo) if is_dockerfile_name(e.name)
                      and e.is_file()) if repo.is_dir() else []
    for name in root_dfs:
        found.append(Build(name, repo, repo / name, f"{name} at the repo root"))
    dk = cfg.docker
    named: list[tuple[str, str]] = []
    if cfg.variants_on(repo):
        named += [(dk.binary_dockerfile, "[docker] binary_dockerfile"),
                  (dk.source_dockerfile, "[docker] source_dockerfile")]
    named += [(rel, "[docker] dockerfiles") for rel in dk.dockerfiles]
    for rel, key in named:
        df = Path(os.path.normpath(repo / rel))
        if df.is_file():
            found.append(Build(rel, repo, df, f"cleanroom.toml {key}"))
        elif key == "[docker] dockerfiles":
            d.notes.append(f"cleanroom.toml {key}: {rel} does not exist, skipped")
    for i, decl in enumerate(dk.builds):
        key = f"cleanroom.toml [[docker.builds]] #{i + 1}"
        ctx = Path(os.path.normpath(repo / decl.context))
        df = Path(os.path.normpath(repo / decl.dockerfile))
        if not _inside(ctx, repo):
            d.notes.append(f"{key}: context {decl.context} is outside the repo: not checkable, skipped")
        elif not ctx.is_dir():
            d.notes.append(f"{key}: context {decl.context} does not exist, skipped")
        elif not df.is_file():
            d.notes.append(f"{key}: dockerfile {decl.dockerfile} does not exist, skipped")
        else:
            found.append(Build(decl.name or _rel(df, repo), ctx, df, key))
    seen: dict[tuple[Path, Path, str | None], Build] = {}
    for b in found:
        same = (b.context, b.dockerfile, b.inline)
        first = seen.get(same)
        if first is None:
            seen[same] = b
        elif b.name != first.name and b.name not in first.also:
            seen[same] = replace(first, also=(*first.also, b.name))
    d.builds = list(seen.values())
    return d


def discover_builds(repo: Path, cfg: Config) -> list[Build]:
    return discover(repo, cfg).builds


def undeclared(repo: Path, builds: Iterable[Build], dockerfiles: Iterable[str]) -> list[str]:
    """Of the repo's Dockerfiles (repo-relative), those no build uses: their context is unknown
    (a Makefile or CI script decides it)."""
    used = {_rel(b.dockerfile, repo.resolve()) for b in builds if b.inline is None}
    return sorted(p for p in dockerfiles if p not in used and is_dockerfile_name(p.rsplit("/", 1)[-1]))
