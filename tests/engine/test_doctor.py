"""doctor: a row per thing the workflow needs; exit 0 when the main job can run, 3 when not.
Without a client (PATH restricted), with a client but no engine (DOCKER_HOST at nothing), and
with the real engine of this machine (skipped, visibly, when `docker info` fails)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import cli

ROWS = ("docker client", "engine", "compose", "builder", "GPU runtime", "base image (binary)",
        "base image (source)", "base image (offline)", "config", "variants", "generated code")


def doctor(repo: Path, env: dict[str, str] | None = None, *args: str) -> tuple[int, dict[str, dict[str, str]]]:
    r = cli("doctor", "--json", *args, cwd=repo, env=env)
    assert r.rc in (0, 3), r.text
    data = json.loads(r.out)
    assert data["can_run"] == (r.rc == 0)
    return r.rc, {row["check"]: row for row in data["rows"]}


def _engine_up() -> str:
    if shutil.which("docker") is None:
        return "no docker client on PATH"
    p = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True,
                       timeout=30, check=False)
    return "" if p.returncode == 0 and p.stdout.strip() else f"docker info failed: {p.stderr.strip()[-200:]}"


def test_no_docker_client(repo: Path, tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    rc, rows = doctor(repo, {"PATH": str(empty), "DOCKER_CONTAINER": ""})
    assert rc == 3
    assert set(ROWS) <= set(rows)
    for name in ("docker client", "engine", "compose", "builder"):
        assert rows[name]["status"] == "missing" and rows[name]["blocks"], name
        assert "setup-engine" in rows[name]["fix"]
    assert rows["config"]["status"] == "OK"
    assert rows["variants"]["status"] == "OK"
    assert rows["generated code"] == {**rows["generated code"], "status": "n/a",
                                      "detail": "n/a on host (checked in the container)"}


def test_client_but_no_engine(repo: Path) -> None:
    if shutil.which("docker") is None:
        pytest.skip("no docker client on PATH")
    rc, rows = doctor(repo, {"DOCKER_HOST": "unix:///nonexistent.sock", "DOCKER_CONTAINER": ""})
    assert rc == 3
    assert rows["docker client"]["status"] == "OK"
    assert rows["engine"]["status"] == "missing" and rows["engine"]["blocks"]
    assert "nonexistent.sock" in rows["engine"]["detail"]
    assert rows["base image (offline)"]["status"] == "missing"
    r = cli("doctor", cwd=repo, env={"DOCKER_HOST": "unix:///nonexistent.sock", "DOCKER_CONTAINER": ""})
    assert r.rc == 3
    assert "cannot run: missing engine" in r.out
    header = r.out.splitlines()[0].split()
    assert header == ["check", "status", "detail", "fix"]


def test_with_the_engine(repo: Path) -> None:
    why = _engine_up()
    if why:
        pytest.skip(f"no Docker engine here ({why})")
    rc, rows = doctor(repo, {"DOCKER_CONTAINER": ""})
    assert rows["engine"]["status"] == "OK" and rows["engine"]["detail"].startswith("Docker ")
    assert rows["builder"]["status"] == "OK"
    assert rows["builder"]["detail"].split()[0] in ("BuildKit", "classic")
    assert rows["compose"]["status"] == "OK" and rows["compose"]["detail"][:2] in ("v1", "v2")
    assert rows["GPU runtime"]["status"] in ("OK", "missing") and not rows["GPU runtime"]["blocks"]
    base_ok = any(rows[f"base image ({k})"]["status"] == "OK" for k in ("binary", "source", "offline"))
    buildable = "can be built" in rows["base image (offline)"]["detail"]
    assert rc == (0 if base_ok or buildable else 3)
    if rc == 0:
        r = cli("doctor", cwd=repo, env={"DOCKER_CONTAINER": ""})
        assert "the main job (nox -s build-binary) can run" in r.out


def test_bad_config_is_a_row(repo: Path, tmp_path: Path) -> None:
    (repo / "cleanroom.toml").write_text("[proto]\nbogus = 1\n")
    empty = tmp_path / "bin"
    empty.mkdir()
    r = cli("doctor", cwd=repo, env={"PATH": str(empty)})
    assert r.rc == 3
    assert "unknown key 'proto.bogus'" in r.out
    line = next(ln for ln in r.out.splitlines() if ln.startswith("config "))
    assert " missing " in line


def test_variant_drift_is_shown_but_not_blocking(repo: Path) -> None:
    src = repo / "pyproject.source.toml"
    src.write_text(src.read_text().replace("[tool.pytest.ini_options]", "[tool.pytest.ini_options]\nxfail_strict = true", 1))
    _, rows = doctor(repo, {"DOCKER_CONTAINER": ""})
    assert rows["variants"]["status"] == "missing" and not rows["variants"]["blocks"]
    assert "cleanroom verify" in rows["variants"]["fix"]


def test_generated_code_row_in_the_container(repo: Path, tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    out = tmp_path / "opt"
    (repo / "proto").mkdir()
    (repo / "proto/a.proto").write_text('syntax = "proto3";\nmessage A { int32 x = 1; }\n')
    cfg = repo / "cleanroom.toml"
    cfg.write_text(cfg.read_text().replace('out = "/opt"', f'out = "{out}"'))
    env = {"PATH": str(empty), "DOCKER_CONTAINER": "1"}
    rc, rows = doctor(repo, env)
    # inside the container the daily loop needs no Docker: missing docker rows do not block
    assert rc == 0, rows
    assert rows["docker client"]["status"] == "missing" and not rows["docker client"]["blocks"]
    assert rows["generated code"]["status"] == "missing"
    assert rows["generated code"]["fix"] == f"cleanroom proto --out {out}"
    assert cli("proto", "--out", str(out), cwd=repo).rc == 0
    _, rows = doctor(repo, env)
    assert rows["generated code"]["status"] == "OK"


def test_repo_that_never_had_variants(repo: Path) -> None:
    """Adoption: a real repo has no variant files; doctor says so (not "restore" them) and names
    what works without them."""
    for name in ("pyproject.binary.toml", "pyproject.source.toml", "cleanroom.toml"):
        (repo / name).unlink()
    _, rows = doctor(repo, {"DOCKER_CONTAINER": ""})
    row = rows["variants"]
    assert row["status"] == "missing" and row["blocks"]  # the main job selects a variant
    assert "none in this repo" in row["detail"] and "verify" in row["detail"]
    assert "restore" not in row["fix"] and "pyproject.binary.toml" in row["fix"]
    assert rows["config"]["status"] == "OK"


def test_app_container_row_names_this_checkouts_project(repo: Path) -> None:
    why = _engine_up()
    if why:
        pytest.skip(f"no Docker engine here ({why})")
    _, rows = doctor(repo, {"DOCKER_CONTAINER": ""})
    row = rows["app container"]
    assert not row["blocks"]
    # the project derived from the checkout: its folder's name and a hash of its path
    assert f"project {repo.name}-" in row["detail"] and "none yet" in row["detail"]
