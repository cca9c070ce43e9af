"""cleanroom.toml: defaults, validation, and CLI errors for bad config."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import GENERATED_PB2, ROOT, cli, snapshot

from cleanroom.core.config import DEFAULT_ARTIFACTS, Config, load_config, parse_config
from cleanroom.core.errors import ConfigError


def test_workspace_config_loads() -> None:
    cfg = load_config(ROOT)
    assert cfg.source == ROOT / "cleanroom.toml"
    assert cfg.proto.package == "spectralmc_proto"
    assert cfg.artifacts.patterns == DEFAULT_ARTIFACTS


def test_missing_default_config_gives_defaults(tmp_path: Path) -> None:
    assert load_config(tmp_path) == Config()


def test_explicit_missing_config_is_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path, tmp_path / "nope.toml")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[proto]\nbogus = 1\n", "unknown key 'proto.bogus'"),
        ("[proto]\nout = 1\n", "proto.out: expected a string, got 1"),
        ("[variants]\nshared = 'tool'\n", "variants.shared: expected a list of a string"),
        ("[nope]\n", "unknown section '[nope]'"),
        ("[artifacts]\nallow = [{path = 'x'}]\n", "artifacts.allow[0]: missing required key 'reason'"),
        ("[artifacts\n", "not valid TOML"),
    ],
)
def test_bad_config_messages(text: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle.replace("[", r"\[").replace("(", r"\(")):
        parse_config(text, Path("cleanroom.toml"))


def test_allowlist_and_extra_patterns() -> None:
    cfg = parse_config(
        "[artifacts]\nextra = ['*.log']\nallow = [{path = 'docs/x_pb2.py', reason = 'vendored example'}]\n",
        Path("c.toml"),
    )
    assert cfg.artifacts.all_patterns[-1] == "*.log"
    assert cfg.artifacts.allow[0].reason == "vendored example"


def test_cli_bad_config_exit_2_no_traceback(repo: Path) -> None:
    (repo / "cleanroom.toml").write_text("[proto]\nsources = 3\n")
    before = snapshot(repo)
    for args in (["verify"], ["select", "binary"]):
        r = cli(*args, cwd=repo)
        assert r.rc == 2, r.text
        assert "cleanroom.toml: proto.sources: expected a string" in r.err
        assert "Traceback" not in r.text
    assert snapshot(repo) == before


def test_cli_missing_explicit_config(repo: Path) -> None:
    r = cli("--config", str(repo / "missing.toml"), "verify", cwd=repo)
    assert r.rc == 2 and "missing.toml: config file not found" in r.err


def test_cli_repo_flag_and_other_repo(tmp_path: Path, repo: Path) -> None:
    r = cli("--repo", str(repo), "select", "binary", cwd=tmp_path)
    assert r.rc == 0, r.text
    assert (repo / "pyproject.toml").exists()
    r = cli("--repo", str(tmp_path / "nope"), "verify", cwd=tmp_path)
    assert r.rc == 2 and "no such folder" in r.err


def test_cli_usage_error_is_exit_2(repo: Path) -> None:
    r = cli("select", cwd=repo)
    assert r.rc == 2 and "Traceback" not in r.text


def test_python_dash_m_and_console_script(repo: Path) -> None:
    r = cli("--version", cwd=repo)
    assert r.rc == 0 and r.out.startswith("cleanroom ")


def test_closed_pipe_is_quiet(repo: Path) -> None:
    """`cleanroom verify | head -1`: no traceback when the reader goes away."""
    import os
    import subprocess
    import sys

    from helpers import ENGINE_SRC

    (repo / "poetry.lock").write_text("x")
    (repo / "y_pb2.py").write_text(GENERATED_PB2)
    subprocess.run(["git", "add", "-f", "poetry.lock", "y_pb2.py"], cwd=repo, check=True)
    p = subprocess.run(
        f"{sys.executable} -m cleanroom verify --format github | head -c 10",
        shell=True, cwd=repo, capture_output=True, text=True, check=False,
        env={**os.environ, "PYTHONPATH": str(ENGINE_SRC)},
    )
    assert len(p.stdout) == 10
    assert "Traceback" not in p.stderr and "BrokenPipe" not in p.stderr, p.stderr


def test_a_removed_section_warns_and_changes_nothing(tmp_path: Path) -> None:
    """[test] (log, paths) changed nothing and was removed: a config that still has it loads,
    with one warning line saying so, and means the same as without it."""
    f = tmp_path / "cleanroom.toml"
    f.write_text('[test]\nlog = "/tmp/x.txt"\npaths = ["tests/app"]\n\n[proto]\nsources = "schemas"\n')
    r = cli("--config", str(f), "doctor", "--json", cwd=tmp_path)
    warn = [ln for ln in r.err.splitlines() if "[test]" in ln]
    assert warn and warn[0].startswith(f"cleanroom: warning: {f}: [test] is ignored"), r.err
    assert "CLEANROOM_TEST_LOG" in warn[0]
    assert parse_config(f.read_text(), f).proto.sources == "schemas"
