"""The ``cleanroom`` command line: a thin layer over the engine's functions.

Exit codes: 0 all good; 1 findings or a failed step; 2 bad input or config; 3 a needed tool or
engine is missing. Errors are one line (plus detail where it helps), never a traceback.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from cleanroom import __version__
from cleanroom.core.errors import EXIT_FINDINGS, EXIT_OK, BadInput, CleanroomError
from cleanroom.core.workspace import Workspace, in_container

Handler = Callable[[Workspace, argparse.Namespace], int]


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is, so that cleanup runs as for Ctrl-C."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


class _OutputError(OSError):
    """Standard output could not be written (not a file the command was writing)."""


class _Stdout(io.FileIO):
    """Standard output's file descriptor, its write errors told apart from other I/O errors."""

    def write(self, data: Any) -> int:
        try:
            return super().write(data)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise _OutputError(exc.errno, exc.strerror) from None


def _name_stdout_errors() -> None:
    """Route the real standard output through :class:`_Stdout` (not a stream a caller put in
    its place, such as a test's capture)."""
    out = sys.stdout
    if out is None or out is not sys.__stdout__ or not isinstance(out, io.TextIOWrapper):
        return
    try:
        fd = out.fileno()
        out.flush()
    except (OSError, ValueError):
        return
    raw = _Stdout(fd, "w", closefd=False)
    sys.stdout = io.TextIOWrapper(io.BufferedWriter(raw), encoding=out.encoding, errors="surrogateescape",
                                  line_buffering=out.line_buffering)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse's own usage errors: one line and exit 2, like every other bad input.
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# ------------------------------------------------------------------------------ commands


def cmd_select(ws: Workspace, args: argparse.Namespace) -> int:
    # Imports are lazy everywhere here: `cleanroom proto`'s no-op path must start fast.
    from cleanroom.core import settings
    from cleanroom.core.actions import execute
    from cleanroom.variants.select import select_plan

    if args.index_url is not None:
        why = settings.BY_NAME["CLEANROOM_INDEX_URL"].check(args.index_url)
        if why is not None or not args.index_url:
            raise BadInput(f"--index-url {args.index_url!r}: {why or 'expected a URL'}")
    index_url = args.index_url or settings.get("CLEANROOM_INDEX_URL") or None
    from pathlib import Path

    wheels = Path(args.wheels) if args.wheels else None
    sel, plan = select_plan(ws.repo, ws.cfg, args.variant, args.without, index_url, args.force, wheels)
    execute(plan, dry_run=args.dry_run)
    extra = f" without {', '.join(sel.without)}" if sel.without else ""
    extra += f", primary index {sel.index_url}" if sel.index_url else ""
    verb = "would write" if args.dry_run else "wrote"
    print(f"select: {verb} {ws.cfg.variants.target} from {sel.variant_file}{extra}")
    return EXIT_OK


def cmd_verify(ws: Workspace, args: argparse.Namespace) -> int:
    from pathlib import Path

    from cleanroom.artifacts.policy import LISTED_NAMES
    from cleanroom.core.git import Listing, require_repo

    if args.out is not None and not args.out.strip():
        raise BadInput("--out '': expected the folder the generated package is in")
    require_repo(ws.repo)
    # git starts walking the tree now, while the rest of the engine is imported
    listing = None if args.fix else Listing(ws.repo, [*ws.cfg.artifact_patterns(ws.repo), *LISTED_NAMES])

    from cleanroom.core.report import RENDERERS
    from cleanroom.verify.run import fix, run

    if args.fix:
        res = fix(ws.repo, ws.cfg, dry_run=args.dry_run)
        for line in res.written:
            print(f"verify --fix: {'would ' if args.dry_run else ''}{line}")
        for line in res.refused:
            print(f"verify --fix: {line}")
        if not res.written and not res.refused:
            print("verify --fix: no ignore rules missing")
    out_dir = Path(args.out) if args.out else (Path(ws.cfg.proto.out) if in_container() else None)
    # [verify] in cleanroom.toml picks the rules (run() checks its names; --fix did already)
    report = run(ws.repo, ws.cfg, out_dir=out_dir, check_generated=out_dir is not None, listing=listing,
                 engine=args.engine)
    fmt = "json" if args.json else args.format
    result = report.result()
    print(RENDERERS[fmt](result))
    if fmt == "github":
        _step_summary(result)
    return EXIT_FINDINGS if result.findings else EXIT_OK


def _step_summary(result: Any) -> None:
    """GitHub shows at most 10 annotations per step: under GitHub Actions (GITHUB_STEP_SUMMARY,
    GitHub's own variable) every finding also goes to the job's summary page."""
    from cleanroom.core.report import github_summary

    target = os.environ.get("GITHUB_STEP_SUMMARY", "")
    if not target:
        return
    try:
        with open(target, "a", encoding="utf-8") as fh:
            fh.write(github_summary(result))
    except OSError as exc:
        print(f"verify: warning: cannot write the step summary {target}: {exc.strerror or exc}",
              file=sys.stderr)


def cmd_context(ws: Workspace, args: argparse.Namespace) -> int:
    from cleanroom.cli.context import Options, run
    from cleanroom.core.git import require_repo
    from cleanroom.docker.builds import discover

    require_repo(ws.repo)
    found = discover(ws.repo, ws.cfg)
    for note in found.notes:
        print(f"context: note: {note}", file=sys.stderr)
    if not found.builds:
        if args.json:
            print('{"builds": []}')
        else:
            print("context: no Docker build in this repo (no Dockerfile at its root, no compose "
                  "file with a build, none declared in cleanroom.toml)")
        return EXIT_OK
    opts = Options(build=args.build, builder=args.builder, json=args.json, sizes=args.sizes,
                   why=args.why or [], engine=args.engine)
    return run(ws.repo, found.builds, opts)


def cmd_proto(ws: Workspace, args: argparse.Namespace) -> int:
    from cleanroom.proto.generate import generate, render_check, status

    if args.out is not None and not args.out.strip():
        raise BadInput("--out '': expected a folder (the generated package goes into DIR/<package>)")
    if args.check:
        st = status(ws, args.out)
        print(render_check(st))
        return EXIT_OK if st.current else EXIT_FINDINGS
    print(generate(ws, args.out, pth=args.pth, dry_run=args.dry_run))
    return EXIT_OK


def cmd_build(ws: Workspace, args: argparse.Namespace) -> int:
    from cleanroom.pipeline.stages import Pipeline

    return Pipeline(ws, args.variant, tests=not args.no_tests, rebuild=args.rebuild).run(dry_run=args.dry_run)


def cmd_up(ws: Workspace, args: argparse.Namespace) -> int:
    from cleanroom.pipeline.stages import Pipeline

    return Pipeline(ws, args.variant, tests=False, rebuild=args.rebuild, until="up").run(dry_run=args.dry_run)


def cmd_down(ws: Workspace, args: argparse.Namespace) -> int:
    from cleanroom.pipeline.stages import down

    return down(ws)


def cmd_daily(ws: Workspace, args: argparse.Namespace) -> int:
    from cleanroom.cli.daily import daily

    rest = list(args.args)
    if rest[:1] == ["--"]:
        rest = rest[1:]
    return daily(ws, args.command, rest, main)


def run_task(name: str, args: Sequence[str] = (), prog: str = "invoke") -> int:
    """A daily-loop task (``proto``, ``verify``, ``test-all``, ``shell``) for this checkout, run
    where it belongs; its exit code (an error is one line ``<prog> <name>: error: ...``)."""
    from cleanroom.cli.daily import daily

    try:
        return daily(Workspace.load(), name, list(args), main)
    except CleanroomError as exc:
        print(f"{prog} {name}: error: {exc.message}", file=sys.stderr)
        return exc.exit_code


def cmd_base_image(ws: Workspace, args: argparse.Namespace) -> int:
    from cleanroom.pipeline.baseimage import DEFAULT_TAG, ensure_base_image

    ensure_base_image(args.tag or DEFAULT_TAG, rebuild=args.rebuild)
    return EXIT_OK


def cmd_migrate_proto(ws: Workspace, args: argparse.Namespace) -> int:
    from cleanroom.proto.migrate import migrate

    report, rc = migrate(ws, apply=args.apply, allow_dirty=args.allow_dirty)
    print(report)
    return rc


def cmd_clean(ws: Workspace, args: argparse.Namespace) -> int:
    from cleanroom.artifacts.clean import clean

    report, rc = clean(ws, yes=args.yes)
    print(report)
    return rc


def cmd_doctor(args: argparse.Namespace) -> int:
    from cleanroom.cli.doctor import run_doctor

    return run_doctor(args.repo, args.config, as_json=args.json)


def cmd_completion(args: argparse.Namespace) -> int:
    """The shell's completion script for ``cleanroom``, generated from this very parser (shtab):
    every command and option, always in step with the CLI."""
    import shtab

    print(shtab.complete(build_parser(), shell=args.shell, root_prefix="cleanroom"))
    return EXIT_OK


COMPLETION_HELP = """\
install (bash): cleanroom completion bash > ~/.local/share/bash-completion/completions/cleanroom
install (zsh):  cleanroom completion zsh > ~/.zfunc/_cleanroom   (with fpath+=(~/.zfunc) before
                compinit in ~/.zshrc)
then open a new shell."""


# -------------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="cleanroom",
        description="The build-artifact doctrine as commands: only sources in git; artifacts in the container.",
    )
    p.add_argument("--version", action="version", version=f"cleanroom {__version__}")
    p.add_argument("--repo", metavar="PATH", help="the repository (default: found from the current folder)")
    p.add_argument("--config", metavar="PATH", help="config file (default: REPO/cleanroom.toml)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    # --repo and --config are accepted after the command too (`cleanroom verify --repo X`).
    common = _Parser(add_help=False)
    common.add_argument("--repo", metavar="PATH", default=argparse.SUPPRESS,
                        help="the repository (default: found from the current folder)")
    common.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS,
                        help="config file (default: REPO/cleanroom.toml)")

    def add_parser(name: str, **kw: Any) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], **kw)

    s = add_parser("select", help="write pyproject.toml from a variant (binary or source)",
                       description="Write the root pyproject.toml (a generated artifact) from pyproject.VARIANT.toml.")
    s.add_argument("variant", help="binary or source")
    s.add_argument("--without", action="append", default=[], metavar="GROUP",
                   help="leave an optional dependency group (and sources only it uses) out; repeatable")
    s.add_argument("--index-url", metavar="URL",
                   help="use this simple-API index as Poetry's primary source (default: $CLEANROOM_INDEX_URL)")
    s.add_argument("--force", action="store_true", help="overwrite a hand-edited pyproject.toml")
    s.add_argument("--wheels", metavar="DIR",
                   help="install the wheels in DIR (built from source) in place of their packages")
    s.add_argument("--dry-run", action="store_true", help="print what would be written")
    s.set_defaults(handler=cmd_select)

    v = add_parser("verify", help="check every rule of the doctrine",
                       description="Check every rule of the build-artifact doctrine; exit 1 on findings. "
                       "cleanroom.toml [verify] select, ignore and per-path-ignores pick the rules.")
    v.add_argument("--json", action="store_true", help="JSON report (same as --format json)")
    v.add_argument("--format", choices=("text", "concise", "json", "github", "sarif"), default="text",
                   help="text (grouped by rule, with fixes), concise (one line per finding), json, github "
                        "(annotations; all findings also to $GITHUB_STEP_SUMMARY when set), sarif (SARIF 2.1.0)")
    v.add_argument("--out", metavar="DIR",
                   help="also check the generated protobuf package under DIR (default inside the container: [proto] out)")
    v.add_argument("--fix", action="store_true",
                   help="add missing ignore rules to a managed block in .gitignore/.dockerignore (never deletes or untracks)")
    v.add_argument("--dry-run", action="store_true", help="with --fix: show what would be written")
    v.add_argument("--engine", action="store_true",
                   help="also ask the Docker engine what each build context holds and report differences "
                        "(the rule engine-context-diff)")
    v.set_defaults(handler=cmd_verify)

    mp = add_parser("migrate-proto", help="move checked-in *_pb2.py out of git (dry run first)",
                        description="Move a repo that tracks generated protobuf code onto the doctrine: "
                        "ignore rules, a Dockerfile check, imports rewritten from [proto] legacy_module to "
                        "[proto] package, generated files untracked (kept on disk). Prints the plan; "
                        "--apply carries it out.")
    mp.add_argument("--apply", action="store_true", help="carry out the plan (default: print it only)")
    mp.add_argument("--allow-dirty", action="store_true",
                    help="apply even when files it would change have uncommitted changes")
    mp.set_defaults(handler=cmd_migrate_proto)

    cl = add_parser("clean", help="list (--yes: delete) the host-side artifacts the policy names",
                        description="List the untracked files and folders the artifact policy names "
                        "(caches, generated code, a stray pyproject.toml, lockfiles) with their sizes; "
                        "--yes deletes them. Never a tracked file, nothing outside the repo, links as links.")
    cl.add_argument("--yes", action="store_true", help="delete them (default: list only)")
    cl.set_defaults(handler=cmd_clean)

    dr = add_parser("doctor", help="check what the workflow needs, with the command that fixes each",
                        description="One row per thing the workflow needs (Docker client, engine, Compose, "
                        "builder, GPU runtime, base images, config, variants, generated code): OK or "
                        "missing, with the fix. Exit 0 when the main job can run, 3 when it cannot.")
    dr.add_argument("--json", action="store_true", help="JSON report")
    dr.set_defaults(handler=None, own_workspace=cmd_doctor)

    cx = add_parser("context", help="list what each build sends to Docker, and why",
                        description="List every file each build (as verify discovers them) sends to "
                        "Docker, sorted, under a header naming the ignore file applied.")
    cx.add_argument("--build", metavar="NAME", help="only this build")
    cx.add_argument("--builder", choices=("buildkit", "classic"),
                    help="model this builder (default: the one a build here uses; $CLEANROOM_BUILDER)")
    cx.add_argument("--json", action="store_true", help="JSON: builds with their files (path, size)")
    cx.add_argument("--sizes", action="store_true", help="total size, largest folders and files")
    cx.add_argument("--why", action="append", metavar="PATH",
                    help="which ignore-file line decides PATH (repo-relative; need not exist); repeatable")
    cx.add_argument("--engine", action="store_true",
                    help="ask the Docker engine for the same listing; print differences (exit 1 on any)")
    cx.set_defaults(handler=cmd_context)

    pr = add_parser("proto", help="generate the protobuf package (incremental, atomic)",
                        description="Generate *_pb2.py, *_pb2.pyi and *_pb2_grpc.py from [proto] sources "
                        "into the package [proto] package under DIR; 'up to date' when nothing changed.")
    pr.add_argument("--out", metavar="DIR",
                    help="output folder (default: [proto] out in the container, [proto] host_out on the host)")
    pr.add_argument("--check", action="store_true",
                    help="only check: exit 0 when current, 1 when missing or stale (naming why)")
    pr.add_argument("--pth", action="store_true",
                    help="also write a .pth into this interpreter's site-packages putting DIR on sys.path")
    pr.add_argument("--dry-run", action="store_true", help="print the plan")
    pr.set_defaults(handler=cmd_proto)

    for name, variant_help in (("build", "run the whole pipeline"), ("up", "build the image if needed and start the app container")):
        b = add_parser(
            name,
            help=("select, build, up, test-all and verify in the container (the main job)" if name == "build"
                  else "select, build (cached) and start the app container, no tests"),
            description=f"{variant_help}: stages are announced, timed and logged under .cleanroom/logs.",
        )
        b.add_argument("variant", nargs=None if name == "build" else "?", default="binary",
                       choices=("binary", "source"), help="the pyproject variant (and Dockerfile)")
        if name == "build":
            b.add_argument("--no-tests", action="store_true", help="skip the test-all stage")
        b.add_argument("--rebuild", action="store_true", help="build without the layer cache")
        b.add_argument("--dry-run", action="store_true",
                       help="print every stage's actions and change nothing (the engine is asked, read-only)")
        b.set_defaults(handler=cmd_build if name == "build" else cmd_up)

    d = add_parser("down", help="stop and remove the app container")
    d.set_defaults(handler=cmd_down)
    for name, hlp in (
        ("test-all", "run the test suite in the app container (args go to pytest); output captured to the log"),
        ("shell", "open a shell in the app container"),
    ):
        t = add_parser(name, help=hlp, description=hlp + ". On the host it runs inside the running "
                           "app container; inside the container it runs directly.")
        t.add_argument("args", nargs=argparse.REMAINDER, help="arguments (for test-all: pytest's)")
        t.set_defaults(handler=cmd_daily)

    co = add_parser("completion", help="print the shell completion script (bash or zsh)",
                    description="Print the completion script for the shell.",
                    epilog=COMPLETION_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    co.add_argument("shell", choices=("bash", "zsh", "tcsh"))
    co.set_defaults(handler=None, own_workspace=cmd_completion)

    bi = add_parser("base-image", help="build the offline base image (mmdebstrap | docker import)")
    bi.add_argument("--tag", help="the image's tag (default: the offline base, cleanroom-base:offline)")
    bi.add_argument("--rebuild", action="store_true", help="rebuild even if it exists")
    bi.set_defaults(handler=cmd_base_image)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # an option no command takes: named by the command's parser (`cleanroom verify: error:`)
        commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        commands.choices[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    # file names that are not UTF-8 (git hands them over as surrogates) go out as their bytes
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="surrogateescape")
    _name_stdout_errors()
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        # SIGTERM unwinds like Ctrl-C: a temporary file or tree being written is removed on the way out.
        signal.signal(signal.SIGTERM, _terminate)
    try:
        from cleanroom.core import settings

        settings.check()
        if getattr(args, "own_workspace", None):  # doctor (a bad config is a row, not an exit 2), completion
            return int(args.own_workspace(args))
        ws = Workspace.load(args.repo, args.config)
        handler: Handler = args.handler
        rc = handler(ws, args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler below
        return rc
    except CleanroomError as exc:
        print(f"cleanroom {args.command}: error: {exc.message}", file=sys.stderr)
        if exc.detail:
            print(exc.detail.rstrip("\n"), file=sys.stderr)
        if getattr(args, "json", False) or getattr(args, "format", "") == "json":
            # a reader of --json gets JSON on stdout either way
            import json

            print(json.dumps({"error": exc.message, "exit_code": exc.exit_code}))
        elif getattr(args, "format", "") == "sarif":
            # and a SARIF reader a valid log that says the run failed, and why
            from cleanroom.core.report import Result, render_sarif
            from cleanroom.verify.rules import RULE_DOCS

            print(render_sarif(Result([], [], rules=RULE_DOCS), error=exc.message))
        return exc.exit_code
    except KeyboardInterrupt as exc:
        term = isinstance(exc, Terminated)
        print(f"cleanroom {args.command}: {'terminated' if term else 'interrupted'}", file=sys.stderr)
        return 143 if term else 130
    except BrokenPipeError:
        # The reader went away (`cleanroom verify | head`): stop quietly, as other tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except OSError as exc:
        # An I/O failure no step caught, standard output's above all (a full disk:
        # `cleanroom verify > /dev/full`): one line and exit 1, as for any failed write.
        if isinstance(exc, _OutputError):
            what = "cannot write standard output: "
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # what is still buffered goes nowhere
        else:
            what = f"{exc.filename}: " if exc.filename else ""
        print(f"cleanroom {args.command}: error: {what}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_FINDINGS
