"""Shared helpers for the benchmarks: whole-process wall time and a table with ratios."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENGINE_SRC = ROOT / "tools" / "cleanroom" / "src"


def engine_env(pycache: Path | None = None) -> dict[str, str]:
    """The environment for the measured processes: this checkout's engine first on the path, and
    bytecode cached as in a normal install (into ``pycache`` when given: PYTHONPYCACHEPREFIX,
    so nothing is written into the tree) even where PYTHONDONTWRITEBYTECODE is set."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    old = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(ENGINE_SRC) + (os.pathsep + old if old else "")
    if pycache is not None:
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


def time_process(
    argv: Sequence[str],
    *,
    runs: int = 5,
    setup: Callable[[], None] | None = None,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> list[float]:
    """Wall time of the whole process ``argv``, ``runs`` times (``setup`` before each, untimed).
    A failing run stops the benchmark with its output."""
    times: list[float] = []
    for _ in range(runs):
        if setup is not None:
            setup()
        start = time.perf_counter()
        p = subprocess.run(list(argv), cwd=cwd, env=env, capture_output=True, text=True, check=False)
        took = time.perf_counter() - start
        if p.returncode != 0:
            sys.exit(f"benchmark command failed (exit {p.returncode}): {' '.join(argv)}\n"
                     f"{p.stdout}{p.stderr}")
        times.append(took)
    return times


def time_interleaved(argvs: Sequence[Sequence[str]], *, runs: int = 5, cwd: Path | None = None,
                     env: dict[str, str] | None = None) -> list[list[float]]:
    """Like :func:`time_process` for several commands whose ratio matters, taken in turns (a, b,
    c, a, b, c, ...) after one untimed warm-up of each, so that drift in the machine's load
    falls on all of them alike. Returns the times of each command, in ``argvs``' order."""
    for argv in argvs:
        time_process(argv, runs=1, cwd=cwd, env=env)
    out: list[list[float]] = [[] for _ in argvs]
    for _ in range(runs):
        for i, argv in enumerate(argvs):
            out[i] += time_process(argv, runs=1, cwd=cwd, env=env)
    return out


@dataclass
class Row:
    name: str
    times: list[float]
    baseline: str | None = None  # the row this one is compared with
    target: float | None = None  # the ratio it must not exceed
    notes: list[str] = field(default_factory=list)
    limit: float | None = None  # seconds its median must not exceed (an absolute target)
    cut: int = 0  # runs cut off by a timeout (counted in times at the timeout): a MISS

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def table(title: str, rows: Sequence[Row]) -> tuple[str, bool]:
    """A text table (median, min, max, ratio to the named baseline, target, PASS/MISS) and
    whether every target was met."""
    by_name = {r.name: r for r in rows}
    head = ("case", "runs", "median s", "min s", "max s", "ratio", "target", "result")
    lines: list[tuple[str, ...]] = [head]
    ok = True
    for r in rows:
        ratio = target = result = ""
        if r.limit is not None:
            target = f"<= {r.limit:g} s"
            met = r.median <= r.limit and not r.cut
            ok = ok and met
            result = "PASS" if met else "MISS"
        if r.baseline is not None:
            q = r.median / by_name[r.baseline].median
            ratio = f"{q:.2f}x {r.baseline}"
            if r.target is not None:
                target = f"<= {r.target:g}x"
                met = q <= r.target
                ok = ok and met
                result = "PASS" if met else "MISS"
        if r.cut:
            lines.append((r.name, f"{len(r.times) - r.cut}+{r.cut} cut", f"> {max(r.times):.1f}", "", "",
                          ratio, target, "MISS"))
            ok = False
            continue
        lines.append((r.name, str(len(r.times)), f"{r.median:.3f}", f"{min(r.times):.3f}",
                      f"{max(r.times):.3f}", ratio, target, result))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = [title, ""]
    for i, line in enumerate(lines):
        out.append("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out), ok
