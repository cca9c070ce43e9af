"""``cleanroom.toml``: loaded once into a typed, validated :class:`Config`.

Every section and key has a default, so the engine also runs against a repository with little or
no config. An unknown key, a wrong type or a malformed file is a :class:`ConfigError` naming the
file, the key and what was expected.
"""

from __future__ import annotations

import tomllib
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, get_args, get_origin

from .errors import ConfigError

CONFIG_NAME = "cleanroom.toml"

# The doctrine's artifact list (spec: "What Is Not Versioned"), in gitignore syntax: a pattern
# without a slash matches at any depth, a leading "/" anchors it at the repo root, a trailing "/"
# means a folder.
DEFAULT_ARTIFACTS: tuple[str, ...] = (
    "/pyproject.toml",
    "poetry.lock",
    "package-lock.json",
    "*_pb2.py",
    "*_pb2.pyi",
    "*_pb2_grpc.py",
    "__pycache__/",
    "*.pyc",
    ".mypy_cache/",
    ".pytest_cache/",
    ".ruff_cache/",
    "dist/",
    "build/",
    "*.egg-info/",
    ".venv/",
    ".nox/",
)


@dataclass(frozen=True)
class Variants:
    binary: str = "pyproject.binary.toml"
    source: str = "pyproject.source.toml"
    target: str = "pyproject.toml"
    # Sections (dotted key paths) that must be identical in both variants ...
    shared: tuple[str, ...] = (
        "tool.poetry",
        "tool.pytest",
        "tool.mypy",
        "tool.ruff",
        "build-system",
    )
    # ... except these, which describe dependency sources and versions and may differ.
    may_differ: tuple[str, ...] = (
        "tool.poetry.dependencies",
        "tool.poetry.source",
        "tool.poetry.group.gpu",
    )

    def path_of(self, name: str) -> str:
        if name == "binary":
            return self.binary
        if name == "source":
            return self.source
        raise KeyError(name)


@dataclass(frozen=True)
class Proto:
    sources: str = "proto"
    package: str = "spectralmc_proto"
    out: str = "/opt"
    # Where `proto` writes on the host (an ignored folder), when not inside the container.
    host_out: str = ".cleanroom/proto"
    # The module code imported checked-in generated code from before migrating (migrate-proto).
    legacy_module: str = ""


@dataclass(frozen=True)
class Allow:
    path: str
    reason: str


@dataclass(frozen=True)
class Artifacts:
    patterns: tuple[str, ...] = DEFAULT_ARTIFACTS
    extra: tuple[str, ...] = ()
    allow: tuple[Allow, ...] = ()

    @property
    def all_patterns(self) -> tuple[str, ...]:
        return self.patterns + tuple(p for p in self.extra if p not in self.patterns)


@dataclass(frozen=True)
class Docker:
    compose: str = "docker/docker-compose.yml"
    gpu_overlay: str = "docker/compose.gpu.yml"
    service: str = "spectralmc"
    binary_dockerfile: str = "docker/Dockerfile"
    source_dockerfile: str = "docker/Dockerfile.source"
    # Extra builds not in the compose file: Dockerfiles (context: the repo root).
    dockerfiles: tuple[str, ...] = ()
    project: str = "cleanroom"


@dataclass(frozen=True)
class Test:
    log: str = "/tmp/test-output.txt"
    paths: tuple[str, ...] = ("tests/app",)


@dataclass(frozen=True)
class Config:
    variants: Variants = field(default_factory=Variants)
    proto: Proto = field(default_factory=Proto)
    artifacts: Artifacts = field(default_factory=Artifacts)
    docker: Docker = field(default_factory=Docker)
    test: Test = field(default_factory=Test)
    # The file it was read from (None: defaults only).
    source: Path | None = None


_SECTIONS: dict[str, type] = {
    "variants": Variants,
    "proto": Proto,
    "artifacts": Artifacts,
    "docker": Docker,
    "test": Test,
}


def _type_name(tp: Any) -> str:
    if get_origin(tp) is tuple:
        (inner, _) = get_args(tp)
        return f"a list of {_type_name(inner)}"
    if tp is Allow:
        return "a table with 'path' and 'reason' strings"
    return {str: "a string", bool: "true or false", int: "an integer"}.get(tp, str(tp))


def _convert(value: Any, tp: Any, where: str, file: Path) -> Any:
    if get_origin(tp) is tuple:
        inner = get_args(tp)[0]
        if not isinstance(value, list):
            raise ConfigError(f"{file}: {where}: expected {_type_name(tp)}, got {value!r}")
        return tuple(_convert(v, inner, f"{where}[{i}]", file) for i, v in enumerate(value))
    if tp is Allow:
        if not isinstance(value, dict):
            raise ConfigError(f"{file}: {where}: expected {_type_name(tp)}, got {value!r}")
        return _build(Allow, value, where, file)
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise ConfigError(f"{file}: {where}: expected {_type_name(tp)}, got {value!r}")
    return value


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        import typing

        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _build(cls: type, table: dict[str, Any], where: str, file: Path) -> Any:
    hints = _hints(cls)
    names = [f.name for f in fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        if key not in names:
            raise ConfigError(
                f"{file}: unknown key '{where}.{key}' (expected one of: {', '.join(names)})"
            )
        kwargs[key] = _convert(value, hints[key], f"{where}.{key}", file)
    missing = [
        f.name
        for f in fields(cls)
        if f.name not in kwargs
        and f.default is MISSING
        and f.default_factory is MISSING
    ]
    if missing:
        raise ConfigError(f"{file}: {where}: missing required key '{missing[0]}'")
    return cls(**kwargs)


def parse_config(text: str, file: Path) -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    sections: dict[str, Any] = {}
    for key, value in data.items():
        if key not in _SECTIONS:
            raise ConfigError(
                f"{file}: unknown section '[{key}]' (expected one of: {', '.join(_SECTIONS)})"
            )
        if not isinstance(value, dict):
            raise ConfigError(f"{file}: '{key}' must be a table ([{key}]), got {value!r}")
        sections[key] = _build(_SECTIONS[key], value, key, file)
    return Config(**sections, source=file)


def load_config(repo: Path, path: Path | None = None) -> Config:
    """Load ``path`` (must exist) or ``repo/cleanroom.toml`` (defaults when absent)."""
    explicit = path is not None
    file = path if path is not None else repo / CONFIG_NAME
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"{file}: config file not found") from None
        return Config()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read config: {exc}") from None
    return parse_config(text, file)
