"""migrate-proto on synthetic pre-migration repos: generated protobuf code checked in next to the
.proto files (made here with grpcio-tools), imported from the application in the four forms."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, cli, git, snapshot

COMMON = """\
syntax = "proto3";
package demo;
message Money { int64 units = 1; string currency = 2; }
"""

LEDGER = """\
syntax = "proto3";
package demo;
import "common.proto";
message Entry { string id = 1; Money amount = 2; }
service Ledger { rpc Post (Entry) returns (Entry); }
"""

CONFIG = """\
[proto]
sources = "src/pkg/proto"
package = "pkg_proto"
legacy_module = "pkg.proto"
out = "/opt"
host_out = ".cleanroom/proto"
"""

GITIGNORE = """\
# editor droppings
*.swp
# host scratch
.cleanroom/
__pycache__/
"""

DOCKERFILE = """\
FROM python:3.11-slim
WORKDIR /app
COPY . /app
RUN pip install -e tools/cleanroom
"""

SERVICE = '''\
"""The application: uses the generated protobuf code in each of the four import forms."""

import os  # stdlib first

# form 1: a generated module from the legacy package
from pkg.proto import common_pb2  # shared messages

# form 2: the same, under another name
from pkg.proto import ledger_pb2 as ledger  # the ledger's messages

# form 3: a generated module imported by its dotted name, aliased
import pkg.proto.ledger_pb2_grpc as ledger_grpc  # gRPC stubs

# form 4: names from a generated module
from pkg.proto.common_pb2 import (  # keep this comment
    Money,  # amount and currency
)


def entry(units: int) -> "ledger.Entry":
    """An entry for ``units`` euros."""
    money = Money(units=units, currency="EUR")
    assert isinstance(money, common_pb2.Money)
    return ledger.Entry(id=os.path.basename("/e/1"), amount=money)


STUB = ledger_grpc.LedgerStub
'''

EXTRA = '''\
"""More import shapes: mixed names, relative, unaliased dotted."""
from pkg.proto import common_pb2, helpers  # mixed: one generated, one not
from .proto import ledger_pb2  # relative, from inside pkg
import pkg.proto.common_pb2


def both() -> tuple[object, object]:
    return (pkg.proto.common_pb2.Money(units=1), ledger_pb2.Entry(id=helpers.NAME))
'''

LEGACY_INIT = '''\
"""The legacy module: generated code was checked in here."""
from pkg.proto import common_pb2  # re-exported for old callers
'''

HELPERS = 'NAME = "helper"\n'


def _gen(repo: Path) -> None:
    d = "src/pkg/proto"
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{d}", f"--python_out={d}", f"--pyi_out={d}",
         f"--grpc_python_out={d}", f"{d}/common.proto", f"{d}/ledger.proto"],
        cwd=repo, check=True, capture_output=True,
    )
    (repo / d / "common_pb2_grpc.py").unlink(missing_ok=True)  # no service: not wanted


@pytest.fixture
def legacy(tmp_path: Path) -> Path:
    """A pre-migration repo: *_pb2.py/.pyi and *_pb2_grpc.py tracked next to the .proto files."""
    r = tmp_path / "legacy"
    (r / "src/pkg/proto").mkdir(parents=True)
    (r / "src/app").mkdir(parents=True)
    for name in ("pyproject.binary.toml", "pyproject.source.toml", "poetry.toml"):
        shutil.copy2(ROOT / name, r / name)
    (r / "cleanroom.toml").write_text(CONFIG)
    (r / ".gitignore").write_text(GITIGNORE)
    (r / "Dockerfile").write_text(DOCKERFILE)
    (r / "src/pkg/__init__.py").write_text("")
    (r / "src/pkg/proto/__init__.py").write_text(LEGACY_INIT)
    (r / "src/pkg/proto/helpers.py").write_text(HELPERS)
    (r / "src/pkg/proto/common.proto").write_text(COMMON)
    (r / "src/pkg/proto/ledger.proto").write_text(LEDGER)
    (r / "src/pkg/extra.py").write_text(EXTRA)
    (r / "src/app/__init__.py").write_text("")
    (r / "src/app/service.py").write_text(SERVICE)
    _gen(r)
    git(r, "init", "-q", "-b", "main")
    git(r, "add", "-A")
    git(r, "commit", "-q", "-m", "legacy layout: generated code checked in")
    return r


def tracked(repo: Path) -> list[str]:
    return git(repo, "ls-files").split()


def state(repo: Path) -> tuple[str, str, str, dict[str, bytes]]:
    return (git(repo, "status", "--porcelain", "--untracked-files=all"), git(repo, "diff", "HEAD"),
            git(repo, "ls-files", "-s"), snapshot(repo))


def proto_findings(repo: Path) -> list[dict[str, str]]:
    r = cli("verify", "--json", cwd=repo)
    assert r.rc in (0, 1), r.text
    return [f for f in json.loads(r.out)["findings"]
            if f["rule"] in ("tracked-artifact", "gitignore-gap", "dockerignore-gap")
            and "_pb2" in f["path"] + f["message"]]


def test_legacy_repo_has_protobuf_findings(legacy: Path) -> None:
    assert {"src/pkg/proto/common_pb2.py", "src/pkg/proto/common_pb2.pyi", "src/pkg/proto/ledger_pb2.py",
            "src/pkg/proto/ledger_pb2.pyi", "src/pkg/proto/ledger_pb2_grpc.py"} <= set(tracked(legacy))
    rules = {f["rule"] for f in proto_findings(legacy)}
    assert rules == {"tracked-artifact", "gitignore-gap", "dockerignore-gap"}


def test_dry_run_prints_the_plan_and_changes_nothing(legacy: Path) -> None:
    before = state(legacy)
    r = cli("migrate-proto", cwd=legacy)
    assert r.rc == 0, r.text
    assert state(legacy) == before
    out = r.out
    for step in ("1. ignore rules", "2. images that run Python", "3. references", "4. untrack", "5. proof"):
        assert step in out
    assert "src/pkg/proto/common_pb2.py" in out
    assert "untrack src/pkg/proto/ledger_pb2_grpc.py" in out
    # unified diffs of the rewrites and of the ignore file
    assert "--- a/src/app/service.py" in out and "+++ b/src/app/service.py" in out
    assert "-from pkg.proto import common_pb2  # shared messages" in out
    assert "+from pkg_proto import common_pb2  # shared messages" in out
    assert "+*_pb2_grpc.py" in out
    # the Dockerfile does not generate the code: the exact line to add, and where
    assert 'RUN cleanroom proto --out /opt --pth && python -c "import pkg_proto"' in out
    assert "after line 4 (`RUN pip install -e tools/cleanroom`)" in out
    # files inside the legacy module (a facade) are rewritten too, and stay
    assert "src/pkg/proto/__init__.py: would rewrite 1 import(s) (a facade: it stays" in out
    assert "+from pkg_proto import common_pb2  # re-exported for old callers" in out
    assert "dry run" in out


def test_apply_migrates(legacy: Path) -> None:
    r = cli("migrate-proto", "--apply", cwd=legacy)
    assert r.rc == 0, r.text
    files = tracked(legacy)
    assert not [f for f in files if "_pb2" in f], files
    # kept on disk, and ignored by git (all three kinds)
    gen = ["src/pkg/proto/common_pb2.py", "src/pkg/proto/common_pb2.pyi", "src/pkg/proto/ledger_pb2.py",
           "src/pkg/proto/ledger_pb2.pyi", "src/pkg/proto/ledger_pb2_grpc.py"]
    assert all((legacy / g).is_file() for g in gen)
    ignored = git(legacy, "check-ignore", *gen).split()
    assert sorted(ignored) == sorted(gen)
    assert "_pb2" not in "".join(ln for ln in git(legacy, "status", "--porcelain").splitlines() if ln[:2] == "??")
    # .gitignore: the managed block, with comments; the user's lines kept
    gi = (legacy / ".gitignore").read_text()
    assert gi.startswith(GITIGNORE)
    assert "cleanroom managed block" in gi and "regenerate: `cleanroom proto`" in gi
    assert (legacy / ".dockerignore").is_file() and "**/*_pb2.py" in (legacy / ".dockerignore").read_text()
    # imports point at the new package, comments kept, files parse
    svc = (legacy / "src/app/service.py").read_text()
    ast.parse(svc)
    assert "from pkg_proto import common_pb2  # shared messages" in svc
    assert "from pkg_proto import ledger_pb2 as ledger  # the ledger's messages" in svc
    assert "import pkg_proto.ledger_pb2_grpc as ledger_grpc  # gRPC stubs" in svc
    assert "from pkg_proto.common_pb2 import (  # keep this comment\n    Money,  # amount and currency\n)" in svc
    assert "# form 1: a generated module from the legacy package" in svc
    assert "pkg.proto" not in svc
    assert svc == SERVICE.replace("from pkg.proto import", "from pkg_proto import").replace(
        "import pkg.proto.", "import pkg_proto.").replace("from pkg.proto.", "from pkg_proto.")
    extra = (legacy / "src/pkg/extra.py").read_text()
    ast.parse(extra)
    assert "from pkg_proto import common_pb2\nfrom pkg.proto import helpers  # mixed" not in extra
    assert "from pkg_proto import common_pb2  # mixed: one generated, one not\nfrom pkg.proto import helpers\n" in extra
    assert "from pkg_proto import ledger_pb2  # relative, from inside pkg" in extra
    assert "import pkg_proto.common_pb2\n" in extra
    assert "pkg_proto.common_pb2.Money(units=1)" in extra
    # the legacy module's facade stays, importing from the package
    assert (legacy / "src/pkg/proto/__init__.py").read_text() == LEGACY_INIT.replace(
        "from pkg.proto import common_pb2", "from pkg_proto import common_pb2")
    # verify: no protobuf tracked-artifact, gitignore-gap or dockerignore-gap
    assert proto_findings(legacy) == []


def test_rewritten_code_runs_against_the_generated_package(legacy: Path, tmp_path: Path) -> None:
    assert cli("migrate-proto", "--apply", cwd=legacy).rc == 0
    out = tmp_path / "opt"
    r = cli("proto", "--out", str(out), cwd=legacy)
    assert r.rc == 0, r.text
    # the generated files are removed from the legacy module: only pkg_proto can serve the imports
    for f in (legacy / "src/pkg/proto").glob("*_pb2*"):
        f.unlink()
    (legacy / "src/pkg/proto/__init__.py").write_text("")
    code = ("import app.service as s, pkg.extra as x; e = s.entry(3); "
            "assert e.amount.units == 3 and type(e).__module__ == 'pkg_proto.ledger_pb2'; x.both(); "
            "print(s.STUB.__module__)")
    p = subprocess.run([sys.executable, "-c", code], cwd=legacy, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": f"{out}{os.pathsep}{legacy / 'src'}"}, check=False)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "pkg_proto.ledger_pb2_grpc"


def test_second_apply_changes_nothing(legacy: Path) -> None:
    assert cli("migrate-proto", "--apply", cwd=legacy).rc == 0
    before = state(legacy)
    r = cli("migrate-proto", "--apply", cwd=legacy)
    assert r.rc == 0, r.text
    assert state(legacy) == before
    assert "nothing to change" in r.out
    # the dry run agrees
    r = cli("migrate-proto", cwd=legacy)
    assert r.rc == 0 and "nothing to change" in r.out


def test_dirty_tree_is_refused(legacy: Path) -> None:
    svc = legacy / "src/app/service.py"
    svc.write_text(svc.read_text() + "# work in progress\n")
    before = state(legacy)
    r = cli("migrate-proto", "--apply", cwd=legacy)
    assert r.rc == 2, r.text
    assert "uncommitted changes" in r.err and "src/app/service.py" in r.err and "--allow-dirty" in r.err
    assert state(legacy) == before
    # the dry run still shows the plan and warns
    r = cli("migrate-proto", cwd=legacy)
    assert r.rc == 0 and "--apply will refuse" in r.out
    # --allow-dirty goes ahead, keeping the uncommitted edit
    r = cli("migrate-proto", "--apply", "--allow-dirty", cwd=legacy)
    assert r.rc == 0, r.text
    assert svc.read_text().endswith("# work in progress\n")
    assert "from pkg_proto import common_pb2" in svc.read_text()


def test_dirty_generated_file_and_untracked_gitignore_are_refused(legacy: Path) -> None:
    (legacy / "src/pkg/proto/common_pb2.pyi").write_text("# edited by hand\n")
    r = cli("migrate-proto", "--apply", cwd=legacy)
    assert r.rc == 2 and "src/pkg/proto/common_pb2.pyi" in r.err
    git(legacy, "checkout", "--", "src/pkg/proto/common_pb2.pyi")
    git(legacy, "rm", "-q", "--cached", ".gitignore")
    git(legacy, "commit", "-q", "-m", "untrack .gitignore")
    r = cli("migrate-proto", "--apply", cwd=legacy)
    assert r.rc == 2 and ".gitignore" in r.err


def test_dirty_unrelated_file_is_fine(legacy: Path) -> None:
    (legacy / "notes.txt").write_text("scratch\n")
    (legacy / "Dockerfile").write_text(DOCKERFILE + "# editing\n")
    r = cli("migrate-proto", "--apply", cwd=legacy)
    assert r.rc == 0, r.text


def test_dockerfile_with_the_proto_step_is_ok(legacy: Path) -> None:
    (legacy / "Dockerfile").write_text(
        "FROM python:3.11-slim\nARG OUT=/opt\nWORKDIR /app\nCOPY . /app\n"
        "RUN pip install -e tools/cleanroom \\\n    && python -m cleanroom proto --out ${OUT} --pth\n")
    git(legacy, "commit", "-q", "-am", "dockerfile")
    r = cli("migrate-proto", cwd=legacy)
    assert r.rc == 0, r.text
    assert "Dockerfile: OK: line 5: `cleanroom proto --out ${OUT}`" in r.out
    assert "RUN cleanroom proto --out /opt" not in r.out


def test_dockerfile_into_the_wrong_folder(legacy: Path) -> None:
    (legacy / "Dockerfile").write_text(DOCKERFILE + "RUN cleanroom proto --out /srv/gen\n")
    git(legacy, "commit", "-q", "-am", "dockerfile")
    r = cli("migrate-proto", cwd=legacy)
    assert "line 5 runs `cleanroom proto` into /srv/gen, not into [proto] out (/opt)" in r.out


def test_dockerfile_without_copy_of_sources(legacy: Path) -> None:
    (legacy / "Dockerfile").write_text("FROM python:3.11-slim\nCOPY requirements.txt /r.txt\n")
    git(legacy, "commit", "-q", "-am", "dockerfile")
    r = cli("migrate-proto", cwd=legacy)
    assert "COPY src/pkg/proto src/pkg/proto" in r.out
    assert "after line 2" in r.out


def test_legacy_module_found_when_not_configured(legacy: Path) -> None:
    (legacy / "cleanroom.toml").write_text(CONFIG.replace('legacy_module = "pkg.proto"\n', ""))
    git(legacy, "commit", "-q", "-am", "config")
    before = state(legacy)
    r = cli("migrate-proto", cwd=legacy)
    assert r.rc == 0, r.text
    assert "found (not configured): [proto] legacy_module = 'pkg.proto'" in r.out
    assert "would untrack src/pkg/proto/common_pb2.py" in r.out
    assert state(legacy) == before


def test_bad_legacy_module_is_bad_input(legacy: Path) -> None:
    (legacy / "cleanroom.toml").write_text(CONFIG.replace('"pkg.proto"', '"pkg/proto"'))
    r = cli("migrate-proto", cwd=legacy)
    assert r.rc == 2 and "legacy_module" in r.err


def test_already_migrated_workspace_has_nothing_to_do() -> None:
    r = cli("migrate-proto", cwd=ROOT)
    assert r.rc == 0, r.text
    assert "nothing to change: git tracks no generated protobuf code" in r.out


# ------------------------------------------------------------------- the rewriter, in-process


def _rewrite(text: str, known: frozenset[str] = frozenset({"common_pb2", "ledger_pb2", "ledger_pb2_grpc"}),
             module: str | None = "app.service") -> str:
    sys.path.insert(0, str(ROOT / "tools/cleanroom/src"))
    from cleanroom.proto.migrate import ModuleMap, rewrite_source

    return rewrite_source(text, ModuleMap("pkg.proto", "pkg_proto", known), module).new


@pytest.mark.parametrize(("before", "after"), [
    ("from pkg.proto import common_pb2\n", "from pkg_proto import common_pb2\n"),
    ("from pkg.proto import common_pb2 as c  # x\n", "from pkg_proto import common_pb2 as c  # x\n"),
    ("import pkg.proto.common_pb2 as c\n", "import pkg_proto.common_pb2 as c\n"),
    ("from pkg.proto.common_pb2 import Money, Other as O\n", "from pkg_proto.common_pb2 import Money, Other as O\n"),
    ("import os, pkg.proto.common_pb2 as c; x = 1\n", "import os, pkg_proto.common_pb2 as c; x = 1\n"),
    ("from pkg.proto import helpers\n", "from pkg.proto import helpers\n"),
    ("from pkg.protocol import x_pb2\n", "from pkg.protocol import x_pb2\n"),
    ("from other.proto import common_pb2\n", "from other.proto import common_pb2\n"),
    ("if T:\n    from pkg.proto import (\n        common_pb2,  # a\n        ledger_pb2,\n    )\n",
     "if T:\n    from pkg_proto import (\n        common_pb2,  # a\n        ledger_pb2,\n    )\n"),
    ("from pkg.proto import helpers, ledger_pb2\n",
     "from pkg_proto import ledger_pb2\nfrom pkg.proto import helpers\n"),
    ("from ..proto import common_pb2\n", "from pkg_proto import common_pb2\n"),
    ("from pkg.proto import (  # head\n    common_pb2,  # one\n    helpers,  # two\n    ledger_pb2,\n)\n",
     ("from pkg_proto import (  # head\n    common_pb2,  # one\n    ledger_pb2,\n)\n"
     "from pkg.proto import (  # head\n    helpers,  # two\n)\n")),
    ("from pkg.proto import (helpers, common_pb2)\n",
     "from pkg_proto import (common_pb2)\nfrom pkg.proto import (helpers)\n"),
    ("from pkg.proto import *  # everything\n", "from pkg.proto import *  # everything\n"),
])
def test_rewrite_forms(before: str, after: str) -> None:
    module = "pkg.sub.mod" if before.startswith("from ..") else "app.service"
    assert _rewrite(before, module=module) == after


def test_rewrite_maps_by_name_when_sources_are_nested() -> None:
    assert _rewrite("from pkg.proto import common_pb2\n", known=frozenset({"base.common_pb2"})) == \
        "from pkg_proto.base import common_pb2\n"
