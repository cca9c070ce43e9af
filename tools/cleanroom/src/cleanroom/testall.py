"""``test-all``: run pytest, stream its output live, and capture all of it to a log.

The doctrine's full test run ("captures outputs"): output goes to the terminal as it happens and
to the log (default ``/tmp/test-output.txt``, or ``$CLEANROOM_TEST_LOG``), JUnit XML is written
beside the log, pytest's exit code is kept, and the last line names the log. Any arguments are
passed to pytest. No pty is used, so it works with or without a terminal.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .errors import CleanroomError, StepFailed
from .plan import Run, run_command

DEFAULT_LOG = "/tmp/test-output.txt"


def test_all_command(args: Sequence[str], log: Path) -> Run:
    junit = log.with_suffix(".xml")
    argv = (sys.executable, "-m", "pytest", f"--junitxml={junit}", "-p", "no:cacheprovider", *args)
    return Run(argv, env={"PYTHONUNBUFFERED": "1"}, log=log, check=False, desc="pytest")


def run_test_all(args: Sequence[str], log: Path) -> int:
    start = time.monotonic()
    rc = run_command(test_all_command(args, log))
    took = time.monotonic() - start
    status = ("passed" if rc == 0 else
              "no tests collected (pytest exit 5: nothing matched the arguments; check -k, -m or the "
              "paths)" if rc == 5 else f"FAILED (pytest exit {rc})")
    print(f"test-all: {status} in {took:.1f}s; full output in {log}, JUnit XML in {log.with_suffix('.xml')}")
    return rc  # pytest's own code, 5 included: a run that tested nothing is not a pass


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    from . import settings

    log = Path(settings.get("CLEANROOM_TEST_LOG") or DEFAULT_LOG)
    if args[:1] == ["--log"] and len(args) >= 2:
        log, args = Path(args[1]), args[2:]
    try:
        return run_test_all(args, log)
    except CleanroomError as exc:
        print(f"test-all: error: {exc.message}", file=sys.stderr)
        return exc.exit_code if not isinstance(exc, StepFailed) else 1
