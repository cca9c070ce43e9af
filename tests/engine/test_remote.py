"""The main job and the daily loop against a remote Docker engine: a docker-in-docker engine from
Debian's packages (docker/setup-remote-engine), reached over TCP on loopback, that cannot see this
machine's files, so a bind mount cannot pass by accident. Skipped, with the reason, when none
answers at CLEANROOM_TEST_REMOTE_HOST (default tcp://127.0.0.1:23750); CI starts one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import helpers
import pytest
from helpers import ROOT, cli, git

REMOTE = os.environ.get("CLEANROOM_TEST_REMOTE_HOST", "tcp://127.0.0.1:23750")
PROJECT = f"cleanroom-remote-{os.getpid()}"
BUILD_TIMEOUT = 2400


def _answers(host: str) -> bool:
    try:
        p = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True,
                           text=True, timeout=20, env={**os.environ, "DOCKER_HOST": host})
    except (OSError, subprocess.TimeoutExpired):
        return False
    return p.returncode == 0


def _local_engine() -> bool:
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20, env=env).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


needs_remote = pytest.mark.skipif(
    not _answers(REMOTE),
    reason=f"no remote Docker engine answers at {REMOTE}; start one with docker/setup-remote-engine",
)
needs_local = pytest.mark.skipif(not _local_engine(), reason="no local Docker engine (docker/setup-engine)")


def remote_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLEANROOM_") and k != "DOCKER_CONTAINER"}
    return {**env, "DOCKER_HOST": REMOTE, **extra}


def docker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, env=remote_env(), timeout=300)


@pytest.fixture(scope="module")
def remote_repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """This checkout, committed in a new repo under its own compose project, built and started
    on the remote engine with the command users type: `nox -s build-binary`."""
    repo = tmp_path_factory.mktemp("remote") / "repo"
    helpers.copy_checkout(repo)
    cfg = repo / "cleanroom.toml"
    cfg.write_text(cfg.read_text().replace('service = "spectralmc"', f'service = "spectralmc"\nproject = "{PROJECT}"'))
    git(repo, "commit", "-q", "-am", "own compose project")
    try:
        yield repo
    finally:
        cli("down", cwd=repo, env=remote_env(), timeout=300)
        docker("image", "rm", "-f", f"{PROJECT}/spectralmc:binary")


@pytest.fixture(scope="module")
def built(remote_repo: Path) -> tuple[Path, str]:
    p = subprocess.run([sys.executable, "-m", "nox", "-s", "build-binary"], cwd=remote_repo,
                       env=remote_env(), capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    assert p.returncode == 0, (p.stdout + p.stderr)[-6000:]
    return remote_repo, p.stdout + p.stderr


@needs_remote
def test_build_binary_on_the_remote_engine(built: tuple[Path, str]) -> None:
    """`nox -s build-binary` with DOCKER_HOST at the remote engine: every stage ran there, the
    container mounts nothing of this machine, the test log came back, git status stays clean."""
    repo, out = built
    assert "build-binary: all 7 stages ok" in out, out[-3000:]
    assert "test-all: passed" in out
    cid = docker("ps", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}").stdout.split()
    assert len(cid) == 1, cid
    mounts = json.loads(docker("inspect", "-f", "{{json .Mounts}}", cid[0]).stdout)
    assert [m for m in mounts if m.get("Type") == "bind"] == [], mounts
    log = repo / ".cleanroom" / "logs" / "test-output.txt"
    assert log.is_file() and "passed" in log.read_text()
    assert (repo / ".cleanroom" / "logs" / "test-output.xml").is_file()
    assert git(repo, "status", "--porcelain") == ""
    # nothing of the build landed here but the logs; nox's own venv and the egg-info of its
    # editable install of the engine are the task runner's, as with a local engine
    ignored = sorted(ln[3:] for ln in git(repo, "status", "--porcelain", "--ignored").splitlines())
    assert ignored == [".cleanroom/", ".nox/", "tools/cleanroom/src/cleanroom_workspace.egg-info/"], ignored
    assert sorted(p.name for p in (repo / ".cleanroom").iterdir()) == ["logs"]
    # the local engine has none of it
    local = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
    assert subprocess.run(["docker", "image", "inspect", f"{PROJECT}/spectralmc:binary"], capture_output=True,
                          env=local).returncode != 0


@needs_remote
def test_doctor_says_remote_engine(built: tuple[Path, str]) -> None:
    repo, _ = built
    r = cli("doctor", cwd=repo, env=remote_env())
    row = next(ln for ln in r.out.splitlines() if ln.startswith("engine location"))
    assert "remote engine: " + REMOTE in row, r.out
    forced = cli("doctor", cwd=repo, env=remote_env(CLEANROOM_REMOTE="0"))
    assert "local engine" in next(ln for ln in forced.out.splitlines() if ln.startswith("engine location"))


@needs_remote
def test_an_edited_test_runs_remotely_and_its_log_comes_back(built: tuple[Path, str]) -> None:
    """Edit a test on this machine, `invoke test-all`: the edited test runs in the remote
    container (its sources were sent), and its log appears under .cleanroom/logs/."""
    repo, _ = built
    test = repo / "tests" / "app" / "test_edited_on_the_client.py"
    env = remote_env(PYTHONPATH=str(ROOT / "tools" / "cleanroom" / "src"))
    invoke = [sys.executable, "-m", "invoke", "test-all", "--", "-k", "edited_on_the_client"]
    try:
        test.write_text("def test_edited_on_the_client() -> None:\n    assert 'v1' == 'v1'\n")
        p = subprocess.run(invoke, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stdout + p.stderr
        assert "sent 1 changed file(s)" in p.stdout, p.stdout
        assert "1 passed" in p.stdout
        log = (repo / ".cleanroom" / "logs" / "test-output.txt").read_text()
        assert "1 passed" in log and "deselected" in log
        # the edit, again: now failing, so the run proves it ran the client's version
        test.write_text("def test_edited_on_the_client() -> None:\n    assert 'v2' == 'edited'\n")
        p = subprocess.run(invoke, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
        assert p.returncode == 1, p.stdout + p.stderr
        assert "'v2' == 'edited'" in (repo / ".cleanroom" / "logs" / "test-output.txt").read_text()
    finally:
        test.unlink(missing_ok=True)
    # removed here: removed there too at the next task
    p = subprocess.run(invoke, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 5 and "removed 1" in p.stdout, p.stdout + p.stderr
    assert git(repo, "status", "--porcelain") == ""


@needs_remote
def test_verify_checks_the_checkout_here_and_the_generated_code_there(built: tuple[Path, str]) -> None:
    repo, _ = built
    r = subprocess.run([sys.executable, "-m", "invoke", "verify"], cwd=repo, capture_output=True, text=True,
                       env=remote_env(PYTHONPATH=str(ROOT / "tools" / "cleanroom" / "src")), timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "checking the checkout here" in r.stdout and "is up to date" in r.stdout, r.stdout


@needs_local
def test_remote_mode_compose_has_no_binds_and_a_checkout_label(tmp_path: Path) -> None:
    """CLEANROOM_REMOTE=1 (forced): the dry run's compose command is the copy without host bind
    mounts, in the engine's cache folder, with the original's folder as project directory."""
    repo = tmp_path / "repo"
    helpers.copy_checkout(repo)
    cache = tmp_path / "cache"
    r = cli("up", "--dry-run", cwd=repo, env={"CLEANROOM_REMOTE": "1", "XDG_CACHE_HOME": str(cache)})
    assert r.rc == 0, r.text
    up = next(ln for ln in r.out.splitlines() if " up -d --no-build" in ln)
    assert f"--project-directory {repo / 'docker'}" in up, up
    derived = next(cache.rglob("*.compose.yml"))
    assert str(derived) in up
    import yaml

    svc = yaml.safe_load(derived.read_text())["services"]["spectralmc"]
    assert svc.get("volumes") == [], svc.get("volumes")
    assert svc["labels"]["org.cleanroom.checkout"] == str(repo.resolve())
    assert git(repo, "status", "--porcelain", "--ignored") == ""  # nothing written into the checkout


@needs_local
def test_build_cache_settings_pass_through(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    helpers.copy_checkout(repo)
    r = cli("build", "binary", "--dry-run", cwd=repo, env={"CLEANROOM_CACHE_FROM": "type=local,src=/tmp/c"})
    assert r.rc == 0, r.text
    assert any(" build " in ln and "--cache-from=type=local,src=/tmp/c" in ln for ln in r.out.splitlines()), r.out
    # --cache-to needs a builder that can export a cache (buildx): refused, one line, exit 2,
    # unless this machine's BuildKit client has buildx
    r = cli("build", "binary", "--dry-run", cwd=repo, env={"CLEANROOM_CACHE_TO": "type=local,dest=/tmp/c"})
    if r.rc == 0:
        assert "--cache-to=type=local,dest=/tmp/c" in r.out
    else:
        assert r.rc == 2 and "cannot export a build cache" in r.err and "Traceback" not in r.text, r.text


@needs_remote
def test_a_build_cache_source_is_passed_to_the_remote_builder(built: tuple[Path, str]) -> None:
    """CLEANROOM_CACHE_FROM reaches `docker build` (shown by the dry run) and the remote engine's
    BuildKit accepts it (the image it names: its layers are a cache source)."""
    repo, _ = built
    env = remote_env(CLEANROOM_CACHE_FROM=f"{PROJECT}/spectralmc:binary")
    dry = cli("build", "binary", "--no-tests", "--dry-run", cwd=repo, env=env, timeout=300)
    assert f"--cache-from={PROJECT}/spectralmc:binary" in dry.out, dry.text
    r = cli("build", "binary", "--no-tests", cwd=repo, env=env, timeout=BUILD_TIMEOUT)
    assert r.rc == 0, r.text[-4000:]
    assert git(repo, "status", "--porcelain") == ""


@needs_local
def test_a_docker_context_is_detected_without_docker_host(tmp_path: Path) -> None:
    """`docker context use gpu-box`: the engine is remote by the context's endpoint (read from
    the docker CLI's own files), local again with the default context."""
    cfg = tmp_path / "docker-config"
    env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "DOCKER_CONTEXT")}
    env["DOCKER_CONFIG"] = str(cfg)
    for args in (["context", "create", "gpu-box", "--docker", "host=tcp://gpu-box.invalid:2376"],
                 ["context", "use", "gpu-box"]):
        p = subprocess.run(["docker", *args], env=env, capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {**env, "PYTHONPATH": str(ROOT / "tools" / "cleanroom" / "src")}
    code = "from cleanroom.docker.engine import location; print(location().describe())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=repo)
    assert out.stdout.startswith("remote engine (tcp://gpu-box.invalid:2376; tcp:// from docker context gpu-box"), out
    subprocess.run(["docker", "context", "use", "default"], env=env, capture_output=True, check=True)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=repo)
    assert out.stdout.startswith("local engine (unix:///var/run/docker.sock"), out


@needs_remote
def test_a_dependency_change_rebuilds_before_the_daily_task(built: tuple[Path, str]) -> None:
    """The variant gains a dependency: the next `invoke test-all` sees the image's dependency
    layer is out of date, rebuilds it on the remote engine and recreates the container, then
    runs the tests there with the new dependency importable. (Last in this file: it rebuilds.)"""
    repo, _ = built
    variant = repo / "pyproject.binary.toml"
    before = variant.read_text()
    probe = repo / "tests" / "app" / "test_new_dependency.py"
    env = remote_env(PYTHONPATH=str(ROOT / "tools" / "cleanroom" / "src"))
    try:
        variant.write_text(before.replace('dependencies = [\n', 'dependencies = [\n    "six",\n', 1))
        probe.write_text("def test_six_is_installed() -> None:\n    import six\n    assert six.PY3\n")
        p = subprocess.run([sys.executable, "-m", "invoke", "test-all", "--", "-k", "six_is_installed"],
                           cwd=repo, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
        assert p.returncode == 0, (p.stdout + p.stderr)[-5000:]
        assert "dependency layer is out of date" in p.stdout and "1 passed" in p.stdout, p.stdout[-3000:]
    finally:
        variant.write_text(before)
        probe.unlink(missing_ok=True)
    assert git(repo, "status", "--porcelain") == ""
