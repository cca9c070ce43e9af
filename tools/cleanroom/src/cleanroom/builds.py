"""Docker builds of the repo: discovered from the compose file and cleanroom.toml.

A build is a context folder and a Dockerfile. Compose's ``build`` is either a context string or a
mapping with ``context`` and ``dockerfile``; the context is relative to the compose file's folder
and the Dockerfile relative to the context. ``${VAR:-default}`` and ``${VAR}`` are interpolated
from the environment, as Compose does. A repo with no compose file and no Dockerfile named in
the config is one build: the repo root with its ``Dockerfile``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import Config
from .errors import BadInput

_VAR = re.compile(r"\$(?:\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?-)(?P<default>[^}]*))?\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")


def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    env = dict(os.environ) if env is None else env

    def sub(m: re.Match[str]) -> str:
        name = m.group("name") or m.group("bare")
        val = env.get(name)
        if m.group("op") == ":-" and not val:
            return m.group("default")
        if m.group("op") == "-" and val is None:
            return m.group("default")
        return val or ""

    return _VAR.sub(sub, value.replace("$$", "\0")).replace("\0", "$")


@dataclass(frozen=True)
class Build:
    name: str
    context: Path  # absolute
    dockerfile: Path  # absolute
    origin: str  # where it was declared

    def rel_context(self, repo: Path) -> str:
        rel = os.path.relpath(self.context, repo)
        return "" if rel == "." else rel.replace(os.sep, "/")


def load_compose(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise BadInput(f"{path}{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    except OSError as exc:
        raise BadInput(f"{path}: cannot read: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BadInput(f"{path}: expected a mapping at the top level")
    return data


def compose_builds(repo: Path, compose: Path) -> list[Build]:
    data = load_compose(compose)
    services = data.get("services") or {}
    if not isinstance(services, dict):
        raise BadInput(f"{compose}: 'services' must be a mapping")
    out = []
    for name, svc in services.items():
        if not isinstance(svc, dict) or "build" not in svc:
            continue
        b = svc["build"]
        if isinstance(b, str):
            ctx_s, df_s = b, "Dockerfile"
        elif isinstance(b, dict):
            ctx_s = str(b.get("context", "."))
            df_s = str(b.get("dockerfile", "Dockerfile"))
        else:
            raise BadInput(f"{compose}: services.{name}.build must be a string or a mapping")
        ctx = (compose.parent / interpolate(ctx_s)).resolve()
        df = (ctx / interpolate(df_s)).resolve()
        out.append(Build(str(name), ctx, df, f"{compose.relative_to(repo)} service {name}"))
    return out


def discover_builds(repo: Path, cfg: Config) -> list[Build]:
    builds: list[Build] = []
    compose = repo / cfg.docker.compose
    if compose.is_file():
        builds.extend(compose_builds(repo, compose))
    named = [cfg.docker.binary_dockerfile, cfg.docker.source_dockerfile, *cfg.docker.dockerfiles]
    for rel in named:
        df = (repo / rel).resolve()
        if df.is_file():
            builds.append(Build(rel, repo.resolve(), df, "cleanroom.toml [docker]"))
    if not builds:
        builds.append(Build("default", repo.resolve(), (repo / "Dockerfile").resolve(), "default"))
    seen: set[tuple[Path, Path]] = set()
    unique = []
    for b in builds:
        if (b.context, b.dockerfile) not in seen:
            seen.add((b.context, b.dockerfile))
            unique.append(b)
    return unique
