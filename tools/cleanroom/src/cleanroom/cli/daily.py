"""The daily-loop tasks (``invoke proto|verify|test-all|shell``): run in the app container from
the host, directly inside it, or on the host when no container runs (``proto``, ``verify``).

With a remote engine (:mod:`cleanroom.pipeline.remote`) each task first brings the container up
to date with the checkout (a rebuild when the dependency layer changed, then the changed files);
``test-all`` then copies its log back into ``.cleanroom/logs/``, and ``verify`` checks the
checkout here and the generated code in the container.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from cleanroom.core import runner
from cleanroom.core.errors import BadInput, StepFailed
from cleanroom.core.workspace import Workspace, in_container
from cleanroom.docker.engine import docker_client, location
from cleanroom.pipeline import remote
from cleanroom.pipeline.stages import (
    Pipeline,
    app_compose_file,
    app_running,
    find_container,
    in_app,
    say,
    test_log,
)
from cleanroom.pipeline.testall import main as test_all


def daily(ws: Workspace, name: str, args: Sequence[str], cli: Callable[[list[str]], int]) -> int:
    """The daily-loop tasks (`invoke proto|verify|test-all|shell`): inside the app container.

    Inside it they run directly. On the host they run in the running app container; when none
    runs, ``proto`` and ``verify`` fall back to the host (``proto`` into ``[proto] host_out``),
    while ``test-all`` and ``shell`` need the container and say how to start it. ``cli`` is
    the command line (:func:`cleanroom.cli.app.main`), for what runs here.
    """
    if name not in ("proto", "verify", "test-all", "shell"):
        raise BadInput(f"unknown task '{name}'")
    if in_container():
        return test_all(list(args)) if name == "test-all" else (
            runner.run(["bash"], capture=False).returncode if name == "shell" else cli([name, *args]))
    far = location().remote
    if far and app_running(ws):
        bring_up_to_date(ws)
    if name == "shell":
        return in_app(ws, ["bash"], interactive=True)
    if name == "test-all":
        rc = in_app(ws, ["test-all", *args], env=("CLEANROOM_TEST_WARM",))
        if far:
            cid = find_container(ws, running_only=True)
            for path in remote.fetch_test_logs(ws, docker_client(), cid, test_log()) if cid else []:
                say(f"test-all: copied to {path}")
        return rc
    if app_running(ws):
        if far and name == "verify":
            say("verify: remote engine: checking the checkout here, the generated code in the app container")
            rc = cli(["--repo", str(ws.repo), "verify", *args])
            return max(rc, in_app(ws, ["cleanroom", "proto", "--check"]))
        say(f"{name}: running in the app container")
        inner = ["cleanroom", name, *args] if name == "proto" else [
            "cleanroom", "--repo", "/workspace", "verify", *args]
        return in_app(ws, inner)
    say(f"{name}: the app container is not running; running on the host"
        + (f" (output under {ws.cfg.proto.host_out})" if name == "proto" else ""))
    return cli(["--repo", str(ws.repo), name, *args])


def bring_up_to_date(ws: Workspace) -> None:
    """Remote engine: rebuild the image (and recreate the container) when what its dependency
    layer is built from changed, then send the files changed since the last sync."""
    client = docker_client()
    cid = find_container(ws, running_only=True)
    if cid is None:
        return
    r = runner.run([client, "inspect", "-f", f'{{{{index .Config.Labels "{remote.DEPS_LABEL}"}}}}\t'
                    f'{{{{index .Config.Labels "{remote.VARIANT_LABEL}"}}}}', cid])
    built, _, variant = str(r.stdout).strip().partition("\t")
    if variant in ("binary", "source"):
        d = ws.cfg.docker
        dockerfile = d.binary_dockerfile if variant == "binary" else d.source_dockerfile
        if built and built != remote.deps_digest(ws, variant, dockerfile):
            say(f"remote engine: the image's dependency layer is out of date ({ws.cfg.variants.path_of(variant)}, "
                f"poetry.toml, {dockerfile} or the pins changed): rebuilding and recreating the app container")
            if Pipeline(ws, variant, tests=False, until="up").run() != 0:
                raise StepFailed("the rebuild for the remote engine failed (see above)")
            cid = find_container(ws, running_only=True)
            if cid is None:
                raise StepFailed("the app container is not running after the rebuild")
    say(remote.sync(ws, client, cid, app_compose_file(ws)))
