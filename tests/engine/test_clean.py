"""clean: lists the host-side artifacts the policy names with sizes; --yes deletes exactly those.
Never a tracked file, nothing outside the repo, nothing the policy does not name; links as links."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import cli, git, snapshot, set_config


def plant(repo: Path) -> None:
    """Artifacts of each kind, untracked (ignored or not), plus things that must survive."""
    (repo / "src/app/__pycache__").mkdir(parents=True)
    (repo / "src/app/__pycache__/mod.cpython-311.pyc").write_bytes(b"\0" * 2048)
    (repo / "src/app/mod.py").write_text("X = 1\n")
    (repo / ".mypy_cache/3.11").mkdir(parents=True)
    (repo / ".mypy_cache/3.11/x.json").write_text("{}")
    (repo / "pyproject.toml").write_text("# generated\n")  # the stray root pyproject
    (repo / "poetry.lock").write_text("# lock\n")
    (repo / "gen").mkdir()
    (repo / "gen/x_pb2.py").write_text("# generated\n")
    (repo / "dist").mkdir()
    (repo / "dist/pkg-1.0.whl").write_bytes(b"w" * 5000)
    (repo / "notes.txt").write_text("mine\n")  # untracked, not an artifact


def test_lists_with_sizes_and_changes_nothing(repo: Path) -> None:
    plant(repo)
    before = snapshot(repo)
    r = cli("clean", cwd=repo)
    assert r.rc == 0, r.text
    assert snapshot(repo) == before
    out = r.out
    assert "would delete" in out and "--yes" in out
    for path in ("src/app/__pycache__/", ".mypy_cache/", "pyproject.toml", "poetry.lock", "gen/x_pb2.py",
                 "dist/"):
        assert f"  {path} " in out, (path, out)
    assert "2.0 KiB" in out and "4.9 KiB" in out
    assert "notes.txt" not in out and "mod.py" not in out


def test_yes_deletes_only_policy_artifacts(repo: Path) -> None:
    plant(repo)
    r = cli("clean", "--yes", cwd=repo)
    assert r.rc == 0, r.text
    assert "deleted" in r.out
    for gone in ("src/app/__pycache__", ".mypy_cache", "pyproject.toml", "poetry.lock", "gen/x_pb2.py", "dist"):
        assert not (repo / gone).exists(), gone
    for kept in ("notes.txt", "src/app/mod.py", "gen", "cleanroom.toml", "pyproject.binary.toml"):
        assert (repo / kept).exists(), kept
    assert cli("clean", cwd=repo).out.startswith("clean: nothing to delete")


def test_never_deletes_a_tracked_file(repo: Path) -> None:
    plant(repo)
    # tracked artifacts (force-added past .gitignore): verify's tracked-artifact, never clean's job
    (repo / "build").mkdir()
    (repo / "build/keep.txt").write_text("tracked\n")
    (repo / "build/tmp.o").write_text("untracked\n")
    (repo / "tracked.pyc").write_bytes(b"t")
    git(repo, "add", "-f", "build/keep.txt", "tracked.pyc", "gen/x_pb2.py")
    git(repo, "commit", "-q", "-m", "tracked artifacts")
    tracked = git(repo, "ls-files").split()
    r = cli("clean", "--yes", cwd=repo)
    assert r.rc == 0, r.text
    for t in tracked:
        assert (repo / t).exists(), t
    assert (repo / "build/keep.txt").read_text() == "tracked\n"
    # A build/ that holds tracked files is a source folder with an artifact's name (real repos
    # have tools/build/): an untracked file in it may be new work, so only what another pattern
    # names would go (tmp.o is named by none), and the report says why the folder stays.
    assert (repo / "build/tmp.o").read_text() == "untracked\n"
    assert "kept build/: holds tracked files" in r.out, r.out
    assert git(repo, "status", "--porcelain", "--", *tracked) == ""


def test_symlinks_are_removed_as_links_never_followed(repo: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("outside the repo\n")
    (outside / "data.pyc").write_text("not ours\n")
    (repo / "src").mkdir()
    os.symlink(outside, repo / "src/__pycache__")  # a link named like an artifact folder
    os.symlink(outside / "data.pyc", repo / "link.pyc")  # a link named like an artifact file
    r = cli("clean", cwd=repo)
    assert "link.pyc" in r.out
    r = cli("clean", "--yes", cwd=repo)
    assert r.rc == 0, r.text
    assert not os.path.lexists(repo / "link.pyc")
    assert (outside / "precious.txt").read_text() == "outside the repo\n"
    assert (outside / "data.pyc").read_text() == "not ours\n"


def test_allowed_paths_are_kept(repo: Path) -> None:
    (repo / "fixtures").mkdir()
    (repo / "fixtures/golden_pb2.py").write_text("# a test fixture\n")
    (repo / "poetry.lock").write_text("# lock\n")
    cfg = repo / "cleanroom.toml"
    cfg.write_text(cfg.read_text() + '\n[[artifacts.allow]]\npath = "fixtures/golden_pb2.py"\nreason = "fixture"\n')
    r = cli("clean", "--yes", cwd=repo)
    assert r.rc == 0, r.text
    assert (repo / "fixtures/golden_pb2.py").exists()
    assert not (repo / "poetry.lock").exists()


def test_extra_patterns_from_the_config(repo: Path) -> None:
    set_config(repo, "artifacts", "extra", ["*.log"])
    (repo / "run.log").write_text("log\n")
    (repo / "keep.txt").write_text("keep\n")
    r = cli("clean", "--yes", cwd=repo)
    assert r.rc == 0, r.text
    assert not (repo / "run.log").exists() and (repo / "keep.txt").exists()


def test_not_a_repo_is_bad_input(tmp_path: Path) -> None:
    (tmp_path / "cleanroom.toml").write_text("")
    r = cli("clean", cwd=tmp_path)
    assert r.rc == 2 and "not a git repository" in r.err


@pytest.mark.parametrize("args", [(), ("--yes",)])
def test_clean_repo_has_nothing(repo: Path, args: tuple[str, ...]) -> None:
    r = cli("clean", *args, cwd=repo)
    assert r.rc == 0 and "nothing to delete" in r.out


def test_nested_repository_inside_an_artifact_folder_is_kept(repo: Path) -> None:
    (repo / "build/sub").mkdir(parents=True)
    git(repo / "build/sub", "init", "-q")
    (repo / "build/sub/work.txt").write_text("someone's work\n")
    (repo / "build/a.o").write_text("object\n")
    r = cli("clean", "--yes", cwd=repo)
    assert r.rc == 0, r.text
    assert (repo / "build/sub/work.txt").exists() and (repo / "build/sub/.git").is_dir()
    assert not (repo / "build/a.o").exists()
    assert "kept build/sub/: a nested git repository" in r.out
