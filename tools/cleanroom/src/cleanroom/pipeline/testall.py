"""``test-all``: the entry point, and a warm interpreter in the container (third-party modules
already imported) that later runs fork from; a cold run is :mod:`cleanroom.pipeline.testrun`.

Every ``test-all`` pays for starting Python and importing pytest and the project's dependencies
(numpy, protobuf, grpc; torch takes seconds) before the first test runs, although none of that
changes between two runs of the daily loop. After a run, ``test-all`` starts (detached) a small
server that imports the *third-party* modules that run imported, and the next run forks a child
from it, hands it the terminal (its file descriptors, over a Unix socket), its folder, its
environment and its arguments; the child runs pytest as a cold run would and reports its exit
code. The project's own modules, the tests and the generated protobuf package are never preloaded:
only modules whose files live in the interpreter's standard library or site-packages are, so an
edit shows in the next run exactly as in a cold one.

The warm interpreter is used only when it matches the run: the same interpreter, folder and
environment, and unchanged site-packages and engine (a ``poetry add`` in the container, or any
install, changes a site-packages folder's mtime). Otherwise it retires and the run is cold (and
starts a fresh one after). Anything unexpected on the way falls back to a cold run: the warm path
can make a run faster, never fail it. ``CLEANROOM_TEST_WARM=0`` turns it off; it never runs on
the host (only in the container, where test-all runs).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from cleanroom.core import runner, settings
from cleanroom.core.errors import CleanroomError, StepFailed
from cleanroom.core.hashing import sha256
from cleanroom.pipeline.testrun import DEFAULT_LOG, run_test_all

IDLE_S = 8 * 3600  # a server nobody asked for this long exits
POLL_S = 1.0  # how often an idle server checks that its socket is still its own


def _socket_path() -> str:
    """One per user and temporary folder (``$TMPDIR``, else /tmp: the container's own)."""
    return os.path.join(os.environ.get("TMPDIR") or "/tmp", f"cleanroom-test-all.{os.getuid()}.sock")


def _roots() -> tuple[str, ...]:
    """Where preloadable modules live: the standard library and site-packages (purelib, platlib)."""
    import sysconfig

    paths = sysconfig.get_paths()
    found = {os.path.realpath(paths[k]) for k in ("stdlib", "platstdlib", "purelib", "platlib") if paths.get(k)}
    return tuple(sorted(p + os.sep for p in found))


def key(cwd: str, environ: dict[str, str]) -> str:
    """What a warm interpreter must match: interpreter, folder, environment, and the mtimes of
    site-packages and of the engine's own files (so an install or an engine edit retires it)."""
    import sysconfig

    stamp: list[object] = [sys.executable, cwd, sorted(environ.items())]
    paths = sysconfig.get_paths()
    for k in ("purelib", "platlib"):
        try:
            stamp.append(os.stat(paths[k]).st_mtime_ns)
        except (KeyError, OSError):
            stamp.append(None)
    engine = Path(__file__).parents[1]  # the whole cleanroom package, every layer
    stamp.append(sorted((str(p.relative_to(engine)), p.stat().st_mtime_ns) for p in engine.rglob("*.py")))
    return str(sha256()(json.dumps(stamp, default=str).encode()).hexdigest())


def _library_modules(modules: Mapping[str, object]) -> tuple[list[str], list[str]]:
    """The loaded modules (but the engine and ``__main__``) whose file is in the standard library
    or site-packages, and those whose file is elsewhere (the project, tests, generated code)."""
    roots = _roots()
    inside: list[str] = []
    outside: list[str] = []
    for name, mod in list(modules.items()):
        f = getattr(mod, "__file__", None)
        if name == "__main__" or name.split(".")[0] == "cleanroom" or not isinstance(f, str):
            continue
        (inside if os.path.realpath(f).startswith(roots) else outside).append(name)
    return sorted(inside), sorted(outside)


def preloadable(modules: Mapping[str, object]) -> list[str]:
    """The imported modules a warm interpreter may hold: never the project's sources, tests or
    generated code."""
    return _library_modules(modules)[0]


# ------------------------------------------------------------------------------ client


def try_warm(args: Sequence[str], log: Path) -> int | None:
    """Run through a warm interpreter: pytest's exit code, or None when there is none that fits
    (nothing was run then; the caller runs cold)."""
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    except OSError:
        return None
    path = _socket_path()
    try:
        s.connect(path)
    except OSError:
        s.close()
        return None
    try:
        cwd = os.getcwd()
        env = dict(os.environ)
        req = json.dumps({"key": key(cwd, env), "cwd": cwd, "env": env, "args": list(args),
                          "log": str(log)}).encode()
        sys.stdout.flush()
        sys.stderr.flush()
        socket.send_fds(s, [len(req).to_bytes(4, "big") + req], [0, 1, 2])
        reader = s.makefile("rb")
        first = reader.readline()
        reply = json.loads(first) if first else {}
        pid = reply.get("pid")
        if not isinstance(pid, int):
            return None  # stale (the server retires) or refused: nothing ran
    except (OSError, ValueError):
        s.close()
        return None
    # From here the child runs the tests: forward the signals the user sends, wait for its code.
    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(pid, signum)
        except OSError:
            pass

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, forward)
    try:
        line = reader.readline()
        done = json.loads(line) if line else {}
    except (OSError, ValueError):
        done = {}
    finally:
        s.close()
    rc = done.get("rc")
    if not isinstance(rc, int):
        print(f"test-all: the test process (pid {pid}) ended without an exit code (killed?)", file=sys.stderr)
        return 1
    return rc


def start_server(modules: Iterable[str], env: dict[str, str]) -> None:
    """Start a warm interpreter in the background for the next run (detached: it outlives this
    one; its output goes nowhere), for a run with ``env`` (the environment test-all started
    with). Errors are ignored: the next run is then cold."""
    cwd = os.getcwd()
    try:
        proc = runner.spawn(
            [sys.executable, "-c", "from cleanroom.pipeline.testall import serve; serve()"],
            stdin=runner.PIPE, stdout=runner.DEVNULL, stderr=runner.DEVNULL,
            start_new_session=True, cwd=cwd, env=env, close_fds=True,
        )
        assert proc.stdin is not None
        with proc.stdin:
            proc.stdin.write(json.dumps({"key": key(cwd, env), "modules": list(modules)}).encode())
    except (OSError, ValueError, CleanroomError):
        pass


# ------------------------------------------------------------------------------ server


def _recv_request(conn: socket.socket) -> tuple[dict[str, object], list[int]]:
    data, fds, _flags, _addr = socket.recv_fds(conn, 1 << 20, 3)
    if len(data) < 4:
        raise ValueError("short request")
    size = int.from_bytes(data[:4], "big")
    body = data[4:]
    while len(body) < size:
        more = conn.recv(size - len(body))
        if not more:
            raise ValueError("short request")
        body += more
    return json.loads(body), fds


def _child(conn: socket.socket, req: dict[str, object], fds: list[int]) -> None:
    """In the forked child: become the run (its terminal, folder, environment), run, report."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(str(req["cwd"]))
    os.environ.clear()
    env = req["env"]
    assert isinstance(env, dict)
    os.environ.update({str(k): str(v) for k, v in env.items()})
    sys.argv = ["test-all", *req["args"]]  # type: ignore[misc]
    if "numpy.random" in sys.modules:  # a fresh seed per run, as a cold start has
        sys.modules["numpy.random"].seed()
    rc = 1
    try:
        rc = run_test_all(list(req["args"]), Path(str(req["log"])),  # type: ignore[call-overload]
                          " (warm interpreter: CLEANROOM_TEST_WARM=0 for a cold one)")
    except BaseException as exc:  # noqa: BLE001 (reported to the client as a failed run)
        print(f"test-all: error: {exc}", file=sys.stderr, flush=True)
    finally:
        try:
            conn.sendall(json.dumps({"rc": rc}).encode() + b"\n")
        finally:
            os._exit(0)


def _pytest_plugin_modules() -> set[str]:
    """The top-level modules of the distributions that declare pytest plugins: pytest rewrites
    their asserts when it loads them, which it cannot do for a module already imported (it
    warns), so a warm interpreter leaves them to the run."""
    from importlib.metadata import distributions

    found: set[str] = set()
    for dist in distributions():
        try:
            if not any(ep.group == "pytest11" for ep in dist.entry_points):
                continue
            for f in dist.files or ():
                top = f.parts[0] if f.parts else ""
                if top.endswith(".py"):
                    found.add(top[:-3])
                elif top and "." not in top and top != "__pycache__":
                    found.add(top)
        except Exception:  # noqa: BLE001,S112 (a broken distribution's metadata: skip it)
            continue
    return found


def serve() -> None:
    """The server: read what to preload from stdin, import it, then serve runs until a run does
    not match (it retires then), or it idles for IDLE_S."""
    import importlib

    spec = json.loads(sys.stdin.read())
    my_key = spec["key"]
    at_start = set(_library_modules(sys.modules)[1])  # site's own (sitecustomize, .pth hooks)
    plugins = _pytest_plugin_modules()
    for name in spec["modules"]:
        if name.split(".")[0] in plugins:
            continue
        try:
            importlib.import_module(name)
        except BaseException:  # noqa: BLE001 (a module that fails here is imported by the run itself)
            pass
    import _pytest.config  # type: ignore[import-not-found, unused-ignore]  # noqa: F401 (the run needs it)

    # A preloaded module that imported the project (or anything outside the library folders)
    # would make runs see stale code: such a server is not used.
    if set(_library_modules(sys.modules)[1]) - at_start:
        return
    path = _socket_path()
    tmp = f"{path}.{os.getpid()}"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        srv.bind(tmp)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)  # atomically: a newer server replaces an older one
    except OSError:
        return
    srv.listen(8)
    srv.settimeout(POLL_S)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    me = os.stat(path).st_ino
    import time

    last = time.monotonic()
    try:
        while True:
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                # retire when idle too long, or when the socket was removed or taken over by a
                # newer server (so replaced servers never pile up)
                if time.monotonic() - last > IDLE_S or _inode(path) != me:
                    return
                continue
            last = time.monotonic()
            conn.settimeout(None)
            try:
                req, fds = _recv_request(conn)
            except (OSError, ValueError):
                conn.close()
                continue
            if req.get("key") != my_key:
                for fd in fds:
                    os.close(fd)
                conn.sendall(b'{"stale": true}\n')
                conn.close()
                return
            go_r, go_w = os.pipe()  # the child starts once the client has its pid (then its code)
            pid = os.fork()
            if pid == 0:
                srv.close()
                os.close(go_w)
                os.read(go_r, 1)
                os.close(go_r)
                _child(conn, req, fds)
            os.close(go_r)
            for fd in fds:
                os.close(fd)
            try:
                conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
            except OSError:
                os.kill(pid, signal.SIGKILL)  # the client is gone: nobody to run for
            finally:
                os.close(go_w)
                conn.close()
    finally:
        if _inode(path) == me:
            try:
                os.unlink(path)
            except OSError:
                pass


def _inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    env = dict(os.environ)  # as the run found it (a warm interpreter must match it)
    try:
        log = Path(settings.get("CLEANROOM_TEST_LOG") or DEFAULT_LOG)
        if args[:1] == ["--log"] and len(args) >= 2:
            log, args = Path(args[1]), args[2:]
        # In the container a warm interpreter (below) saves the start-up of every run after
        # the first; never on the host, never when CLEANROOM_TEST_WARM is off.
        warm = os.environ.get("DOCKER_CONTAINER") == "1" and settings.flag("CLEANROOM_TEST_WARM") is not False
        if warm:
            rc = try_warm(args, log)
            if rc is not None:
                return rc
        rc = run_test_all(args, log)
        if warm:
            start_server(preloadable(sys.modules), env)
        return rc
    except CleanroomError as exc:
        print(f"test-all: error: {exc.message}", file=sys.stderr)
        return exc.exit_code if not isinstance(exc, StepFailed) else 1
