"""`test-all` (the container's test runner) on its own: pytest in-process, its output streamed
live and teed to the log at the file-descriptor level, pytest's exit code kept."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ENGINE = str(Path(__file__).resolve().parents[2] / "tools" / "cleanroom" / "src")
RUN = "import sys; from cleanroom.pipeline.testall import main; raise SystemExit(main())"

SUITE = '''\
import os, subprocess, sys

def test_prints():
    print("printed by a passing test")

def test_subprocess_output_is_captured_too():
    subprocess.run([sys.executable, "-c", "print('from a child process')"], check=True)

def test_fd_level_write():
    os.write(2, b"straight to fd 2\\n")
'''


def run_test_all(cwd: Path, *args: str, log: Path | None = None, **kw: object) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": ENGINE}
    if log is not None:
        env["CLEANROOM_TEST_LOG"] = str(log)
    return subprocess.run([sys.executable, "-c", RUN, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120, check=False, **kw)  # type: ignore[call-overload]


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    d = tmp_path / "proj"
    (d / "tests").mkdir(parents=True)
    (d / "tests" / "test_a.py").write_text(SUITE)
    return d


def test_output_goes_to_the_terminal_and_the_log(suite: Path, tmp_path: Path) -> None:
    log = tmp_path / "logs" / "out.txt"
    r = run_test_all(suite, "tests", "-s", log=log)
    assert r.returncode == 0, r.stdout + r.stderr
    text = log.read_text()
    for needle in ("printed by a passing test", "from a child process", "straight to fd 2", "3 passed"):
        assert needle in r.stdout, (needle, r.stdout)
        assert needle in text, (needle, text)
    assert log.with_suffix(".xml").read_text().count("<testcase") == 3
    assert r.stdout.splitlines()[-1].startswith("test-all: passed in ")
    assert f"full output in {log}" in r.stdout
    assert r.stderr == ""  # fd 2 went into the one stream, as `2>&1` would


def test_a_failure_keeps_pytest_exit_code_and_its_output(suite: Path, tmp_path: Path) -> None:
    (suite / "tests" / "test_b.py").write_text("def test_fails():\n    print('why it failed')\n    assert 1 == 2\n")
    log = tmp_path / "out.txt"
    r = run_test_all(suite, "tests", log=log)
    assert r.returncode == 1, r.stdout
    assert "why it failed" in log.read_text() and "1 failed, 3 passed" in log.read_text()
    assert "test-all: FAILED (pytest exit 1)" in r.stdout


def test_nothing_collected_is_exit_5_with_its_own_line(suite: Path, tmp_path: Path) -> None:
    r = run_test_all(suite, "tests", "-k", "nothing_matches", log=tmp_path / "out.txt")
    assert r.returncode == 5, r.stdout
    assert "test-all: no tests collected (pytest exit 5" in r.stdout


def test_output_is_live_not_at_the_end(suite: Path, tmp_path: Path) -> None:
    """A test that waits for the reader to have seen its first line: it would hang (and fail on
    its own deadline) if the output were buffered until pytest ended."""
    seen = tmp_path / "seen"
    (suite / "tests" / "test_a.py").write_text(
        "import os, time\n"
        "def test_waits_for_the_reader():\n"
        "    print('MARKER', flush=True)\n"
        f"    end = time.monotonic() + 30\n"
        f"    while not os.path.exists({str(seen)!r}):\n"
        "        assert time.monotonic() < end, 'the reader never saw the first line'\n"
        "        time.sleep(0.02)\n"
    )
    env = {**os.environ, "PYTHONPATH": ENGINE, "CLEANROOM_TEST_LOG": str(tmp_path / "out.txt")}
    p = subprocess.Popen([sys.executable, "-c", RUN, "tests", "-s"], cwd=suite, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert p.stdout is not None
    start = time.monotonic()
    for line in p.stdout:
        if "MARKER" in line:
            seen.touch()
            break
    rest = p.stdout.read()
    assert p.wait(timeout=60) == 0, rest
    assert time.monotonic() - start < 30


def test_the_current_folder_is_importable_as_with_python_m_pytest(suite: Path, tmp_path: Path) -> None:
    (suite / "helper_mod.py").write_text("VALUE = 42\n")
    (suite / "tests" / "test_a.py").write_text("import helper_mod\ndef test_it():\n    assert helper_mod.VALUE == 42\n")
    r = run_test_all(suite, "tests", log=tmp_path / "out.txt")
    assert r.returncode == 0, r.stdout


def test_an_unwritable_log_is_one_line_exit_2(suite: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    r = run_test_all(suite, "tests", log=blocker / "out.txt")
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.startswith(f"test-all: error: cannot write the test log {blocker / 'out.txt'}"), r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.splitlines()) == 1


# ------------------------------------------------------------------ the warm interpreter

WARM = "(warm interpreter"


def _servers(tmpdir: Path) -> list[int]:
    """The warm servers started for this temporary folder (their environment names it)."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes()
            env = (d / "environ").read_bytes()
        except OSError:
            continue
        if b"cleanroom.pipeline.testall import serve" in cmd and f"TMPDIR={tmpdir}".encode() in env.split(b"\0"):
            found.append(int(d.name))
    return found


@pytest.fixture
def warm(tmp_path: Path) -> object:
    """The container's environment for test-all (DOCKER_CONTAINER=1), with a temporary folder
    of its own (the server's socket); every server it started is gone afterwards."""
    tmpdir = tmp_path / "t"
    tmpdir.mkdir()
    env = {**os.environ, "PYTHONPATH": ENGINE, "DOCKER_CONTAINER": "1", "TMPDIR": str(tmpdir),
           "CLEANROOM_TEST_LOG": str(tmp_path / "out.txt")}
    env.pop("CLEANROOM_TEST_WARM", None)

    class Warm:
        def __init__(self) -> None:
            self.env = env
            self.tmpdir = tmpdir
            self.socket = tmpdir / f"cleanroom-test-all.{os.getuid()}.sock"

        def run(self, cwd: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-c", RUN, *args], cwd=cwd, env={**env, **extra},
                                  capture_output=True, text=True, timeout=120, check=False)

        def wait_for_server(self) -> None:
            end = time.monotonic() + 60
            while not self.socket.exists():
                assert time.monotonic() < end, "no warm server started"
                time.sleep(0.05)

    w = Warm()
    yield w
    # a server retires within a second of losing its socket (one still starting makes its
    # socket later: removed again until none is left)
    end = time.monotonic() + 15
    while _servers(tmpdir) and time.monotonic() < end:
        w.socket.unlink(missing_ok=True)
        time.sleep(0.1)
    left = _servers(tmpdir)
    for pid in left:
        os.kill(pid, 9)
    assert not left, f"warm servers still running: {left}"


def test_a_second_run_is_warm_and_the_same(suite: Path, warm: object) -> None:
    w = warm  # type: ignore[assignment]
    cold = w.run(suite, "tests", "-s")
    assert cold.returncode == 0 and WARM not in cold.stdout, cold.stdout + cold.stderr
    w.wait_for_server()
    hot = w.run(suite, "tests", "-s")
    assert hot.returncode == 0, hot.stdout + hot.stderr
    assert WARM in hot.stdout.splitlines()[-1], hot.stdout
    for needle in ("printed by a passing test", "from a child process", "straight to fd 2", "3 passed"):
        assert needle in hot.stdout, (needle, hot.stdout)
    log = Path(w.env["CLEANROOM_TEST_LOG"]).read_text()
    assert "from a child process" in log and "3 passed" in log
    assert "PytestAssertRewriteWarning" not in hot.stdout  # plugins are left to the run
    # a failure keeps pytest's code; -k with no match keeps 5
    (suite / "tests" / "test_b.py").write_text("def test_fails():\n    assert 1 == 2\n")
    failed = w.run(suite, "tests")
    assert failed.returncode == 1 and WARM in failed.stdout, failed.stdout
    assert "assert 1 == 2" in failed.stdout  # assertion rewriting still works in the tests
    none = w.run(suite, "tests", "-k", "nothing_matches")
    assert none.returncode == 5 and WARM in none.stdout, none.stdout


def test_edits_show_in_a_warm_run(suite: Path, warm: object) -> None:
    """The project's own modules are never preloaded: an edit shows as in a cold run."""
    w = warm  # type: ignore[assignment]
    (suite / "mymod.py").write_text("VALUE = 1\n")
    (suite / "tests" / "test_a.py").write_text("import mymod\ndef test_value():\n    assert mymod.VALUE == 2\n")
    assert w.run(suite, "tests").returncode == 1
    w.wait_for_server()
    (suite / "mymod.py").write_text("VALUE = 2\n")
    r = w.run(suite, "tests")
    assert r.returncode == 0 and WARM in r.stdout, r.stdout


def test_another_environment_runs_cold(suite: Path, warm: object) -> None:
    w = warm  # type: ignore[assignment]
    assert w.run(suite, "tests").returncode == 0
    w.wait_for_server()
    r = w.run(suite, "tests", SOME_SETTING="changed")
    assert r.returncode == 0 and WARM not in r.stdout, r.stdout
    # the old server retired; the cold run started one for the new environment
    w.wait_for_server()
    r = w.run(suite, "tests", SOME_SETTING="changed")
    assert r.returncode == 0 and WARM in r.stdout, r.stdout


def test_warm_off_and_a_dead_socket(suite: Path, warm: object) -> None:
    w = warm  # type: ignore[assignment]
    r = w.run(suite, "tests", CLEANROOM_TEST_WARM="0")
    assert r.returncode == 0 and WARM not in r.stdout
    time.sleep(0.5)
    assert not w.socket.exists() and not _servers(w.tmpdir)
    import socket

    s = socket.socket(socket.AF_UNIX)
    s.bind(str(w.socket))  # bound, never listening, then closed: a dead server's leftover
    s.close()
    r = w.run(suite, "tests")
    assert r.returncode == 0 and WARM not in r.stdout, r.stdout + r.stderr


def test_ctrl_c_reaches_the_warm_run(suite: Path, warm: object) -> None:
    w = warm  # type: ignore[assignment]
    assert w.run(suite, "tests").returncode == 0
    w.wait_for_server()
    (suite / "tests" / "test_a.py").write_text(
        "import time\ndef test_slow():\n    print('STARTED', flush=True)\n    time.sleep(60)\n")
    p = subprocess.Popen([sys.executable, "-c", RUN, "tests", "-s"], cwd=suite, env=w.env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert p.stdout is not None
    for line in p.stdout:
        if "STARTED" in line:
            break
    p.send_signal(signal.SIGINT)
    rest = p.stdout.read()
    assert p.wait(timeout=30) == 2, rest  # pytest's "interrupted"
    assert "KeyboardInterrupt" in rest and WARM in rest, rest


def test_an_edit_anywhere_in_the_engine_retires_the_warm_interpreter(tmp_path: Path) -> None:
    """The warm server's key covers every layer of the engine, not only pipeline/."""
    engine = tmp_path / "src"
    shutil.copytree(ENGINE, engine, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    code = "import os; from cleanroom.pipeline.testall import key; print(key('/x', {'A': '1'}))"
    env = {**os.environ, "PYTHONPATH": str(engine), "PYTHONDONTWRITEBYTECODE": "1"}

    def current() -> str:
        return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                              check=True).stdout.strip()

    first = current()
    assert current() == first
    edited = engine / "cleanroom" / "core" / "errors.py"
    st = edited.stat()
    os.utime(edited, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert current() != first
