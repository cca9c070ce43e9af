"""Invoke tasks: the developer's daily loop, thin front-ends over the cleanroom engine."""

from __future__ import annotations

import sys
from pathlib import Path

from invoke import Context, Exit, task

try:  # the public API only; each task imports what it runs (the daily loop's start-up is measured)
    import cleanroom
except ImportError:  # not installed: use the engine from this checkout
    sys.path.insert(0, str(Path(__file__).parent / "tools" / "cleanroom" / "src"))
    try:
        import cleanroom
    except ImportError as exc:
        raise SystemExit(
            f"invoke: the cleanroom engine cannot be imported ({exc}); "
            "run: python3 -m pip install -e tools/cleanroom"
        ) from None


def _run(*argv: str) -> None:
    rc = cleanroom.main(list(argv))
    if rc:
        raise Exit(code=rc)


@task(
    help={
        "variant": "binary or source",
        "without": "optional dependency group to leave out (repeatable)",
        "force": "overwrite a hand-edited pyproject.toml",
    },
    iterable=["without"],
)
def select(c: Context, variant: str, without: list[str] | None = None, force: bool = False) -> None:
    """Write pyproject.toml from pyproject.<variant>.toml (generated; never edit it)."""
    _run("select", variant, *[f"--without={g}" for g in without or []], *(["--force"] if force else []))


def _daily(c: Context, name: str, *argv: str) -> None:
    """proto, verify, test-all, shell: in the app container (from the host: via exec)."""
    import shlex

    rc = cleanroom.run_task(name, [*argv, *shlex.split(c.remainder or "")])
    if rc:
        raise Exit(code=rc)


@task(help={"json": "JSON report", "format": "text, concise, json, github or sarif"})
def verify(c: Context, json: bool = False, format: str = "text") -> None:
    """Check every rule of the doctrine (in the app container when it runs; exit 1 on findings)."""
    _daily(c, "verify", f"--format={'json' if json else format}")


@task(
    help={
        "out": "output folder (default: /opt in the container, .cleanroom/proto on the host)",
        "check": "only check: exit 0 when current, 1 when missing or stale",
        "pth": "also write a .pth putting the output folder on the interpreter's sys.path",
    }
)
def proto(c: Context, out: str = "", check: bool = False, pth: bool = False) -> None:
    """Generate the protobuf package from proto/ (incremental, atomic; in the app container when it runs)."""
    flags = [f"--out={out}"] if out else []
    _daily(c, "proto", *flags, *(["--check"] if check else []), *(["--pth"] if pth else []))


@task(name="test-all")
def test_all(c: Context) -> None:
    """Run the tests in the app container, output captured to /tmp/test-output.txt (invoke test-all -- -k x)."""
    _daily(c, "test-all")


@task
def shell(c: Context) -> None:
    """Open a shell in the running app container."""
    _daily(c, "shell")


@task(help={"variant": "binary (default) or source", "rebuild": "build without the layer cache"})
def up(c: Context, variant: str = "binary", rebuild: bool = False) -> None:
    """Build the image (cached) and start the app container, without running tests."""
    _run("up", variant, *(["--rebuild"] if rebuild else []))


@task
def down(c: Context) -> None:
    """Stop and remove the app container."""
    _run("down")


@task(
    help={
        "apply": "carry out the plan (default: print it, change nothing)",
        "allow-dirty": "apply even when files it would change have uncommitted changes",
    }
)
def migrate_proto(c: Context, apply: bool = False, allow_dirty: bool = False) -> None:
    """Move checked-in *_pb2.py out of git: ignore rules, imports rewritten, untracked (dry run first)."""
    _run("migrate-proto", *(["--apply"] if apply else []), *(["--allow-dirty"] if allow_dirty else []))


@task(help={"yes": "delete them (default: list only)"})
def clean(c: Context, yes: bool = False) -> None:
    """List the host-side artifacts the policy names, with sizes; --yes deletes them (never tracked files)."""
    _run("clean", *(["--yes"] if yes else []))


@task(help={"json": "JSON report"})
def doctor(c: Context, json: bool = False) -> None:
    """Check what the workflow needs (Docker, Compose, builder, GPU, base image, config): OK or missing, with fixes."""
    _run("doctor", *(["--json"] if json else []))


@task(
    help={
        "build": "only this build (a compose service or Dockerfile name)",
        "builder": "buildkit or classic (default: the one a build here uses)",
        "json": "JSON listing",
        "sizes": "total size, largest folders and files",
        "why": "which ignore-file line decides this path (repo-relative)",
        "engine": "ask the Docker engine for the same listing and print differences",
    }
)
def context(c: Context, build: str = "", builder: str = "", json: bool = False, sizes: bool = False,
            why: str = "", engine: bool = False) -> None:
    """List what each build sends to Docker (--sizes, --why PATH, --engine)."""
    _run("context", *([f"--build={build}"] if build else []), *([f"--builder={builder}"] if builder else []),
         *(["--json"] if json else []), *(["--sizes"] if sizes else []), *([f"--why={why}"] if why else []),
         *(["--engine"] if engine else []))
