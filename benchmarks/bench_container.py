"""Benchmark the container pipeline (issue 5), when a Docker engine answers.

On a copy of this checkout, under its own compose project:
  (a) rebuild after a one-line source edit vs a cold `--rebuild` (both `--no-tests`): the layer
      order (variant, poetry.toml and engine before the dependency install, sources after it)
      must keep the edit rebuild at most 0.10x the cold one; the upstream layout, which copies
      all sources before installing dependencies, re-runs the whole install on every edit;
  (b) the bytes of build context each build sends (the matcher's own listing);
  (c) `invoke test-all` from the host vs a direct `compose exec ... pytest`: at most 1.2x.

    python benchmarks/bench_container.py [--runs N] [--cold-runs N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ENGINE_SRC, ROOT, Row, engine_env, table, time_process  # noqa: E402

sys.path.insert(0, str(ENGINE_SRC))
from cleanroom.dockerenv import engine_answers  # noqa: E402

PROJECT = "cleanroom-bench"


def copy_checkout(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.exists() or src.is_symlink():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel, follow_symlinks=False)
    cfg = dest / "cleanroom.toml"
    cfg.write_text(cfg.read_text().replace('service = "spectralmc"', f'service = "spectralmc"\nproject = "{PROJECT}"'))
    for args in (["init", "-q", "-b", "main"], ["add", "-A"],
                 ["-c", "user.name=b", "-c", "user.email=b@example.invalid", "commit", "-q", "-m", "bench"]):
        subprocess.run(["git", *args], cwd=dest, check=True, capture_output=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--cold-runs", type=int, default=2)
    args = ap.parse_args()
    if not engine_answers():
        print("bench_container: skipped: no Docker engine answers (run docker/setup-engine)")
        return 0
    with tempfile.TemporaryDirectory(prefix="cleanroom-bench-") as tmp:
        repo = Path(tmp) / "repo"
        copy_checkout(repo)
        env = engine_env(Path(tmp) / "pycache")
        cli = [sys.executable, "-m", "cleanroom"]
        edited = repo / "src" / "spectralmc" / "pricing.py"
        counter = iter(range(1000))

        def one_line_edit() -> None:
            with edited.open("a") as fh:
                fh.write(f"# bench edit {next(counter)}\n")

        try:
            cold = Row("cold --rebuild --no-tests", time_process(
                [*cli, "build", "binary", "--no-tests", "--rebuild"], runs=args.cold_runs, cwd=repo, env=env))
            warm = Row("one-line edit, --no-tests", time_process(
                [*cli, "build", "binary", "--no-tests"], runs=args.runs, setup=one_line_edit, cwd=repo, env=env),
                baseline=cold.name, target=0.10)
            report, ok = table("container rebuilds (cleanroom build binary)", [cold, warm])
            print(report)

            from cleanroom.builds import discover_builds
            from cleanroom.config import load_config
            from cleanroom.dockerignore import Matcher, ignore_file_for, read, walk_context

            print("\nbuild context sent (computed by the matcher, BuildKit's ignore file):")
            for b in discover_builds(repo, load_config(repo)):
                ign = ignore_file_for(b.context, b.dockerfile, buildkit=True)
                m = Matcher(read(ign).patterns if ign else ())
                files = list(walk_context(b.context, m))
                total = sum(st.st_size for _, st in files)
                print(f"  {b.name:<28} {len(files):>5} files  {total / 1024:>8.1f} KiB")

            from cleanroom.container import compose_argv
            from cleanroom.dockerenv import probe
            from cleanroom.workspace import Workspace

            exec_argv = [*compose_argv(Workspace.load(repo), probe(), False), "exec", "-T", "spectralmc",
                         "python", "-m", "pytest", "tests/app", "-q", "-p", "no:cacheprovider"]
            direct = Row("compose exec ... pytest", time_process(exec_argv, runs=args.runs, cwd=repo, env=env))
            task = Row("invoke test-all", time_process([sys.executable, "-m", "invoke", "test-all"],
                                                       runs=args.runs, cwd=repo, env=env),
                       baseline=direct.name, target=1.2)
            report2, ok2 = table("\ntest-all from the host", [direct, task])
            print(report2)
        finally:
            subprocess.run([*cli, "down"], cwd=repo, env=env, capture_output=True, check=False)
            subprocess.run(["docker", "image", "rm", "-f", f"{PROJECT}/spectralmc:binary"],
                           capture_output=True, check=False)
    print("\nbench_container:", "all targets met" if ok and ok2 else "a target was missed")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
