"""`cleanroom proto`: descriptor-pool identity.

protobuf registers each generated module in one process-wide descriptor pool under the file name
protoc compiled it as. Two generated packages that each hold a ``common.proto`` must import into
one interpreter: their pool names are qualified by the Python package
(``alpha_proto/common.proto``), also for sources that import each other by bare name.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from cleanroom.proto import generate as proto
from cleanroom.core.workspace import Workspace
from helpers import ENGINE_SRC, cli, pause_env, set_config

ALPHA = {
    "common.proto": 'syntax = "proto3";\npackage alpha.common;\n'
    "message Money { int64 cents = 1; string currency = 2; }\n"
    "enum Side { SIDE_UNSPECIFIED = 0; SIDE_BUY = 1; SIDE_SELL = 2; }\n",
    "orders.proto": '// Orders, by bare-name import of common.proto.\nsyntax = "proto3";\n'
    'package alpha.orders;\nimport "common.proto";\nimport "google/protobuf/timestamp.proto";\n'
    "message Order {\n  string id = 1;\n  alpha.common.Money total = 2;\n"
    "  alpha.common.Side side = 3;\n  google.protobuf.Timestamp at = 4;\n}\n"
    "service Orders { rpc Place(Order) returns (alpha.common.Money); }\n",
    "sub/book.proto": 'syntax = "proto3";\npackage alpha.sub;\nimport public "orders.proto";\n'
    'import "common.proto";\nmessage Book { repeated alpha.orders.Order orders = 1; '
    "alpha.common.Money limit = 2; }\n",
}

BETA = {
    "common.proto": 'syntax = "proto3";\npackage beta.common;\n'
    "message Point { double x = 1; double y = 2; }\n",
    "shapes.proto": 'syntax = "proto3";\npackage beta.shapes;\nimport "common.proto";\n'
    "message Path { repeated beta.common.Point points = 1; beta.common.Point origin = 2; }\n",
}

# Imports both packages (argv: ALPHA_OUT BETA_OUT) into one interpreter, uses their messages and
# the gRPC module, and reports what it saw.
USE_BOTH = r"""
import json, pickle, sys
sys.path[:0] = sys.argv[1:3]
from google.protobuf import descriptor_pool
from alpha_proto import common_pb2 as a_common, orders_pb2, orders_pb2_grpc
from alpha_proto.sub import book_pb2
from beta_proto import common_pb2 as b_common, shapes_pb2

order = orders_pb2.Order(id="o-1", total=a_common.Money(cents=1250, currency="EUR"),
                         side=a_common.SIDE_SELL)
order.at.seconds = 1700000000
back = orders_pb2.Order.FromString(order.SerializeToString())
assert back == order and back.total.cents == 1250 and back.total.currency == "EUR"
assert type(back.total) is a_common.Money and back.side == a_common.SIDE_SELL
assert back.at.seconds == 1700000000
assert pickle.loads(pickle.dumps(order)) == order
book = book_pb2.Book(orders=[order], limit=a_common.Money(cents=5))
assert book_pb2.Book.FromString(book.SerializeToString()) == book
assert book_pb2.Order is orders_pb2.Order  # import public re-exports the same class

path = shapes_pb2.Path(points=[b_common.Point(x=1.5, y=-2)], origin=b_common.Point(x=3))
back_path = shapes_pb2.Path.FromString(path.SerializeToString())
assert back_path == path and back_path.points[0].y == -2 and back_path.origin.x == 3
assert type(back_path.origin) is b_common.Point

pool = descriptor_pool.Default()
names = {
    "alpha_common": a_common.DESCRIPTOR.name,
    "beta_common": b_common.DESCRIPTOR.name,
    "order_file": orders_pb2.Order.DESCRIPTOR.file.name,
    "money_file": orders_pb2.Order.DESCRIPTOR.fields_by_name["total"].message_type.file.name,
    "point_file": shapes_pb2.Path.DESCRIPTOR.fields_by_name["origin"].message_type.file.name,
    "book_file": book_pb2.Book.DESCRIPTOR.file.name,
    "order_deps": [d.name for d in orders_pb2.DESCRIPTOR.dependencies],
    "in_pool": [pool.FindFileByName(n).name for n in (
        "alpha_proto/common.proto", "beta_proto/common.proto", "alpha_proto/sub/book.proto")],
    "full_names": [a_common.Money.DESCRIPTOR.full_name, b_common.Point.DESCRIPTOR.full_name],
    "modules": [a_common.Money.__module__, b_common.Point.__module__, book_pb2.Book.__module__],
    "grpc": [n for n in ("OrdersStub", "OrdersServicer", "add_OrdersServicer_to_server")
             if hasattr(orders_pb2_grpc, n)],
    "stray": sorted(m for m in sys.modules if m.split(".")[0].endswith(("_pb2", "_pb2_grpc"))),
}

# The service end to end, in process (skipped where no loopback socket can be opened).
import grpc
from concurrent import futures

class Orders(orders_pb2_grpc.OrdersServicer):
    def Place(self, request, context):
        return a_common.Money(cents=request.total.cents * 2, currency=request.total.currency)

server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
orders_pb2_grpc.add_OrdersServicer_to_server(Orders(), server)
try:
    port = server.add_insecure_port("127.0.0.1:0")
except RuntimeError:
    port = 0
if port:
    server.start()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = orders_pb2_grpc.OrdersStub(channel).Place(order, timeout=30)
    server.stop(None)
    names["rpc"] = [reply.cents, reply.currency, type(reply).__module__]
print(json.dumps(names))
"""


def write_tree(src: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = src / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def make_repo(root: Path, package: str, files: dict[str, str]) -> Path:
    """A repo holding ``files`` under proto/ and a cleanroom.toml naming ``package``."""
    root.mkdir(parents=True, exist_ok=True)
    write_tree(root / "proto", files)
    set_config(root, "proto", "sources", "proto")
    set_config(root, "proto", "package", package)
    return root


@pytest.fixture
def alpha(repo: Path) -> Path:
    """The seed repo (this workspace's cleanroom.toml) with another package and schema."""
    return make_repo(repo, "alpha_proto", ALPHA)


@pytest.fixture
def beta(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "beta", "beta_proto", BETA)


def generate(repo: Path, out: Path) -> None:
    r = cli("proto", "--out", str(out), cwd=repo)
    assert r.rc == 0 and "generated" in r.out, r.text


def test_two_packages_with_a_common_proto_import_into_one_interpreter(
        alpha: Path, beta: Path, tmp_path: Path) -> None:
    a_out, b_out = tmp_path / "a_out", tmp_path / "b_out"
    generate(alpha, a_out)
    generate(beta, b_out)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    p = subprocess.run([sys.executable, "-c", USE_BOTH, str(a_out), str(b_out)], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=120, check=False)
    assert p.returncode == 0, p.stderr
    seen = json.loads(p.stdout)
    assert seen["alpha_common"] == "alpha_proto/common.proto"
    assert seen["beta_common"] == "beta_proto/common.proto"
    assert seen["order_file"] == "alpha_proto/orders.proto"
    assert seen["money_file"] == "alpha_proto/common.proto"
    assert seen["point_file"] == "beta_proto/common.proto"
    assert seen["book_file"] == "alpha_proto/sub/book.proto"
    assert seen["order_deps"] == ["alpha_proto/common.proto", "google/protobuf/timestamp.proto"]
    assert seen["in_pool"] == ["alpha_proto/common.proto", "beta_proto/common.proto",
                               "alpha_proto/sub/book.proto"]
    # the proto packages (and so gRPC method paths and Any type URLs) are the user's, unchanged
    assert seen["full_names"] == ["alpha.common.Money", "beta.common.Point"]
    assert seen["modules"] == ["alpha_proto.common_pb2", "beta_proto.common_pb2",
                               "alpha_proto.sub.book_pb2"]
    assert seen["grpc"] == ["OrdersStub", "OrdersServicer", "add_OrdersServicer_to_server"]
    assert seen["stray"] == []
    if "rpc" in seen:
        assert seen["rpc"] == [2500, "EUR", "alpha_proto.common_pb2"]


def test_generated_modules_are_protocs_own_package_imports(alpha: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    generate(alpha, out)
    pkg = out / "alpha_proto"
    py = (pkg / "orders_pb2.py").read_text()
    assert "from alpha_proto import common_pb2 as alpha__proto_dot_common__pb2" in py
    assert "from google.protobuf import timestamp_pb2" in py
    assert "\nimport common_pb2" not in py
    assert "BuildTopDescriptorsAndMessages(DESCRIPTOR, 'alpha_proto.orders_pb2'" in py
    pyi = (pkg / "orders_pb2.pyi").read_text()
    assert "from alpha_proto import common_pb2 as _common_pb2" in pyi
    grpc_py = (pkg / "orders_pb2_grpc.py").read_text()
    assert "from alpha_proto import orders_pb2 as alpha__proto_dot_orders__pb2" in grpc_py
    assert "from alpha_proto import common_pb2 as alpha__proto_dot_common__pb2" in grpc_py
    assert "'/alpha.orders.Orders/Place'" in grpc_py
    book = (pkg / "sub" / "book_pb2.py").read_text()
    assert "from alpha_proto.orders_pb2 import *" in book  # import public
    assert not (pkg / "common_pb2_grpc.py").exists()
    # the staging never reaches the output, and the user's sources are untouched
    assert not list(pkg.rglob("*.proto")) and not (pkg / ".protoc").exists()
    assert (alpha / "proto" / "orders.proto").read_text() == ALPHA["orders.proto"]


def test_syntax_error_names_the_users_file(alpha: Path, tmp_path: Path) -> None:
    # line 3 (a bare-name import, rewritten in the staged copy) comes before the error
    write_tree(alpha / "proto", {"bad.proto": 'syntax = "proto3";\npackage alpha.bad;\n'
                                 'import "common.proto";\nmessage Bad {\n'
                                 "  alpha.common.Money m = 1\n}\n"})
    out = tmp_path / "out"
    r = cli("proto", "--out", str(out), cwd=alpha)
    assert r.rc == 2, r.text
    assert "proto/bad.proto:6:1: Expected \";\"." in r.err, r.err  # at the next token
    assert "nothing was replaced" in r.err
    assert ".protoc" not in r.err and "alpha_proto/" not in r.err, r.err
    assert not (out / "alpha_proto").exists()
    # an error on a line whose imports were qualified in the staged copy: the user's column
    (alpha / "proto" / "bad.proto").write_text(
        'syntax = "proto3";\npackage alpha.bad;\n'
        'import "common.proto"; import\t"orders.proto"; message Bad { alpha.common.Money m = 1 }\n')
    r = cli("proto", "--out", str(out), cwd=alpha)
    assert r.rc == 2, r.text
    line = (alpha / "proto" / "bad.proto").read_text().splitlines()[2]
    col = len(line[: line.index("}")].expandtabs(8)) + 1  # protoc: tab stops of 8, 1-based
    assert f'proto/bad.proto:3:{col}: Expected ";".' in r.err, r.err


def test_errors_in_imported_files_name_the_import_as_written(alpha: Path, tmp_path: Path) -> None:
    # protoc stops at the first input that fails: a_user.proto (sorted first) reaches the broken
    # z_types.proto through its (bare-name, so staged as alpha_proto/z_types.proto) import
    write_tree(alpha / "proto", {
        "a_user.proto": 'syntax = "proto3";\npackage alpha.user;\nimport "z_types.proto";\n'
                        "message U { alpha.z.Z z = 1; }\n",
        "z_types.proto": 'syntax = "proto3";\npackage alpha.z;\nmessage Z { int32 n = 1 }\n',
    })
    out = tmp_path / "out"
    r = cli("proto", "--out", str(out), cwd=alpha)
    assert r.rc == 2, r.text
    assert 'proto/z_types.proto:3:25: Expected ";".' in r.err, r.err
    assert 'proto/a_user.proto:3:1: Import "z_types.proto" was not found or had errors.' in r.err
    assert ".protoc" not in r.err and "alpha_proto/" not in r.err, r.err
    # an import of a file that is not ours is left as written, and so reported
    (alpha / "proto" / "z_types.proto").unlink()
    (alpha / "proto" / "a_user.proto").write_text(
        'syntax = "proto3";\npackage alpha.user;\n\nimport "nowhere.proto";\n')
    r = cli("proto", "--out", str(out), cwd=alpha)
    assert r.rc == 2, r.text
    assert "nowhere.proto: File not found." in r.err, r.err
    assert 'proto/a_user.proto:4:1: Import "nowhere.proto" was not found' in r.err, r.err
    assert ".protoc" not in r.err and "alpha_proto/" not in r.err, r.err
    assert not (out / "alpha_proto").exists()


def test_output_of_the_flat_scheme_is_stale(alpha: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    generate(alpha, out)
    mpath = out / "alpha_proto" / proto.MANIFEST
    m = json.loads(mpath.read_text())
    assert m["options"]["rewrite"] == proto.REWRITE_VERSION >= 2
    m["options"]["rewrite"] = 1  # as written before the pool names were qualified
    mpath.write_text(json.dumps(m))
    r = cli("proto", "--check", "--out", str(out), cwd=alpha)
    assert r.rc == 1 and f"options: rewrite 1 -> {proto.REWRITE_VERSION}" in r.out, r.text
    r = cli("proto", "--out", str(out), cwd=alpha)
    assert r.rc == 0 and "generated" in r.out, r.text
    assert cli("proto", "--check", "--out", str(out), cwd=alpha).rc == 0
    r = cli("proto", "--out", str(out), cwd=alpha)
    assert r.rc == 0 and "up to date" in r.out, r.text


def test_two_packages_share_one_output_folder(alpha: Path, beta: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    generate(alpha, out)
    generate(beta, out)
    code = ("import sys; sys.path.insert(0, sys.argv[1]);"
            "import alpha_proto.common_pb2 as a, beta_proto.common_pb2 as b;"
            "print(a.DESCRIPTOR.name, b.DESCRIPTOR.name)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    p = subprocess.run([sys.executable, "-c", code, str(out)], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["alpha_proto/common.proto", "beta_proto/common.proto"]
    for repo in (alpha, beta):
        assert cli("proto", "--check", "--out", str(out), cwd=repo).rc == 0


# ----------------------------------------------------------------------------- the staged copy


def _staged(package: str) -> list[Path]:
    return [p for parent in proto._stage_parents() if Path(parent).is_dir()
            for p in Path(parent).glob(f"{proto.STAGE_PREFIX}{package}-*")]


@pytest.fixture
def probe(tmp_path: Path) -> tuple[Path, str]:
    """A repo whose package name no other run shares (its staging folders are recognizable)."""
    package = f"probe_{uuid.uuid4().hex[:10]}_proto"
    return make_repo(tmp_path / "probe", package, ALPHA), package


def test_the_staged_copy_is_removed(probe: tuple[Path, str], tmp_path: Path) -> None:
    repo, package = probe
    out = tmp_path / "out"
    generate(repo, out)
    assert _staged(package) == []
    assert sorted(p.name for p in out.iterdir()) == [f".{package}.lock", package]
    # a failed run removes it too
    (repo / "proto" / "orders.proto").write_text("syntax = \"proto3\";\nmessage {\n")
    r = cli("proto", "--out", str(out), cwd=repo)
    assert r.rc == 2 and "proto/orders.proto:2:" in r.err, r.text
    assert _staged(package) == []


def test_a_run_killed_during_protoc_leaves_no_staged_copy_behind(probe: tuple[Path, str],
                                                                  tmp_path: Path) -> None:
    if not any(os.access(p, os.W_OK) for p in proto._stage_parents()):
        pytest.skip("no tmpfs to stage in here (staged in the temporary tree: removed with it)")
    repo, package = probe
    out = tmp_path / "out"
    env = {**os.environ, **pause_env("staged")}
    p = subprocess.Popen([sys.executable, "-m", "cleanroom", "proto", "--out", str(out)], cwd=repo,
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stderr is not None
        line = p.stderr.readline()
        assert "paused at staged" in line, line + p.stderr.read()
        (staged,) = _staged(package)
        assert (staged / package / "orders.proto").read_text().count(f'"{package}/common.proto"') == 1
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
    r = cli("proto", "--out", str(out), cwd=repo)  # cleans up after it
    assert r.rc == 0 and "generated" in r.out, r.text
    assert _staged(package) == []


def test_without_a_tmpfs_it_stages_in_the_temporary_tree(alpha: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    ws = Workspace.load(alpha)
    for parents in ((), (str(tmp_path / "absent"),)):
        monkeypatch.setattr(proto, "STAGE_PARENTS", parents)
        out = tmp_path / f"out{len(parents)}"
        assert "generated" in proto.generate(ws, out, stream=io.StringIO())
        assert proto.check(ws, out) == []
        text = (out / "alpha_proto" / "orders_pb2.py").read_text()
        assert "from alpha_proto import common_pb2 as alpha__proto_dot_common__pb2" in text
        assert sorted(p.name for p in out.iterdir()) == [".alpha_proto.lock", "alpha_proto"]
