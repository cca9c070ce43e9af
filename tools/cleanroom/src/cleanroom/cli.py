"""The ``cleanroom`` command line: a thin layer over the engine's functions.

Exit codes: 0 all good; 1 findings or a failed step; 2 bad input or config; 3 a needed tool or
engine is missing. Errors are one line (plus detail where it helps), never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from . import __version__
from .errors import EXIT_FINDINGS, EXIT_OK, CleanroomError
from .plan import execute
from .workspace import Workspace

Handler = Callable[[Workspace, argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse's own usage errors: one line and exit 2, like every other bad input.
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# ------------------------------------------------------------------------------ commands


def cmd_select(ws: Workspace, args: argparse.Namespace) -> int:
    from .variants import select_plan

    index_url = args.index_url or os.environ.get("CLEANROOM_INDEX_URL") or None
    sel, plan = select_plan(ws.repo, ws.cfg, args.variant, args.without, index_url, args.force)
    execute(plan, dry_run=args.dry_run)
    extra = f" without {', '.join(sel.without)}" if sel.without else ""
    extra += f", primary index {sel.index_url}" if sel.index_url else ""
    verb = "would write" if args.dry_run else "wrote"
    print(f"select: {verb} {ws.cfg.variants.target} from {sel.variant_file}{extra}")
    return EXIT_OK


def cmd_verify(ws: Workspace, args: argparse.Namespace) -> int:
    from pathlib import Path

    from .findings import render_github, render_json, render_text
    from .verify import fix, run_verify
    from .workspace import in_container

    if args.fix:
        written = fix(ws.repo, ws.cfg, dry_run=args.dry_run)
        for line in written:
            print(f"verify --fix: {'would ' if args.dry_run else ''}{line}")
        if not written:
            print("verify --fix: no ignore rules missing")
    out_dir = Path(args.out) if args.out else (Path(ws.cfg.proto.out) if in_container() else None)
    findings, checked = run_verify(ws.repo, ws.cfg, out_dir=out_dir, check_generated=out_dir is not None)
    if args.engine:
        from .engine_context import engine_findings

        findings += engine_findings(ws.repo, ws.cfg)
        checked.append("engine-context-diff")
    fmt = "json" if args.json else args.format
    render = {"text": render_text, "json": render_json, "github": render_github}[fmt]
    print(render(findings, checked))
    return EXIT_FINDINGS if findings else EXIT_OK


def cmd_proto(ws: Workspace, args: argparse.Namespace) -> int:
    from .proto import generate, render_check, status

    if args.check:
        st = status(ws, args.out)
        print(render_check(st))
        return EXIT_OK if st.current else EXIT_FINDINGS
    print(generate(ws, args.out, pth=args.pth, dry_run=args.dry_run))
    return EXIT_OK


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

    s = sub.add_parser("select", help="write pyproject.toml from a variant (binary or source)",
                       description="Write the root pyproject.toml (a generated artifact) from pyproject.VARIANT.toml.")
    s.add_argument("variant", help="binary or source")
    s.add_argument("--without", action="append", default=[], metavar="GROUP",
                   help="leave an optional dependency group (and sources only it uses) out; repeatable")
    s.add_argument("--index-url", metavar="URL",
                   help="use this simple-API index as Poetry's primary source (default: $CLEANROOM_INDEX_URL)")
    s.add_argument("--force", action="store_true", help="overwrite a hand-edited pyproject.toml")
    s.add_argument("--dry-run", action="store_true", help="print what would be written")
    s.set_defaults(handler=cmd_select)

    v = sub.add_parser("verify", help="check every rule of the doctrine",
                       description="Check every rule of the build-artifact doctrine; exit 1 on findings.")
    v.add_argument("--json", action="store_true", help="JSON report (same as --format json)")
    v.add_argument("--format", choices=("text", "json", "github"), default="text")
    v.add_argument("--out", metavar="DIR",
                   help="also check the generated protobuf package under DIR (default inside the container: [proto] out)")
    v.add_argument("--fix", action="store_true",
                   help="add missing ignore rules to a managed block in .gitignore/.dockerignore (never deletes or untracks)")
    v.add_argument("--dry-run", action="store_true", help="with --fix: show what would be written")
    v.add_argument("--engine", action="store_true",
                   help="also ask the Docker engine what each build context holds and report differences")
    v.set_defaults(handler=cmd_verify)

    pr = sub.add_parser("proto", help="generate the protobuf package (incremental, atomic)",
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
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        ws = Workspace.load(args.repo, args.config)
        handler: Handler = args.handler
        return handler(ws, args)
    except CleanroomError as exc:
        print(f"cleanroom {args.command}: error: {exc.message}", file=sys.stderr)
        if exc.detail:
            print(exc.detail.rstrip("\n"), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"cleanroom {args.command}: interrupted", file=sys.stderr)
        return 130
