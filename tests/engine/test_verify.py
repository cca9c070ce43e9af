"""verify: planted violations found with the right rule and path; clean layouts stay clean."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers import GENERATED_PB2, cli, git, set_config

COMPOSE = """\
services:
  app:
    build:
      context: ..
      dockerfile: ${CLEANROOM_DOCKERFILE:-docker/Dockerfile}
"""

DOCKERFILE = "FROM scratch\nCOPY . /ctx/\n"


@pytest.fixture
def vrepo(repo: Path) -> Path:
    """The seed repo plus a compose file and Dockerfile: a clean layout."""
    (repo / "docker").mkdir(exist_ok=True)
    (repo / "docker" / "docker-compose.yml").write_text(COMPOSE)
    (repo / "docker" / "Dockerfile").write_text(DOCKERFILE)
    (repo / "src" / "spectralmc").mkdir(parents=True)
    (repo / "src" / "spectralmc" / "__init__.py").write_text("")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "docker")
    return repo


def verify(repo: Path, *args: str) -> tuple[int, list[dict]]:
    r = cli("verify", "--json", *args, cwd=repo)
    assert r.rc in (0, 1), r.text
    return r.rc, json.loads(r.out)["findings"]


def rules_paths(findings: list[dict]) -> set[tuple[str, str]]:
    return {(f["rule"], f["path"]) for f in findings}


def commit_all(repo: Path) -> None:
    git(repo, "add", "-A", "-f")
    git(repo, "commit", "-q", "-m", "plant")


def test_fresh_layout_is_clean(vrepo: Path) -> None:
    rc, findings = verify(vrepo)
    assert (rc, findings) == (0, [])


def test_workspace_itself_is_clean() -> None:
    root = Path(__file__).resolve().parents[2]
    r = cli("verify", "--json", cwd=root)
    assert r.rc == 0, r.out + r.err
    assert json.loads(r.out)["findings"] == []


# ----------------------------------------------------------------- planted violations


def test_committed_lock_and_pb2_are_tracked_artifacts(vrepo: Path) -> None:
    (vrepo / "poetry.lock").write_text("# lock\n")
    (vrepo / "src/spectralmc/x_pb2.py").write_text(GENERATED_PB2)
    commit_all(vrepo)
    rc, f = verify(vrepo)
    assert rc == 1
    assert {("tracked-artifact", "poetry.lock"), ("tracked-artifact", "src/spectralmc/x_pb2.py")} <= rules_paths(f)
    fix = next(x["fix"] for x in f if x["path"] == "poetry.lock")
    assert "git rm --cached" in fix


def test_gitignore_without_pb2_rules(vrepo: Path) -> None:
    gi = vrepo / ".gitignore"
    gi.write_text("\n".join(ln for ln in gi.read_text().splitlines() if "_pb2" not in ln) + "\n")
    rc, f = verify(vrepo)
    assert rc == 1
    gaps = [x for x in f if x["rule"] == "gitignore-gap"]
    pats = {x["message"].split("'")[1] for x in gaps}
    assert pats == {"*_pb2.py", "*_pb2.pyi", "*_pb2_grpc.py", "*_pb2_grpc.pyi"}
    assert all(x["path"] == ".gitignore" for x in gaps)
    assert "cleanroom-probe_pb2.py" in gaps[0]["message"] or "probe" in gaps[0]["message"]


def test_only_pb2_py_rule_misses_pyi_and_grpc(vrepo: Path) -> None:
    gi = vrepo / ".gitignore"
    gi.write_text(gi.read_text().replace("*_pb2.pyi\n", "").replace("*_pb2_grpc.py\n", ""))
    _, f = verify(vrepo)
    pats = {x["message"].split("'")[1] for x in f if x["rule"] == "gitignore-gap"}
    # *_pb2_grpc.py is NOT covered by *_pb2.py (different suffix), *_pb2.pyi neither
    assert pats == {"*_pb2.pyi", "*_pb2_grpc.py"}


def test_nested_gitignore_negation_is_a_gap(vrepo: Path) -> None:
    (vrepo / "src" / ".gitignore").write_text("!*_pb2.py\n")
    _, f = verify(vrepo)
    gap = [x for x in f if x["rule"] == "gitignore-gap"]
    assert len(gap) == 1 and "src/cleanroom-probe_pb2.py" in gap[0]["message"]


def test_dockerignore_without_lock_gap_and_leak(vrepo: Path) -> None:
    di = vrepo / ".dockerignore"
    di.write_text(di.read_text().replace("**/poetry.lock\n", ""))
    rc, f = verify(vrepo)
    assert rc == 1
    assert ("dockerignore-gap", ".dockerignore") in rules_paths(f)
    assert not any(x["rule"] == "context-leak" for x in f)
    (vrepo / "poetry.lock").write_text("x" * 2048)
    _, f = verify(vrepo)
    # one defect (the missing line), one finding: the real file that leaks is its evidence
    gap = [x for x in f if x["rule"] == "dockerignore-gap" and "'poetry.lock'" in x["message"]]
    assert len(gap) == 1 and "poetry.lock" in gap[0]["message"].split("would send", 1)[1]
    assert "2.0 KiB" in gap[0]["message"]
    assert not any(x["rule"] == "context-leak" for x in f)


def test_gitignore_style_line_in_dockerignore_covers_only_root(vrepo: Path) -> None:
    di = vrepo / ".dockerignore"
    di.write_text(di.read_text().replace("**/*_pb2.py\n", "*_pb2.py\n"))
    (vrepo / "src/spectralmc/y_pb2.py").write_text("# generated\n")
    _, f = verify(vrepo)
    gap = [x for x in f if x["rule"] == "dockerignore-gap"]
    assert len(gap) == 1 and "'*_pb2.py'" in gap[0]["message"]
    assert "cleanroom-probe-dir/cleanroom-probe_pb2.py" in gap[0]["message"]
    assert "**/*_pb2.py" in gap[0]["fix"]
    # the real file that leaks is evidence of the same defect, not a finding of its own
    assert "src/spectralmc/y_pb2.py" in gap[0]["message"]
    assert "context-leak" not in {x["rule"] for x in f}


def test_dead_docker_subfolder_ignore_file(vrepo: Path) -> None:
    (vrepo / "docker" / ".dockerignore").write_text("../poetry.lock\n../**/*_pb2.py\n")
    rc, f = verify(vrepo)
    assert rc == 1
    dead = [x for x in f if x["rule"] == "dead-ignore-file"]
    assert [x["path"] for x in dead] == ["docker/.dockerignore"]
    assert "no build reads" in dead[0]["message"]


def test_dead_lines_in_read_ignore_file(vrepo: Path) -> None:
    di = vrepo / ".dockerignore"
    di.write_text(di.read_text() + "../secrets\n")
    _, f = verify(vrepo)
    dead = [x for x in f if x["rule"] == "dead-ignore-file"]
    assert len(dead) == 1 and dead[0]["path"] == ".dockerignore"
    assert dead[0]["line"] == len(di.read_text().splitlines())


def test_untracked_artifact(vrepo: Path) -> None:
    gi = vrepo / ".gitignore"
    gi.write_text(gi.read_text().replace("*.pyc\n", "").replace("__pycache__/\n", ""))
    (vrepo / "src/spectralmc/mod.pyc").write_bytes(b"\0")
    _, f = verify(vrepo)
    assert ("untracked-artifact", "src/spectralmc/mod.pyc") in rules_paths(f)


def test_buildkit_dockerfile_ignore_file(vrepo: Path) -> None:
    # BuildKit reads docker/Dockerfile.dockerignore instead of the context's .dockerignore
    (vrepo / "docker" / "Dockerfile.dockerignore").write_text(".git\n**/poetry.lock\n")
    _, f = verify(vrepo)
    gaps = {(x["path"], x["message"].split("'")[3]) for x in f if x["rule"] == "dockerignore-gap"}
    assert ("docker/Dockerfile.dockerignore", "*_pb2.py") in gaps
    assert all("(buildkit)" in x["message"] for x in f if x["rule"] == "dockerignore-gap")
    # the file is read by a build: not dead
    assert not any(x["rule"] == "dead-ignore-file" for x in f)


def test_two_services_different_contexts(vrepo: Path) -> None:
    (vrepo / "docker" / "docker-compose.yml").write_text(
        COMPOSE + "  tool:\n    build: ./tool\n"
    )
    (vrepo / "docker" / "tool").mkdir()
    (vrepo / "docker" / "tool" / "Dockerfile").write_text(DOCKERFILE)
    (vrepo / "docker" / "tool" / ".dockerignore").write_text("**/__pycache__\n")
    (vrepo / "docker" / "tool" / "poetry.lock").write_text("lock")
    rc, f = verify(vrepo)
    assert rc == 1
    paths = rules_paths(f)
    assert ("dockerignore-gap", "docker/tool/.dockerignore") in paths
    lock_gap = [x for x in f if x["path"] == "docker/tool/.dockerignore" and "'poetry.lock'" in x["message"]]
    assert len(lock_gap) == 1 and "'poetry.lock'" in lock_gap[0]["message"].split("would send", 1)[1]
    assert not any(x["rule"] == "dockerignore-gap" and x["path"] == ".dockerignore" for x in f)
    # /pyproject.toml is anchored at the repo root: not a gap for the docker/tool context
    assert not any("'/pyproject.toml'" in x["message"] for x in f if x["path"].startswith("docker/tool"))


def test_exclude_all_then_reinclude_src_is_a_gap(vrepo: Path) -> None:
    (vrepo / ".dockerignore").write_text("**\n!src\n")
    _, f = verify(vrepo)
    msgs = [x["message"] for x in f if x["rule"] == "dockerignore-gap"]
    assert any("src/cleanroom-probe_pb2.py" in m for m in msgs)


def test_github_format(vrepo: Path) -> None:
    (vrepo / "poetry.lock").write_text("x")
    commit_all(vrepo)
    r = cli("verify", "--format", "github", cwd=vrepo)
    assert r.rc == 1
    assert "::error file=poetry.lock,title=tracked-artifact::" in r.out


def test_text_format_grouped(vrepo: Path) -> None:
    (vrepo / "poetry.lock").write_text("x")
    commit_all(vrepo)
    r = cli("verify", cwd=vrepo)
    assert r.rc == 1
    assert "tracked-artifact (1)" in r.out and "fix: git rm --cached" in r.out
    assert r.out.strip().splitlines()[-1].startswith("verify: 1 finding")


def test_not_a_git_repo_exit_2(tmp_path: Path) -> None:
    r = cli("verify", cwd=tmp_path)
    assert r.rc == 2
    assert "not a git repository" in r.err and "Traceback" not in r.err


def test_bad_compose_file_exit_2(vrepo: Path) -> None:
    (vrepo / "docker" / "docker-compose.yml").write_text("services: [\n")
    r = cli("verify", cwd=vrepo)
    assert r.rc == 2 and "docker-compose.yml" in r.err and "Traceback" not in r.err


def test_git_missing_exit_3(vrepo: Path, tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    import sys

    (bindir / "python3").symlink_to(sys.executable)
    r = cli("verify", cwd=vrepo, env={"PATH": str(bindir)})
    assert r.rc == 3 and "git" in r.err


# --------------------------------------------------------------------------- --fix


def test_fix_adds_managed_block_and_is_idempotent(vrepo: Path) -> None:
    gi, di = vrepo / ".gitignore", vrepo / ".dockerignore"
    gi.write_text("# my rules\nnode_modules/\n")
    di.write_text(".git\n")
    r = cli("verify", "--fix", cwd=vrepo)
    assert r.rc == 0, r.text
    g = gi.read_text()
    assert g.startswith("# my rules\nnode_modules/\n")
    assert ">>> cleanroom managed block" in g and "*_pb2.pyi" in g
    assert "# poetry.lock: lockfile" in g
    d = di.read_text()
    assert "**/poetry.lock" in d and "**/__pycache__" in d and d.startswith(".git\n")
    again = cli("verify", "--fix", cwd=vrepo)
    assert "no ignore rules missing" in again.out
    assert gi.read_text() == g and di.read_text() == d


def test_fix_never_untracks(vrepo: Path) -> None:
    (vrepo / "poetry.lock").write_text("x")
    commit_all(vrepo)
    r = cli("verify", "--fix", cwd=vrepo)
    assert r.rc == 1
    assert "poetry.lock" in git(vrepo, "ls-files")
    assert (vrepo / "poetry.lock").exists()


# ------------------------------------------------------------------ clean layouts


def test_clean_nested_gitignores_and_exceptions(vrepo: Path) -> None:
    (vrepo / "src" / ".gitignore").write_text("*.log\n!keep.log\n")
    (vrepo / "docs").mkdir()
    (vrepo / "docs" / ".gitignore").write_text("_build/\n")
    commit_all(vrepo)
    assert verify(vrepo) == (0, [])


def test_clean_allowlisted_tracked_artifact(vrepo: Path) -> None:
    (vrepo / "docs").mkdir()
    (vrepo / "docs" / "example_pb2.py").write_text("# sample shown in the docs\n")
    set_config(vrepo, "artifacts", "allow", [{"path": "docs/example_pb2.py", "reason": "docs sample"}])
    commit_all(vrepo)
    assert verify(vrepo) == (0, [])


def test_clean_ignored_artifacts_with_awkward_names(vrepo: Path) -> None:
    d = vrepo / "dir with space" / "ünï"
    d.mkdir(parents=True)
    (d / "m_pb2.py").write_text("x")
    (d / "__pycache__").mkdir()
    (d / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"\0")
    (vrepo / "poetry.lock").write_text("x")
    (vrepo / "pyproject.toml").write_text("x")
    assert verify(vrepo) == (0, [])


def test_clean_symlinks(vrepo: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "poetry.lock").write_text("x")
    os.symlink(outside, vrepo / "linked")
    os.symlink("src", vrepo / "src-link")
    commit_all(vrepo)
    assert verify(vrepo) == (0, [])


def test_clean_with_submodule(vrepo: Path, tmp_path: Path) -> None:
    sub = tmp_path / "subrepo"
    sub.mkdir()
    git(sub, "init", "-q", "-b", "main")
    (sub / "poetry.lock").write_text("x")  # the submodule's own business
    git(sub, "add", "-A")
    git(sub, "commit", "-q", "-m", "s")
    git(vrepo, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(sub), "vendor/sub")
    git(vrepo, "commit", "-q", "-m", "sub")
    assert verify(vrepo) == (0, [])


def test_file_in_a_folder_named_like_an_ignore_file_is_no_artifact(repo: Path) -> None:
    """git lists `notes/team.dockerignore/README.txt` when `*.dockerignore` (a name verify asks
    git for, to find ignore files) matches its folder: that is no artifact, tracked or not."""
    (repo / "notes" / "team.dockerignore").mkdir(parents=True)
    (repo / "notes" / "team.dockerignore" / "README.txt").write_text("x\n")
    (repo / "notes" / "Dockerfile.d").mkdir()
    (repo / "notes" / "Dockerfile.d" / "untracked.txt").write_text("y\n")
    git(repo, "add", "notes/team.dockerignore/README.txt")
    git(repo, "commit", "-q", "-m", "notes")
    r = cli("verify", "--json", cwd=repo)
    assert r.rc == 0, r.text
    assert json.loads(r.out)["findings"] == []


def test_fix_refuses_a_linked_gitignore_and_keeps_the_link(vrepo: Path) -> None:
    """git (2.32+) does not read a .gitignore that is a symbolic link: --fix says so and writes
    nothing (it used to replace the link with a file); the link and its target stay as they were."""
    shared = vrepo / "config" / "gitignore"
    shared.parent.mkdir()
    shared.write_text("node_modules/\n")
    gi = vrepo / ".gitignore"
    gi.unlink(missing_ok=True)
    gi.symlink_to("config/gitignore")
    r = cli("verify", "--fix", cwd=vrepo)
    assert ".gitignore: not written: it is a symbolic link, which git" in r.out, r.text
    assert gi.is_symlink() and os.readlink(gi) == "config/gitignore"
    assert shared.read_text() == "node_modules/\n"
    assert not [p for p in os.listdir(vrepo) if p.endswith(".tmp")]
