"""Benchmark the container workflow as users type it (issues 5 and 13), when a Docker engine answers.

On a copy of this checkout (its own compose project), every row times the whole command a user
types, `nox -s build-binary -- --no-tests` (nox included), median of N runs:

  (a) a rebuild after a one-line source edit vs a cold `--rebuild`: at most 0.10x;
  (b) a run with nothing changed: at most 3 s;
  (c) a rebuild after adding one small dependency to the variant vs a cold `--rebuild` with the
      download caches emptied: at most 0.3x with BuildKit's cache mounts (the pip and Poetry
      caches survive the dependency change); the same with the classic builder, which has no
      cache mounts, for comparison (no target);
  (d) `invoke test-all` from the host vs a direct `compose exec ... pytest`: at most 1.0x (runs
      after the first fork from test-all's warm interpreter; shown beside it: the same cold,
      CLEANROOM_TEST_WARM=0, and what invoke runs, `docker exec ... test-all`).

    python benchmarks/bench_container.py [--runs N] [--cold-runs N] [--only a,b,c,d]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ENGINE_SRC, ROOT, Row, engine_env, table, time_interleaved, time_process  # noqa: E402

sys.path.insert(0, str(ENGINE_SRC))
from cleanroom.docker.engine import engine_answers  # noqa: E402

# Small pure-Python packages: each dependency-add run adds the next one.
SMALL = ("six", "idna", "attrs", "packaging", "pyparsing", "toml", "typing-extensions", "wrapt")


def copy_checkout(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.exists() or src.is_symlink():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel, follow_symlinks=False)
    for args in (["init", "-q", "-b", "main"], ["add", "-A"],
                 ["-c", "user.name=b", "-c", "user.email=b@example.invalid", "commit", "-q", "-m", "bench"]):
        subprocess.run(["git", *args], cwd=dest, check=True, capture_output=True)


def empty_download_caches() -> None:
    """BuildKit's cache mounts (the pip and Poetry caches) emptied: a cold download."""
    docker = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"
    subprocess.run([docker, "builder", "prune", "-f", "--filter", "type=exec.cachemount"],
                   capture_output=True, check=False, env={**os.environ, "DOCKER_BUILDKIT": "1"})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--cold-runs", type=int, default=2)
    ap.add_argument("--only", default="a,b,c,d")
    args = ap.parse_args()
    only = set(args.only.split(","))
    if not engine_answers():
        print("bench_container: skipped: no Docker engine answers (run docker/setup-engine)")
        return 0
    ok_all = True
    with tempfile.TemporaryDirectory(prefix="cleanroom-bench-") as tmp:
        repo = Path(tmp) / "repo"
        copy_checkout(repo)
        env = engine_env(Path(tmp) / "pycache")
        env.pop("PYTHONPATH", None)  # the typed command: nox installs the engine itself
        nox = [sys.executable, "-m", "nox", "-s", "build-binary", "--", "--no-tests"]
        cli = [sys.executable, "-m", "cleanroom"]
        edited = repo / "src" / "spectralmc" / "pricing.py"
        counter = iter(range(1000))

        def one_line_edit() -> None:
            with edited.open("a") as fh:
                fh.write(f"# bench edit {next(counter)}\n")

        small: Iterator[str] = iter(SMALL)
        variant = repo / "pyproject.binary.toml"

        def add_dependency() -> None:
            text = variant.read_text()
            name = next(small)
            # the first `dependencies = [` line at the start of a line: [project]'s
            new, n = re.subn(r"^(dependencies = \[\n)", rf'\1    "{name}",\n', text, count=1, flags=re.M)
            if n != 1:
                raise SystemExit(f"bench_container: no [project] dependencies list in {variant.name} to add to")
            variant.write_text(new)

        def run(rows: list[Row], title: str) -> None:
            nonlocal ok_all
            report, ok = table(title, rows)
            ok_all = ok_all and ok
            print(report + "\n", flush=True)

        try:
            # nox's session venv and the image, made once, untimed
            subprocess.run(nox, cwd=repo, env=env, capture_output=True, check=True)
            if only & {"a", "b"}:
                cold = Row("cold: --rebuild", time_process([*nox, "--rebuild"], runs=args.cold_runs,
                                                           cwd=repo, env=env))
                rows = [cold]
                if "a" in only:
                    rows.append(Row("one-line edit", time_process(nox, runs=args.runs, setup=one_line_edit,
                                                                  cwd=repo, env=env),
                                    baseline=cold.name, target=0.10))
                if "b" in only:
                    rows.append(Row("nothing changed", time_process(nox, runs=args.runs, cwd=repo, env=env),
                                    limit=3.0))
                run(rows, "nox -s build-binary -- --no-tests (BuildKit)")
            if "c" in only:
                for builder, target in (("buildkit", 0.3), ("classic", None)):
                    benv = {**env, "CLEANROOM_BUILDER": builder}
                    cold_c = Row(f"cold, download caches emptied ({builder})",
                                 time_process([*nox, "--rebuild"], runs=max(1, args.cold_runs - 1),
                                              setup=empty_download_caches, cwd=repo, env=benv))
                    add = Row(f"one small dependency added ({builder})",
                              time_process(nox, runs=max(2, args.runs - 2), setup=add_dependency,
                                           cwd=repo, env=benv),
                              baseline=cold_c.name, target=target)
                    run([cold_c, add], f"a dependency change, {builder}"
                        + (" (cache mounts)" if builder == "buildkit" else " (no cache mounts)"))
            if "d" in only:
                import dataclasses

                from cleanroom.pipeline.stages import compose_argv, find_container
                from cleanroom.docker.engine import probe
                from cleanroom.core.workspace import Workspace

                subprocess.run([*cli, "up"], cwd=repo, env={**env, "PYTHONPATH": str(ENGINE_SRC)},
                               capture_output=True, check=True)
                ienv = {**env, "PYTHONPATH": str(ENGINE_SRC)}
                ws = Workspace.load(repo)
                cid = find_container(ws, running_only=True)
                docker = shutil.which("docker") or "docker"
                # Against each Compose installed (v2 is what the workspace uses when present):
                # a direct `compose exec ... pytest`, what `invoke test-all` runs without invoke's
                # own start-up (which shows the engine's part of any excess), and `invoke
                # test-all`, timed in turns so that the machine's drift falls on all alike.
                for argv, label in probe().composes:
                    direct = f"{label.split()[0]}: compose exec ... pytest"
                    exec_argv = [*compose_argv(ws, dataclasses.replace(probe(), compose=argv), False),
                                 "exec", "-T", "spectralmc", "python", "-m", "pytest", "tests/app", "-q",
                                 "-p", "no:cacheprovider"]
                    cmds = {direct: exec_argv,
                            "docker exec ... test-all": [docker, "exec", "-i", cid or "none", "test-all"],
                            "invoke test-all": [sys.executable, "-m", "invoke", "test-all"],
                            "invoke test-all, cold (CLEANROOM_TEST_WARM=0)": [
                                "env", "CLEANROOM_TEST_WARM=0", sys.executable, "-m", "invoke", "test-all"]}
                    if cid is None:
                        del cmds["docker exec ... test-all"]
                    timed = time_interleaved(list(cmds.values()), runs=max(args.runs, 11), cwd=repo,
                                             env={**ienv, "CLEANROOM_COMPOSE": label[:2]})
                    rows = [Row(name, times, baseline=None if name == direct else direct,
                                target=1.0 if name == "invoke test-all" else None)
                            for name, times in zip(cmds, timed, strict=True)]
                    run(rows, f"test-all from the host, Compose {label}")
        finally:
            subprocess.run([*cli, "down"], cwd=repo, env={**env, "PYTHONPATH": str(ENGINE_SRC)},
                           capture_output=True, check=False)
            from cleanroom.core.workspace import Workspace

            project = Workspace.load(repo).cfg.docker.project
            subprocess.run(["docker", "image", "rm", "-f", f"{project}/spectralmc:binary"],
                           capture_output=True, check=False)
    print("bench_container:", "all targets met" if ok_all else "a target was missed")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
