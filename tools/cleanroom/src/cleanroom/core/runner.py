"""The one seam for external commands: every program the engine runs (git, docker, Compose,
mmdebstrap, a probe interpreter) goes through here, like nox's ``command.run`` and pypa/build's
``runner`` argument.

One error policy:

- a program that is not there is :class:`~cleanroom.core.errors.ToolMissing` (exit 3), naming it
  (with ``hint`` when given: how to get it);
- a command that runs past its ``timeout`` is :class:`~cleanroom.core.errors.StepFailed`
  naming the command and the limit;
- a non-zero exit is the caller's to judge (``check=True``: StepFailed with the command and the
  last line it printed on stderr).

Tests inject a runner (:func:`using`) to record or answer commands without running them.
``subprocess`` is imported on first use: ``cleanroom proto``'s start-up is measured.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from cleanroom.core.errors import StepFailed, ToolMissing

if TYPE_CHECKING:
    import subprocess


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    returncode: int
    stdout: Any = ""  # str, or bytes with run(text=False)
    stderr: Any = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def last_error_line(self) -> str:
        text = self.stderr or self.stdout
        if isinstance(text, bytes):
            text = text.decode(errors="replace")
        lines = text.strip().splitlines()
        return lines[-1] if lines else f"exited {self.returncode}"


def _missing(argv: Sequence[str], exc: OSError, hint: str) -> ToolMissing:
    return ToolMissing(f"{argv[0]}: command not found ({exc.strerror or exc})" + (f"; {hint}" if hint else ""))


class Runner:
    """Runs commands for real. Subclass it (or pass any object with these methods) to test."""

    def run(self, argv: Sequence[str], *, cwd: Path | str | None = None, env: Mapping[str, str] | None = None,
            input: str | bytes | None = None, timeout: float | None = None, capture: bool = True,
            text: bool = True, check: bool = False, hint: str = "", unset: Sequence[str] = ()) -> Result:
        """Run ``argv`` to its end. ``env`` is added to this process's environment (``unset``
        names removed from it). With ``capture`` its output is returned (else it goes to the
        terminal)."""
        import subprocess

        argv = tuple(str(a) for a in argv)
        full_env = None
        if env is not None or unset:
            full_env = {k: v for k, v in os.environ.items() if k not in unset} | dict(env or {})
        try:
            p = subprocess.run(argv, cwd=cwd, env=full_env,
                               input=input, timeout=timeout, capture_output=capture, text=text,
                               check=False, errors="replace" if text else None)
        except FileNotFoundError as exc:
            raise _missing(argv, exc, hint) from None
        except subprocess.TimeoutExpired:
            raise StepFailed(f"{shlex.join(argv)}: no answer within {timeout:g} s") from None
        empty: Any = "" if text else b""
        r = Result(argv, p.returncode, p.stdout if capture else empty, p.stderr if capture else empty)
        if check and not r.ok:
            raise StepFailed(f"command failed with exit code {r.returncode}: {shlex.join(argv)} "
                             f"({r.last_error_line()})")
        return r

    def stream(self, argv: Sequence[str], *, log: Path | None = None, out: IO[str] | None = None,
               cwd: Path | str | None = None, env: Mapping[str, str] | None = None, hint: str = "") -> int:
        """Run ``argv`` with its output (stdout and stderr, merged) shown live on ``out``
        (default: the terminal) and, with ``log``, written to that file too; its exit code."""
        import subprocess

        argv = tuple(str(a) for a in argv)
        full_env = {**os.environ, **env} if env is not None else None
        try:
            if log is None:
                return subprocess.run(argv, cwd=cwd, env=full_env, check=False).returncode
            log.parent.mkdir(parents=True, exist_ok=True)
            stream = out or sys.stdout
            with log.open("w", encoding="utf-8", errors="replace") as fh:
                p = subprocess.Popen(argv, cwd=cwd, env=full_env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1)
                assert p.stdout is not None
                for line in p.stdout:
                    fh.write(line)
                    stream.write(line)
                    stream.flush()
                return p.wait()
        except FileNotFoundError as exc:
            raise _missing(argv, exc, hint) from None

    def spawn(self, argv: Sequence[str], *, hint: str = "", **popen: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` and return the process, for what ``run`` cannot express: a pipe
        between two programs, commands side by side, a detached background process."""
        import subprocess

        argv = tuple(str(a) for a in argv)
        try:
            return subprocess.Popen(argv, **popen)
        except FileNotFoundError as exc:
            raise _missing(argv, exc, hint) from None


_current: Runner = Runner()


def current() -> Runner:
    return _current


@contextmanager
def using(r: Runner) -> Iterator[Runner]:
    """Run the engine's commands through ``r`` inside the ``with`` block."""
    global _current
    old, _current = _current, r
    try:
        yield r
    finally:
        _current = old


def run(argv: Sequence[str], **kw: Any) -> Result:
    return _current.run(argv, **kw)


def stream(argv: Sequence[str], **kw: Any) -> int:
    return _current.stream(argv, **kw)


def spawn(argv: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
    return _current.spawn(argv, **kw)


# Constants the callers pass to spawn() without importing subprocess themselves.
PIPE = -1
STDOUT = -2
DEVNULL = -3


def timeout_error() -> type[Exception]:
    """subprocess.TimeoutExpired (for a caller's wait on a spawned process)."""
    import subprocess

    return subprocess.TimeoutExpired
