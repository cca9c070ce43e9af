"""The one subprocess seam (cleanroom.core.runner): its error policy, and a runner injected by a
test sees every command the engine would run."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from cleanroom.core import runner
from cleanroom.core.errors import EXIT_TOOL_MISSING, StepFailed, ToolMissing
from cleanroom.core.git import require_repo
from cleanroom.core.workspace import Workspace
from cleanroom.pipeline.stages import find_container


def test_a_missing_program_is_tool_missing_naming_it() -> None:
    with pytest.raises(ToolMissing) as e:
        runner.run(["cleanroom-no-such-program", "--version"], hint="install it with apt")
    assert e.value.exit_code == EXIT_TOOL_MISSING
    assert e.value.message.startswith("cleanroom-no-such-program: command not found")
    assert e.value.message.endswith("; install it with apt")


def test_a_timeout_is_a_failed_step_naming_the_command() -> None:
    with pytest.raises(StepFailed) as e:
        runner.run([sys.executable, "-c", "import time; time.sleep(5)"], timeout=0.2)
    assert "no answer within 0.2 s" in e.value.message and sys.executable in e.value.message


def test_check_names_the_command_and_its_last_error_line() -> None:
    with pytest.raises(StepFailed) as e:
        runner.run([sys.executable, "-c", "import sys; print('first', file=sys.stderr); "
                    "print('the reason', file=sys.stderr); sys.exit(4)"], check=True)
    assert "exit code 4" in e.value.message and e.value.message.endswith("(the reason)")
    assert runner.run([sys.executable, "-c", "raise SystemExit(3)"]).returncode == 3  # no check: the caller's


def test_env_is_added_and_unset_removes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLEANROOM_RUNNER_A", "kept")
    monkeypatch.setenv("CLEANROOM_RUNNER_B", "dropped")
    code = "import os; print(os.environ.get('CLEANROOM_RUNNER_A'), os.environ.get('CLEANROOM_RUNNER_B'), os.environ.get('X'))"
    r = runner.run([sys.executable, "-c", code], env={"X": "1"}, unset=("CLEANROOM_RUNNER_B",))
    assert r.stdout.split() == ["kept", "None", "1"]


def test_stream_tees_to_the_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "logs" / "step.log"
    rc = runner.stream([sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr); sys.exit(2)"],
                       log=log)
    assert rc == 2
    assert sorted(log.read_text().split()) == ["err", "out"]  # merged, as 2>&1
    assert "out" in capsys.readouterr().out


class Recorder(runner.Runner):
    """Answers every command from a table instead of running it, and records it."""

    def __init__(self, answers: dict[str, runner.Result]) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.answers = answers

    def run(self, argv: Sequence[str], **kw: Any) -> runner.Result:
        argv = tuple(str(a) for a in argv)
        self.calls.append(argv)
        for key, answer in self.answers.items():
            if key in argv:
                return runner.Result(argv, answer.returncode, answer.stdout, answer.stderr)
        return runner.Result(argv, 0, "", "")


def test_an_injected_runner_sees_the_engines_commands(tmp_path: Path) -> None:
    """git and docker calls go through the injected runner: nothing runs, and the engine acts on
    the runner's answers (here: a container of this project that mounts another checkout)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "cleanroom.toml").write_text('[docker]\nproject = "demo"\n')
    fake = Recorder({
        "rev-parse": runner.Result((), 0, f"{repo}\n", ""),
        "ps": runner.Result((), 0, "abc123\t/somewhere/else\n", ""),
    })
    with runner.using(fake):
        require_repo(repo)
        with pytest.raises(Exception) as e:
            find_container(Workspace.load(repo), running_only=True)
    assert "mounts /somewhere/else, not this checkout" in str(e.value)
    assert [c[1:3] for c in fake.calls] == [("rev-parse", "--show-toplevel"), ("ps", "--no-trunc")]
    assert fake.calls[1][0].endswith("docker")  # the one docker client, from the engine's choice
    assert runner.current() is not fake  # restored after the block
