"""Compose files, read as Compose reads them: which files, and the builds they declare.

Which files: at the repo root, the first of ``compose.yaml``, ``compose.yml``,
``docker-compose.yml``, ``docker-compose.yaml`` plus the first override file
(``compose.override.yml``, ``compose.override.yaml``, ``docker-compose.override.yml``,
``docker-compose.override.yaml``), the order Compose v2 uses (measured with v2.40); plus each file
``[docker] compose`` names, as a project of its own.

What they declare: when a Compose v2 CLI is installed (its plugin binary, found the way the docker
CLI finds plugins), ``docker compose config --format json`` is the truth: ``.env``, every
interpolation form, anchors and merges, ``extends``, ``include`` and profiles (all of them:
``--profile '*'``) are resolved by Compose itself. Its answer is remembered in
``$XDG_CACHE_HOME/cleanroom/compose.json`` for as long as the files, the ``.env`` and the values of
the variables they name are unchanged. Without Compose v2 (or when it refuses the files, e.g. a
``${X:?}`` whose variable is not set) the files are read with PyYAML, which resolves anchors and
merge keys, and interpolated here like Compose: the ``.env`` beside the first file, the shell
environment over it, ``$$``, ``$X``, ``${X}``, ``${X:-d}``, ``${X-d}``, ``${X:?msg}``, ``${X?msg}``,
``${X:+r}``, ``${X+r}``; ``extends`` within one file is merged.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cleanroom.core import runner
from cleanroom.core.cache import read_json, write_json
from cleanroom.core.errors import BadInput, CleanroomError
from cleanroom.docker.engine import PLUGIN_DIRS

ROOT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml")
OVERRIDE_FILES = ("compose.override.yml", "compose.override.yaml", "docker-compose.override.yml",
                  "docker-compose.override.yaml")


@dataclass(frozen=True)
class ComposeBuild:
    """One service's ``build``, as Compose resolves it."""

    service: str
    context: str  # an absolute path, or the remote context as written (a git URL, "-")
    dockerfile: str | None  # relative to the context, or absolute; None with dockerfile_inline
    inline: str | None = None  # dockerfile_inline's text
    remote: bool = False


@dataclass
class Project:
    files: tuple[Path, ...]
    builds: list[ComposeBuild] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    reader: str = ""


def root_files(repo: Path) -> list[Path]:
    """The compose files Compose reads at the repo root with no ``-f`` (main, then override)."""
    out = []
    for group in (ROOT_FILES, OVERRIDE_FILES):
        for name in group:
            if (repo / name).is_file():
                out.append(repo / name)
                break
    return out if out and out[0].name in ROOT_FILES else []


def is_remote(context: str) -> bool:
    """A context Docker fetches itself (a git or tarball URL) or reads from stdin (``-``)."""
    c = context.strip()
    return c == "-" or "://" in c or c.startswith(("git@", "github.com/"))


# ------------------------------------------------------------------------------ Compose v2


def compose_v2() -> Path | None:
    """The Compose v2 plugin binary, where the docker CLI would find it (no process started)."""
    dirs = []
    if os.environ.get("DOCKER_CONFIG"):
        dirs.append(os.path.join(os.environ["DOCKER_CONFIG"], "cli-plugins"))
    dirs += [os.path.expanduser(d) for d in PLUGIN_DIRS]
    for d in dirs:
        p = Path(d) / "docker-compose"
        if p.is_file() and os.access(p, os.X_OK):
            return p
    return None


_VAR_NAME = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")


def _stamp(p: Path) -> str:
    try:
        st = p.stat()
    except OSError:
        return "-"
    return f"{st.st_mtime_ns}:{st.st_size}:{st.st_ino}"


def _cache_key(binary: Path, files: Sequence[Path]) -> str:
    """Everything Compose's answer depends on: its binary, the files, the .env, and the values
    of the variables the files name (not the whole environment, which changes per shell)."""
    h = hashlib.sha256()
    h.update(f"{binary}|{_stamp(binary)}".encode())
    names: set[str] = set()
    for f in files:
        h.update(f"|{f}|{_stamp(f)}".encode())
        try:
            names.update(_VAR_NAME.findall(f.read_text(encoding="utf-8", errors="replace")))
        except OSError:
            pass
    dotenv = files[0].parent / ".env"
    h.update(f"|{dotenv}|{_stamp(dotenv)}".encode())
    for n in sorted(names | {"COMPOSE_PROFILES", "COMPOSE_PROJECT_NAME"}):
        h.update(f"|{n}={os.environ.get(n)}".encode())
    return h.hexdigest()


def _cache_get(key: str) -> dict[str, Any] | None:
    data = read_json("compose.json")
    hit = data.get(key) if isinstance(data, dict) else None
    return hit if isinstance(hit, dict) else None


def _cache_put(key: str, value: dict[str, Any]) -> None:
    data = read_json("compose.json")
    if not isinstance(data, dict):
        data = {}
    data.pop(key, None)
    data[key] = value
    while len(data) > 64:  # oldest first (insertion order)
        data.pop(next(iter(data)))
    write_json("compose.json", data)


def _run_v2(binary: Path, files: Sequence[Path]) -> tuple[dict[str, Any] | None, str]:
    """Compose's own reading of the files: (its JSON, "") or (None, its error)."""
    argv = [str(binary)]
    for f in files:
        argv += ["-f", str(f)]
    argv += ["--project-directory", str(files[0].parent), "--profile", "*", "config", "--format", "json"]
    try:
        p = runner.run(argv, timeout=60, cwd=files[0].parent, unset=("COMPOSE_FILE", "COMPOSE_PROFILES"))
    except (OSError, CleanroomError) as exc:
        return None, str(getattr(exc, "message", exc))
    if p.returncode != 0:
        lines = [ln for ln in p.stderr.strip().splitlines() if "level=warning" not in ln]
        return None, (lines[-1] if lines else f"exit {p.returncode}")
    try:
        data = json.loads(p.stdout)
    except ValueError as exc:
        return None, f"unreadable output ({exc})"
    return (data if isinstance(data, dict) else {}), ""


def _builds_from_config(data: Mapping[str, Any]) -> list[ComposeBuild]:
    out = []
    for name, svc in sorted((data.get("services") or {}).items()):
        if not isinstance(svc, dict) or not isinstance(svc.get("build"), dict):
            continue
        b = svc["build"]
        ctx = str(b.get("context", "."))
        inline = b.get("dockerfile_inline")
        out.append(ComposeBuild(str(name), ctx, None if inline is not None else str(b.get("dockerfile") or "Dockerfile"),
                                str(inline) if inline is not None else None, is_remote(ctx)))
    return out


# ------------------------------------------------------------------------------ PyYAML


class InterpolationError(Exception):
    """``${X:?msg}`` with X unset (Compose refuses the file)."""


_TOKEN = re.compile(
    r"\$(?:(?P<escape>\$)|(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
    r"|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\})"
)


def interpolate(value: str, env: Mapping[str, str] | None = None) -> str:
    """Compose's variable substitution of one string (``$$`` is a literal ``$``)."""
    env = os.environ if env is None else env

    def sub(m: re.Match[str]) -> str:
        if m.group("escape"):
            return "$"
        name = m.group("bare") or m.group("name")
        val = env.get(name)
        op, arg = m.group("op"), m.group("arg") or ""
        unset_or_empty = not val
        if op == ":-":
            return arg if unset_or_empty else str(val)
        if op == "-":
            return arg if val is None else val
        if op in (":?", "?"):
            if (op == ":?" and unset_or_empty) or (op == "?" and val is None):
                raise InterpolationError(f"required variable {name} is missing a value"
                                         + (f": {arg}" if arg else ""))
            return str(val)
        if op == ":+":
            return "" if unset_or_empty else interpolate(arg, env)
        if op == "+":
            return "" if val is None else interpolate(arg, env)
        return val or ""

    return _TOKEN.sub(sub, value)


def read_dotenv(path: Path) -> dict[str, str]:
    """A ``.env`` file as Compose reads it: ``KEY=value`` lines, ``#`` comments, optional
    ``export``, quotes stripped (values are not interpolated further here)."""
    out: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return out
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: cannot read: {exc}") from None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        key, sep, value = line.partition("=")
        if not sep:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        out[key.strip()] = value
    return out


def load_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise BadInput(f"{path}{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    except UnicodeDecodeError as exc:
        raise BadInput(f"{path}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise BadInput(f"{path}: cannot read: {exc.strerror or exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BadInput(f"{path}: expected a mapping at the top level")
    return data


def _build_mapping(b: Any) -> dict[str, Any] | None:
    if isinstance(b, str):
        return {"context": b}
    if isinstance(b, dict):
        return dict(b)
    return None


def _read_yaml(files: Sequence[Path], notes: list[str]) -> list[ComposeBuild]:
    project_dir = files[0].parent
    env = {**read_dotenv(project_dir / ".env"), **os.environ}
    services: dict[str, dict[str, Any]] = {}
    where: dict[str, Path] = {}
    for f in files:
        doc = load_yaml(f)
        svcs = doc.get("services") or {}
        if not isinstance(svcs, dict):
            raise BadInput(f"{f}: 'services' must be a mapping")
        for name, svc in svcs.items():
            if not isinstance(svc, dict):
                continue
            merged = services.setdefault(str(name), {})
            where.setdefault(str(name), f)
            for key, value in svc.items():
                if key == "build":
                    old = _build_mapping(merged.get("build")) or {}
                    new = _build_mapping(value)
                    merged["build"] = {**old, **new} if new is not None else value
                else:
                    merged[key] = value
    # extends within the project (one file or several: services are already merged by name)
    for name, svc in services.items():
        seen = {name}
        ext = svc.get("extends")
        while "build" not in svc and isinstance(ext, (dict, str)):
            base = ext if isinstance(ext, str) else ext.get("service")
            if not isinstance(ext, str) and ext.get("file"):
                notes.append(f"{where[name].name}: service {name} extends a service of another file "
                             f"({ext.get('file')}); read without Compose v2, its build is not checked")
                break
            if not isinstance(base, str) or base in seen or base not in services:
                break
            seen.add(base)
            if "build" in services[base]:
                svc["build"] = services[base]["build"]
            ext = services[base].get("extends")
    out = []
    for name, svc in sorted(services.items()):
        b = _build_mapping(svc.get("build"))
        if b is None:
            continue
        try:
            ctx = interpolate(str(b.get("context", ".")), env)
            inline = b.get("dockerfile_inline")
            df = None if inline is not None else interpolate(str(b.get("dockerfile") or "Dockerfile"), env)
        except InterpolationError as exc:
            notes.append(f"{where[name].name}: service {name}: {exc}: its build is not checked "
                         "(set the variable, e.g. in the .env beside the compose file)")
            continue
        remote = is_remote(ctx)
        if not remote:
            ctx = os.path.normpath(os.path.join(project_dir, ctx))
        out.append(ComposeBuild(name, ctx, df, str(inline) if inline is not None else None, remote))
    return out


# ------------------------------------------------------------------------------ API


def read_project(files: Sequence[Path]) -> Project:
    """The builds ``files`` (one Compose project: main file first) declare."""
    proj = Project(tuple(files))
    binary = compose_v2()
    key = _cache_key(binary, files) if binary is not None else ""
    hit = _cache_get(key) if key else None
    if hit is not None:
        proj.reader = str(hit.get("reader", ""))
        proj.builds = [ComposeBuild(**b) for b in hit.get("builds", [])]
        proj.notes = [str(n) for n in hit.get("notes", [])]
        return proj
    data, err = _run_v2(binary, files) if binary is not None else (None, "")
    if data is not None:
        proj.reader = "Compose v2"
        proj.builds = _builds_from_config(data)
    else:
        if binary is not None:
            shown = " + ".join(f.name for f in files)
            proj.notes.append(f"{shown}: Compose v2 refuses it ({err}); read with PyYAML instead")
        proj.reader = "PyYAML"
        proj.builds = _read_yaml(files, proj.notes)
    if key:
        _cache_put(key, {"reader": proj.reader, "builds": [b.__dict__ for b in proj.builds],
                         "notes": proj.notes})
    return proj
