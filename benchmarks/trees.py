"""A realistic big repository for the benchmarks: nested source folders, ignored artifact
folders (``__pycache__``, a ``.venv``-like environment, ``build/``), committed once.

    make_repo(path, files=100_000) -> the number of files written
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

GITIGNORE = """\
__pycache__/
*.py[cod]
.venv/
build/
dist/
*.egg-info/
/pyproject.toml
poetry.lock
*_pb2.py
*_pb2.pyi
*_pb2_grpc.py
"""

DOCKERIGNORE = """\
# the build context: sources only
.git
.venv
**/__pycache__
**/*.py[cod]
build
dist
**/*.egg-info
pyproject.toml
**/poetry.lock
**/*_pb2.py
**/*_pb2.pyi
**/*_pb2_grpc.py
*.md
!README.md
"""

CLEANROOM_TOML = """\
[docker]
compose = "docker/docker-compose.yml"
"""

COMPOSE = """\
services:
  app:
    build:
      context: ..
      dockerfile: docker/Dockerfile
"""

ROOT = Path(__file__).resolve().parents[1]
SEED = ("pyproject.binary.toml", "pyproject.source.toml", "poetry.toml", "cleanroom.toml")

_GIT_ENV = {
    "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid",
    "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid",
}


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                   env={**os.environ, **_GIT_ENV})


def make_repo(repo: Path, files: int = 100_000) -> int:
    """Write about ``files`` files under ``repo`` and commit the tracked ones once: 70% sources
    in nested packages (10 top packages x 10 subpackages x 10 modules folders), 20% ignored
    artifacts beside them (``__pycache__``), 10% an ignored ``.venv``. Returns the count."""
    repo.mkdir(parents=True, exist_ok=True)
    # This workspace's own variants, config and ignore files (verify needs them), plus the tree's.
    for name in SEED:
        if (ROOT / name).is_file():
            (repo / name).write_bytes((ROOT / name).read_bytes())
    if not (repo / "cleanroom.toml").is_file():
        (repo / "cleanroom.toml").write_text(CLEANROOM_TOML)
    for name, extra in ((".gitignore", GITIGNORE), (".dockerignore", DOCKERIGNORE)):
        own = (ROOT / name).read_text() if (ROOT / name).is_file() else ""
        (repo / name).write_text(own + ("\n" if own and not own.endswith("\n") else "") + extra)
    (repo / "README.md").write_text("# bench\n")
    # This workspace's full Docker config: its compose files and both variant Dockerfiles.
    (repo / "docker").mkdir(exist_ok=True)
    docker_files = [p for p in (ROOT / "docker").iterdir() if p.is_file()] if (ROOT / "docker").is_dir() else []
    for f in docker_files:
        (repo / "docker" / f.name).write_bytes(f.read_bytes())
    if not (repo / "docker" / "docker-compose.yml").is_file():
        (repo / "docker" / "docker-compose.yml").write_text(COMPOSE)
        (repo / "docker" / "Dockerfile").write_text("FROM scratch\nCOPY . /app/\n")
    n = len(list(repo.iterdir())) + len(list((repo / "docker").iterdir()))
    src_n, art_n = int(files * 0.7), int(files * 0.2)
    venv_n = files - src_n - art_n - n
    body = "def f(x):\n    return x + 1\n"
    i = 0
    while i < src_n:
        a, b, c = (i // 700) % 10, (i // 70) % 10, (i // 7) % 10
        d = repo / "src" / f"pkg{a}" / f"sub{b}" / f"mod{c}" / f"part{i // 7000}"
        d.mkdir(parents=True, exist_ok=True)
        for k in range(min(7, src_n - i)):
            (d / f"m{i + k}.py").write_text(body)
        i += 7
    i = 0
    while i < art_n:
        a, b, c = (i // 200) % 10, (i // 20) % 10, (i // 2) % 10
        d = repo / "src" / f"pkg{a}" / f"sub{b}" / f"mod{c}" / f"part{i // 2000}" / "__pycache__"
        d.mkdir(parents=True, exist_ok=True)
        for k in range(min(2, art_n - i)):
            (d / f"m{i + k}.cpython-311.pyc").write_bytes(b"\0" * 64)
        i += 2
    for i in range(venv_n):
        d = repo / ".venv" / "lib" / "python3.11" / "site-packages" / f"dist{i // 50}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i}.py").write_text(body)
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "bench tree")
    return src_n + art_n + venv_n + n


def time_quiet(argv: Sequence[str], env: dict[str, str] | None = None) -> float:
    """Wall time of one run of ``argv``, whole process, stdout to /dev/null (stderr kept for
    the failure message); a failing run stops the benchmark."""
    start = time.perf_counter()
    p = subprocess.run(list(argv), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       text=True, check=False)
    took = time.perf_counter() - start
    if p.returncode not in (0, 1) or (p.returncode == 1 and "verify" not in argv):
        sys.exit(f"benchmark command failed (exit {p.returncode}): {' '.join(argv)}\n{p.stderr}")
    return took


def against_git_status(command: str, doc: str, describe: Callable[[str], str], target: float = 2.0,
                       cold: bool = False) -> int:
    """The bench of `cleanroom COMMAND` on a generated repo beside `git status --porcelain
    -uall` (issues 4, 7 and 10): median of at least 5 interleaved runs, against ``target``.
    ``describe`` turns the command's output into the table title's detail. ``cold`` adds a row
    with the engine's cache ($XDG_CACHE_HOME/cleanroom: the index answer, Compose's reading)
    emptied before every run: what the first run after a commit pays."""
    import argparse
    import tempfile

    from common import Row, engine_env, table

    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--target", type=float, default=target)
    args = ap.parse_args()
    runs = max(args.runs, 5)
    with tempfile.TemporaryDirectory(prefix=f"bench-{command}-") as tmp:
        repo = Path(tmp) / "repo"
        n = make_repo(repo, args.files)
        env = engine_env()
        ours = [sys.executable, "-m", "cleanroom", "--repo", str(repo), command]
        git = ["git", "-C", str(repo), "status", "--porcelain", "-uall"]
        out = subprocess.run(ours, env=env, capture_output=True, text=True, check=False).stdout
        # warm the page cache and git's index once, then interleave
        time_quiet(git)
        t_git: list[float] = []
        t_ours: list[float] = []
        t_cold: list[float] = []
        for i in range(runs):
            t_git.append(time_quiet(git))
            t_ours.append(time_quiet(ours, env=env))
            if cold:
                empty = Path(tmp) / f"cache-{i}"
                empty.mkdir()
                t_cold.append(time_quiet(ours, env={**env, "XDG_CACHE_HOME": str(empty)}))
        rows = [
            Row("git status --porcelain -uall", t_git),
            Row(f"cleanroom {command}", t_ours, baseline="git status --porcelain -uall",
                target=args.target),
        ]
        if cold:
            rows.append(Row(f"cleanroom {command}, cache emptied", t_cold,
                            baseline="git status --porcelain -uall"))
        text, ok = table(f"cleanroom {command} on a {n}-file repo ({describe(out)})", rows)
        print(text)
        if not ok:
            q = rows[1].median / rows[0].median
            print(f"\nMISS: {q:.2f}x against a {args.target:g}x target "
                  f"({(q / args.target - 1) * 100:.0f}% over)")
        return 0  # a missed target is a result (MISS in the table), not a failure
