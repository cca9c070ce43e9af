"""Plans: a workflow step is a pure function from config to a list of small actions.

One runner (:func:`execute`) carries them out; with ``dry_run=True`` it only prints them. Tests
assert on the plans themselves, so most of the engine is testable without Docker.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from cleanroom.core import runner
from cleanroom.core.errors import CleanroomError, StepFailed


@dataclass(frozen=True)
class Run:
    """Run a command. ``env`` is added to the current environment; ``log`` captures output."""

    argv: tuple[str, ...]
    cwd: Path | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    desc: str = ""
    check: bool = True
    log: Path | None = None

    def show(self) -> str:
        import shlex

        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(self.env.items()))
        cmd = shlex.join(self.argv)
        where = f" (in {self.cwd})" if self.cwd else ""
        return f"run: {env + ' ' if env else ''}{cmd}{where}"


@dataclass(frozen=True)
class WriteFile:
    """Write a file atomically (temporary file beside it, then rename)."""

    path: Path
    content: str | bytes
    desc: str = ""

    def show(self) -> str:
        return f"write: {self.path}" + (f" ({self.desc})" if self.desc else "")


@dataclass(frozen=True)
class Remove:
    """Remove a file, a symlink (as a link) or a folder tree; missing is fine."""

    path: Path
    desc: str = ""

    def show(self) -> str:
        return f"remove: {self.path}" + (f" ({self.desc})" if self.desc else "")


@dataclass(frozen=True)
class Call:
    """An in-process step that is not a command or a file write (kept rare). ``changes=False``
    marks a step that only looks (asks the engine, reads files): a dry run runs it too, so the
    plan after it can be shown as it would be."""

    fn: Callable[[], None]
    desc: str
    changes: bool = True

    def show(self) -> str:
        return f"step: {self.desc}"


Action = Run | WriteFile | Remove | Call
Plan = list[Action]


def atomic_write(path: Path, content: str | bytes) -> None:
    """Write ``content`` to ``path`` via a temporary file in the same folder and ``os.replace``.

    A symbolic link is written through (its target is replaced, the link kept: a ``.gitignore``
    linked from a shared place stays linked). The temporary file is named
    ``.<name>.<pid>.<random>.tmp``: one left by a writer that was killed (SIGKILL cannot be
    caught) is removed by the next write once its process is gone."""
    data = content.encode() if isinstance(content, str) else content
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(path)
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _remove_stale_temps(path: Path) -> None:
    """The temporary files of :func:`atomic_write` beside ``path`` whose writer is gone."""
    prefix = f".{path.name}."
    try:
        names = [n for n in os.listdir(path.parent) if n.startswith(prefix) and n.endswith(".tmp")]
    except OSError:
        return
    for name in names:
        pid = name[len(prefix):].split(".", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # its writer still runs
        except ProcessLookupError:
            pass
        except OSError:
            continue  # another user's process: alive
        try:
            os.unlink(path.parent / name)
        except OSError:
            pass


def mounts_under(root: Path) -> list[str]:
    """Mount points at or below ``root`` (deepest first), from /proc/self/mountinfo: a bind mount
    of a folder of the same filesystem has the same st_dev, so the kernel's table is the truth."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    prefix = str(root.resolve())
    found = []
    for line in lines:
        fields = line.split()
        if len(fields) < 5:
            continue
        point = fields[4].encode().decode("unicode_escape")  # \040 for spaces etc.
        if point == prefix or point.startswith(prefix + "/"):
            found.append(point)
    return sorted(found, key=len, reverse=True)


def remove_path(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.is_dir():
        import shutil

        shutil.rmtree(path)


def run_command(action: Run, out: IO[str] | None = None) -> int:
    """Run one command, streaming its output (and teeing it to ``action.log`` when set)."""
    rc = runner.stream(action.argv, log=action.log, out=out, cwd=action.cwd, env=action.env)
    if action.check and rc != 0:
        import shlex

        where = f"; its output is in {action.log}" if action.log else ""
        raise StepFailed(f"command failed with exit code {rc}: {shlex.join(action.argv)}{where}")
    return rc


def execute(plan: Sequence[Action], *, dry_run: bool = False, out: IO[str] | None = None) -> None:
    """Carry out ``plan`` in order; with ``dry_run`` print each action instead (and run only
    the steps that change nothing)."""
    stream = out or sys.stdout
    for action in plan:
        if dry_run:
            print(f"[dry-run] {action.show()}", file=stream)
            if isinstance(action, Call) and not action.changes:
                action.fn()
            continue
        if isinstance(action, Run):
            run_command(action, out)
        elif isinstance(action, WriteFile):
            try:
                atomic_write(action.path, action.content)
            except OSError as exc:
                # named as the file it was to be (the error's own name may be the temporary file)
                raise StepFailed(f"cannot write {action.path}: {exc.strerror or exc}"
                                 " (the file is as it was)") from None
        elif isinstance(action, Remove):
            try:
                remove_path(action.path)
            except OSError as exc:
                raise StepFailed(f"cannot delete {exc.filename or action.path}: {exc.strerror or exc}") from None
        else:
            action.fn()


# ------------------------------------------------------------------------------ stages


@dataclass(frozen=True)
class Stage:
    """A named stage of a longer job: its actions are planned when the stage starts (they may
    depend on what the stages before it found), then carried out by :func:`execute`. ``log``
    is where its commands' output goes (named in its failure message)."""

    name: str
    plan: Callable[[], Plan]
    log: Path | None = None


def run_stages(stages: Sequence[Stage], label: str, *, dry_run: bool = False,
               out: IO[str] | None = None) -> float:
    """Run the stages in order: each announced (``==> [i/n] name``), planned, executed (or, with
    ``dry_run``, printed) and timed (``<== name ok (1.2s)``). A failure names the stage (and its
    log): ``StepFailed`` (exit 1) for a failed command, the error's own type otherwise. Returns
    the total time in seconds."""
    stream = out or sys.stdout
    start = time.monotonic()
    for i, stage in enumerate(stages, 1):
        print(f"==> [{i}/{len(stages)}] {stage.name}", file=stream, flush=True)
        t = time.monotonic()
        try:
            execute(stage.plan(), dry_run=dry_run, out=stream)
        except StepFailed as exc:
            where = "" if stage.log is None or str(stage.log) in exc.message else f" (log: {stage.log})"
            raise StepFailed(f"{label}: stage '{stage.name}' failed: {exc.message}{where}", exc.detail) from None
        except CleanroomError as exc:
            exc.message = f"{label}: stage '{stage.name}': {exc.message}"
            raise
        print(f"<== {stage.name} {'planned' if dry_run else 'ok'} ({time.monotonic() - t:.1f}s)",
              file=stream, flush=True)
    return time.monotonic() - start
