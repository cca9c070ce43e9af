"""Benchmark `cleanroom migrate-proto` (the dry run, its proof included) on a client library (issue 11).

A generated git repository shaped like a real gRPC client library (qdrant-client's layout): about
250 files; 8 .proto files with services; their 24 generated files checked in next to a facade
package that star-imports them (`pkg/grpc/__init__.py`), generated modules importing each other
relatively; 40 files that mention the package name, 20 of which import it (through the facade,
or a generated module directly), one with a `mock.patch("pkg.grpc.x_pb2.Msg")` string; the rest
unrelated sources. Whole-process wall time, median of N runs, of `python -m cleanroom --repo R
migrate-proto` with no cleanroom.toml (what a new user types first). Target: at most 3 s.

    python benchmarks/bench_migrate.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Row, engine_env, table, time_process  # noqa: E402

_GIT_ENV = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid",
            "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid"}


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def make_repo(repo: Path) -> int:
    """The client library; returns the number of tracked files."""
    protos = repo / "pkg" / "proto"
    names = [f"svc{i}" for i in range(8)]
    for i, n in enumerate(names):
        imp = f'import "{names[i - 1]}.proto";\n' if i else ""
        field = f"  bench.{names[i - 1]}.Item{i - 1} prev = 3;\n" if i else ""
        _write(protos / f"{n}.proto",
               f'syntax = "proto3";\npackage bench.{n};\n{imp}'
               f"message Item{i} {{\n  string id = 1;\n  int64 n = 2;\n{field}}}\n"
               f"message Req{i} {{ Item{i} item = 1; }}\n"
               f"service Svc{i} {{ rpc Get (Req{i}) returns (Item{i}); }}\n")
    out = repo / "pkg" / "grpc"
    out.mkdir(parents=True)
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{protos}", f"--python_out={out}",
                    f"--pyi_out={out}", f"--grpc_python_out={out}",
                    *(str(protos / f"{n}.proto") for n in names)], check=True, capture_output=True)
    for f in out.glob("*_pb2*.py*"):  # the sed step such libraries run: sibling imports relative
        text = f.read_text()
        for n in names:
            text = text.replace(f"\nimport {n}_pb2 as", f"\nfrom . import {n}_pb2 as")
        f.write_text(text)
    _write(out / "__init__.py", "".join(f"from .{n}_pb2 import *\nfrom .{n}_pb2_grpc import *\n" for n in names))
    _write(repo / "pkg" / "__init__.py", '"""A client library."""\n')
    _write(repo / "pyproject.toml", '[project]\nname = "pkg"\nversion = "1.0"\n')
    # 20 files that import it, 20 more that only mention the name
    for i in range(20):
        kind = i % 4
        body = {0: "import pkg.grpc as rpc\n\n\ndef f():\n    return rpc.Item0(id='x')\n",
                1: "from pkg.grpc import Item1, Req1\n\n\ndef f():\n    return Req1(item=Item1())\n",
                2: "from pkg.grpc import svc2_pb2\n\n\ndef f():\n    return svc2_pb2.Item2()\n",
                3: "import pkg.grpc.svc3_pb2\n\n\ndef f():\n    return pkg.grpc.svc3_pb2.Item3()\n"}[kind]
        _write(repo / "pkg" / "api" / f"use{i}.py", f'"""Uses the gRPC types."""\n{body}')
    _write(repo / "pkg" / "api" / "__init__.py", "")
    for i in range(20):
        _write(repo / "pkg" / "docs" / f"note{i}.py", f'"""Mentions pkg and grpc in prose: see pkg.grpc docs ({i})."""\nX = {i}\n')
    _write(repo / "pkg" / "docs" / "__init__.py", "")
    _write(repo / "tests" / "test_patch.py",
           "from unittest import mock\n\n\ndef test_patch():\n"
           "    with mock.patch('pkg.grpc.svc0_pb2.Item0') as m:\n        assert m\n")
    # unrelated sources up to ~250 files
    i = 0
    while len([p for p in repo.rglob("*") if p.is_file()]) < 250:
        _write(repo / "pkg" / "util" / f"mod{i}.py", f"def helper{i}(x):\n    return x * {i}\n")
        i += 1
    _write(repo / "pkg" / "util" / "__init__.py", "")
    env = {**os.environ, **_GIT_ENV}
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True, env=env)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True, env=env)
    subprocess.run(["git", "commit", "-q", "-m", "client library"], cwd=repo, check=True, env=env)
    return len(subprocess.run(["git", "ls-files"], cwd=repo, capture_output=True, text=True,
                              check=True).stdout.splitlines())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    runs = max(args.runs, 5)
    with tempfile.TemporaryDirectory(prefix="bench-migrate-") as tmp:
        repo = Path(tmp) / "repo"
        n = make_repo(repo)
        env = engine_env(pycache=Path(tmp) / "pycache")
        argv = [sys.executable, "-m", "cleanroom", "--repo", str(repo), "migrate-proto"]
        first = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if first.returncode != 0:
            sys.exit(f"migrate-proto failed:\n{first.stdout}{first.stderr}")
        proven = first.stdout.count("\n   proven: ")
        times = time_process(argv, runs=runs, env=env)
        row = Row("cleanroom migrate-proto (dry run)", times)
        text, _ = table(f"cleanroom migrate-proto on a {n}-file client library "
                        f"({first.stdout.strip().splitlines()[-1]}; {proven} modules proven)", [row])
        met = row.median <= 3.0
        print(text)
        print(f"\ntarget: at most 3 s: {'PASS' if met else 'MISS'} ({row.median:.2f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
