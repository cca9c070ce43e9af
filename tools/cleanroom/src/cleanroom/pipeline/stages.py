"""The container pipeline: select, base, build, up, test-all, verify; and the daily-loop tasks
that run inside the app container from the host.

Every stage is announced, timed and logged under ``.cleanroom/logs`` (ignored by git). A failing
stage stops the pipeline, names the stage and its log, and exits 1. Interrupting it leaves the
app container either running or absent, never half-created, and says which.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cleanroom.core import runner, settings
from cleanroom.core.actions import Call, Plan, Run, Stage, WriteFile, run_command, run_stages
from cleanroom.core.cache import read_json, write_json
from cleanroom.core.errors import BadInput, StepFailed, ToolMissing
from cleanroom.core.workspace import Workspace, in_container
from cleanroom.docker.compose import root_files
from cleanroom.docker.dockerfiles import for_classic
from cleanroom.docker.engine import SETUP_HINT, Builder, DockerEnv, docker_client, location, require_engine
from cleanroom.pipeline import remote
from cleanroom.pipeline.baseimage import DEFAULT_TAG, ensure_base_image, image_exists
from cleanroom.pipeline.testrun import DEFAULT_LOG
from cleanroom.variants.select import render
from cleanroom.verify.run import selection

DEFAULT_BASES = {
    "binary": "nvidia/cuda:12.8.1-devel-ubuntu22.04",
    "source": "nvidia/cuda:11.8.0-cudnn8-devel-ubuntu22.04",
}
OFFLINE_BASE = DEFAULT_TAG  # the offline base image, built with mmdebstrap when nothing else can be had
PULL_RETRY_S = 24 * 3600


def say(msg: str) -> None:
    print(msg, flush=True)


def cache_flags(builder: Builder) -> list[str]:
    """``--cache-from`` / ``--cache-to`` from CLEANROOM_CACHE_FROM / CLEANROOM_CACHE_TO (a
    BuildKit cache shared across machines, e.g. in a registry). ``--cache-to`` needs a builder
    that can export a cache (buildx); without one it is refused before anything runs."""
    flags = []
    cache_from = (settings.get("CLEANROOM_CACHE_FROM") or "").strip()
    cache_to = (settings.get("CLEANROOM_CACHE_TO") or "").strip()
    if cache_from:
        flags.append(f"--cache-from={cache_from}")
    if cache_to:
        if not builder.buildx:
            raise BadInput(f"CLEANROOM_CACHE_TO={cache_to}: the {builder.name} builder ({builder.client}) "
                           "cannot export a build cache; install the buildx plugin, or unset it")
        flags.append(f"--cache-to={cache_to}")
    return flags


def test_log() -> str:
    """Where test-all writes its log in the container (the compose file passes the host's
    CLEANROOM_TEST_LOG through)."""
    return settings.get("CLEANROOM_TEST_LOG") or DEFAULT_LOG


def _when(ts: float) -> str:
    """A moment as the time of day, with the date when it is not today."""
    t = time.localtime(ts)
    return time.strftime("%H:%M" if t[:3] == time.localtime()[:3] else "%b %d %H:%M", t)


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
    """Compose on the app's file; for a remote engine, its copy without host bind mounts, with
    the original's folder as the project directory (see :mod:`cleanroom.pipeline.remote`)."""
    assert env.compose is not None
    original = app_compose_file(ws)
    if location().remote:
        argv = [*env.compose, "-p", ws.cfg.docker.project, "--project-directory", str(original.parent),
                "-f", str(remote.compose_file_for_remote(ws, original))]
    else:
        argv = [*env.compose, "-p", ws.cfg.docker.project, "-f", str(original)]
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
    argv = [docker_client(), "ps", "--no-trunc", "--format",
            f'{{{{.ID}}}}\t{{{{.Mounts}}}}\t{{{{.Label "{remote.CHECKOUT_LABEL}"}}}}',
            "--filter", f"label=com.docker.compose.project={project}",
            "--filter", f"label=com.docker.compose.service={ws.cfg.docker.service}"]
    if not running_only:
        argv.insert(2, "-a")
    p = runner.run(argv, hint=SETUP_HINT)
    if p.returncode != 0:
        why = p.last_error_line()
        raise ToolMissing(f"the Docker engine does not answer ({why}); {SETUP_HINT}")
    rows = [ln.split("\t") for ln in str(p.stdout).splitlines() if ln.strip()]
    if not rows:
        return None
    cid, mounts = rows[0][0], (rows[0][1] if len(rows[0]) > 1 else "")
    checkout = rows[0][2].strip() if len(rows[0]) > 2 else ""
    here = str(ws.repo.resolve())
    # the checkout it belongs to: what it mounts (a local engine), else its label (a remote one)
    sources = [m for m in mounts.split(",") if m] or ([checkout] if checkout else [])
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
    """The main job as a plan: each stage plans its actions when it starts (from what the stages
    before it found: the engine, the variant, the base image) and the one stage runner
    (:func:`cleanroom.core.actions.run_stages`) carries them out, or with ``dry_run`` prints
    them. A dry run asks the engine (read-only) and changes nothing: no pull, no build, no
    container, no log."""

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
    dry_run: bool = False
    _classic: Path | None = None

    def __post_init__(self) -> None:
        self.log_dir = self.ws.repo / ".cleanroom" / "logs"

    def log(self, stage: str) -> Path:
        return self.log_dir / f"{self.variant}-{stage}.log"

    # each stage's plan --------------------------------------------------------
    def p_engine(self) -> Plan:
        return [Call(self._probe, "ask the Docker engine: docker info, the builders (buildx, the "
                                  "classic builder), Compose (v2 plugin, v1)", changes=False)]

    def _probe(self) -> None:
        self.env = require_engine(need_compose=True)
        self.builder = self.env.builder
        assert self.builder is not None
        say(f"    engine {self.env.server_version}; compose {self.env.compose_label}; "
            f"builder {self.builder.name} ({self.builder.client})")

    def p_select(self) -> Plan:
        assert self.env is not None
        self.spec = build_spec(self.ws, self.variant, self.env)
        gpu = "with" if self.spec.with_gpu else "without"
        return [Call(self._select, f"select {self.variant}: {self.ws.cfg.variants.path_of(self.variant)} -> "
                                   f"pyproject.toml inside the image ({gpu} the gpu group; the Dockerfile runs "
                                   f"`cleanroom select`), Dockerfile {self.spec.dockerfile}", changes=False)]

    def _select(self) -> None:
        assert self.spec is not None
        without = () if self.spec.with_gpu else ("gpu",)
        sel = render(self.ws.repo, self.ws.cfg, self.variant, without, self.spec.index_url)
        say(f"    variant {self.variant}: {sel.variant_file} -> pyproject.toml inside the image "
            f"({'with' if self.spec.with_gpu else 'without'} the gpu group), {self.spec.dockerfile}")
        if self.spec.index_url:
            say(f"    package index: {self.spec.index_url} (from {self.spec.index_origin}; "
                "set CLEANROOM_INDEX_URL to choose another, or to empty for Poetry's default)")
        if self.spec.native:
            say(f"    compiled from source into /opt/wheels: {self.spec.native}")

    def p_base(self) -> Plan:
        assert self.env is not None and self.env.client is not None
        chosen = (settings.get("CLEANROOM_BASE_IMAGE") or "").strip()
        if chosen:
            self.base = chosen
            return [Call(lambda: say(f"    base image {chosen} (from CLEANROOM_BASE_IMAGE)"),
                         f"use the base image {chosen} (CLEANROOM_BASE_IMAGE)", changes=False)]
        default = DEFAULT_BASES[self.variant]
        if image_exists(default):
            self.base = default
            return [Call(lambda: say(f"    base image {default} (present)"),
                         f"use the base image {default} (present)", changes=False)]
        offline = Call(self._offline, f"build {OFFLINE_BASE} with mmdebstrap if it is not there "
                                      f"(log: {self.log('base')})")
        # A registry that did not answer is not asked again on every build: a failed pull is
        # remembered for a day (a pull can take minutes to time out where the network drops it).
        failed = read_json("base-pull.json")
        last = failed.get(default) if isinstance(failed, dict) else None
        if isinstance(last, list) and len(last) == 2 and time.time() - float(last[0]) < PULL_RETRY_S:
            at, until = _when(float(last[0])), _when(float(last[0]) + PULL_RETRY_S)
            self.base = OFFLINE_BASE
            return [Call(lambda: say(f"    base image {default} cannot be had (a pull failed at {at}: "
                                     f"{last[1]}; not tried again before {until}, or `docker pull "
                                     f"{default}` yourself); using the offline base {OFFLINE_BASE}"),
                         f"skip {default}: its pull failed at {at} (not tried again before {until})",
                         changes=False), offline]
        self.base = default  # as planned; the pull step falls back to the offline base
        return [Call(lambda: self._pull(default),
                     f"docker pull -q {default}; if that fails: build {OFFLINE_BASE} with mmdebstrap "
                     f"(log: {self.log('base')})")]

    def _pull(self, default: str) -> None:
        assert self.env is not None and self.env.client is not None
        try:
            p = runner.run([self.env.client, "pull", "-q", default], timeout=600)
        except StepFailed as exc:  # no answer within the limit: a failed pull
            p = runner.Result((), 124, "", exc.message)
        failed = read_json("base-pull.json")
        failed = failed if isinstance(failed, dict) else {}
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
        self._offline()

    def _offline(self) -> None:
        ensure_base_image(OFFLINE_BASE, log=self.log("base"))
        self.base = OFFLINE_BASE

    def p_build(self) -> Plan:
        assert self.spec is not None and self.builder is not None
        path = self.ws.repo / self.spec.dockerfile
        plan: Plan = []
        dockerfile = path
        if self.builder.name != "buildkit":
            # The classic builder refuses cache mounts: it builds a copy without them, in a
            # temporary folder outside the context (removed after the build).
            try:
                text = for_classic(path.read_text(encoding="utf-8"), self.spec.dockerfile)
            except (OSError, UnicodeDecodeError) as exc:
                raise BadInput(f"{path}: cannot read: {exc}") from None
            dockerfile = Path(tempfile.gettempdir()) / f"cleanroom-classic-{os.getpid()}" / path.name
            self._classic = dockerfile
            plan.append(WriteFile(dockerfile, text, desc=f"{self.spec.dockerfile} without the cache "
                                                       "mounts the classic builder refuses"))
        return [*plan, Run(tuple(self.build_argv(dockerfile)), env=self.builder.environ(), log=self.log("build"))]

    def build_argv(self, dockerfile: Path) -> list[str]:
        assert self.spec is not None and self.builder is not None
        s = self.spec
        argv = [self.builder.client, "build", "-f", str(dockerfile), "-t", s.image,
                "--build-arg", f"BASE_IMAGE={self.base}",
                "--build-arg", f"VARIANT={s.variant}",
                "--build-arg", f"WITH_GPU={'true' if s.with_gpu else 'false'}"]
        if s.index_url:
            argv += ["--build-arg", f"CLEANROOM_INDEX_URL={s.index_url}"]
        if s.native:
            argv += ["--build-arg", f"NATIVE_FROM_SOURCE={s.native}"]
        argv += ["--label", f"{remote.DEPS_LABEL}={remote.deps_digest(self.ws, s.variant, s.dockerfile)}",
                 "--label", f"{remote.VARIANT_LABEL}={s.variant}"]
        if self.builder.name == "buildkit":
            argv += ["--progress=plain"]
        argv += cache_flags(self.builder)
        if self.rebuild:
            argv += ["--no-cache"]
        return [*argv, str(self.ws.repo)]

    def p_up(self) -> Plan:
        assert self.env is not None and self.spec is not None
        if self.spec.gpu_runtime:
            say(f"    GPU runtime detected ({', '.join(self.env.runtimes) or 'CDI'}): adding "
                f"{self.ws.cfg.docker.gpu_overlay}")
        else:
            say("    no GPU runtime, running on CPU")
        argv = [*compose_argv(self.ws, self.env, self.spec.gpu_runtime), "up", "-d", "--no-build"]
        return [Run(tuple(argv), env=self.spec.compose_env(self.base), log=self.log("up")),
                Call(self._check_up, "check that the app container runs")]

    def _check_up(self) -> None:
        assert self.env is not None
        cid = find_container(self.ws)
        state = container_state(self.env, cid) if cid else "absent"
        if state != "running":
            logs = " ".join(compose_argv(self.ws, self.env, False) + ["logs"])
            raise StepFailed(f"the app container is {state} after `up`; see `{logs}`")
        say(f"    app container {cid[:12] if cid else ''} running")
        if cid and location().remote:
            remote.record_baseline(self.ws, cid, app_compose_file(self.ws))
            say(f"    remote engine ({location().endpoint}): no bind mounts; the daily loop sends changed "
                "sources into the container")

    def exec_argv(self, *cmd: str) -> list[str]:
        cid = find_container(self.ws, running_only=True)
        if cid is None:
            if self.dry_run:
                cid = "<the app container>"  # started by the up stage
            else:
                raise StepFailed("the app container is not running")
        return [docker_client(), "exec", "-i", cid, *cmd]

    def p_test_all(self) -> Plan:
        assert self.spec is not None
        plan: Plan = [Run(tuple(self.exec_argv("test-all")), env=self.spec.compose_env(self.base),
                          log=self.log("test-all"))]
        if location().remote:
            plan.append(Call(self._fetch_logs, f"copy {test_log()} and its JUnit XML from the app "
                                               f"container into {self.log_dir}"))
        return plan

    def _fetch_logs(self) -> None:
        cid = find_container(self.ws, running_only=True)
        if cid is not None:
            for path in remote.fetch_test_logs(self.ws, docker_client(), cid, test_log()):
                say(f"    {path}")

    def p_verify(self) -> Plan:
        assert self.spec is not None
        env = self.spec.compose_env(self.base)
        if location().remote:
            # The engine cannot see the checkout: verify runs here, on it; in the container only
            # the generated code is checked against the sources the image holds.
            return [Run((sys.executable, "-m", "cleanroom", "--repo", str(self.ws.repo), "verify"),
                        log=self.log("verify")),
                    Run(tuple(self.exec_argv("cleanroom", "proto", "--check", "--out", self.ws.cfg.proto.out)),
                        env=env, log=self.log("verify-generated"))]
        argv = self.exec_argv("cleanroom", "--repo", "/workspace", "verify", "--out", self.ws.cfg.proto.out)
        return [Run(tuple(argv), env=env, log=self.log("verify"))]

    # driver -------------------------------------------------------------------
    def stages(self) -> list[Stage]:
        all_stages = [
            Stage("engine", self.p_engine), Stage("select", self.p_select),
            Stage("base", self.p_base, self.log("base")), Stage("build", self.p_build, self.log("build")),
            Stage("up", self.p_up, self.log("up")), Stage("test-all", self.p_test_all, self.log("test-all")),
            Stage("verify", self.p_verify, self.log("verify")),
        ]
        out = []
        for stage in all_stages:
            if stage.name == "test-all" and not self.tests:
                continue
            out.append(stage)
            if stage.name == self.until:
                break
        return out

    def run(self, dry_run: bool = False) -> int:
        self.dry_run = dry_run
        if self.until == "verify":
            selection(self.ws.cfg)  # a bad rule name in [verify] fails now, not after the build
        stages = self.stages()
        label = f"build-{self.variant}"
        current = {"name": ""}

        def named(stage: Stage) -> Stage:
            def plan() -> Plan:
                current["name"] = stage.name
                return stage.plan()
            return Stage(stage.name, plan, stage.log)

        try:
            took = run_stages([named(s) for s in stages], label, dry_run=dry_run)
        except KeyboardInterrupt:
            say(f"\n{label}: interrupted during stage '{current['name']}'; {self.after_interrupt()}")
            return 130
        finally:
            if self._classic is not None:
                shutil.rmtree(self._classic.parent, ignore_errors=True)
        if dry_run:
            say(f"{label}: dry run: {len(stages)} stages planned, nothing was changed")
            return 0
        say(f"{label}: all {len(stages)} stages ok in {took:.1f}s"
            + (f"; test output in the container at {test_log()}" if self.tests and self.until == "verify" else ""))
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
