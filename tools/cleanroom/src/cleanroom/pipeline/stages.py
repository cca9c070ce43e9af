"""The container pipeline: select, base, build, up, test-all, verify; and the daily-loop tasks
that run inside the app container from the host.

Every stage is announced, timed and logged under ``.cleanroom/logs`` (ignored by git). A failing
stage stops the pipeline, names the stage and its log, and exits 1. Interrupting it leaves the
app container either running or absent, never half-created, and says which.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cleanroom.core import runner, settings
from cleanroom.core.actions import Run, run_command
from cleanroom.core.cache import read_json, write_json
from cleanroom.core.errors import BadInput, CleanroomError, StepFailed, ToolMissing
from cleanroom.core.workspace import Workspace, in_container
from cleanroom.docker.compose import root_files
from cleanroom.docker.dockerfiles import for_classic
from cleanroom.docker.engine import SETUP_HINT, Builder, DockerEnv, docker_client, require_engine
from cleanroom.pipeline.baseimage import ensure_base_image, image_exists
from cleanroom.variants.select import render

DEFAULT_BASES = {
    "binary": "nvidia/cuda:12.8.1-devel-ubuntu22.04",
    "source": "nvidia/cuda:11.8.0-cudnn8-devel-ubuntu22.04",
}
OFFLINE_BASE = "cleanroom-base:offline"
PULL_RETRY_S = 24 * 3600
STAGES = ("engine", "select", "base", "build", "up", "test-all", "verify")


def say(msg: str) -> None:
    print(msg, flush=True)


# ----------------------------------------------------------------------- settings


def derive_index_url() -> tuple[str | None, str]:
    """The simple-API index to use, and where it came from.

    ``CLEANROOM_INDEX_URL`` wins (set but empty: none, Poetry's default source). Otherwise it is
    derived at run time from pip's own configuration, falling back to pip's default index: the
    per-version JSON API Poetry's default source needs is not served by every mirror.
    """
    chosen = settings.get("CLEANROOM_INDEX_URL")
    if chosen is not None:
        return (chosen or None), "CLEANROOM_INDEX_URL"
    url = os.environ.get("PIP_INDEX_URL", "").strip()
    if url:
        return url, "PIP_INDEX_URL"
    url, where = _pip_config_index_url()
    if url:
        return url, where
    try:
        from pip._internal.models.index import PyPI

        return PyPI.simple_url, "pip's default index"
    except ImportError:
        return None, "none (pip not importable)"


def _pip_config_index_url() -> tuple[str, str]:
    """``global.index-url`` from pip's configuration files, read in pip's order (global, user,
    site; ``PIP_CONFIG_FILE`` last): what ``pip config get`` answers, without the 0.3 s of
    starting pip for it on every build."""
    import configparser

    home = Path.home()
    xdg = [Path(d) / "pip" / "pip.conf"
           for d in reversed(os.environ.get("XDG_CONFIG_DIRS", "/etc/xdg").split(":")) if d]
    files = [*xdg, Path("/etc/pip.conf"), home / ".pip" / "pip.conf",
             Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config") / "pip" / "pip.conf",
             Path(sys.prefix) / "pip.conf"]
    if os.environ.get("PIP_CONFIG_FILE"):
        files.append(Path(os.environ["PIP_CONFIG_FILE"]))
    found, where = "", ""
    for f in files:
        cp = configparser.RawConfigParser()
        try:
            cp.read(f, encoding="utf-8")
        except (OSError, configparser.Error, UnicodeDecodeError):
            continue
        value = cp.get("global", "index-url", fallback="").strip()
        if value:
            found, where = value, f"pip config global.index-url ({f})"
    return found, where


def native_from_source() -> str:
    return (settings.get("CLEANROOM_NATIVE_FROM_SOURCE") or "").strip()


@dataclass(frozen=True)
class BuildSpec:
    variant: str
    dockerfile: str
    image: str
    with_gpu: bool
    gpu_runtime: bool
    index_url: str | None
    index_origin: str
    native: str = ""

    def compose_env(self, base: str) -> dict[str, str]:
        return {
            "CLEANROOM_IMAGE": self.image,
            "CLEANROOM_DOCKERFILE": self.dockerfile,
            "CLEANROOM_BASE_IMAGE": base,
            "CLEANROOM_WITH_GPU": "true" if self.with_gpu else "false",
        }


def build_spec(ws: Workspace, variant: str, env: DockerEnv) -> BuildSpec:
    if variant not in DEFAULT_BASES:
        raise BadInput(f"unknown variant '{variant}' (expected one of: binary, source)")
    d = ws.cfg.docker
    dockerfile = d.binary_dockerfile if variant == "binary" else d.source_dockerfile
    if not (ws.repo / dockerfile).is_file():
        raise BadInput(f"{ws.repo / dockerfile}: Dockerfile not found (cleanroom.toml [docker])")
    want_gpu = settings.flag("CLEANROOM_WITH_GPU")
    with_gpu = env.gpu if want_gpu is None else want_gpu
    url, origin = derive_index_url()
    return BuildSpec(variant, dockerfile, f"{d.project}/{d.service}:{variant}", with_gpu, env.gpu,
                     url, origin, native_from_source() if variant == "source" else "")


# ------------------------------------------------------------------------ compose


def app_compose_file(ws: Workspace) -> Path:
    """The app's compose file: the first ``[docker] compose``, else the one Compose finds at the
    repo root."""

    if ws.cfg.docker.compose:
        return ws.path(ws.cfg.docker.compose[0])
    found = root_files(ws.repo)
    if not found:
        raise BadInput("no compose file: set [docker] compose in cleanroom.toml (the app's compose "
                       "file) or add a compose.yaml at the repo root")
    return found[0]


def compose_argv(ws: Workspace, env: DockerEnv, gpu: bool) -> list[str]:
    assert env.compose is not None
    argv = [*env.compose, "-p", ws.cfg.docker.project, "-f", str(app_compose_file(ws))]
    if gpu:
        argv += ["-f", str(ws.repo / ws.cfg.docker.gpu_overlay)]
    return argv


def find_container(ws: Workspace, running_only: bool = False) -> str | None:
    """This checkout's app container: found by the labels Compose (v1 and v2) puts on it, and
    refused (one line) when the container of this project mounts another checkout.

    One ``docker ps`` call: much cheaper than ``compose ps`` (Compose v1 is a Python program),
    which matters for the daily-loop tasks.
    """

    project = ws.cfg.docker.project
    argv = [docker_client(), "ps", "--no-trunc", "--format", "{{.ID}}\t{{.Mounts}}",
            "--filter", f"label=com.docker.compose.project={project}",
            "--filter", f"label=com.docker.compose.service={ws.cfg.docker.service}"]
    if not running_only:
        argv.insert(2, "-a")
    p = runner.run(argv, hint=SETUP_HINT)
    if p.returncode != 0:
        why = p.last_error_line()
        raise ToolMissing(f"the Docker engine does not answer ({why}); {SETUP_HINT}")
    rows = [ln.split("\t", 1) for ln in str(p.stdout).splitlines() if ln.strip()]
    if not rows:
        return None
    cid, mounts = rows[0][0], (rows[0][1] if len(rows[0]) > 1 else "")
    here = str(ws.repo.resolve())
    sources = [m for m in mounts.split(",") if m]
    if sources and here not in sources:
        other = min(sources, key=len)
        raise BadInput(f"the app container {cid[:12]} of compose project {project!r} mounts {other}, not "
                       f"this checkout ({here}): two checkouts share the project; remove [docker] project "
                       f"from cleanroom.toml (each checkout then has its own) or run `invoke down` in {other}")
    return str(cid)


def container_state(env: DockerEnv, cid: str) -> str:
    p = runner.run([env.client or docker_client(), "inspect", "-f", "{{.State.Status}}", cid])
    return str(p.stdout).strip() or "absent"


# ----------------------------------------------------------------------- pipeline


@dataclass
class Pipeline:
    ws: Workspace
    variant: str
    tests: bool = True
    rebuild: bool = False
    until: str = "verify"
    log_dir: Path = field(init=False)
    env: DockerEnv | None = None
    spec: BuildSpec | None = None
    builder: Builder | None = None
    base: str = ""
    stage: str = ""
    _classic: Path | None = None

    def __post_init__(self) -> None:
        self.log_dir = self.ws.repo / ".cleanroom" / "logs"

    def log(self, stage: str) -> Path:
        return self.log_dir / f"{self.variant}-{stage}.log"

    # each stage -------------------------------------------------------------
    def s_engine(self) -> None:
        self.env = require_engine(need_compose=True)
        self.builder = self.env.builder
        assert self.builder is not None
        say(f"    engine {self.env.server_version}; compose {self.env.compose_label}; "
            f"builder {self.builder.name} ({self.builder.client})")

    def s_select(self) -> None:
        assert self.env is not None
        self.spec = build_spec(self.ws, self.variant, self.env)
        without = () if self.spec.with_gpu else ("gpu",)
        sel = render(self.ws.repo, self.ws.cfg, self.variant, without, self.spec.index_url)
        say(f"    variant {self.variant}: {sel.variant_file} -> pyproject.toml inside the image "
            f"({'with' if self.spec.with_gpu else 'without'} the gpu group), {self.spec.dockerfile}")
        if self.spec.index_url:
            say(f"    package index: {self.spec.index_url} (from {self.spec.index_origin}; "
                "set CLEANROOM_INDEX_URL to choose another, or to empty for Poetry's default)")
        if self.spec.native:
            say(f"    compiled from source into /opt/wheels: {self.spec.native}")

    def s_base(self) -> None:
        assert self.env is not None and self.env.client is not None
        chosen = (settings.get("CLEANROOM_BASE_IMAGE") or "").strip()
        if chosen:
            say(f"    base image {chosen} (from CLEANROOM_BASE_IMAGE)")
            self.base = chosen
            return
        default = DEFAULT_BASES[self.variant]
        if image_exists(default):
            say(f"    base image {default} (present)")
            self.base = default
            return
        # A registry that did not answer is not asked again on every build: a failed pull is
        # remembered for a day (a pull can take minutes to time out where the network drops it).

        failed = read_json("base-pull.json")
        failed = failed if isinstance(failed, dict) else {}
        last = failed.get(default)
        if isinstance(last, list) and len(last) == 2 and time.time() - float(last[0]) < PULL_RETRY_S:
            until = time.strftime("%H:%M", time.localtime(float(last[0]) + PULL_RETRY_S))
            say(f"    base image {default} cannot be had (a pull failed at "
                f"{time.strftime('%H:%M', time.localtime(float(last[0])))}: {last[1]}; not tried again "
                f"before {until}, or `docker pull {default}` yourself); using the offline base {OFFLINE_BASE}")
        else:
            try:
                p = runner.run([self.env.client, "pull", "-q", default], timeout=600)
            except StepFailed as exc:  # no answer within the limit: a failed pull
                p = runner.Result((), 124, "", exc.message)
            if p.returncode == 0:
                say(f"    base image {default} (pulled)")
                failed.pop(default, None)
                write_json("base-pull.json", failed)
                self.base = default
                return
            reason = p.last_error_line()[:160]
            failed[default] = [time.time(), reason]
            write_json("base-pull.json", failed)
            say(f"    base image {default} cannot be had (not present; pull failed: {reason}); "
                f"using the offline base {OFFLINE_BASE}")
        ensure_base_image(OFFLINE_BASE, log=self.log("base"))
        self.base = OFFLINE_BASE

    def dockerfile_for_builder(self) -> Path:
        """The Dockerfile to build: as written for BuildKit; for the classic builder, a copy
        without the cache mounts it refuses (in a temporary folder, outside the context)."""
        assert self.spec is not None and self.builder is not None
        path = self.ws.repo / self.spec.dockerfile
        if self.builder.name == "buildkit":
            return path
        import tempfile


        try:
            text = for_classic(path.read_text(encoding="utf-8"), self.spec.dockerfile)
        except (OSError, UnicodeDecodeError) as exc:
            raise BadInput(f"{path}: cannot read: {exc}") from None
        tmp = Path(tempfile.mkdtemp(prefix="cleanroom-classic-")) / path.name
        tmp.write_text(text, encoding="utf-8")
        self._classic = tmp
        return tmp

    def build_argv(self) -> list[str]:
        assert self.spec is not None and self.builder is not None
        s = self.spec
        argv = [self.builder.client, "build", "-f", str(self.dockerfile_for_builder()), "-t", s.image,
                "--build-arg", f"BASE_IMAGE={self.base}",
                "--build-arg", f"VARIANT={s.variant}",
                "--build-arg", f"WITH_GPU={'true' if s.with_gpu else 'false'}"]
        if s.index_url:
            argv += ["--build-arg", f"CLEANROOM_INDEX_URL={s.index_url}"]
        if s.native:
            argv += ["--build-arg", f"NATIVE_FROM_SOURCE={s.native}"]
        if self.builder.name == "buildkit":
            argv += ["--progress=plain"]
        if self.rebuild:
            argv += ["--no-cache"]
        return [*argv, str(self.ws.repo)]

    def s_build(self) -> None:
        assert self.builder is not None
        try:
            run_command(Run(tuple(self.build_argv()), env=self.builder.environ(), log=self.log("build")))
        finally:
            if self._classic is not None:
                import shutil

                shutil.rmtree(self._classic.parent, ignore_errors=True)

    def s_up(self) -> None:
        assert self.env is not None and self.spec is not None
        if self.spec.gpu_runtime:
            say(f"    GPU runtime detected ({', '.join(self.env.runtimes) or 'CDI'}): adding "
                f"{self.ws.cfg.docker.gpu_overlay}")
        else:
            say("    no GPU runtime, running on CPU")
        argv = [*compose_argv(self.ws, self.env, self.spec.gpu_runtime), "up", "-d", "--no-build"]
        run_command(Run(tuple(argv), env=self.spec.compose_env(self.base), log=self.log("up")))
        cid = find_container(self.ws)
        state = container_state(self.env, cid) if cid else "absent"
        if state != "running":
            logs = " ".join(compose_argv(self.ws, self.env, False) + ["logs"])
            raise StepFailed(f"the app container is {state} after `up`; see `{logs}`")
        say(f"    app container {cid[:12] if cid else ''} running")

    def exec_argv(self, *cmd: str) -> list[str]:
        cid = find_container(self.ws, running_only=True)
        if cid is None:
            raise StepFailed("the app container is not running")
        return [docker_client(), "exec", "-i", cid, *cmd]

    def s_test_all(self) -> None:
        assert self.spec is not None
        run_command(Run(tuple(self.exec_argv("test-all")), env=self.spec.compose_env(self.base),
                        log=self.log("test-all")))

    def s_verify(self) -> None:
        assert self.spec is not None
        argv = self.exec_argv("cleanroom", "--repo", "/workspace", "verify", "--out",
                              self.ws.cfg.proto.out)
        run_command(Run(tuple(argv), env=self.spec.compose_env(self.base), log=self.log("verify")))

    # driver -------------------------------------------------------------------
    def stages(self) -> list[tuple[str, Callable[[], None]]]:
        all_stages = [
            ("engine", self.s_engine), ("select", self.s_select), ("base", self.s_base),
            ("build", self.s_build), ("up", self.s_up), ("test-all", self.s_test_all),
            ("verify", self.s_verify),
        ]
        out = []
        for name, fn in all_stages:
            if name == "test-all" and not self.tests:
                continue
            out.append((name, fn))
            if name == self.until:
                break
        return out

    def run(self) -> int:
        stages = self.stages()
        start = time.monotonic()
        label = f"build-{self.variant}"
        try:
            for i, (name, fn) in enumerate(stages, 1):
                self.stage = name
                say(f"==> [{i}/{len(stages)}] {name}")
                t = time.monotonic()
                try:
                    fn()
                except StepFailed as exc:
                    log = self.log(name)
                    raise StepFailed(
                        f"{label}: stage '{name}' failed: {exc.message}"
                        + ("" if str(log) in exc.message else f" (log: {log})")
                    ) from None
                except CleanroomError as exc:
                    exc.message = f"{label}: stage '{name}': {exc.message}"
                    raise
                say(f"<== {name} ok ({time.monotonic() - t:.1f}s)")
        except KeyboardInterrupt:
            say(f"\n{label}: interrupted during stage '{self.stage}'; {self.after_interrupt()}")
            return 130
        say(f"{label}: all {len(stages)} stages ok in {time.monotonic() - start:.1f}s"
            + (f"; test output in the container at {self.ws.cfg.test.log}" if self.tests and self.until == "verify" else ""))
        return 0

    def after_interrupt(self) -> str:
        """Leave the app container running or absent (never half-created); say which."""
        if self.env is None or self.env.compose is None:
            return "no container was touched"
        cid = find_container(self.ws)
        if not cid:
            return "no app container exists"
        state = container_state(self.env, cid)
        if state == "running":
            return f"the app container {cid[:12]} is left running (`invoke down` stops it)"
        runner.run([*compose_argv(self.ws, self.env, False), "rm", "-f", "-s", self.ws.cfg.docker.service])
        return f"removed the half-created app container {cid[:12]} (it was {state}); nothing is running"


# --------------------------------------------------------------- host <-> container


def down(ws: Workspace) -> int:
    env = require_engine(need_compose=True)
    run_command(Run(tuple([*compose_argv(ws, env, False), "down", "--remove-orphans"])))
    say("down: the app container is stopped and removed")
    return 0


def in_app(ws: Workspace, cmd: Sequence[str], interactive: bool = False,
           env: Sequence[str] = ()) -> int:
    """Run ``cmd`` in the app container: directly when already inside, via ``exec`` from the
    host, passing the host's values of the settings named in ``env`` that are set."""
    if in_container():
        return runner.run(cmd, capture=False).returncode
    cid = find_container(ws, running_only=True)
    if cid is None:
        raise ToolMissing(
            "the app container is not running; start it with `invoke up` "
            "(or `nox -s build-binary`, which also runs the tests)"
        )
    tty = interactive and sys.stdin.isatty() and sys.stdout.isatty()
    passed = [f"--env={name}={os.environ[name]}" for name in env if name in os.environ]
    argv = [docker_client(), "exec", "-i", *(["-t"] if tty else []), *passed, cid, *cmd]
    return runner.run(argv, capture=False).returncode


def app_running(ws: Workspace) -> bool:
    if in_container():
        return True
    try:
        return find_container(ws, running_only=True) is not None
    except ToolMissing:
        return False
