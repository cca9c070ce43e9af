"""``cleanroom.toml``: loaded once into a typed, validated :class:`Config`.

Every section and key has a default, so the engine also runs against a repository with little or
no config. An unknown key, a wrong type or a malformed file is a :class:`ConfigError` naming the
file, the key and what was expected.
"""

from __future__ import annotations

import re
import sys
import tomllib
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin

from cleanroom.core.errors import ConfigError
from cleanroom.core.hashing import sha256

CONFIG_NAME = "cleanroom.toml"

# The doctrine's artifact list (spec: "What Is Not Versioned"), in gitignore syntax: a pattern
# without a slash matches at any depth, a leading "/" anchors it at the repo root, a trailing "/"
# means a folder. The doctrine names poetry.lock and package-lock.json; "lockfiles are artifacts"
# covers those of the other common Python and JavaScript managers too ([artifacts] drop removes
# any). The root pyproject.toml is an artifact only where variants exist (it is generated from
# them): :meth:`Config.artifact_patterns` adds it then.
DEFAULT_ARTIFACTS: tuple[str, ...] = (
    "poetry.lock",
    "uv.lock",
    "pdm.lock",
    "Pipfile.lock",
    "package-lock.json",
    "yarn.lock",
    "pnpm-lock.yaml",
    "bun.lock",
    "bun.lockb",
    "*_pb2.py",
    "*_pb2.pyi",
    "*_pb2_grpc.py",
    "*_pb2_grpc.pyi",
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
    # None: on when a variant file exists (a repo without them gets every other rule, and its own
    # pyproject.toml is a source); false turns them off, true requires them.
    enabled: bool | None = None
    binary: str = "pyproject.binary.toml"
    source: str = "pyproject.source.toml"
    target: str = "pyproject.toml"
    # Sections (dotted key paths) that must be identical in both variants ...
    # (PEP 621's [project] and PEP 735's [dependency-groups] as well as Poetry's own tables) ...
    shared: tuple[str, ...] = (
        "project",
        "dependency-groups",
        "tool.poetry",
        "tool.pytest",
        "tool.mypy",
        "tool.ruff",
        "build-system",
    )
    # ... except these, which describe dependency sources and versions and may differ.
    may_differ: tuple[str, ...] = (
        "project.dependencies",
        "project.optional-dependencies.gpu",
        "dependency-groups.gpu",
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
    # The generated package's name; empty: derived (see Config.resolved), so no repo gets another
    # project's name: "<legacy_module's top package>_proto", else "<repo folder>_proto".
    package: str = ""
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
    # Patterns of the default list that this repo does not treat as artifacts (e.g. "yarn.lock").
    drop: tuple[str, ...] = ()
    allow: tuple[Allow, ...] = ()

    @property
    def all_patterns(self) -> tuple[str, ...]:
        """The policy without the variant-generated pyproject.toml (see Config.artifact_patterns)."""
        base = tuple(p for p in self.patterns if p not in self.drop)
        return base + tuple(p for p in self.extra if p not in base and p not in self.drop)


@dataclass(frozen=True)
class BuildDecl:
    """A Docker build that no compose file declares: a Dockerfile and its context (e.g. kserve's
    ``cd python && docker build -f sklearn.Dockerfile .``: dockerfile = "python/sklearn.Dockerfile",
    context = "python"). Paths are relative to the repo root."""

    dockerfile: str
    context: str = "."
    name: str = ""


@dataclass(frozen=True)
class Docker:
    # Compose files to read besides those Compose itself finds at the repo root (compose.yaml,
    # compose.yml, docker-compose.yaml, docker-compose.yml and their override files). The first
    # is the app's (the container pipeline's); a string is one file.
    compose: tuple[str, ...] = field(default=(), metadata={"one_or_list": True})
    gpu_overlay: str = "docker/compose.gpu.yml"
    service: str = "spectralmc"
    binary_dockerfile: str = "docker/Dockerfile"
    source_dockerfile: str = "docker/Dockerfile.source"
    # Extra builds not in a compose file: Dockerfiles whose context is the repo root ...
    dockerfiles: tuple[str, ...] = ()
    # ... and Dockerfiles with their own context ([[docker.builds]]).
    builds: tuple[BuildDecl, ...] = ()
    # The compose project; empty: one per checkout ("<folder>-<hash of its path>"), so two clones
    # (or worktrees) never share a container.
    project: str = ""


@dataclass(frozen=True)
class PathIgnore:
    """``"glob" = ["rule", ...]`` of ``[verify] per-path-ignores``."""

    glob: str
    rules: tuple[str, ...]


@dataclass(frozen=True)
class Verify:
    """Which of ``cleanroom verify``'s rules run, and where their findings count. The names are
    rule names; the verify layer checks them against its rule table (an unknown one is a
    ConfigError there: this layer does not know the rules)."""

    # None: every rule; a list: only these (an empty list: none).
    select: tuple[str, ...] | None = None
    # Rules not run at all (their names are listed as skipped).
    ignore: tuple[str, ...] = ()
    # Findings of these rules whose path matches the glob are dropped (ruff's per-file-ignores);
    # written as a table, `per-path-ignores = { "tests/**" = ["context-leak"] }`.
    per_path_ignores: tuple[PathIgnore, ...] = field(
        default=(), metadata={"key": "per-path-ignores", "keyed": ("glob", "rules"),
                              "doc": 'a table of "glob" = ["rule", ...]'})


@dataclass(frozen=True)
class Config:
    variants: Variants = field(default_factory=Variants)
    proto: Proto = field(default_factory=Proto)
    artifacts: Artifacts = field(default_factory=Artifacts)
    docker: Docker = field(default_factory=Docker)
    verify: Verify = field(default_factory=Verify)
    # The file it was read from (None: defaults only).
    source: Path | None = None
    # The keys the file set ("proto.sources"): a default can then be told from a choice.
    explicit: frozenset[str] = frozenset()

    def is_set(self, key: str) -> bool:
        return key in self.explicit

    def variants_on(self, repo: Path) -> bool:
        """Whether this repo uses pyproject variants: as configured, else whether one exists."""
        v = self.variants
        if v.enabled is not None:
            return v.enabled
        return (repo / v.binary).is_file() or (repo / v.source).is_file()

    def resolved(self, repo: Path) -> Config:
        """This config with what depends on ``repo`` decided (done once per command): whether
        variants are on, and the generated package's name when none is set."""
        cfg = self
        if cfg.variants.enabled is None:
            cfg = replace(cfg, variants=replace(cfg.variants, enabled=cfg.variants_on(repo)))
        if not cfg.proto.package:
            cfg = replace(cfg, proto=replace(cfg.proto, package=derive_package(cfg.proto.legacy_module, repo)))
        if not cfg.docker.project:
            cfg = replace(cfg, docker=replace(cfg.docker, project=derive_project(repo)))
        return cfg

    def artifact_patterns(self, repo: Path) -> tuple[str, ...]:
        """The artifact policy for ``repo``: the configured patterns, plus the root
        ``pyproject.toml`` where it is generated from variants."""
        pats = self.artifacts.all_patterns
        if self.variants_on(repo):
            target = "/" + self.variants.target.lstrip("/")
            if target not in pats and target not in self.artifacts.drop:
                pats = (target, *pats)
        return pats


def derive_package(legacy_module: str, repo: Path) -> str:
    """A name for the generated package when the config gives none: ``<top>_proto`` for the
    legacy module's top package, else for the repo folder's name (made an identifier)."""
    base = legacy_module.split(".", 1)[0] if legacy_module else repo.resolve().name
    base = re.sub(r"\W", "_", base).strip("_") or "generated"
    if base[0].isdigit():
        base = "_" + base
    return f"{base.lower()}_proto"


def derive_project(repo: Path) -> str:
    """The compose project of a checkout: its folder's name (readable) and a short hash of its
    absolute path (unique), in the characters Compose allows (``spectralmc-3f2a9c1e``)."""
    top = repo.resolve()
    name = re.sub(r"[^a-z0-9_-]", "-", top.name.lower()).strip("-_") or "checkout"
    return f"{name[:40]}-{sha256()(str(top).encode()).hexdigest()[:8]}"


_SECTIONS: dict[str, type] = {
    "variants": Variants,
    "proto": Proto,
    "artifacts": Artifacts,
    "docker": Docker,
    "verify": Verify,
}


_TABLES: dict[type, str] = {
    Allow: "a table with 'path' and 'reason' strings",
    BuildDecl: "a table with a 'dockerfile' string (and optional 'context', 'name')",
}
# A string value that would become several lines (or carry a control character) when written
# into an ignore file or a generated pyproject.toml: refused at load time.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _type_name(tp: Any) -> str:
    if get_origin(tp) is tuple:
        (inner, _) = get_args(tp)
        return f"a list of {_type_name(inner)}"
    if tp in _TABLES:
        return _TABLES[tp]
    if get_origin(tp) in (Union, UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp) if a is not type(None))
    return {str: "a string", bool: "true or false", int: "an integer"}.get(tp, str(tp))


def _keyed(value: Any, tp: Any, where: str, file: Path, keyed: tuple[str, str], doc: str) -> Any:
    """A TOML table ``{key = value, ...}`` as a tuple of ``tp``'s element dataclass, each with
    the key in the field ``keyed[0]`` and the value in ``keyed[1]`` (``doc``: what is expected)."""
    inner = get_args(tp)[0]
    kf, vf = keyed
    hints = _hints(inner)
    if not isinstance(value, dict):
        raise ConfigError(f"{file}: {where}: expected {doc}, got {value!r}")
    out = []
    for k, v in value.items():
        at = f'{where}."{k}"'
        if not k.strip():
            raise ConfigError(f"{file}: {at}: expected a non-empty {kf}")
        out.append(inner(**{kf: _convert(k, hints[kf], at, file), vf: _convert(v, hints[vf], at, file)}))
    return tuple(out)


def _convert(value: Any, tp: Any, where: str, file: Path, one_or_list: bool = False) -> Any:
    if get_origin(tp) is tuple:
        inner = get_args(tp)[0]
        if one_or_list and isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise ConfigError(f"{file}: {where}: expected {_type_name(tp)}"
                              f"{' (or one string)' if one_or_list else ''}, got {value!r}")
        return tuple(_convert(v, inner, f"{where}[{i}]", file) for i, v in enumerate(value))
    if tp in _TABLES:
        if not isinstance(value, dict):
            raise ConfigError(f"{file}: {where}: expected {_type_name(tp)}, got {value!r}")
        return _build(tp, value, where, file)
    if get_origin(tp) in (Union, UnionType):
        inner = [a for a in get_args(tp) if a is not type(None)]
        return _convert(value, inner[0], where, file)
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise ConfigError(f"{file}: {where}: expected {_type_name(tp)}, got {value!r}")
    if isinstance(value, str) and _CONTROL.search(value):
        raise ConfigError(f"{file}: {where}: {value!r} holds a control character (a newline?): "
                          "expected one line")
    return value


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        import typing

        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _build(cls: type, table: dict[str, Any], where: str, file: Path) -> Any:
    hints = _hints(cls)
    # the key in the file: the field's name, or its metadata "key" (a name with a dash)
    by_key = {f.metadata.get("key", f.name): f for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        if key not in by_key:
            raise ConfigError(
                f"{file}: unknown key '{where}.{key}' (expected one of: {', '.join(by_key)})"
            )
        f = by_key[key]
        if "keyed" in f.metadata:
            kwargs[f.name] = _keyed(value, hints[f.name], f"{where}.{key}", file, f.metadata["keyed"],
                                    f.metadata["doc"])
        else:
            kwargs[f.name] = _convert(value, hints[f.name], f"{where}.{key}", file,
                                      bool(f.metadata.get("one_or_list")))
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


# Sections of earlier versions that changed nothing: a warning, not an error (nothing breaks).
_REMOVED = {
    "test": "it changed nothing and was removed (test-all's log is CLEANROOM_TEST_LOG, its "
            "paths pytest's own arguments); delete it",
}


def parse_config(text: str, file: Path) -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    sections: dict[str, Any] = {}
    explicit = frozenset(f"{sec}.{key}" for sec, table in data.items() if isinstance(table, dict)
                         for key in table)
    for key, value in data.items():
        if key in _REMOVED:
            print(f"cleanroom: warning: {file}: [{key}] is ignored: {_REMOVED[key]}", file=sys.stderr)
            continue
        if key not in _SECTIONS:
            raise ConfigError(
                f"{file}: unknown section '[{key}]' (expected one of: {', '.join(_SECTIONS)})"
            )
        if not isinstance(value, dict):
            raise ConfigError(f"{file}: '{key}' must be a table ([{key}]), got {value!r}")
        sections[key] = _build(_SECTIONS[key], value, key, file)
    cfg = Config(**sections, source=file, explicit=explicit)
    _check(cfg, file)
    return cfg


def _check(cfg: Config, file: Path) -> None:
    """What the types alone do not say."""
    a = cfg.artifacts
    for i, pat in enumerate(a.drop):
        if pat not in a.patterns and pat not in a.extra:
            raise ConfigError(f"{file}: artifacts.drop[{i}]: {pat!r} is not a pattern of the policy "
                              f"(the patterns: {', '.join(a.patterns)})")
    for pat in (*a.patterns, *a.extra):
        if not pat.strip("/") or pat.startswith("!"):
            raise ConfigError(f"{file}: artifacts: {pat!r} is not an artifact pattern (a gitignore "
                              "pattern that names paths, e.g. 'dist/' or '*.lock')")
    for i, b in enumerate(cfg.docker.builds):
        if not b.dockerfile.strip():
            raise ConfigError(f"{file}: docker.builds[{i}].dockerfile: expected a path to a Dockerfile")
    target = cfg.variants.target
    if not target.strip() or Path(target).is_absolute() or ".." in Path(target).parts:
        # select writes it, and verify and clean treat it as this repo's artifact
        raise ConfigError(f"{file}: variants.target: {target!r} is not a path inside the repo "
                          "(expected a relative path without '..', e.g. 'pyproject.toml')")


def load_config(repo: Path, path: Path | None = None) -> Config:
    """Load ``path`` (must exist) or ``repo/cleanroom.toml`` (defaults when absent). The result is
    not yet :meth:`Config.resolved` for the repo (:class:`~cleanroom.core.workspace.Workspace` does)."""
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
