"""Benchmark `cleanroom context` with a 20,000-line .dockerignore (the issue: 171 s before).

A 75-file git repository (a Dockerfile at its root, sources in nested folders, committed once)
whose .dockerignore holds 20,000 distinct lines of realistic patterns (`dir{i}/`, `**/*.ext{i}`,
`file{i}.txt`, `!keep{i}`, `a/*/b{i}`, `src/**/gen{i}.py`, `logs/*/run{i}.log`, `build{i}/**`,
`**/cache{i}`, `data/[abc]{i}/*.csv`, mixed), some of which match files of the tree.
Whole-process wall time, median of N runs, of `python -m cleanroom --repo R context` (stdout
to /dev/null) for each builder (BuildKit, and the classic builder, which also checks the
Dockerfile and .dockerignore the way the docker CLI and the daemon do), beside the same
command with a 15-line .dockerignore. Target: at most 2 s per run, whatever the builder.

    python benchmarks/bench_bigignore.py [--runs N] [--lines N] [--files N] [--timeout S]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ENGINE_SRC, Row, engine_env, table  # noqa: E402
from trees import _git  # noqa: E402

TARGET_S = 2.0

HEADER = """\
# the build context: sources only
.git
**/__pycache__
**/*.py[cod]
*.md
!README.md
"""

# One line per i, cycling through realistic shapes: whole names, extensions, folders, "!" lines,
# one-level and any-level wildcards, a character class.
SHAPES = (
    "dir{i}/",
    "**/*.ext{i}",
    "file{i}.txt",
    "!keep{i}",
    "a/*/b{i}",
    "src/**/gen{i}.py",
    "logs/*/run{i}.log",
    "build{i}/**",
    "**/cache{i}",
    "data/[abc]{i}/*.csv",
)

SMALL = HEADER + "".join(shape.format(i=i) + "\n" for i, shape in enumerate(SHAPES))


def ignore_text(lines: int) -> str:
    """``lines`` lines: the header, then distinct generated patterns."""
    head = HEADER.splitlines()
    body = [SHAPES[i % len(SHAPES)].format(i=i) for i in range(lines - len(head))]
    return "\n".join(head + body) + "\n"


def tree_files(files: int) -> list[str]:
    """``files`` paths (the Dockerfile and .dockerignore included): sources that no line
    matches, and files that generated lines exclude (or re-include) near the start, the
    middle and the end of the list."""
    out = ["Dockerfile", ".dockerignore", "README.md", "NOTES.md"]
    hits = [
        lambda i: f"dir{10 * i}/f.txt",  # dir{i}/
        lambda i: f"pkg/x.ext{10 * i + 1}",  # **/*.ext{i}
        lambda i: f"file{10 * i + 2}.txt",  # file{i}.txt
        lambda i: f"keep{10 * i + 3}",  # !keep{i}
        lambda i: f"a/x/b{10 * i + 4}",  # a/*/b{i}
        lambda i: f"src/pkg/sub/gen{10 * i + 5}.py",  # src/**/gen{i}.py
        lambda i: f"logs/2024/run{10 * i + 6}.log",  # logs/*/run{i}.log
        lambda i: f"build{10 * i + 7}/out.o",  # build{i}/**
        lambda i: f"src/cache{10 * i + 8}/c.bin",  # **/cache{i}
        lambda i: f"data/b{10 * i + 9}/t.csv",  # data/[abc]{i}/*.csv
    ]
    k = 0
    while len(out) < files:
        n = len(out)
        if n % 2:
            i = (0, 3, 977, 1994)[k // len(hits) % 4]
            out.append(hits[k % len(hits)](i))
            k += 1
        else:
            out.append(f"src/pkg{n % 4}/mod{n % 3}/m{n}.py")
    return out[:files]


def make_repo(repo: Path, ignore: str, files: int) -> None:
    for rel in tree_files(files):
        path = repo / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# {rel}\n")
    (repo / "Dockerfile").write_text("FROM scratch\nCOPY . /app/\n")
    (repo / ".dockerignore").write_text(ignore)
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "bench tree")


def time_once(argv: Sequence[str], env: dict[str, str], timeout: float) -> float | None:
    """Wall time of one run of ``argv``, stdout to /dev/null; None when it ran past
    ``timeout``. A failing run stops the benchmark with its error output."""
    start = time.perf_counter()
    try:
        p = subprocess.run(list(argv), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           text=True, check=False, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    took = time.perf_counter() - start
    if p.returncode != 0:
        sys.exit(f"benchmark command failed (exit {p.returncode}): {' '.join(argv)}\n{p.stderr}")
    return took


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--lines", type=int, default=20_000)
    ap.add_argument("--files", type=int, default=75)
    ap.add_argument("--timeout", type=float, default=120.0,
                    help="seconds after which a run is cut off (and counts as a MISS)")
    ap.add_argument("--src", type=Path, default=ENGINE_SRC,
                    help="the engine's source folder to measure (default: this checkout's)")
    args = ap.parse_args()
    runs = max(args.runs, 5)
    with tempfile.TemporaryDirectory(prefix="bench-bigignore-") as tmp:
        big, small = Path(tmp) / "big", Path(tmp) / "small"
        make_repo(big, ignore_text(args.lines), args.files)
        make_repo(small, SMALL, args.files)
        env = engine_env(Path(tmp) / "pycache")
        env["PYTHONPATH"] = str(args.src) + env["PYTHONPATH"].removeprefix(str(ENGINE_SRC))
        py = [sys.executable, "-m", "cleanroom"]
        listed = subprocess.run([*py, "--repo", str(big), "context"], env=env, capture_output=True,
                                text=True, check=False, timeout=args.timeout * 2)
        sent = sum(1 for line in listed.stdout.splitlines() if line and not line.startswith("# "))
        builders = ("buildkit", "classic")
        n_small = SMALL.count("\n")
        cases = [(f"context ({b}), {args.lines}-line .dockerignore", big, b, TARGET_S)
                 for b in builders]
        cases += [(f"context ({b}), {n_small}-line .dockerignore", small, b, None) for b in builders]
        times: dict[str, list[float]] = {name: [] for name, *_ in cases}
        cut: dict[str, int] = {name: 0 for name, *_ in cases}
        for _ in range(runs + 1):  # the first round warms the caches and is not counted
            for name, repo, builder, _target in cases:
                if cut[name]:
                    continue  # one run past the timeout is enough to know
                took = time_once([*py, "--repo", str(repo), "context"],
                                 {**env, "CLEANROOM_BUILDER": builder}, args.timeout)
                if took is None:
                    cut[name] += 1
                    times[name].append(args.timeout)
                else:
                    times[name].append(took)
        rows = [Row(name, times[name] if cut[name] else times[name][1:], limit=target, cut=cut[name])
                for name, _repo, _builder, target in cases]
        text, ok = table(
            f"bench_bigignore: cleanroom context on a {args.files}-file repo ({sent} files sent), "
            f"whole-process wall time, median of {runs} runs, python {sys.version.split()[0]}, "
            f"engine {args.src} ({os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f})", rows)
        print(text)
        print("\nall targets met" if ok else f"\nMISSED: a {args.lines}-line .dockerignore run "
              f"took more than {TARGET_S:g} s")
        return 0  # a missed target is a result (MISS in the table), not a failure


if __name__ == "__main__":
    raise SystemExit(main())
