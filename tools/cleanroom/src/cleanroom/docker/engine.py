"""What the Docker side of this machine offers: client, engine, builder, Compose, GPU runtime.

Facts measured on this project's machines that this module encodes: a recent docker client
without the buildx plugin refuses BuildKit builds and falls back to the classic builder only with
BuildKit off; Debian's older client (< 23) builds with BuildKit natively when DOCKER_BUILDKIT=1.
Compose v2 (``docker compose``) is preferred; v1 (``docker-compose``) is supported.

The docker client is chosen here and nowhere else: :func:`docker_client` (the first ``docker``
on PATH) for everything but builds; a build uses the client of the chosen :class:`Builder`,
which may be another ``docker`` on PATH when only that one can build with BuildKit.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from cleanroom.core import runner, settings
from cleanroom.core.errors import CleanroomError, ToolMissing
from cleanroom.core.hashing import sha256

SETUP_HINT = "run `docker/setup-engine` (installs and starts Debian's Docker engine and Compose)"
# Where the docker CLI looks for its plugins (buildx, compose), besides $DOCKER_CONFIG/cli-plugins.
PLUGIN_DIRS = ("~/.docker/cli-plugins", "/usr/local/lib/docker/cli-plugins",
               "/usr/local/libexec/docker/cli-plugins", "/usr/lib/docker/cli-plugins",
               "/usr/libexec/docker/cli-plugins")


def _out(argv: list[str], env: dict[str, str] | None = None, timeout: float = 20) -> tuple[int, str]:
    try:
        p = runner.run(argv, env=env or {}, timeout=timeout)
    except OSError as exc:
        return 127, str(exc)
    except CleanroomError as exc:  # not installed, or no answer in time
        return 127, exc.message
    return p.returncode, (p.stdout + p.stderr).strip()


def _all_clients() -> list[str]:
    seen: list[str] = []
    for d in os.environ.get("PATH", "").split(os.pathsep):
        p = os.path.join(d, "docker")
        if os.path.isfile(p) and os.access(p, os.X_OK):
            real = os.path.realpath(p)
            if real not in (os.path.realpath(s) for s in seen):
                seen.append(p)
    return seen


def docker_client() -> str:
    """The docker client every command of the engine uses (builds, Compose's plugin lookup,
    ``ps``, ``exec``, ``image``): the first ``docker`` on PATH, as the probe finds it."""
    clients = _all_clients()
    if not clients:
        raise ToolMissing(f"no docker client found on PATH; {SETUP_HINT}")
    return clients[0]


def _client_major(client: str) -> int:
    """The client's major version from ``docker --version`` (client-only: no server round trip)."""
    import re

    rc, out = _out([client, "--version"])
    m = re.search(r"version (\d+)\.", out)
    return int(m.group(1)) if rc == 0 and m else 0


@dataclass(frozen=True)
class Builder:
    name: str  # "buildkit" or "classic"
    client: str  # the docker binary that builds
    env: tuple[tuple[str, str], ...]  # what to set for it
    buildx: bool = False  # the client has the buildx plugin (it can export a cache: --cache-to)

    def environ(self) -> dict[str, str]:
        return dict(self.env)


@dataclass(frozen=True)
class DockerEnv:
    client: str | None
    server_version: str | None
    server_error: str
    builders: tuple[Builder, ...]  # usable builders, preferred first
    compose: tuple[str, ...] | None
    compose_version: str
    runtimes: tuple[str, ...]
    cdi_gpu: bool
    # every Compose found, the one in use first: (argv, "v2 2.40.3" / "v1")
    composes: tuple[tuple[tuple[str, ...], str], ...] = ()

    @property
    def builder(self) -> Builder | None:
        want = settings.get("CLEANROOM_BUILDER") or None
        for b in self.builders:
            if want in (None, "", b.name):
                return b
        return self.builders[0] if self.builders else None

    @property
    def gpu(self) -> bool:
        return "nvidia" in self.runtimes or self.cdi_gpu

    @property
    def compose_label(self) -> str:
        if not self.compose:
            return "none"
        if self.compose[-1] == "compose":
            return f"v2 {self.compose_version}"
        rc, out = _out([*self.compose, "version", "--short"])
        return "v1 " + (out.splitlines()[0] if rc == 0 and out else "(version unknown)")


@cache
def probe() -> DockerEnv:
    clients = _all_clients()
    client = clients[0] if clients else None
    server_version, server_error = None, "no docker client on PATH"
    runtimes: tuple[str, ...] = ()
    cdi = False
    builders: list[Builder] = []
    compose: tuple[str, ...] | None = None
    compose_version = ""
    if client:
        rc, out = _out([client, "info", "--format", "{{json .}}"])
        if rc == 0:
            try:
                info = json.loads(out.splitlines()[-1])
            except (json.JSONDecodeError, IndexError):
                info = {}
            server_version = str(info.get("ServerVersion") or "") or None
            runtimes = tuple(sorted((info.get("Runtimes") or {}).keys()))
            cdi = "nvidia.com/gpu" in json.dumps(info.get("DiscoveredDevices") or [])
            server_error = "" if server_version else out[-300:]
        else:
            server_error = out.splitlines()[-1] if out else f"docker info exited {rc}"
        for c in clients:
            if _out([c, "buildx", "version"])[0] == 0:
                builders.append(Builder("buildkit", c, (("DOCKER_BUILDKIT", "1"),), buildx=True))
                break
            if 0 < _client_major(c) < 23:
                builders.append(Builder("buildkit", c, (("DOCKER_BUILDKIT", "1"),)))
                break
        builders.append(Builder("classic", client, (("DOCKER_BUILDKIT", "0"),)))
        for c in clients:
            rc, out = _out([c, "compose", "version", "--short"])
            if rc == 0:
                compose, compose_version = (c, "compose"), out.splitlines()[0]
                break

    found: list[tuple[tuple[str, ...], str]] = []
    if compose is not None:
        found.append((compose, f"v2 {compose_version}"))
    if shutil.which("docker-compose"):
        # Compose v1 is a Python program: asking its version costs half a second, so it is
        # asked only when shown (compose_label).
        found.append((("docker-compose",), "v1"))
    want = settings.get("CLEANROOM_COMPOSE") or ""
    if want:
        found.sort(key=lambda f: not f[1].startswith(want))
        if not found or not found[0][1].startswith(want):
            found = []  # the Compose asked for is not here: require_engine says so
    compose = found[0][0] if found else None
    compose_version = found[0][1].partition(" ")[2] if found else ""
    return DockerEnv(client, server_version, server_error, tuple(builders), compose,
                     compose_version, runtimes, cdi, tuple(found))


def require_engine(need_compose: bool = False) -> DockerEnv:
    """The Docker env, or ToolMissing (exit 3) naming what is missing and how to get it."""
    env = probe()
    if env.client is None:
        raise ToolMissing(f"no docker client found on PATH; {SETUP_HINT}")
    if env.server_version is None:
        raise ToolMissing(f"the Docker engine does not answer ({env.server_error}); {SETUP_HINT}")
    if need_compose and env.compose is None:
        want = settings.get("CLEANROOM_COMPOSE")
        if want:
            raise ToolMissing(f"CLEANROOM_COMPOSE={want}: that Compose is not installed; {SETUP_HINT}")
        raise ToolMissing(f"neither `docker compose` (v2) nor `docker-compose` (v1) is installed; {SETUP_HINT}")
    return env


@dataclass(frozen=True)
class Location:
    """Where the engine runs, as far as files go: ``remote`` when it does not share this
    machine's filesystem (a bind mount of a path here would be empty there)."""

    remote: bool
    endpoint: str  # the engine's address (unix:///var/run/docker.sock, tcp://..., ssh://...)
    why: str  # how it was decided

    def describe(self) -> str:
        where = "remote engine" if self.remote else "local engine"
        return f"{where} ({self.endpoint}; {self.why})"


def _endpoint() -> tuple[str, str]:
    """The engine's address and where it came from: DOCKER_HOST, else the current docker
    context (``docker context inspect``), else the default socket."""
    host = os.environ.get("DOCKER_HOST", "").strip()
    if host:
        return host, "DOCKER_HOST"
    # The docker CLI's own files first (no process to start: the daily loop's start-up is
    # measured): the current context, from DOCKER_CONTEXT or config.json; "default" is the socket.
    config_dir = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")
    name = os.environ.get("DOCKER_CONTEXT", "").strip()
    if not name:
        try:
            name = str(json.loads((config_dir / "config.json").read_text()).get("currentContext") or "")
        except (OSError, ValueError, AttributeError):
            name = ""
    if name in ("", "default"):
        return "unix:///var/run/docker.sock", "the default context"
    try:
        meta = config_dir / "contexts" / "meta" / sha256()(name.encode()).hexdigest() / "meta.json"
        found = json.loads(meta.read_text())["Endpoints"]["docker"]["Host"]
        if isinstance(found, str) and found:
            return found, f"docker context {name}"
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        rc, out = _out([docker_client(), "context", "inspect", "--format", "{{.Endpoints.docker.Host}}"])
    except ToolMissing:
        rc, out = 1, ""
    if rc == 0 and out.strip():
        ctx = os.environ.get("DOCKER_CONTEXT", "").strip() or "current"
        return out.strip().splitlines()[-1], f"docker context ({ctx})"
    return "unix:///var/run/docker.sock", "the default socket"


@cache
def location() -> Location:
    """Local when the engine is reached over a Unix socket of this machine (it shares its
    files), remote otherwise (tcp://, ssh://, even on loopback: a docker-in-docker engine does
    not see this machine's files). CLEANROOM_REMOTE=1/0 decides instead."""
    endpoint, origin = _endpoint()
    forced = settings.flag("CLEANROOM_REMOTE")
    if forced is not None:
        return Location(forced, endpoint, f"CLEANROOM_REMOTE={'1' if forced else '0'}")
    scheme = endpoint.partition("://")[0] if "://" in endpoint else "unix"
    if scheme in ("unix", "npipe"):
        return Location(False, endpoint, f"a socket of this machine, from {origin}")
    return Location(True, endpoint, f"{scheme}:// from {origin}: it does not see this machine's files")


def engine_answers() -> bool:
    return probe().server_version is not None
