"""migrate-proto on the layouts real repositories have (seen in qdrant-client, pymilvus, kserve,
triton client, BentoML): a facade package star-importing generated modules that import each other
relatively, code importing through the facade, a `mock.patch` string, orphans, hand-written
shims, CRLF/BOM/symlinked sources, Go images beside Python ones, and --apply interrupted.

Everything runs for real: protoc (grpcio-tools) makes the checked-in code, git tracks it, the
migrated checkout is imported in a fresh interpreter.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ENGINE_SRC, cli, git, snapshot

POINTS = """\
syntax = "proto3";
package qdrant;
import "common.proto";
message PutRequest { string collection = 1; PointId id = 2; }
message UpsertPoints { repeated PutRequest points = 1; }
service Points { rpc Upsert (UpsertPoints) returns (PutRequest); }
"""
COMMON = """\
syntax = "proto3";
package qdrant;
message PointId { uint64 num = 1; }
"""
FACADE = "from .common_pb2 import *\nfrom .points_pb2 import *\nfrom .points_pb2_grpc import *\n"
CLIENT = """\
import pkg.grpc as rpc
from pkg.grpc import PutRequest


def put(n: int) -> "rpc.PutRequest":
    return PutRequest(collection="c", id=rpc.PointId(num=n))


def stub_class() -> type:
    return rpc.points_pb2_grpc.PointsStub
"""
TEST = """\
from unittest import mock

import pkg.client


def test_patch() -> None:
    with mock.patch("pkg.grpc.points_pb2.UpsertPoints") as m:
        assert m is not None
"""
DOCKERFILE_GO = """\
FROM golang:1.22 AS build
WORKDIR /src
COPY go.mod ./
RUN go build -o /out/server ./...
FROM gcr.io/distroless/static:nonroot
COPY --from=build /out/server /server
ENTRYPOINT ["/server"]
"""


def _generate(repo: Path) -> None:
    """protoc into pkg/grpc, then the sed step such repos run: sibling imports made relative."""
    out = repo / "pkg" / "grpc"
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{repo / 'pkg/proto'}",
                    f"--python_out={out}", f"--pyi_out={out}", f"--grpc_python_out={out}",
                    str(repo / "pkg/proto/common.proto"), str(repo / "pkg/proto/points.proto")],
                   check=True, capture_output=True)
    (out / "common_pb2_grpc.py").unlink()
    for f in out.glob("*_pb2*.py*"):
        text = f.read_text()
        for mod in ("common_pb2", "points_pb2"):
            text = text.replace(f"\nimport {mod} as", f"\nfrom . import {mod} as")
        f.write_text(text)


@pytest.fixture
def facade(tmp_path: Path) -> Path:
    """qdrant-client's shape: protos in pkg/proto, generated code in pkg/grpc behind a facade."""
    r = tmp_path / "facade"
    for rel, text in {
        "pkg/__init__.py": "", "pkg/grpc/__init__.py": FACADE, "pkg/client.py": CLIENT,
        "pkg/proto/common.proto": COMMON, "pkg/proto/points.proto": POINTS,
        "tests/test_client.py": TEST, "pyproject.toml": "[project]\nname = 'pkg'\nversion = '1'\n",
        ".gitignore": "__pycache__/\n",
    }.items():
        (r / rel).parent.mkdir(parents=True, exist_ok=True)
        (r / rel).write_text(text)
    _generate(r)
    git(r, "init", "-q", "-b", "main")
    git(r, "add", "-A")
    git(r, "commit", "-q", "-m", "checked-in generated code")
    return r


def _python(code: str, path: list[Path], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in path)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True,
                          text=True, check=False)


def test_facade_repo_migrates_and_a_fresh_checkout_still_imports(facade: Path, tmp_path: Path) -> None:
    # before: it works with the checked-in code
    before = _python("import pkg, pkg.grpc as r; r.PutRequest(); import pkg.client", [facade], facade)
    assert before.returncode == 0, before.stderr
    r = cli("migrate-proto", cwd=facade)
    assert r.rc == 0, r.text
    out = r.out
    # nothing configured: what it found
    assert "found (not configured): [proto] legacy_module = 'pkg.grpc'" in out
    assert "found (not configured): [proto] sources = 'pkg/proto'" in out
    assert "found (not configured): [proto] package = 'pkg_proto'" in out
    assert "pkg/grpc/__init__.py: would rewrite 3 import(s) (a facade" in out
    assert '+    with mock.patch("pkg_proto.points_pb2.UpsertPoints") as m:' in out
    assert "proven: pkg.grpc" in out and "proven: pkg.client" in out
    assert "failed" not in out.split("5. proof", 1)[1]
    r = cli("migrate-proto", "--apply", cwd=facade)
    assert r.rc == 0, r.text
    # what it found is recorded, so the fresh checkout's `cleanroom proto` makes the same package
    cfg = (facade / "cleanroom.toml").read_text()
    assert 'sources = "pkg/proto"' in cfg and 'package = "pkg_proto"' in cfg
    git(facade, "add", "-A")
    git(facade, "commit", "-q", "-m", "migrated")
    # a fresh checkout: no generated file, the package generated from the sources
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(facade), str(clone)], check=True)
    assert not list(clone.rglob("*_pb2*.py*"))
    gen = tmp_path / "gen"
    g = cli("proto", "--out", str(gen), cwd=clone)
    assert g.rc == 0, g.text
    after = _python("import pkg, pkg.grpc as r; r.PutRequest(); import pkg.client as c; "
                    "print(c.put(3).id.num, c.stub_class().__name__)", [gen, clone], clone)
    assert after.returncode == 0, after.stderr
    assert after.stdout.split() == ["3", "PointsStub"]
    # no import of a generated module through the old path is left
    grep = subprocess.run(["git", "grep", "-n", "-E", r"pkg\.grpc\.\w+_pb2|from \.\w*_pb2|from \. import \w+_pb2"],
                          cwd=clone, capture_output=True, text=True, check=False)
    assert grep.stdout == "", grep.stdout
    # the mock.patch string test runs against the new package
    t = _python("import sys, pytest; sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', 'tests']))",
                [gen, clone], clone)
    assert t.returncode == 0, t.stdout + t.stderr
    # a second run: nothing left
    again = cli("migrate-proto", cwd=facade)
    assert again.rc == 0 and "nothing to change" in again.out, again.text


def _orphan(repo: Path, proto: str) -> None:
    """Generated code checked in whose .proto is not in the repo (kserve's test/e2e, pymilvus)."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "extra.proto").write_text(proto)
        (Path(d) / "common.proto").write_text(COMMON)
        subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{d}", f"--python_out={repo / 'pkg/grpc'}",
                        str(Path(d) / "extra.proto")], check=True, capture_output=True)
    f = repo / "pkg/grpc/extra_pb2.py"
    f.write_text(f.read_text().replace("\nimport common_pb2 as", "\nfrom . import common_pb2 as"))
    (repo / "pkg/grpc/__init__.py").write_text(FACADE + "from . import extra_pb2\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "orphan")


def test_orphan_stays_tracked_and_its_import_is_kept(facade: Path) -> None:
    _orphan(facade, 'syntax = "proto3";\npackage extra;\nmessage Note { string text = 1; }\n')
    r = cli("migrate-proto", cwd=facade)
    assert r.rc == 0, r.text
    assert "keep pkg/grpc/extra_pb2.py: no .proto under pkg/proto regenerates it (an orphan)" in r.out
    assert "untrack pkg/grpc/extra_pb2.py" not in r.out
    assert "add their .proto sources, or allow them" in r.out
    assert "+from pkg_proto import extra_pb2" not in r.out  # it stays where it is
    assert "proven: pkg.grpc" in r.out
    a = cli("migrate-proto", "--apply", cwd=facade)
    assert a.rc == 0, a.text
    assert "pkg/grpc/extra_pb2.py" in git(facade, "ls-files")
    assert "from . import extra_pb2" in (facade / "pkg/grpc/__init__.py").read_text()


def test_a_failing_proof_refuses_apply_and_changes_nothing(facade: Path) -> None:
    """The orphan imports common_pb2 beside it, which the migration takes away."""
    _orphan(facade, 'syntax = "proto3";\npackage extra;\nimport "common.proto";\n'
                    'message Note { qdrant.PointId id = 1; }\n')
    r = cli("migrate-proto", cwd=facade)
    assert r.rc == 0, r.text
    assert "failed: pkg.grpc: " in r.out and "--apply refuses" in r.out
    before = (git(facade, "status", "--porcelain"), snapshot(facade), git(facade, "ls-files", "-s"))
    a = cli("migrate-proto", "--apply", cwd=facade)
    assert a.rc == 1 and "--apply refuses" in a.out, a.text
    assert (git(facade, "status", "--porcelain"), snapshot(facade), git(facade, "ls-files", "-s")) == before


def test_mistyped_legacy_module_is_exit_2(facade: Path) -> None:
    (facade / "cleanroom.toml").write_text('[proto]\nlegacy_module = "pkg.nosuch"\n')
    r = cli("migrate-proto", cwd=facade)
    assert r.rc == 2 and "legacy_module = 'pkg.nosuch': no such package" in r.err, r.text
    (facade / "cleanroom.toml").write_text('[proto]\nlegacy_module = "pkg"\nsources = "pkg/proto"\n')
    (facade / "pkg/other").mkdir()
    (facade / "pkg/other/__init__.py").write_text("")
    git(facade, "add", "-A")
    git(facade, "commit", "-q", "-m", "x")
    (facade / "cleanroom.toml").write_text('[proto]\nlegacy_module = "pkg.other"\nsources = "pkg/proto"\n')
    r = cli("migrate-proto", cwd=facade)
    assert r.rc == 2 and "holds none of the tracked generated files" in r.err, r.text


def test_handwritten_shims_are_never_untracked(facade: Path) -> None:
    """triton client: pkg/old/grpc_service_pb2.py is a deprecation alias, not protoc output."""
    (facade / "pkg/old").mkdir()
    (facade / "pkg/old/__init__.py").write_text("")
    (facade / "pkg/old/grpc_service_pb2.py").write_text(
        "import warnings\nwarnings.warn('moved to pkg.grpc')\nfrom pkg.grpc.points_pb2 import *\n")
    git(facade, "add", "-A")
    git(facade, "commit", "-q", "-m", "shim")
    r = cli("migrate-proto", cwd=facade)
    assert r.rc == 0, r.text
    assert "untrack pkg/old/grpc_service_pb2.py" not in r.out
    assert "pkg/old/grpc_service_pb2.py: would rewrite 1 import(s)" in r.out


def test_dockerfile_advice_only_for_images_that_run_python(facade: Path) -> None:
    (facade / "Dockerfile").write_text(DOCKERFILE_GO)
    (facade / "go.mod").write_text("module x\n")
    (facade / "python.Dockerfile").write_text(
        "FROM python:3.12-slim AS base\nWORKDIR /app\nCOPY pyproject.toml ./\nRUN pip install \\\n"
        "    --no-cache-dir \\\n    .\nCOPY pkg/ pkg/\n")
    git(facade, "add", "-A")
    git(facade, "commit", "-q", "-m", "images")
    out = cli("migrate-proto", cwd=facade).out
    images = out.split("2. images", 1)[1].split("3. references", 1)[0]
    assert "Dockerfile:" not in images.replace("python.Dockerfile", "")  # the Go image: nothing
    assert "python.Dockerfile: TO DO" in images
    # after the whole continued RUN (lines 4-6), never inside it
    assert "after line 7 (`COPY pkg/ pkg/`)" in images
    assert "COPY --from" not in images


def test_crlf_bom_and_symlinks_survive(facade: Path) -> None:
    client = facade / "pkg/client.py"
    client.write_bytes(b"\xef\xbb\xbf" + CLIENT.replace("\n", "\r\n").encode())
    os.symlink("client.py", facade / "pkg/alias.py")
    git(facade, "add", "-A")
    git(facade, "commit", "-q", "-m", "crlf, bom, link")
    r = cli("migrate-proto", "--apply", cwd=facade)
    assert r.rc == 0, r.text
    data = client.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf") and b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")
    assert b"pkg.grpc" in data  # `import pkg.grpc as rpc`: the facade stays
    assert (facade / "pkg/alias.py").is_symlink()
    blocks = (facade / ".gitignore").read_text()
    assert "(added by `cleanroom migrate-proto`)" in blocks


# ------------------------------------------------------------------ interrupted --apply

INTERRUPT = """
import os, signal, sys
# Ctrl-C as a user's terminal delivers it: a shell that started the suite in the background
# (CI under nohup, `cmd &`) hands SIGINT down ignored, and Python keeps it so
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.path.insert(0, {src!r})
import cleanroom.proto.migrate as mig
from cleanroom.cli.app import main
where, after = sys.argv[1], int(sys.argv[2])
calls = [0]
def hit():
    calls[0] += 1
    if calls[0] == after:
        os.kill(os.getpid(), signal.SIGKILL if where.endswith("kill") else signal.SIGINT)
# the signal is sent after the n-th file is staged (written beside its target) or swapped in
real = mig._stage if where.startswith("write") else mig._swap
def step(*args):
    real(*args)
    hit()
if where.startswith("write"):
    mig._stage = step
else:
    mig._swap = step
sys.exit(main(["migrate-proto", "--apply"]))
"""


def _interrupt(repo: Path, where: str, after: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", INTERRUPT.format(src=str(ENGINE_SRC)), where, str(after)],
                          cwd=repo, capture_output=True, text=True, check=False, timeout=120)


def _state(repo: Path) -> tuple[str, str, dict[str, bytes]]:
    return git(repo, "status", "--porcelain", "--untracked-files=all"), git(repo, "ls-files", "-s"), snapshot(repo)


@pytest.mark.parametrize("after", [1, 3])
def test_sigint_while_writing_leaves_the_tree_as_it_was(facade: Path, after: int) -> None:
    before = _state(facade)
    p = _interrupt(facade, "write-int", after)
    assert p.returncode == 130, p.stdout + p.stderr
    assert "Traceback" not in p.stderr
    assert _state(facade) == before


@pytest.mark.parametrize("after", [1, 3])
def test_sigkill_while_writing_is_rolled_back_by_the_next_run(facade: Path, after: int) -> None:
    before = _state(facade)
    p = _interrupt(facade, "write-kill", after)
    assert p.returncode == -signal.SIGKILL
    assert _state(facade) == before  # the new files wait in the git folder, not in the tree
    dry = cli("migrate-proto", cwd=facade)
    assert "before it changed anything: the next --apply removes its temporary files" in dry.out
    r = cli("migrate-proto", "--apply", cwd=facade)
    assert r.rc == 0, r.text
    assert "had not changed anything yet" in r.out
    assert not [f for f in git(facade, "ls-files").split() if "_pb2" in f]


def test_sigint_while_swapping_completes_the_migration(facade: Path) -> None:
    p = _interrupt(facade, "swap-int", 1)
    assert "the migration had already completed" in p.stdout, p.stdout + p.stderr
    assert not [f for f in git(facade, "ls-files").split() if "_pb2" in f]
    again = cli("migrate-proto", cwd=facade)
    assert "nothing to change" in again.out, again.text


@pytest.mark.parametrize("after", [1, 2])
def test_sigkill_while_swapping_is_finished_by_the_next_run(facade: Path, after: int) -> None:
    p = _interrupt(facade, "swap-kill", after)
    assert p.returncode == -signal.SIGKILL
    r = cli("migrate-proto", "--apply", cwd=facade)
    assert r.rc == 0, r.text
    assert "an interrupted --apply was finished: the repo is fully migrated" in r.out
    assert not [f for f in git(facade, "ls-files").split() if "_pb2" in f]
    assert "from pkg_proto" in (facade / "pkg/grpc/__init__.py").read_text()
    assert "nothing to change" in cli("migrate-proto", cwd=facade).out


def test_read_only_target_fails_cleanly(facade: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("running as root: file permissions are not enforced (the fault matrix covers a "
                    "read-only mount)")
    client = facade / "pkg/client.py"
    client.chmod(0o444)
    client.parent.chmod(0o555)
    try:
        before = _state(facade)
        r = cli("migrate-proto", "--apply", cwd=facade)
        assert r.rc == 1 and "nothing was changed" in r.err, r.text
        assert _state(facade) == before
    finally:
        client.parent.chmod(0o755)

