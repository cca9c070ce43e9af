"""`cleanroom context`: the listing, --json, --sizes, --why and the builder models (no Docker
needed; test_context_engine.py holds the differential suite against the engine)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cleanroom.docker.context import BuilderModel, choose_builder, explain, model_for, plan_for, sizes
from cleanroom.dockerignore.matcher import (
    BUILDKIT,
    CLASSIC,
    LEGACY,
    DockerignoreError,
    Matcher,
    check_file,
    parse,
    walk_context,
)
from helpers import cli, git

COMPOSE = """\
services:
  app:
    build:
      context: ..
      dockerfile: docker/Dockerfile
  web:
    build:
      context: ../web
"""

MODELS = {
    "buildkit-20.10": model_for("buildkit", "20.10.24", "20.10.24"),
    "classic-28/20.10": model_for("classic", "28.2.2", "20.10.24"),
    "buildkit-28": model_for("buildkit", "28.2.2", "28.2.2"),
    "classic-28": model_for("classic", "28.2.2", "28.2.2"),
}


def make(root: Path, files: list[str]) -> None:
    for f in files:
        p = root / f
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f"{f}\n")


@pytest.fixture
def crepo(repo: Path) -> Path:
    make(repo, ["src/app.py", "src/pkg/__pycache__/m.pyc", "build/out.o", "build/keep/k.txt",
                "README.md", "docs/big.bin", "web/index.html", "web/node_modules/x.js"])
    (repo / "docs" / "big.bin").write_bytes(b"\0" * 50_000)
    (repo / "docker").mkdir(exist_ok=True)
    (repo / "docker" / "docker-compose.yml").write_text(COMPOSE)
    (repo / "docker" / "Dockerfile").write_text("FROM scratch\nCOPY . /app/\n")
    (repo / "web" / "Dockerfile").write_text("FROM scratch\n")
    (repo / ".dockerignore").write_text("# artifacts\n.git\nbuild\n!build/keep\n**/__pycache__\n*.md\n")
    (repo / "web" / ".dockerignore").write_text("node_modules\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "ctx")
    return repo


def run(repo: Path, *args: str, builder: str = "buildkit") -> tuple[int, str, str]:
    r = cli("context", *args, cwd=repo, env={"CLEANROOM_BUILDER": builder})
    return r.rc, r.out, r.err


# ------------------------------------------------------------------------------ the listing


def test_listing_sorted_with_header(crepo: Path) -> None:
    rc, out, err = run(crepo)
    assert rc == 0, err
    lines = out.splitlines()
    headers = [i for i, line in enumerate(lines) if line.startswith("# build ")]
    assert len(headers) == 2
    assert "'app'" in lines[headers[0]] and "ignore file .dockerignore" in lines[headers[0]]
    assert "'web'" in lines[headers[1]] and "ignore file web/.dockerignore" in lines[headers[1]]
    app = lines[headers[0] + 1 : headers[1]]
    assert app == sorted(app)
    assert "src/app.py" in app and "build/keep/k.txt" in app and "docker/Dockerfile" in app
    assert not any(p.startswith((".git/", "build/out", "README")) or "__pycache__" in p for p in app)
    web = lines[headers[1] + 1 :]
    assert sorted(web) == [".dockerignore", "Dockerfile", "index.html"]


def test_json(crepo: Path) -> None:
    rc, out, _ = run(crepo, "--json")
    assert rc == 0
    builds = {b["name"]: b for b in json.loads(out)["builds"]}
    app = builds["app"]
    assert app["context"] == "." and app["dockerfile"] == "docker/Dockerfile"
    assert app["ignore_file"] == ".dockerignore"
    sizes_ = {f["path"]: f["size"] for f in app["files"]}
    assert sizes_["docs/big.bin"] == 50_000
    assert [f["path"] for f in app["files"]] == sorted(sizes_)
    assert builds["web"]["context"] == "web" and builds["web"]["ignore_file"] == "web/.dockerignore"


def test_build_filter_and_unknown_build(crepo: Path) -> None:
    rc, out, _ = run(crepo, "--build", "web", "--json")
    assert rc == 0 and [b["name"] for b in json.loads(out)["builds"]] == ["web"]
    rc, _, err = run(crepo, "--build", "nope")
    assert rc == 2 and "no such build" in err and "app" in err


def test_sizes(crepo: Path) -> None:
    rc, out, _ = run(crepo, "--sizes", "--build", "app")
    assert rc == 0
    assert "total:" in out and "largest folders:" in out and "largest files:" in out
    files_part = out.split("largest files:")[1].splitlines()
    assert "docs/big.bin" in files_part[1]  # the largest first
    folders_part = out.split("largest folders:")[1].split("largest files:")[0]
    assert folders_part.splitlines()[1].rstrip().endswith("docs/")
    rc, out, _ = run(crepo, "--sizes", "--json", "--build", "app")
    s = json.loads(out)["builds"][0]["sizes"]
    assert s["largest_files"][0] == {"path": "docs/big.bin", "size": 50_000}
    assert s["total"] == sum(f["size"] for f in json.loads(out)["builds"][0]["files"])


def test_sizes_function() -> None:
    from cleanroom.docker.context import ContextFile

    s = sizes([ContextFile("a/b/c", 10), ContextFile("a/d", 5), ContextFile("e", 1)], top=2)
    assert (s.total, s.count) == (16, 3)
    assert s.folders == [("a", 15, 2), ("a/b", 10, 1)]
    assert [f.path for f in s.files] == ["a/b/c", "a/d"]


# ------------------------------------------------------------------------------ --why


def test_why_excluded_reincluded_and_unmatched(crepo: Path) -> None:
    rc, out, _ = run(crepo, "--build", "app", "--why", "build/out.o", "--why", "build/keep/k.txt",
                     "--why", "src/app.py", "--why", "README.md")
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].startswith(".dockerignore:3:build\tbuild/out.o\texcluded by .dockerignore:3:build")
    assert lines[1].startswith(".dockerignore:4:!build/keep\tbuild/keep/k.txt\tsent: re-included by "
                               ".dockerignore:4:!build/keep")
    assert lines[2].startswith("::\tsrc/app.py\tsent: no line matches")
    assert lines[3].startswith(".dockerignore:6:*.md\tREADME.md\texcluded")


def test_why_paths_that_do_not_exist_and_pruned_folders(crepo: Path) -> None:
    rc, out, _ = run(crepo, "--build", "app", "--why", "new/dir/__pycache__/x.pyc",
                     "--why", ".git/nothing/here", "--why", "no/such/file.txt", "--json")
    assert rc == 0
    rows = json.loads(out)["why"]
    assert rows[0]["sent"] is False and rows[0]["line"] == 5 and rows[0]["pattern"] == "**/__pycache__"
    assert "folder 'new/dir/__pycache__'" in rows[0]["reason"]
    assert rows[1]["source"] == ".dockerignore" and rows[1]["line"] == 2
    assert rows[2] == {"build": "app", "path": "no/such/file.txt", "sent": True, "source": None,
                       "line": None, "pattern": None, "reason": "sent: no line matches"}


def test_why_outside_the_context(crepo: Path) -> None:
    rc, out, _ = run(crepo, "--build", "web", "--why", "src/app.py", "--why", "web/node_modules/x.js")
    assert rc == 0
    lines = out.splitlines()
    assert "not in the context of build 'web'" in lines[0]
    assert lines[1].startswith("web/.dockerignore:1:node_modules\tnode_modules/x.js\tnot sent")


def test_why_classic_dockerfile_removed_by_daemon(tmp_path: Path) -> None:
    make(tmp_path, ["Dockerfile", "src/a"])
    (tmp_path / ".dockerignore").write_text("Dockerfile\n.dockerignore\n")
    plan = plan_for(tmp_path, tmp_path / "Dockerfile", MODELS["classic-28/20.10"])
    assert [str(p) for p in plan.appended] == ["!.dockerignore", "!Dockerfile"]
    assert {f.path for f in plan.files()} == {"src/a"}
    w = explain(plan, "Dockerfile", tmp_path)
    assert not w.sent and "daemon removes it" in w.reason and w.pattern is not None
    assert w.pattern.line == 1
    bk = plan_for(tmp_path, tmp_path / "Dockerfile", MODELS["buildkit-20.10"])
    assert {f.path for f in bk.files()} == {"src/a"}
    assert explain(bk, "Dockerfile", tmp_path).reason.startswith("excluded by")


# ------------------------------------------------------------------------------ models


def test_model_for_versions() -> None:
    assert MODELS["buildkit-20.10"].walk is LEGACY
    assert MODELS["buildkit-28"].walk is BUILDKIT
    assert MODELS["classic-28"].walk is CLASSIC
    c = MODELS["classic-28/20.10"]
    assert c.walk is CLASSIC and c.daemon is LEGACY
    with pytest.raises(DockerignoreError.__mro__[1]):
        model_for("kaniko")


def test_choose_builder_env_and_bad_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLEANROOM_BUILDER", "classic")
    assert choose_builder().name == "classic"
    assert choose_builder("buildkit").name == "buildkit"
    monkeypatch.setenv("CLEANROOM_BUILDER", "bogus")
    with pytest.raises(Exception, match=r"CLEANROOM_BUILDER.*bogus.*expected buildkit or classic"):
        choose_builder()


def test_choose_builder_without_docker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("CLEANROOM_BUILDER", raising=False)
    m = choose_builder()
    assert isinstance(m, BuilderModel) and m.name == "buildkit" and m.walk is BUILDKIT


def test_bad_builder_flag_exit_2(crepo: Path) -> None:
    r = cli("context", "--builder", "kaniko", cwd=crepo)
    assert r.rc == 2


# The semantics the differential suite found, pinned here without Docker.
SEMANTIC_CASES = [
    # (patterns, path, excluded under LEGACY, CLASSIC (MatchesUsingParentResults))
    (["d", "!d/f", "d"], "d/f", True, False),
    (["**/foo", "!a/b/foo/keep"], "a/b/foo/x", False, True),
    (["file (1).txt"], "file 1.txt", True, False),
    (["file (1).txt"], "file (1).txt", False, True),
    (["a+b"], "aab", True, False),
    (["**xfoo"], "axfoo", False, True),
    (["**xfoo"], "b/xfoo", True, True),
    (["pipe|x"], "pipe|x", True, True),
    (["pipe|x"], "pipeline", True, False),  # "^pipe|x$": starts with "pipe"
    (["x", "\ufeffbuild"], "build", True, False),  # text/scanner skips a BOM; exact match does not
]


@pytest.mark.parametrize(("lines", "path", "legacy", "classic"), SEMANTIC_CASES)
def test_semantics(lines: list[str], path: str, legacy: bool, classic: bool) -> None:
    pats = parse("\n".join(lines)).patterns
    assert Matcher(pats, LEGACY).excluded(path) is legacy
    assert Matcher(pats, CLASSIC).excluded(path) is classic


def test_semantics_in_the_walk(tmp_path: Path) -> None:
    make(tmp_path, ["d/f", "d/g", "a/b/foo/x", "a/b/foo/keep"])
    pats = parse("d\n!d/f\nd\n**/foo\n!a/b/foo/keep\n").patterns
    assert {r for r, _ in walk_context(tmp_path, Matcher(pats, LEGACY))} == {"a/b/foo/x", "a/b/foo/keep"}
    assert {r for r, _ in walk_context(tmp_path, Matcher(pats, CLASSIC))} == {"d/f", "a/b/foo/keep"}


def test_check_file_ignores_errors_like_go() -> None:
    # fileutils evaluates every pattern: a regexp Go cannot compile ends the check, "not excluded"
    pats = parse("Dockerfile\n)\n").patterns
    assert check_file(pats, "Dockerfile", LEGACY) is None
    assert check_file(pats, "Dockerfile", CLASSIC) is not None  # moby escapes ")"
    with pytest.raises(DockerignoreError):
        Matcher(pats, LEGACY)


def test_legacy_buildkit_refuses_control_characters(tmp_path: Path) -> None:
    make(tmp_path, ["a"])
    (tmp_path / ".dockerignore").write_bytes(b"dist\rbuild\n")
    with pytest.raises(DockerignoreError, match="gRPC"):
        plan_for(tmp_path, tmp_path / "Dockerfile", MODELS["buildkit-20.10"])
    assert {f.path for f in plan_for(tmp_path, None, MODELS["classic-28"]).files()} == {".dockerignore", "a"}


def test_refused_build_reported_others_listed(crepo: Path) -> None:
    (crepo / "web" / ".dockerignore").write_text("[\n")
    rc, out, _ = run(crepo, "--json")
    assert rc == 2
    builds = {b["name"]: b for b in json.loads(out)["builds"]}
    assert builds["app"]["files"] and "error" in builds["web"]


def test_names_that_are_not_utf8(tmp_path: Path) -> None:
    d = os.fsencode(tmp_path)
    open(os.path.join(d, b"caf\xe9"), "wb").close()
    make(tmp_path, ["ok"])
    got = {f.path for f in plan_for(tmp_path, None, MODELS["buildkit-28"]).files()}
    assert got == {"ok", "caf\udce9"}


def test_invoke_task_listed() -> None:
    from helpers import ROOT

    text = (ROOT / "tasks.py").read_text()
    assert "def context(" in text and '"why"' in text
