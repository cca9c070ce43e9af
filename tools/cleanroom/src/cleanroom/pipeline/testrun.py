"""A cold ``test-all`` run: pytest, its output streamed live and captured to a log.

The doctrine's full test run ("captures outputs"): output goes to the terminal as it happens and
to the log (default ``/tmp/test-output.txt``, or ``$CLEANROOM_TEST_LOG``), JUnit XML is written
beside the log, pytest's exit code is kept, and the last line names the log. Any arguments are
passed to pytest. No pty is used, so it works with or without a terminal.

pytest runs in this process, as ``python -m pytest`` would (the current folder first on
``sys.path``): a second interpreter would cost its start-up on every run of the daily loop. Its
output is teed at the file-descriptor level (a pipe under fds 1 and 2, drained by a thread into
the terminal and the log), so what tests and their subprocesses write is captured too.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from cleanroom.core.errors import BadInput, ToolMissing

DEFAULT_LOG = "/tmp/test-output.txt"


def pytest_args(args: Sequence[str], log: Path) -> list[str]:
    return [f"--junitxml={log.with_suffix('.xml')}", "-p", "no:cacheprovider", *args]


class _Tee:
    """fds 1 and 2 redirected into a pipe; a thread copies what arrives to the terminal (the
    original fd 1) and to the log. A log that cannot be written (a full disk) stops only the
    log: the terminal keeps getting everything and the run is never blocked on a full pipe."""

    def __init__(self, log: Path) -> None:
        import threading

        self.log_error: OSError | None = None
        self.fh = open(log, "wb")  # noqa: SIM115 (closed in close())
        sys.stdout.flush()
        sys.stderr.flush()
        self.saved = (os.dup(1), os.dup(2))
        r, w = os.pipe()
        self.r = r
        self.thread = threading.Thread(target=self._pump, name="test-all-tee", daemon=True)
        self.thread.start()
        os.dup2(w, 1)
        os.dup2(w, 2)
        os.close(w)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.reconfigure(line_buffering=True, write_through=True)  # type: ignore[union-attr]
            except (AttributeError, ValueError):
                pass

    def _pump(self) -> None:
        out = self.saved[0]
        while True:
            chunk = os.read(self.r, 65536)
            if not chunk:
                break
            if self.log_error is None:
                try:
                    self.fh.write(chunk)
                except OSError as exc:
                    self.log_error = exc
            view = memoryview(chunk)
            while view:
                try:
                    view = view[os.write(out, view):]
                except OSError:
                    break  # the terminal went away: keep draining, the log still gets it

    def close(self) -> None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os.dup2(self.saved[0], 1)  # the pipe's last write ends closed: the thread sees EOF
        os.dup2(self.saved[1], 2)
        self.thread.join()
        os.close(self.r)
        for fd in self.saved:
            os.close(fd)
        try:
            self.fh.close()
        except OSError as exc:
            self.log_error = self.log_error or exc


def run_pytest(args: Sequence[str], log: Path) -> int:
    """pytest with ``args``, in this process, its output teed to ``log``; pytest's exit code."""
    try:
        import pytest  # type: ignore[import-not-found, unused-ignore]  # the project's, not the engine's
    except ImportError as exc:
        raise ToolMissing(f"pytest cannot be imported by {sys.executable} ({exc}): add pytest to the "
                          "project's dev dependencies (the variant's [dependency-groups] dev)") from None
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        tee = _Tee(log)
    except OSError as exc:
        raise BadInput(f"cannot write the test log {log} ({exc.strerror or exc}): set "
                             "CLEANROOM_TEST_LOG to a writable path") from None
    os.environ["PYTHONUNBUFFERED"] = "1"  # tests' own subprocesses stream too
    if os.getcwd() not in sys.path[:1]:
        sys.path.insert(0, os.getcwd())  # as `python -m pytest` has it
    try:
        rc = int(pytest.main(pytest_args(args, log)))
    finally:
        tee.close()
    if tee.log_error is not None:
        print(f"test-all: warning: the log {log} is incomplete ({tee.log_error.strerror or tee.log_error})",
              file=sys.stderr)
    return rc


def run_test_all(args: Sequence[str], log: Path, how: str = "") -> int:
    start = time.monotonic()
    rc = run_pytest(args, log)
    took = time.monotonic() - start
    status = ("passed" if rc == 0 else
              "no tests collected (pytest exit 5: nothing matched the arguments; check -k, -m or the "
              "paths)" if rc == 5 else f"FAILED (pytest exit {rc})")
    print(f"test-all: {status} in {took:.1f}s{how}; full output in {log}, JUnit XML in {log.with_suffix('.xml')}",
          flush=True)
    return rc  # pytest's own code, 5 included: a run that tested nothing is not a pass
