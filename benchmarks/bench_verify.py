"""Benchmark `cleanroom verify` against `git status --porcelain -uall` (issues 4 and 10).

A 100,000-file git repository (nested sources, ignored `__pycache__` and `.venv` artifacts,
committed once) with this workspace's full config: its variants, cleanroom.toml, compose files
and both Dockerfiles. Whole-process wall time, median of N runs, of `python -m cleanroom --repo R
verify` (all rules but the generated-code ones, which need --out) beside `git status
--porcelain -uall` on the same tree, interleaved. Target: at most 1.5x git status. A second row
empties the engine's cache before each run (the index answer and Compose's reading are
remembered between runs of an unchanged repo): shown, no target.

    python benchmarks/bench_verify.py [--runs N] [--files N]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from trees import against_git_status  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(against_git_status("verify", __doc__ or "", lambda out: out.strip().splitlines()[-1] if out.strip() else "(no output)", target=1.5, cold=True))
