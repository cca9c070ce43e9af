"""The daily-loop tasks (``invoke proto|verify|test-all|shell``): run in the app container from
the host, directly inside it, or on the host when no container runs (``proto``, ``verify``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from cleanroom.core.errors import BadInput
from cleanroom.core.workspace import Workspace, in_container
from cleanroom.pipeline.stages import app_running, in_app, say
from cleanroom.pipeline.testall import main as test_all


def daily(ws: Workspace, name: str, args: Sequence[str], cli: Callable[[list[str]], int]) -> int:
    """The daily-loop tasks (`invoke proto|verify|test-all|shell`): inside the app container.

    Inside it they run directly. On the host they run in the running app container; when none
    runs, ``proto`` and ``verify`` fall back to the host (``proto`` into ``[proto] host_out``),
    while ``test-all`` and ``shell`` need the container and say how to start it. ``cli`` is
    the command line (:func:`cleanroom.cli.app.main`), for what runs here.
    """
    if name == "shell":
        return in_app(ws, ["bash"], interactive=True)
    if name == "test-all":
        if in_container():
            return test_all(list(args))
        return in_app(ws, ["test-all", *args], env=("CLEANROOM_TEST_WARM",))
    if name not in ("proto", "verify"):
        raise BadInput(f"unknown task '{name}'")
    if in_container():
        return cli([name, *args])
    if app_running(ws):
        say(f"{name}: running in the app container")
        inner = ["cleanroom", name, *args] if name == "proto" else [
            "cleanroom", "--repo", "/workspace", "verify", *args]
        return in_app(ws, inner)
    say(f"{name}: the app container is not running; running on the host"
        + (f" (output under {ws.cfg.proto.host_out})" if name == "proto" else ""))
    return cli(["--repo", str(ws.repo), name, *args])
