"""Adoption in repositories someone else wrote: the layouts real public repos have (no variants,
no cleanroom.toml, several compose files, `../` contexts, multi-stage Dockerfiles, COPY of
lockfiles, hand-written `*_pb2.py` shims), each reproduced here and held to exact findings.

Each layout is a surprise met when the engine was tried on real repositories (qdrant-client,
pymilvus, kserve, triton client, sentry self-hosted, feast, BentoML, the FastAPI template,
docarray): the test names which.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers import GENERATED_PB2, cli, git, snapshot

from cleanroom.docker import compose
from cleanroom.docker.builds import discover
from cleanroom.core.config import Config

# A .gitignore and .dockerignore that cover the whole default policy (Python and JavaScript).
FULL_GITIGNORE = """\
poetry.lock
uv.lock
pdm.lock
Pipfile.lock
package-lock.json
yarn.lock
pnpm-lock.yaml
bun.lock
bun.lockb
*_pb2.py
*_pb2.pyi
*_pb2_grpc.py
*_pb2_grpc.pyi
__pycache__/
*.pyc
.mypy_cache/
.pytest_cache/
.ruff_cache/
dist/
build/
*.egg-info/
.venv/
.nox/
"""
FULL_DOCKERIGNORE = "".join(
    f"**/{line.rstrip('/')}\n" for line in FULL_GITIGNORE.splitlines()
)


def make(root: Path, files: dict[str, str | bytes], commit: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for rel, content in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content)
    git(root, "init", "-q", "-b", "main")
    if commit:
        git(root, "add", "-A", "-f")
        git(root, "commit", "-q", "-m", "seed", "--allow-empty")
    return root


def verify(repo: Path, *args: str) -> dict:
    r = cli("verify", "--json", *args, cwd=repo)
    assert r.rc in (0, 1), r.text
    assert "Traceback" not in r.err, r.err
    doc = json.loads(r.out)
    assert r.rc == (1 if doc["findings"] else 0)
    return doc


def of(doc: dict, rule: str) -> list[dict]:
    return [f for f in doc["findings"] if f["rule"] == rule]


# ------------------------------------------------------------------ no variants, no config


def test_own_pyproject_is_a_source_without_variants(tmp_path: Path) -> None:
    """Every real repo: a pyproject.toml of its own, no variant files, no cleanroom.toml."""
    repo = make(tmp_path / "r", {
        "pyproject.toml": '[project]\nname = "pkg"\nversion = "1"\n',
        "pkg/__init__.py": "",
        ".gitignore": FULL_GITIGNORE,
    })
    doc = verify(repo)
    assert doc["findings"] == []
    assert "variant-drift" in doc["skipped"] and "variant-drift" not in doc["checked"]
    assert "tracked-artifact" in doc["checked"]
    # the same with the variants turned off explicitly, even where a variant file exists
    (repo / "pyproject.binary.toml").write_text("[tool.x]\n")
    (repo / "cleanroom.toml").write_text("[variants]\nenabled = false\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "v")
    assert verify(repo)["findings"] == []


def test_variants_on_make_the_root_pyproject_an_artifact(tmp_path: Path) -> None:
    repo = make(tmp_path / "r", {
        "pyproject.toml": "[project]\nname = 'x'\n",
        "pyproject.binary.toml": "[tool.x]\n",
        "pyproject.source.toml": "[tool.x]\n",
        ".gitignore": FULL_GITIGNORE,
    })
    doc = verify(repo)
    assert [f["path"] for f in of(doc, "tracked-artifact")] == ["pyproject.toml"]
    assert [f["message"].split("'")[1] for f in of(doc, "gitignore-gap")] == ["/pyproject.toml"]


def test_one_variant_file_missing_is_one_finding(tmp_path: Path) -> None:
    repo = make(tmp_path / "r", {"pyproject.binary.toml": "[tool.x]\n", ".gitignore": FULL_GITIGNORE + "/pyproject.toml\n"})
    doc = verify(repo)
    drift = of(doc, "variant-drift")
    assert len(drift) == 1 and drift[0]["path"] == "pyproject.source.toml"
    assert "enabled = false" in drift[0]["fix"]


@pytest.mark.parametrize("command", [["verify"], ["context"], ["clean"], ["migrate-proto"],
                                     ["proto", "--check"]])
def test_commands_run_with_no_config(tmp_path: Path, command: list[str]) -> None:
    repo = make(tmp_path / "r", {"pyproject.toml": "[project]\nname='x'\n", "pkg/m.py": "x = 1\n",
                                 "proto/a.proto": 'syntax = "proto3";\nmessage A { int32 n = 1; }\n'})
    r = cli(*command, cwd=repo)
    assert r.rc in (0, 1), r.text
    assert "Traceback" not in r.err


# ------------------------------------------------------------------ no Docker at all


def test_no_docker_means_no_builds_and_no_dockerignore_written(tmp_path: Path) -> None:
    """qdrant-client, triton client, docarray: no Dockerfile, no compose file."""
    repo = make(tmp_path / "r", {"pkg/m.py": "x = 1\n", "pkg/__pycache__/m.cpython-311.pyc": b"\0"}, commit=False)
    git(repo, "add", "pkg/m.py")
    git(repo, "commit", "-q", "-m", "seed")
    doc = verify(repo)
    rules = {f["rule"] for f in doc["findings"]}
    assert not rules & {"dockerignore-gap", "context-leak", "copy-excluded", "dead-ignore-file"}
    assert set(doc["skipped"]) >= {"dockerignore-gap", "context-leak", "copy-excluded"}
    r = cli("verify", "--fix", cwd=repo)
    assert r.rc in (0, 1), r.text
    assert not (repo / ".dockerignore").exists()
    assert (repo / ".gitignore").is_file()
    # the fix closed every gap: nothing but nothing left
    assert verify(repo)["findings"] == []
    c = cli("context", cwd=repo)
    assert c.rc == 0 and "no Docker build" in c.out
    assert json.loads(cli("context", "--json", cwd=repo).out) == {"builds": []}


def test_dockerignore_with_no_build_is_dead(tmp_path: Path) -> None:
    repo = make(tmp_path / "r", {"x.py": "", ".gitignore": FULL_GITIGNORE, ".dockerignore": "**/.git\n"})
    dead = of(verify(repo), "dead-ignore-file")
    assert [d["path"] for d in dead] == [".dockerignore"]
    assert "declares no Docker build" in dead[0]["message"]


# ------------------------------------------------------------------ Compose as Compose reads it


SENTRY_COMPOSE = """\
x-restart: &restart
  restart: unless-stopped
x-sentry: &sentry
  <<: *restart
  build:
    context: ./sentry
    args: [SENTRY_IMAGE]
services:
  web:
    <<: *sentry
  worker:
    <<: *sentry
  clickhouse:
    <<: *restart
    build:
      context: ./${CLICKHOUSE_DIR:-clickhouse}
  remote:
    build: https://github.com/docker/rootfs.git#main
  outside:
    build: ../elsewhere
  needs-var:
    build:
      context: ./app
      dockerfile: ${APP_DOCKERFILE:?set APP_DOCKERFILE in .env}
  gone:
    build: ./no-such-folder
"""
OVERRIDE = """\
services:
  playwright:
    build:
      context: .
      dockerfile: ${FRONT_DIR}/Dockerfile.playwright
"""


def _compose_repo(tmp_path: Path, dotenv: str) -> Path:
    return make(tmp_path / "r", {
        "compose.yaml": SENTRY_COMPOSE,
        "compose.override.yml": OVERRIDE,
        ".env": dotenv,
        "sentry/Dockerfile": "FROM scratch\nCOPY . /s/\n",
        "sentry/sentry.conf.py": "X = 1\n",
        "clickhouse/Dockerfile": "FROM scratch\nCOPY config.xml /c/\n",
        "clickhouse/config.xml": "<x/>\n",
        "app/Dockerfile": "FROM scratch\n",
        "app/app.Dockerfile": "FROM scratch\n",
        "front/Dockerfile.playwright": "FROM scratch\nCOPY front/ /f/\n",
        "front/package.json": "{}\n",
        ".gitignore": FULL_GITIGNORE + ".env\n",
    })


def _builds(repo: Path) -> dict[str, tuple[str, str]]:
    d = discover(repo, Config().resolved(repo))
    return {b.name: (b.rel_context(repo) or ".", b.rel_dockerfile(repo)) for b in d.builds}


def test_compose_files_anchors_dotenv_override_and_unreadable_contexts(tmp_path: Path) -> None:
    """sentry self-hosted (anchors, merges, .env) and the FastAPI template (override file, `:?`)."""
    repo = _compose_repo(tmp_path, "FRONT_DIR=front\nAPP_DOCKERFILE=app.Dockerfile\n")
    builds = _builds(repo)
    assert builds == {
        "web": ("sentry", "sentry/Dockerfile"),  # worker shares it
        "clickhouse": ("clickhouse", "clickhouse/Dockerfile"),
        "needs-var": ("app", "app/app.Dockerfile"),
        "playwright": (".", "front/Dockerfile.playwright"),
    }
    notes = discover(repo, Config()).notes
    assert any("remote" in n and "rootfs.git" in n for n in notes), notes
    assert any("outside the repo" in n for n in notes), notes
    assert any("no-such-folder does not exist" in n for n in notes), notes
    r = cli("verify", "--json", cwd=repo)
    assert r.rc in (0, 1) and "Traceback" not in r.err, r.text
    doc = json.loads(r.out)
    assert any("rootfs.git" in n for n in doc["notes"])
    # the two services that share one build are one group: one finding, naming the build once
    sentry = [f for f in doc["findings"] if f["path"] == "sentry/.dockerignore"]
    assert len(sentry) == 1 and "+1 service(s) with the same build" in sentry[0]["message"]
    # clickhouse's context holds no Python or JavaScript project: nothing is demanded of it
    assert not [f for f in doc["findings"] if f["path"].startswith("clickhouse/")]


def test_required_variable_unset_is_a_note_and_the_rest_is_checked(tmp_path: Path) -> None:
    repo = _compose_repo(tmp_path, "FRONT_DIR=front\n")
    builds = _builds(repo)
    assert "needs-var" not in builds and {"web", "clickhouse", "playwright"} <= set(builds)
    notes = discover(repo, Config()).notes
    assert any("APP_DOCKERFILE" in n and "set APP_DOCKERFILE in .env" in n for n in notes), notes


def test_pyyaml_reader_agrees_with_compose_v2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a Compose v2 CLI the files are read with PyYAML: the same builds."""
    repo = _compose_repo(tmp_path, "FRONT_DIR=front\nAPP_DOCKERFILE=app.Dockerfile\n")
    with_v2 = _builds(repo) if compose.compose_v2() is not None else None
    monkeypatch.setattr(compose, "compose_v2", lambda: None)
    without = _builds(repo)
    assert without["web"] == ("sentry", "sentry/Dockerfile")
    assert without["needs-var"] == ("app", "app/app.Dockerfile")
    assert without["playwright"] == (".", "front/Dockerfile.playwright")
    if with_v2 is not None:
        assert with_v2 == without


def test_interpolation_forms() -> None:
    env = {"SET": "v", "EMPTY": ""}
    cases = {
        "$SET": "v", "${SET}": "v", "$$SET": "$SET", "${UNSET:-d}": "d", "${EMPTY:-d}": "d",
        "${EMPTY-d}": "", "${UNSET-d}": "d", "${SET:+r}": "r", "${EMPTY:+r}": "", "${EMPTY+r}": "r",
        "${UNSET+r}": "", "a/${SET}/b": "a/v/b",
    }
    for text, want in cases.items():
        assert compose.interpolate(text, env) == want, text
    for text in ("${UNSET:?msg}", "${EMPTY:?msg}", "${UNSET?msg}"):
        with pytest.raises(compose.InterpolationError, match="msg"):
            compose.interpolate(text, env)
    assert compose.interpolate("${EMPTY?msg}", env) == ""


def test_compose_file_outside_the_repo_and_git_url_context(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.yml"
    outside.write_text("services:\n  a:\n    build: .\n")
    repo = make(tmp_path / "r", {
        "docker/docker-compose.yml": "services:\n  g:\n    build:\n      context: git@github.com:x/y.git\n",
        "cleanroom.toml": f'[docker]\ncompose = ["docker/docker-compose.yml", "{outside}"]\n',
        ".gitignore": FULL_GITIGNORE,
    })
    r = cli("verify", cwd=repo)
    assert r.rc in (0, 1) and "Traceback" not in r.err, r.text
    assert "outside the repo: not checkable, skipped" in r.out
    assert "'git@github.com:x/y.git' is remote: not checkable, skipped" in r.out


def test_relative_parent_context_from_a_compose_file_in_a_subfolder(tmp_path: Path) -> None:
    repo = make(tmp_path / "r", {
        "deploy/docker-compose.yml": "services:\n  api:\n    build:\n      context: ../api\n",
        "api/Dockerfile": "FROM scratch\nCOPY main.py /\n",
        "api/main.py": "",
        "api/poetry.lock": "lock\n",
        "cleanroom.toml": '[docker]\ncompose = "deploy/docker-compose.yml"\n',
        ".gitignore": FULL_GITIGNORE,
    })
    doc = verify(repo)
    gaps = of(doc, "dockerignore-gap")
    assert [g["path"] for g in gaps] == ["api/.dockerignore"]
    assert "reads no ignore file" in gaps[0]["message"] and "api/poetry.lock" in gaps[0]["message"]


# ------------------------------------------------------------------ Dockerfiles and contexts


def test_dockerfile_with_its_own_context_is_declared_not_guessed(tmp_path: Path) -> None:
    """kserve: `cd python && docker build -f sklearn.Dockerfile .`, and python/.dockerignore."""
    files = {
        "python/sklearn.Dockerfile": "FROM python:3.11\nCOPY sk/ sk/\n",
        "python/sk/m.py": "",
        "python/.dockerignore": FULL_DOCKERIGNORE,
        ".gitignore": FULL_GITIGNORE,
    }
    repo = make(tmp_path / "r", files)
    doc = verify(repo)
    # undeclared: not checked, and its folder's ignore file is not called dead
    assert doc["findings"] == []
    assert any("python/sklearn.Dockerfile" in n and "[[docker.builds]]" in n for n in doc["notes"])
    (repo / "cleanroom.toml").write_text(
        '[[docker.builds]]\ndockerfile = "python/sklearn.Dockerfile"\ncontext = "python"\n')
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "declare")
    doc = verify(repo)
    assert doc["findings"] == [] and doc["notes"] == []
    c = json.loads(cli("context", "--json", cwd=repo).out)["builds"]
    assert [(b["context"], b["ignore_file"]) for b in c] == [("python", "python/.dockerignore")]


def test_three_dockerfiles_one_context_one_gap_is_one_finding(tmp_path: Path) -> None:
    repo = make(tmp_path / "r", {
        "Dockerfile": "FROM scratch\nCOPY src/ /src/\n",
        "agent.Dockerfile": "FROM scratch\nCOPY src/ /src/\n",
        "router.Dockerfile": "FROM scratch\nCOPY src/ /src/\n",
        "src/m.py": "",
        ".dockerignore": FULL_DOCKERIGNORE.replace("**/uv.lock\n", ""),
        ".gitignore": FULL_GITIGNORE,
    })
    gaps = of(verify(repo), "dockerignore-gap")
    assert len(gaps) == 1, gaps
    g = gaps[0]
    assert "'uv.lock'" in g["message"]
    assert sorted(g["related"]) == ["Dockerfile", "agent.Dockerfile", "router.Dockerfile"]
    probes = g["message"].split("probe path(s) ", 1)[1]
    assert probes.count("'") <= 6 and "more)" in probes  # three examples and a count


def test_copy_of_an_excluded_lockfile_names_both_lines_and_fix_keeps_every_source(tmp_path: Path) -> None:
    """kserve/FastAPI: `COPY pyproject.toml poetry.lock ./` with poetry.lock excluded."""
    repo = make(tmp_path / "r", {
        "Dockerfile": ("FROM python:3.11 AS build\nWORKDIR /app\n"
                       "COPY pyproject.toml poetry.lock ./\n"
                       "COPY src/ src/\n"
                       "FROM gcr.io/distroless/python3\nCOPY --from=build /app /app\n"),
        "pyproject.toml": "[project]\nname='x'\n",
        "src/m.py": "",
        "src/build/keep.py": "",
        ".dockerignore": "**/poetry.lock\n",
        ".gitignore": FULL_GITIGNORE,
    }, commit=False)
    (repo / "poetry.lock").write_text("lock\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "seed")
    doc = verify(repo)
    ce = of(doc, "copy-excluded")
    assert len(ce) == 1, ce
    assert ce[0]["path"] == "Dockerfile" and ce[0]["line"] == 3
    assert ".dockerignore:1 `**/poetry.lock`" in ce[0]["message"]
    assert "contradicts the doctrine" in ce[0]["message"] and "remove poetry.lock" in ce[0]["fix"]
    # --fix adds the missing rules but never one that would exclude what a build copies
    r = cli("verify", "--fix", cwd=repo)
    assert r.rc in (0, 1), r.text
    di = (repo / ".dockerignore").read_text()
    assert "**/__pycache__" in di
    listed = {f["path"] for f in json.loads(cli("context", "--json", cwd=repo).out)["builds"][0]["files"]}
    assert {"pyproject.toml", "src/m.py"} <= listed


def test_fix_refuses_a_rule_that_would_exclude_a_copied_folder(tmp_path: Path) -> None:
    repo = make(tmp_path / "r", {
        "Dockerfile": "FROM python:3.11\nCOPY build/ /opt/build/\nCOPY app.py /\n",
        "build/setup.sh": "echo\n",
        "app.py": "",
        ".dockerignore": FULL_DOCKERIGNORE.replace("**/build\n", ""),
        ".gitignore": FULL_GITIGNORE,
    })
    doc = verify(repo)
    gap = [f for f in of(doc, "dockerignore-gap") if "'build/'" in f["message"]]
    assert len(gap) == 1 and "copies it" in gap[0]["message"] and "Dockerfile:2" in gap[0]["message"]
    before = (repo / ".dockerignore").read_bytes()
    r = cli("verify", "--fix", cwd=repo)
    assert "not adding `**/build`" in r.out, r.text
    assert (repo / ".dockerignore").read_bytes() == before


def test_fix_never_writes_a_pattern_docker_refuses_or_outside_the_repo(tmp_path: Path) -> None:
    outside = tmp_path / "shared.dockerignore"
    outside.write_text("**/.git\n")
    repo = make(tmp_path / "r", {
        "Dockerfile": "FROM scratch\nCOPY m.py /\n",
        "m.py": "",
        ".gitignore": FULL_GITIGNORE,
        "cleanroom.toml": '[artifacts]\nextra = ["cache[/"]\n',
    }, commit=False)
    os.symlink(outside, repo / ".dockerignore")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "seed")
    r = cli("verify", "--fix", cwd=repo)
    assert r.rc in (0, 1) and "Traceback" not in r.err, r.text
    assert "resolves outside the repo" in r.out
    assert outside.read_text() == "**/.git\n"


def test_copy_sources_in_every_stage_and_from_stages_skipped(tmp_path: Path) -> None:
    repo = make(tmp_path / "r", {
        "Dockerfile": ("FROM golang:1.22 AS build\nCOPY go.mod cmd/ ./\nRUN go build\n"
                       "FROM gcr.io/distroless/static\nCOPY --from=build /out /out\n"
                       "COPY config/app.yaml /etc/\n"),
        "go.mod": "module x\n",
        "cmd/main.go": "",
        "config/app.yaml": "",
        ".dockerignore": "*\n!go.mod\n!cmd/\n",
    })
    ce = of(verify(repo), "copy-excluded")
    assert [(f["line"], "config/app.yaml" in f["message"]) for f in ce] == [(6, True)]
    assert ".dockerignore:1 `*`" in ce[0]["message"]


# ------------------------------------------------------------------ folders, lockfiles, shims


def test_pycache_ignored_by_pyc_rule_is_no_finding(tmp_path: Path) -> None:
    gi = FULL_GITIGNORE.replace("__pycache__/\n", "")
    repo = make(tmp_path / "r", {"pkg/m.py": "", ".gitignore": gi})
    (repo / "pkg/__pycache__").mkdir()
    (repo / "pkg/__pycache__/m.cpython-311.pyc").write_bytes(b"\0")
    doc = verify(repo)
    assert doc["findings"] == [], doc["findings"]
    # a file in it that *.pyc does not ignore is found, with the folder named once
    (repo / "pkg/__pycache__/notes.txt").write_text("x")
    ua = of(verify(repo), "untracked-artifact")
    assert [(f["path"], f["related"]) for f in ua] == [("pkg/__pycache__/", ["pkg/__pycache__/notes.txt"])]


def test_lockfiles_of_every_manager_and_drop(tmp_path: Path) -> None:
    repo = make(tmp_path / "r", {
        "uv.lock": "x", "pdm.lock": "x", "Pipfile.lock": "{}", "front/yarn.lock": "x",
        "front/pnpm-lock.yaml": "x", "front/package.json": "{}", "pyproject.toml": "[project]\nname='x'\n",
    })
    tracked = {(f["path"], tuple(f["related"])) for f in of(verify(repo), "tracked-artifact")}
    # one finding per folder: one `git rm --cached` each
    assert tracked == {(".", ("Pipfile.lock", "pdm.lock", "uv.lock")),
                       ("front", ("front/pnpm-lock.yaml", "front/yarn.lock"))}
    (repo / "cleanroom.toml").write_text('[artifacts]\ndrop = ["uv.lock", "yarn.lock", "pnpm-lock.yaml"]\n')
    tracked = {(f["path"], tuple(f["related"])) for f in of(verify(repo), "tracked-artifact")}
    assert tracked == {(".", ("Pipfile.lock", "pdm.lock"))}
    (repo / "cleanroom.toml").write_text('[artifacts]\ndrop = ["uv.lok"]\n')
    r = cli("verify", cwd=repo)
    assert r.rc == 2 and "artifacts.drop[0]: 'uv.lok' is not a pattern of the policy" in r.err


def test_javascript_lockfiles_not_demanded_of_a_python_only_repo(tmp_path: Path) -> None:
    repo = make(tmp_path / "r", {"pyproject.toml": "[project]\nname='x'\n", "m.py": "",
                                 ".gitignore": FULL_GITIGNORE.replace("yarn.lock\n", "")})
    assert verify(repo)["findings"] == []
    (repo / "web").mkdir()
    (repo / "web/package.json").write_text("{}")
    gaps = of(verify(repo), "gitignore-gap")
    assert [g["message"].split("'")[1] for g in gaps] == ["yarn.lock"]


def test_handwritten_pb2_shims_are_sources(tmp_path: Path) -> None:
    """triton client: deprecation shims; BentoML: a protobuf-version dispatch, both named *_pb2.py."""
    repo = make(tmp_path / "r", {
        "old/grpc_service_pb2.py": "import warnings\nwarnings.warn('moved')\nfrom new.service_pb2 import *\n",
        "v1/service_pb2.py": ("from google.protobuf import __version__\nif __version__.startswith('4'):\n"
                              "    from ._pb4.service_pb2 import *\n"),
        "v1/_pb4/service_pb2.py": GENERATED_PB2,
        ".gitignore": "\n",
    }, commit=False)
    git(repo, "add", "-A", "-f")
    git(repo, "commit", "-q", "-m", "seed")
    doc = verify(repo)
    assert [f["path"] for f in of(doc, "tracked-artifact")] == ["v1/_pb4/service_pb2.py"]
    assert any("kept as sources" in n and "old/grpc_service_pb2.py" in n for n in doc["notes"])


# ------------------------------------------------------------------ the CLI


def test_global_options_before_or_after_the_command(tmp_path: Path) -> None:
    repo = make(tmp_path / "r", {"m.py": "", ".gitignore": FULL_GITIGNORE})
    cfg = tmp_path / "c.toml"
    cfg.write_text('[artifacts]\nextra = ["*.log"]\n')
    elsewhere = tmp_path
    for args in (["--repo", str(repo), "verify", "--json"], ["verify", "--repo", str(repo), "--json"],
                 ["verify", "--json", "--repo", str(repo), "--config", str(cfg)],
                 ["--config", str(cfg), "verify", "--repo", str(repo), "--json"]):
        r = cli(*args, cwd=elsewhere)
        assert r.rc == (1 if "--config" in args else 0), (args, r.text)
    assert cli("context", "--repo", str(repo), cwd=elsewhere).rc == 0


def test_concise_format_one_line_per_finding(tmp_path: Path) -> None:
    repo = make(tmp_path / "r", {"poetry.lock": "x", "x.py": "", "Dockerfile": "FROM scratch\nCOPY nope /\n",
                                 ".gitignore": FULL_GITIGNORE, ".dockerignore": FULL_DOCKERIGNORE})
    r = cli("verify", "--format", "concise", cwd=repo)
    assert r.rc == 1
    lines = r.out.strip().splitlines()
    assert lines[0].startswith("poetry.lock: tracked-artifact: ")
    assert lines[1].startswith("Dockerfile:2: copy-excluded: `COPY nope /` copies nope")
    assert lines[-1] == "verify: 2 finding(s)"


def test_json_error_is_json(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    r = cli("verify", "--json", cwd=tmp_path / "plain")
    assert r.rc == 2
    doc = json.loads(r.out)
    assert doc["error"].endswith("is not a git repository (verify compares the tree with git; run `git init`)")


def test_verify_changes_nothing(tmp_path: Path) -> None:
    repo = _compose_repo(tmp_path, "FRONT_DIR=front\n")
    before = snapshot(repo)
    verify(repo)
    cli("context", cwd=repo)
    assert snapshot(repo) == before


def test_remembered_index_answer_follows_the_index(tmp_path: Path) -> None:
    """verify remembers git's answer for the index between runs: a commit, an `add` or a
    `git rm --cached` must be seen at once."""
    repo = make(tmp_path / "r", {"m.py": "", ".gitignore": FULL_GITIGNORE})
    assert verify(repo)["findings"] == []
    (repo / "uv.lock").write_text("x")
    git(repo, "add", "-f", "uv.lock")
    assert [f["path"] for f in of(verify(repo), "tracked-artifact")] == ["uv.lock"]
    git(repo, "commit", "-q", "-m", "lock")
    assert [f["path"] for f in of(verify(repo), "tracked-artifact")] == ["uv.lock"]
    git(repo, "rm", "-q", "--cached", "uv.lock")
    assert of(verify(repo), "tracked-artifact") == []
