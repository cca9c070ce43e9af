"""Benchmark `cleanroom context` against `git status --porcelain -uall` (issue 7).

A 100,000-file git repository (nested sources, ignored `__pycache__` and `.venv` artifacts,
committed once). Whole-process wall time, median of N runs, of listing the build context
(`python -m cleanroom --repo R context`, stdout to /dev/null) beside `git status --porcelain
-uall` on the same tree, interleaved. Target: at most 2.0x git status.

    python benchmarks/bench_context.py [--runs N] [--files N]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from trees import against_git_status  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(against_git_status("context", __doc__ or "", lambda out: f"{sum(1 for line in out.splitlines() if not line.startswith('# '))} files in the context"))
