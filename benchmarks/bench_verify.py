"""Benchmark `cleanroom verify` against `git status --porcelain -uall` (issue 4).

A 100,000-file git repository (nested sources, ignored `__pycache__` and `.venv` artifacts,
committed once). Whole-process wall time, median of N runs, of listing the build context
(`python -m cleanroom --repo R context`, stdout to /dev/null) beside `git status --porcelain
-uall` on the same tree, interleaved. Target: at most 2.0x git status.

    python benchmarks/bench_context.py [--runs N] [--files N]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Row, engine_env, table  # noqa: E402
from trees import make_repo, time_quiet  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--target", type=float, default=2.0)
    args = ap.parse_args()
    runs = max(args.runs, 5)
    with tempfile.TemporaryDirectory(prefix="bench-verify-") as tmp:
        repo = Path(tmp) / "repo"
        n = make_repo(repo, args.files)
        env = engine_env()
        ours = [sys.executable, "-m", "cleanroom", "--repo", str(repo), "verify"]
        git = ["git", "-C", str(repo), "status", "--porcelain", "-uall"]
        report = subprocess.run(ours, env=env, capture_output=True, text=True, check=False).stdout
        summary = report.strip().splitlines()[-1] if report.strip() else "(no output)"
        # warm the page cache and git's index once, then interleave
        time_quiet(git)
        t_git: list[float] = []
        t_ours: list[float] = []
        for _ in range(runs):
            t_git.append(time_quiet(git))
            t_ours.append(time_quiet(ours, env=env))
        rows = [
            Row("git status --porcelain -uall", t_git),
            Row("cleanroom verify", t_ours, baseline="git status --porcelain -uall",
                target=args.target),
        ]
        text, ok = table(f"cleanroom verify on a {n}-file repo ({summary})", rows)
        print(text)
        if not ok:
            q = rows[1].median / rows[0].median
            print(f"\nMISS: {q:.2f}x against a {args.target:g}x target "
                  f"({(q / args.target - 1) * 100:.0f}% over)")
        return 0  # a missed target is a result (MISS in the table), not a failure


if __name__ == "__main__":
    raise SystemExit(main())
