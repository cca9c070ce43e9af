"""context: exactly what each build sends to Docker, and why each file is in or out.

The listing is computed (no engine needed) with the matcher of :mod:`cleanroom.dockerignore.matcher`, in
one pruned walk of the context, as the builder that would run the build computes it:

* which ignore file is read: BuildKit reads ``<Dockerfile>.dockerignore`` when it exists, else
  ``<context>/.dockerignore``; the classic builder only ``<context>/.dockerignore``;
* how patterns decide (:class:`~cleanroom.dockerignore.matcher.Semantics`): a docker <= 20.10 client
  (its built-in BuildKit client and its classic archive walk) uses fileutils; a current CLI's
  classic walk uses ``MatchesUsingParentResults`` and the prefix pruning rule; BuildKit fed by a
  current client (buildx) uses fsutil's walk;
* the Dockerfile and ``.dockerignore``: BuildKit sends them only when not excluded; the classic
  CLI appends ``!.dockerignore`` and ``!<Dockerfile>`` to the patterns when they are excluded
  (``TrimBuildFilesFromExcludes``), and the daemon then removes them again when its own check
  says they are excluded.

The engine (:mod:`cleanroom.docker.engine_context`) is the judge: ``context --engine`` and the
differential tests ask it for the same listing. The command that prints it is
:mod:`cleanroom.cli.context`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from cleanroom.core import runner, settings
from cleanroom.core.cache import read_json, write_json
from cleanroom.core.errors import BadInput, CleanroomError
from cleanroom.docker.builds import Build
from cleanroom.docker.engine import PLUGIN_DIRS, _all_clients
from cleanroom.dockerignore.matcher import (
    BUILDKIT,
    CLASSIC,
    LEGACY,
    LEGACY_MATCH,
    PARENTS,
    DockerignoreError,
    Matcher,
    Pattern,
    Semantics,
    check_file,
    ignore_file_for,
    read,
    walk_entries,
)

BUILDERS = ("buildkit", "classic")


CLI_SOURCE = "<docker CLI>"  # patterns the classic CLI appends (TrimBuildFilesFromExcludes)


_HEADER_UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f]")


@dataclass(frozen=True)
class BuilderModel:
    """What decides a build context, for one builder as this machine would run it."""

    name: str  # "buildkit" or "classic"
    walk: Semantics  # the context walk
    trim: Semantics | None = None  # classic CLI: TrimBuildFilesFromExcludes' check
    daemon: Semantics | None = None  # classic daemon: its removal of Dockerfile/.dockerignore
    client: str = ""  # the docker client (version) this models, for the header

    @property
    def buildkit(self) -> bool:
        return self.name == "buildkit"

    @property
    def label(self) -> str:
        return f"{self.name} ({self.client}; {self.walk.name} matching)" if self.client else (
            f"{self.name} ({self.walk.name} matching)")


def _major(version: str) -> int:
    m = re.match(r"\s*(\d+)\.", version)
    return int(m.group(1)) if m else 0


def model_for(name: str, client_version: str = "", server_version: str = "") -> BuilderModel:
    """The model of builder ``name`` driven by a docker client of ``client_version`` against
    a daemon of ``server_version`` (unknown: current Docker)."""
    if name not in BUILDERS:
        raise BadInput(f"unknown builder {name!r}: expected buildkit or classic")
    client, server = _major(client_version), _major(server_version)
    old_client = 0 < client < 23
    label = f"docker {client_version} client" if client_version else ""
    if name == "buildkit":
        return BuilderModel("buildkit", LEGACY if old_client else BUILDKIT, client=label)
    return BuilderModel(
        "classic",
        LEGACY if old_client else CLASSIC,
        trim=LEGACY if old_client else LEGACY_MATCH,
        daemon=LEGACY if 0 < server < 23 else PARENTS,
        client=label,
    )


def _clients() -> list[str]:
    return _all_clients()


def _outputs(cmds: Sequence[Sequence[str]]) -> list[tuple[int, str]]:
    """Run commands side by side (each a short docker CLI call); (rc, stdout) of each."""
    procs: list[Any] = []
    for argv in cmds:
        try:
            procs.append(runner.spawn(argv, stdout=runner.PIPE, stderr=runner.DEVNULL, text=True))
        except (OSError, CleanroomError):
            procs.append(None)
    out: list[tuple[int, str]] = []
    for p in procs:
        if p is None:
            out.append((127, ""))
            continue
        try:
            stdout, _ = p.communicate(timeout=20)
        except runner.timeout_error():
            p.kill()
            p.communicate()
            out.append((124, ""))
            continue
        out.append((p.returncode, stdout))
    return out


def _version_of(text: str) -> str:
    m = re.search(r"version\s+([0-9][^\s,]*)", text)
    return m.group(1) if m else ""


def _stamp(path: str) -> str:
    try:
        st = os.stat(os.path.expanduser(path))
    except OSError:
        return "-"
    return f"{st.st_mtime_ns}:{st.st_size}"


def _client_facts(clients: Sequence[str]) -> list[tuple[str, bool]]:
    """(version, has buildx) per docker client: asked side by side, and remembered in
    ``$XDG_CACHE_HOME/cleanroom/docker-clients.json`` for as long as the client binary and
    the CLI plugin folders are unchanged (a listing should not wait for docker)."""

    plugins = ",".join(_stamp(d) for d in PLUGIN_DIRS)
    keys = [f"{os.path.realpath(c)}|{_stamp(os.path.realpath(c))}|{plugins}" for c in clients]
    cached = read_json("docker-clients.json")
    if not isinstance(cached, dict):
        cached = {}
    missing = [i for i, k in enumerate(keys) if not isinstance(cached.get(k), list)]
    if missing:
        cmds: list[list[str]] = []
        for i in missing:
            cmds += [[clients[i], "--version"], [clients[i], "buildx", "version"]]
        res = _outputs(cmds)
        for j, i in enumerate(missing):
            version = _version_of(res[2 * j][1])
            cached[keys[i]] = [version, res[2 * j + 1][0] == 0]
        if all(cached[keys[i]][0] for i in missing):  # remember only complete answers
            write_json("docker-clients.json", {k: cached[k] for k in keys})
    return [(str(cached[k][0]), bool(cached[k][1])) for k in keys]


def choose_builder(requested: str | None = None) -> BuilderModel:
    """The builder a build here would use, modelled: ``requested``, else ``$CLEANROOM_BUILDER``,
    else what :func:`cleanroom.docker.engine.probe` prefers (BuildKit when a client can drive it:
    one with buildx, or a docker < 23 client, which has BuildKit built in; else classic).

    Cheap on purpose (no ``docker info``): the client versions come from ``docker --version``
    and ``docker buildx version``, run side by side; the daemon's version is asked only for
    the classic builder, whose daemon removes an excluded Dockerfile.
    """

    want = requested or settings.get("CLEANROOM_BUILDER") or None
    if want is not None and want not in BUILDERS:
        raise BadInput(f"unknown builder {want!r} (--builder or CLEANROOM_BUILDER): "
                       "expected buildkit or classic")
    clients = _clients()
    if not clients:
        return model_for(want or "buildkit")
    facts = _client_facts(clients)
    bk_version: str | None = None
    for version, buildx in facts:
        if buildx or 0 < _major(version) < 23:
            bk_version = version
            break
    name = want or ("buildkit" if bk_version is not None else "classic")
    if name == "buildkit":
        return model_for("buildkit", bk_version if bk_version is not None else facts[0][0])
    rc, out = _outputs([[clients[0], "version", "--format", "{{.Server.Version}}"]])[0]
    return model_for("classic", facts[0][0], out.strip() if rc == 0 else "")


def model_of(builder_name: str, client: str, server_version: str | None) -> BuilderModel:
    """The model for a :class:`cleanroom.docker.engine.Builder` (its client binary) and daemon."""
    res = _outputs([[client, "--version"]])
    return model_for(builder_name, _version_of(res[0][1]), server_version or "")


class ContextFile(NamedTuple):
    path: str  # posix, relative to the context root
    size: int | None  # lstat size (a symlink's is its target's length); None: not asked


@dataclass
class Plan:
    """How one build's context is decided: the ignore file, the matcher, the forced files."""

    context: Path
    model: BuilderModel
    ignore_path: Path | None
    patterns: tuple[Pattern, ...]
    dockerfile_rel: str | None  # the Dockerfile inside the context, or None
    matcher: Matcher = field(init=False)
    appended: tuple[Pattern, ...] = field(init=False)
    removed_by_daemon: dict[str, Pattern] = field(init=False)

    def __post_init__(self) -> None:
        appended: list[Pattern] = []
        removed: dict[str, Pattern] = {}
        m = self.model
        if m.buildkit and m.walk is LEGACY:
            # A docker <= 20.10 client gets BuildKit's exclude patterns in gRPC (HTTP/2) headers,
            # which refuse control characters: the build fails ("RST_STREAM ... PROTOCOL_ERROR").
            for p in self.patterns:
                if _HEADER_UNSAFE.search(str(p)):
                    raise DockerignoreError(
                        f"{p.source}:{p.line}: BuildKit cannot send this pattern (a control "
                        "character; the docker client passes patterns in gRPC headers), so the "
                        "build fails", f"pattern: {str(p)!r}")
        if not m.buildkit:
            build_files = [".dockerignore"] + ([self.dockerfile_rel] if self.dockerfile_rel else [])
            assert m.trim is not None and m.daemon is not None
            for k, f in enumerate(build_files):
                if check_file(self.patterns, f, m.trim) is not None:
                    appended.append(Pattern(f, True, k + 1, CLI_SOURCE))
            for f in build_files:
                decided = check_file(self.patterns, f, m.daemon)
                if decided is not None:
                    removed[f] = decided
        self.appended = tuple(appended)
        self.removed_by_daemon = removed
        self.matcher = Matcher(self.patterns + self.appended, m.walk)

    def files(self, with_sizes: bool = True) -> list[ContextFile]:
        """Every file and symlink sent, sorted by path (``with_sizes=False``: no ``lstat``,
        ``size`` None)."""
        out: list[ContextFile] = []
        sent_dockerfile = False
        removed = self.removed_by_daemon
        for path, entry in walk_entries(self.context, self.matcher):
            if path == self.dockerfile_rel:
                sent_dockerfile = True
            if path not in removed:
                out.append(ContextFile(path, entry.stat(follow_symlinks=False).st_size
                                       if with_sizes else None))
        if (not self.model.buildkit and self.dockerfile_rel and not sent_dockerfile
                and (self.context / self.dockerfile_rel).is_file()):
            # The classic daemon reads the Dockerfile from the context it received.
            raise DockerignoreError(
                f"the classic builder would fail: the docker CLI does not send the Dockerfile "
                f"{self.dockerfile_rel} (its '!{self.dockerfile_rel}' does not re-include it), so "
                "the daemon cannot locate it")
        out.sort()
        return out


def plan_for(context: Path, dockerfile: Path | None, model: BuilderModel,
             ignore_dockerfile: Path | None = None) -> Plan:
    """The plan for a build of ``context`` with ``dockerfile`` (None: one outside the context,
    as the engine probe uses). ``ignore_dockerfile`` picks the ignore file when it differs
    from ``dockerfile`` (the probe: the build's own Dockerfile)."""
    chooser = ignore_dockerfile or dockerfile or context / "Dockerfile"
    ign = ignore_file_for(context, chooser, buildkit=model.buildkit)
    patterns = read(ign).patterns if ign is not None else ()
    rel: str | None = None
    if dockerfile is not None:
        r = os.path.relpath(dockerfile, context).replace(os.sep, "/")
        rel = None if r == ".." or r.startswith("../") else r
    return Plan(context, model, ign, tuple(patterns), rel)


@dataclass(frozen=True)
class Why:
    path: str  # as given, relative to the context
    sent: bool
    pattern: Pattern | None  # the deciding line (None: no line matches)
    reason: str  # one line


def _where(p: Pattern, repo: Path) -> str:
    if p.source == CLI_SOURCE:
        return f"{CLI_SOURCE}:"
    src = Path(p.source)
    shown = os.path.relpath(src, repo).replace(os.sep, "/") if src.is_absolute() else p.source
    return f"{shown}:{p.line}:"


def explain(plan: Plan, relpath: str, repo: Path) -> Why:
    """Which line decides whether ``relpath`` (context-relative; need not exist) is sent."""
    m = plan.matcher
    pruned = m.pruned_ancestor(relpath)
    decided = m.match(relpath)
    if pruned is not None:
        by = m.match(pruned)
        assert by is not None
        return Why(relpath, False, by, (
            f"not sent: its folder '{pruned}' is excluded by {_where(by, repo)}{by} and the "
            f"{plan.model.name} builder does not look inside it (no '!' line names a path below it"
            + (", and a '!' line with a wildcard does not count" if plan.model.walk.prune == "prefix"
               and m._wildcard_exceptions else "") + ")"))
    if relpath in plan.removed_by_daemon:
        rm = plan.removed_by_daemon[relpath]
        return Why(relpath, False, rm, (
            f"not sent: excluded by {_where(rm, repo)}{rm}; the classic CLI sends it anyway and "
            "the daemon removes it from the context after reading it"))
    if decided is None:
        return Why(relpath, True, None, "sent: no line matches")
    if decided.source == CLI_SOURCE:
        return Why(relpath, True, decided, (
            "sent: the classic CLI re-includes the Dockerfile and .dockerignore it excluded"))
    if decided.exclusion:
        return Why(relpath, True, decided, f"sent: re-included by {_where(decided, repo)}{decided}")
    return Why(relpath, False, decided, f"excluded by {_where(decided, repo)}{decided}")


@dataclass(frozen=True)
class Sizes:
    total: int
    count: int
    folders: list[tuple[str, int, int]]  # (folder, bytes below it, files below it), largest first
    files: list[ContextFile]  # largest first


def sizes(files: Iterable[ContextFile], top: int = 10) -> Sizes:
    total = count = 0
    per_dir: dict[str, list[int]] = {}
    flist = list(files)
    for f in flist:
        size = f.size or 0
        total += size
        count += 1
        d = f.path
        while "/" in d:
            d = d.rpartition("/")[0]
            acc = per_dir.setdefault(d, [0, 0])
            acc[0] += size
            acc[1] += 1
    folders = sorted(((d, b, n) for d, (b, n) in per_dir.items()), key=lambda t: (-t[1], t[0]))
    largest = sorted(flist, key=lambda f: (-(f.size or 0), f.path))[:top]
    return Sizes(total, count, folders[:top], largest)


@dataclass
class BuildListing:
    build: Build
    plan: Plan
    files: list[ContextFile]

    def header(self, repo: Path) -> str:
        b, p = self.build, self.plan
        ign = os.path.relpath(p.ignore_path, repo).replace(os.sep, "/") if p.ignore_path else None
        ign_s = f"ignore file {ign} ({len(p.patterns)} patterns)" if ign else "no ignore file"
        return (f"# build '{b.name}': context {b.rel_context(repo) or '.'}, dockerfile "
                f"{rel(b.dockerfile, repo)}, builder {p.model.label}, {ign_s}; "
                f"{len(self.files)} files")


def rel(p: Path, repo: Path) -> str:
    r = os.path.relpath(p, repo).replace(os.sep, "/")
    return r


def select_builds(builds: list[Build], name: str | None) -> list[Build]:
    if name is None:
        return builds
    chosen = [b for b in builds if b.name == name]
    if not chosen:
        raise BadInput(f"--build {name}: no such build; builds: "
                       + ", ".join(b.name for b in builds))
    return chosen


def listing(build: Build, model: BuilderModel, with_sizes: bool = True) -> BuildListing:
    plan = plan_for(build.context, build.dockerfile, model)
    return BuildListing(build, plan, plan.files(with_sizes))


def to_context_path(repo: Path, build: Build, path: str) -> str | None:
    """``path`` (absolute, or relative to the repo root) relative to the build's context;
    None when it lies outside the context."""
    p = Path(path)
    absolute = os.path.normpath(p if p.is_absolute() else repo / p)
    ctx = os.path.normpath(build.context)
    if absolute == ctx:
        return None
    r = os.path.relpath(absolute, ctx).replace(os.sep, "/")
    if r == ".." or r.startswith("../"):
        return None
    return r
