"""``migrate-proto``: move a repo that tracks generated protobuf code onto the doctrine.

The doctrine's "Protobuf Migration Status" lists four manual steps; this module makes them one
plan, shown first (dry run) and carried out with ``--apply``:

1. ignore rules for ``*_pb2.py``, ``*_pb2.pyi`` and ``*_pb2_grpc.py`` in ``.gitignore`` and in the
   ``.dockerignore`` every build reads (the managed block of ``verify --fix``, :mod:`cleanroom.fix`);
2. a check that the Dockerfiles generate the code into ``[proto] out`` (the engine's proto step),
   naming the exact lines to add where they do not (reported: Dockerfiles are never edited);
3. the Python imports of the old generated modules (``[proto] legacy_module``, e.g. ``pkg.proto``)
   rewritten to the generated package (``[proto] package``) in every tracked ``.py``/``.pyi`` file,
   with libcst (formatting and comments kept); files inside the legacy module are reported only;
4. the generated files untracked (``git rm --cached``: they stay on disk).

Every step is idempotent: a second ``--apply`` finds nothing to do.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import libcst as cst
from libcst.helpers import get_full_name_for_node
from libcst.metadata import MetadataWrapper, PositionProvider

from . import policy
from .builds import Build, interpolate
from .config import Config
from .errors import BadInput
from .fix import with_rules
from .gitutil import git, require_repo, split0
from .plan import Plan, Run, WriteFile, execute
from .verify import VerifyContext, docker_gaps, gitignore_gaps
from .workspace import Workspace

PROTO_PATTERNS: tuple[str, ...] = ("*_pb2.py", "*_pb2.pyi", "*_pb2_grpc.py", "*_pb2_grpc.pyi")
_GENERATED = re.compile(r"^[A-Za-z_]\w*_pb2(_grpc)?$")
_GENERATED_FILE = re.compile(r"_pb2(_grpc)?\.pyi?$")
_SERVICE = re.compile(r"^\s*service\s+\w+", re.M)
_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


# ------------------------------------------------------------------------------ results


@dataclass(frozen=True)
class IgnoreChange:
    path: str  # repo-relative
    rules: tuple[str, ...]
    old: str
    new: str


@dataclass(frozen=True)
class DockerfileCheck:
    """Whether one Dockerfile runs the proto step into ``[proto] out``; what to add if not."""

    path: str  # repo-relative
    builds: tuple[str, ...]
    ok: bool
    message: str
    add: tuple[str, ...] = ()


@dataclass(frozen=True)
class Note:
    """An import the migration does not rewrite, with where it is and why."""

    path: str
    line: int
    code: str
    why: str


@dataclass(frozen=True)
class Rewrite:
    path: str  # repo-relative
    old: str
    new: str
    imports: int
    uses: int  # attribute uses rewritten (``pkg.proto.x_pb2.Msg``)

    @property
    def what(self) -> str:
        return f"{self.imports} import(s)" + (f" and {self.uses} use(s)" if self.uses else "")


@dataclass
class Migration:
    repo: Path
    cfg: Config
    legacy_dir: str | None
    ignore: list[IgnoreChange] = field(default_factory=list)
    dockerfiles: list[DockerfileCheck] = field(default_factory=list)
    rewrites: list[Rewrite] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    unparsed: list[tuple[str, str]] = field(default_factory=list)
    untrack: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def plan(self) -> Plan:
        """The changes, in order: ignore rules, import rewrites, then untracking."""
        actions: Plan = []
        for ic in self.ignore:
            actions.append(WriteFile(self.repo / ic.path, ic.new,
                                     f"add {len(ic.rules)} rule(s) to the managed block"))
        for rw in self.rewrites:
            actions.append(WriteFile(self.repo / rw.path, rw.new,
                                     f"rewrite {rw.what} to {self.cfg.proto.package}"))
        if self.untrack:
            actions.append(Run(("git", "rm", "--cached", "-q", "--", *self.untrack), cwd=self.repo,
                               desc="untrack generated protobuf code (kept on disk)"))
        return actions

    @property
    def touched(self) -> list[str]:
        """Repo-relative paths the plan changes (in the work tree or the index)."""
        return [*(i.path for i in self.ignore), *(r.path for r in self.rewrites), *self.untrack]

    @property
    def manual(self) -> list[str]:
        """What is left for a person to do (Dockerfile lines, imports inside the legacy module)."""
        out = [f"{d.path}: {d.message} " + " ; ".join(f"`{a}`" for a in d.add)
               for d in self.dockerfiles if not d.ok]
        out += [f"{n.path}:{n.line}: {n.why}" for n in self.notes]
        return out


# ------------------------------------------------------------------------------ names


class ModuleMap:
    """Old generated module (relative to the legacy module) -> its name in the new package."""

    def __init__(self, legacy: str, package: str, known: frozenset[str]) -> None:
        self.legacy = legacy
        self.package = package
        self.known = known
        self.unknown: set[str] = set()
        by_base: dict[str, list[str]] = {}
        for m in known:
            by_base.setdefault(m.rsplit(".", 1)[-1], []).append(m)
        self._by_base = by_base

    def rest_of(self, module: str) -> str | None:
        """``pkg.proto.sub.x_pb2`` -> ``sub.x_pb2``; None when not a generated legacy module."""
        if not module.startswith(self.legacy + "."):
            return None
        rest = module[len(self.legacy) + 1 :]
        return rest if _GENERATED.match(rest.rsplit(".", 1)[-1]) else None

    def new(self, rest: str) -> str:
        if rest in self.known:
            return f"{self.package}.{rest}"
        base = rest.rsplit(".", 1)[-1]
        same = self._by_base.get(base, [])
        if len(same) == 1:
            return f"{self.package}.{same[0]}"
        if self.known:
            self.unknown.add(rest)
        return f"{self.package}.{rest}"


def _known_modules(ws: Workspace) -> tuple[frozenset[str], str | None]:
    """The modules the proto step generates (``x_pb2``, ``x_pb2_grpc``), or a warning."""
    from . import proto

    try:
        protos = proto.find_protos(proto.resolve_target(ws))
    except BadInput as exc:
        return frozenset(), f"cannot list the .proto sources ({exc.message}): imports are mapped by name"
    names: set[str] = set()
    for rel in protos:
        m = proto.module_name(rel)
        names.add(m)
        try:
            text = (ws.path(ws.cfg.proto.sources) / rel).read_text(encoding="utf-8", errors="replace")
        except OSError:
            text = ""
        if _SERVICE.search(text):  # protoc writes x_pb2_grpc.py for files that declare services
            names.add(m + "_grpc")
    return frozenset(names), None


def _dotted(name: str) -> cst.Attribute | cst.Name:
    expr = cst.parse_expression(name)
    assert isinstance(expr, (cst.Attribute, cst.Name))
    return expr


# ------------------------------------------------------------------------------ rewriting


class _UnaliasedImports(cst.CSTVisitor):
    """``import pkg.proto.x_pb2`` (no alias): code then uses ``pkg.proto.x_pb2.Msg``."""

    def __init__(self, names: ModuleMap) -> None:
        self.names = names
        self.found: dict[str, str] = {}

    def visit_Import(self, node: cst.Import) -> None:
        for alias in node.names:
            full = get_full_name_for_node(alias.name)
            rest = self.names.rest_of(full or "")
            if full and rest is not None and alias.asname is None:
                self.found[full] = self.names.new(rest)


class ImportRewriter(cst.CSTTransformer):
    """Rewrites imports of generated modules under ``legacy`` into the new package."""

    METADATA_DEPENDENCIES = (PositionProvider,)

    def __init__(self, names: ModuleMap, file_module: str | None, is_package: bool,
                 attrs: dict[str, str]) -> None:
        super().__init__()
        self.names = names
        self.file_module = file_module
        self.is_package = is_package
        self.attrs = attrs
        self.changed: list[tuple[int, str]] = []  # (line, original code) per rewritten statement
        self.notes: list[tuple[int, str, str]] = []  # (line, code, why)
        self.attr_uses = 0
        self._in_import = 0
        self._empty = cst.Module(body=[])

    # -- helpers

    def _resolve(self, node: cst.ImportFrom) -> str | None:
        mod = get_full_name_for_node(node.module) if node.module is not None else ""
        level = len(node.relative)
        if level == 0:
            return mod
        if self.file_module is None:
            return None
        parts = self.file_module.split(".")
        pkg = parts if self.is_package else parts[:-1]
        if level - 1 > len(pkg):
            return None
        base = pkg[: len(pkg) - (level - 1)]
        return ".".join([*base, mod] if mod else base)

    @staticmethod
    def _with_names(node: cst.ImportFrom, aliases: Sequence[cst.ImportAlias]) -> list[cst.ImportAlias]:
        out = list(aliases)
        if not out or isinstance(node.names, cst.ImportStar):
            return out
        if node.lpar is None:
            out[-1] = out[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
            return out
        orig_last = node.names[-1]
        comma = out[-1].comma
        if out[-1] is orig_last or not isinstance(comma, cst.Comma):
            return out
        ws = comma.whitespace_after
        if isinstance(ws, cst.ParenthesizedWhitespace):
            # a name that was in the middle now ends the list: its comma keeps its comment, and
            # the closing parenthesis gets the original last line's indentation
            oc = orig_last.comma
            last_line = (oc.whitespace_after.last_line
                         if isinstance(oc, cst.Comma) and isinstance(oc.whitespace_after, cst.ParenthesizedWhitespace)
                         else cst.SimpleWhitespace(""))
            out[-1] = out[-1].with_changes(
                comma=comma.with_changes(whitespace_after=ws.with_changes(last_line=last_line)))
        else:  # on one line: end as the original list ended
            out[-1] = out[-1].with_changes(comma=orig_last.comma)
        return out

    def _from(self, node: cst.ImportFrom, line: int, code: str) -> list[cst.BaseSmallStatement] | None:
        mod = self._resolve(node)
        legacy = self.names.legacy
        if mod is None:
            return None
        if mod == legacy or mod.startswith(legacy + "."):
            rest = self.names.rest_of(mod)
            if rest is not None:  # from pkg.proto.x_pb2 import Msg
                return [node.with_changes(module=_dotted(self.names.new(rest)), relative=())]
            if isinstance(node.names, cst.ImportStar):
                self.notes.append((line, code, f"star import from the legacy module {mod}: "
                                   f"import what it needs from {self.names.package} instead"))
                return None
            groups: dict[str, list[cst.ImportAlias]] = {}
            others: list[cst.ImportAlias] = []
            for alias in node.names:
                name = get_full_name_for_node(alias.name) or ""
                sub = self.names.rest_of(f"{mod}.{name}")
                if sub is None:
                    others.append(alias)
                else:
                    parent = self.names.new(sub).rsplit(".", 1)[0]
                    groups.setdefault(parent, []).append(alias)
            if not groups:
                return None
            if not others and len(groups) == 1:  # keep the names as written (comments inside)
                (parent,) = groups
                return [node.with_changes(module=_dotted(parent), relative=())]
            stmts: list[cst.BaseSmallStatement] = [
                node.with_changes(module=_dotted(parent), relative=(),
                                  names=self._with_names(node, aliases))
                for parent, aliases in groups.items()
            ]
            if others:
                stmts.append(node.with_changes(names=self._with_names(node, others)))
            return stmts
        if legacy.startswith(mod + ".") and not isinstance(node.names, cst.ImportStar):
            for alias in node.names:
                if f"{mod}.{get_full_name_for_node(alias.name)}" == legacy:
                    self.notes.append((line, code, f"binds the legacy module {legacy} as a name: "
                                       f"its generated modules used through it are not rewritten; "
                                       f"import them from {self.names.package}"))
        return None

    def _import(self, node: cst.Import) -> list[cst.BaseSmallStatement] | None:
        changed = False
        names = []
        for alias in node.names:
            full = get_full_name_for_node(alias.name) or ""
            rest = self.names.rest_of(full)
            if rest is None:
                names.append(alias)
                continue
            names.append(alias.with_changes(name=_dotted(self.names.new(rest))))
            changed = True
        return [node.with_changes(names=names)] if changed else None

    # -- visitors

    def visit_Import(self, node: cst.Import) -> None:
        self._in_import += 1

    def leave_Import(self, original_node: cst.Import, updated_node: cst.Import) -> cst.Import:
        self._in_import -= 1
        return updated_node

    def visit_ImportFrom(self, node: cst.ImportFrom) -> None:
        self._in_import += 1

    def leave_ImportFrom(self, original_node: cst.ImportFrom,
                         updated_node: cst.ImportFrom) -> cst.ImportFrom:
        self._in_import -= 1
        return updated_node

    def leave_Attribute(self, original_node: cst.Attribute,
                        updated_node: cst.Attribute) -> cst.BaseExpression:
        if self._in_import or not self.attrs:
            return updated_node
        full = get_full_name_for_node(updated_node)
        if full in self.attrs:
            self.attr_uses += 1
            return _dotted(self.attrs[full]).with_changes(lpar=updated_node.lpar,
                                                           rpar=updated_node.rpar)
        return updated_node

    def leave_SimpleStatementLine(
        self, original_node: cst.SimpleStatementLine, updated_node: cst.SimpleStatementLine
    ) -> cst.SimpleStatementLine | cst.FlattenSentinel[cst.SimpleStatementLine]:
        line = self.get_metadata(PositionProvider, original_node).start.line
        body: list[cst.BaseSmallStatement] = []
        split = False
        for orig, small in zip(original_node.body, updated_node.body, strict=True):
            code = self._empty.code_for_node(orig).strip().rstrip(";").strip()
            repl: list[cst.BaseSmallStatement] | None = None
            if isinstance(small, cst.ImportFrom):
                repl = self._from(small, line, code)
            elif isinstance(small, cst.Import):
                repl = self._import(small)
            if repl is None:
                body.append(small)
                continue
            self.changed.append((line, code))
            if len(repl) > 1:
                split = True
                last_semicolon = small.semicolon
                repl = [r.with_changes(semicolon=cst.MaybeSentinel.DEFAULT) for r in repl]
                repl[-1] = repl[-1].with_changes(semicolon=last_semicolon)
            body.extend(repl)
        if not split:
            return updated_node.with_changes(body=body)
        if len(updated_node.body) == 1:  # one import per line, as it was
            first = updated_node.with_changes(
                body=[body[0].with_changes(semicolon=cst.MaybeSentinel.DEFAULT)])
            rest = [cst.SimpleStatementLine(body=[s.with_changes(semicolon=cst.MaybeSentinel.DEFAULT)])
                    for s in body[1:]]
            return cst.FlattenSentinel([first, *rest])
        return updated_node.with_changes(body=body)


@dataclass(frozen=True)
class FileRewrite:
    new: str
    changed: list[tuple[int, str]]
    notes: list[tuple[int, str, str]]
    attr_uses: int


def rewrite_source(text: str, names: ModuleMap, file_module: str | None = None,
                   is_package: bool = False) -> FileRewrite:
    """``text`` with its imports of generated legacy modules rewritten (libcst: formatting and
    comments kept). Raises ``libcst.ParserSyntaxError`` when ``text`` does not parse."""
    module = cst.parse_module(text)
    scan = _UnaliasedImports(names)
    module.visit(scan)
    rw = ImportRewriter(names, file_module, is_package, scan.found)
    new = MetadataWrapper(module).visit(rw)
    return FileRewrite(new.code, rw.changed, rw.notes, rw.attr_uses)


# ------------------------------------------------------------------------------ repo layout


def find_legacy_dir(tracked: Sequence[str], legacy: str) -> str | None:
    """The repo folder that holds the legacy module (``src/pkg/proto`` for ``pkg.proto``)."""
    tail = legacy.replace(".", "/")
    scores: dict[str, int] = {}
    for path in tracked:
        d, _, name = path.rpartition("/")
        while d:
            if d == tail or d.endswith("/" + tail):
                here = path[len(d) + 1 :]
                score = 2 if _GENERATED_FILE.search(here) else 1 if here == "__init__.py" else 0
                scores[d] = max(scores.get(d, 0), score)
                break
            d = d.rpartition("/")[0]
    if not scores:
        return None
    return sorted(scores, key=lambda d: (-scores[d], len(d), d))[0]


def module_of(path: str, legacy_dir: str | None, legacy: str) -> tuple[str | None, bool]:
    """A file's dotted module name, from where the legacy module lies (for relative imports)."""
    if legacy_dir is None:
        return None, False
    depth = legacy.count(".") + 1
    root_parts = legacy_dir.split("/")[:-depth]
    parts = path.split("/")
    if parts[: len(root_parts)] != root_parts:
        return None, False
    inner = parts[len(root_parts) :]
    if not inner:
        return None, False
    last = re.sub(r"\.pyi?$", "", inner[-1])
    is_package = last == "__init__"
    mod_parts = inner[:-1] if is_package else [*inner[:-1], last]
    if not mod_parts or not all(p.isidentifier() for p in mod_parts):
        return None, False
    return ".".join(mod_parts), is_package


# ------------------------------------------------------------------------------ Dockerfiles


@dataclass(frozen=True)
class _Instr:
    line: int
    keyword: str
    args: str


def _instructions(text: str) -> list[_Instr]:
    """Dockerfile instructions with continuation lines joined (comment lines inside dropped)."""
    out: list[_Instr] = []
    buf: list[str] = []
    start = 0
    for no, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue
        if not buf:
            start = no
        if stripped.endswith("\\"):
            buf.append(stripped[:-1])
            continue
        buf.append(stripped)
        joined = " ".join(b.strip() for b in buf if b.strip())
        buf = []
        keyword, _, args = joined.partition(" ")
        out.append(_Instr(start, keyword.upper(), args.strip()))
    if buf:
        joined = " ".join(buf)
        keyword, _, args = joined.partition(" ")
        out.append(_Instr(start, keyword.upper(), args.strip()))
    return out


def _segments(run: str) -> list[list[str]]:
    """The simple commands of a RUN instruction (shell or exec form), as argv lists."""
    text = run
    while text.startswith("--"):  # RUN --mount=... --network=...
        _, _, text = text.partition(" ")
        text = text.lstrip()
    if text.startswith("["):
        try:
            argv = json.loads(text)
        except ValueError:
            argv = None
        if isinstance(argv, list) and all(isinstance(a, str) for a in argv):
            return [list(argv)]
    out = []
    for seg in re.split(r"&&|\|\||;|\|", text):
        try:
            words = shlex.split(seg)
        except ValueError:
            words = seg.split()
        if words:
            out.append(words)
    return out


def _proto_step(argv: list[str]) -> tuple[bool, str | None] | None:
    """For ``cleanroom [--repo X] proto [--out DIR]`` (or ``python -m cleanroom ...``): whether it
    generates, and its ``--out`` (None: the default); None when it is not the proto step."""
    words = list(argv)
    while words and re.match(r"^[A-Za-z_]\w*=", words[0]):  # VAR=value cleanroom ...
        words.pop(0)
    if not words:
        return None
    exe = os.path.basename(words[0])
    if exe == "cleanroom":
        words = words[1:]
    elif re.match(r"^python(\d+(\.\d+)?)?$", exe) and words[1:3] == ["-m", "cleanroom"]:
        words = words[3:]
    else:
        return None
    while words and words[0].startswith("-") and words[0] != "proto":
        opt = words.pop(0)
        if "=" not in opt and words and opt in ("--repo", "--config"):
            words.pop(0)
    if not words or words[0] != "proto":
        return None
    out: str | None = None
    check = False
    rest = words[1:]
    for i, w in enumerate(rest):
        if w == "--out" and i + 1 < len(rest):
            out = rest[i + 1]
        elif w.startswith("--out="):
            out = w.split("=", 1)[1]
        elif w in ("--check", "--dry-run"):
            check = True
    return (not check), out


def _covers(src: str, target: str) -> bool:
    src = src.strip().rstrip("/")
    src = src[2:] if src.startswith("./") else src
    return src in ("", ".") or target == src or target.startswith(src + "/")


def _declare(ins: _Instr, env: dict[str, str]) -> None:
    """Record an ARG's default or an ENV's value (both forms: NAME=value ..., ENV NAME value)."""
    if ins.keyword == "ENV" and "=" not in ins.args.split(" ", 1)[0]:
        name, _, value = ins.args.partition(" ")
        env[name] = interpolate(value.strip().strip("\"'"), env)
        return
    for m in re.finditer(r"([A-Za-z_]\w*)(?:=(\"[^\"]*\"|'[^']*'|\S*))?", ins.args):
        if m.group(2) is None:
            if ins.keyword == "ARG":
                env.setdefault(m.group(1), "")
            continue
        env[m.group(1)] = interpolate(m.group(2).strip("\"'"), env)


def check_dockerfile(repo: Path, cfg: Config, dockerfile: Path, builds: Sequence[Build]) -> DockerfileCheck:
    rel = os.path.relpath(dockerfile, repo).replace(os.sep, "/")
    names = tuple(b.name for b in builds)
    want_out = os.path.normpath(cfg.proto.out)
    package = cfg.proto.package
    run_line = f'RUN cleanroom proto --out {cfg.proto.out} --pth && python -c "import {package}"'
    context = builds[0].context
    src_rel = os.path.relpath(repo / cfg.proto.sources, context).replace(os.sep, "/")
    if not dockerfile.is_file():
        return DockerfileCheck(
            rel, names, False,
            f"does not exist (build {', '.join(names)}): the image that runs the code must generate "
            f"{package} into {cfg.proto.out}; when you write it, copy {src_rel} in, then generate:",
            (f"COPY {src_rel} {src_rel}", run_line))
    try:
        text = dockerfile.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return DockerfileCheck(rel, names, False, f"cannot be read: {exc}")
    env: dict[str, str] = {}
    container = False
    anchor: _Instr | None = None
    last_copy: _Instr | None = None
    first_from: _Instr | None = None
    wrong: list[tuple[_Instr, str | None]] = []
    engine: _Instr | None = None  # the last RUN that mentions cleanroom (installs the engine)
    for ins in _instructions(text):
        if ins.keyword == "FROM":
            first_from = first_from or ins
        elif ins.keyword in ("ARG", "ENV"):
            _declare(ins, env)
            container = container or env.get("DOCKER_CONTAINER") == "1"
        elif ins.keyword in ("COPY", "ADD"):
            words = [w for w in ins.args.split() if not w.startswith("--")]
            last_copy = ins
            if len(words) >= 2 and any(_covers(w, src_rel) for w in words[:-1]):
                anchor = ins
        elif ins.keyword == "RUN":
            if "cleanroom" in ins.args:
                engine = ins
            for argv in _segments(ins.args):
                step = _proto_step(argv)
                if step is None or not step[0]:
                    continue
                out = step[1]
                if out is None:
                    if container:
                        return DockerfileCheck(rel, names, True, f"line {ins.line}: `cleanroom proto` "
                                               f"(DOCKER_CONTAINER=1: into {cfg.proto.out})")
                    wrong.append((ins, None))
                    continue
                resolved = os.path.normpath(interpolate(out, env))
                if resolved == want_out:
                    return DockerfileCheck(rel, names, True,
                                           f"line {ins.line}: `cleanroom proto --out {out}`")
                wrong.append((ins, out))
    if wrong:
        ins, out = wrong[0]
        where = f"into {out}" if out else "without --out (on the host default [proto] host_out)"
        return DockerfileCheck(
            rel, names, False,
            f"line {ins.line} runs `cleanroom proto` {where}, not into [proto] out "
            f"({cfg.proto.out}): change it to:", (run_line,))
    if anchor is not None:
        after = engine if engine is not None and engine.line > anchor.line else anchor
        where = f"after line {after.line} (`{after.keyword} {after.args}`)"
        if after is anchor:
            where += f", which copies {src_rel} in"
        add: tuple[str, ...] = (run_line,)
    else:
        last = max((i for i in (last_copy, engine, first_from) if i is not None),
                   key=lambda i: i.line, default=None)
        where = (f"after line {last.line} (`{last.keyword} {last.args}`)" if last
                 else "after the FROM line")
        where = f"copy the sources in and generate, {where}"
        add = (f"COPY {src_rel} {src_rel}", run_line)
    needs = "" if engine is not None else " (and nothing installs the engine: `pip install` it first)"
    return DockerfileCheck(
        rel, names, False,
        f"no RUN line runs the engine's proto step into {cfg.proto.out}{needs}; add {where}:", add)


def check_dockerfiles(repo: Path, cfg: Config, builds: Sequence[Build]) -> list[DockerfileCheck]:
    by_file: dict[Path, list[Build]] = {}
    for b in builds:
        by_file.setdefault(b.dockerfile, []).append(b)
    return [check_dockerfile(repo, cfg, df, bs) for df, bs in by_file.items()]


# ------------------------------------------------------------------------------ the plan


def _proto_cfg(cfg: Config) -> Config:
    """``cfg`` with the artifact policy narrowed to the protobuf patterns."""
    return dataclasses.replace(
        cfg, artifacts=dataclasses.replace(cfg.artifacts, patterns=PROTO_PATTERNS, extra=()))


def _why(cfg: Config, pattern: str) -> str:
    p = cfg.proto
    out = p.out.rstrip("/") + "/" + p.package
    kind = {"*_pb2.py": "protobuf code", "*_pb2.pyi": "protobuf stubs",
            "*_pb2_grpc.py": "gRPC code"}.get(pattern, "generated code")
    return (f"{pattern}: {kind}, generated from {p.sources}/*.proto by `cleanroom proto` into "
            f"{out} in the container (regenerate: `cleanroom proto`)")


def _ignore_changes(ctx: VerifyContext) -> list[IgnoreChange]:
    """The managed-block rules that close every protobuf gitignore/dockerignore gap."""
    per_file: dict[Path, list[tuple[str, str]]] = {}
    for pat in gitignore_gaps(ctx):
        per_file.setdefault(ctx.repo / ".gitignore", []).append((policy.git_rule(pat), _why(ctx.cfg, pat)))
    for gap in docker_gaps(ctx):
        rules = per_file.setdefault(ctx.repo / gap.ignore_name, [])
        rule = (policy.docker_rule(gap.pattern), _why(ctx.cfg, gap.pattern))
        if rule not in rules:
            rules.append(rule)
    out = []
    for path, rules in per_file.items():
        old = path.read_text(encoding="utf-8") if path.exists() else ""
        new = with_rules(old, rules)
        if new != old:
            out.append(IgnoreChange(ctx.rel(path), tuple(r for r, _ in rules), old, new))
    return out


def _validate(cfg: Config) -> None:
    p = cfg.proto
    if not p.package.isidentifier():
        raise BadInput(f"[proto] package {p.package!r} is not a Python identifier")
    if p.legacy_module and not _DOTTED.match(p.legacy_module):
        raise BadInput(f"[proto] legacy_module {p.legacy_module!r} is not a dotted module name "
                       "(e.g. 'pkg.proto')")
    if p.legacy_module == p.package:
        raise BadInput(f"[proto] legacy_module and package are both {p.package!r}: the generated "
                       "package must have a new name")


def plan_migration(ws: Workspace) -> Migration:
    """Everything migrate-proto would do, computed without changing anything."""
    repo, cfg = ws.repo, ws.cfg
    require_repo(repo)
    _validate(cfg)
    ctx = VerifyContext(repo=repo, cfg=_proto_cfg(cfg))
    tracked_py = [p for p in split0(git(repo, "ls-files", "-z", "--", "*.py", "*.pyi"))]
    legacy = cfg.proto.legacy_module
    legacy_dir = find_legacy_dir(tracked_py, legacy) if legacy else None
    m = Migration(repo, cfg, legacy_dir)

    # 1. ignore rules
    m.ignore = _ignore_changes(ctx)
    # 2. Dockerfiles
    m.dockerfiles = check_dockerfiles(repo, cfg, ctx.builds)
    # 4. (computed before 3: it decides whether 3 may be skipped)
    m.untrack = [p for p in ctx.tracked_artifacts if not ctx.allowed(p)]
    # 3. imports
    if not legacy:
        if m.untrack:
            dirs = sorted({p.rpartition("/")[0] or "." for p in m.untrack})
            raise BadInput(
                "[proto] legacy_module is not set: cleanroom.toml must name the module code imports "
                "the checked-in generated code from (e.g. legacy_module = \"pkg.proto\"), so the "
                f"imports can be rewritten before the files are untracked (they lie in {', '.join(dirs)})")
        m.warnings.append("[proto] legacy_module is not set: no imports to rewrite")
        return m
    known, warn = _known_modules(ws)
    if warn:
        m.warnings.append(warn)
    names = ModuleMap(legacy, cfg.proto.package, known)
    for path in tracked_py:
        if _GENERATED_FILE.search(path):
            continue
        file = repo / path
        try:
            text = file.read_text(encoding="utf-8")
        except FileNotFoundError:
            continue
        except (OSError, UnicodeDecodeError) as exc:
            m.unparsed.append((path, f"cannot read: {exc}"))
            continue
        if legacy not in text and "_pb2" not in text and legacy.rsplit(".", 1)[-1] not in text:
            continue  # fast path: cannot import the legacy module's generated code
        mod, is_pkg = module_of(path, legacy_dir, legacy)
        try:
            res = rewrite_source(text, names, mod, is_pkg)
        except cst.ParserSyntaxError as exc:
            m.unparsed.append((path, f"does not parse ({str(exc).splitlines()[0]}): check it by hand"))
            continue
        inside = legacy_dir is not None and path.startswith(legacy_dir + "/")
        for line, code, why in res.notes:
            m.notes.append(Note(path, line, code, why))
        if inside:
            for line, code in res.changed:
                m.notes.append(Note(path, line, code,
                                    f"inside the legacy module {legacy}: import the generated code "
                                    f"from {cfg.proto.package} instead (or drop this module)"))
        elif res.new != text:
            m.rewrites.append(Rewrite(path, text, res.new, len(res.changed), res.attr_uses))
    for rest in sorted(names.unknown):
        m.warnings.append(
            f"{legacy}.{rest} is imported but no .proto under {cfg.proto.sources} generates it: "
            f"{cfg.proto.package}.{rest} will not exist")
    return m


def dirty(repo: Path, paths: Sequence[str]) -> list[str]:
    """Those of ``paths`` with uncommitted changes (staged, unstaged, or untracked files)."""
    if not paths:
        return []
    out = split0(git(repo, "status", "--porcelain=v1", "-z", "--untracked-files=all", "--",
                     *(f":(literal){p}" for p in paths)))
    found = []
    skip = False
    for entry in out:
        if skip:  # the source path of a rename
            skip = False
            continue
        if entry[:1] in ("R", "C"):
            skip = True
        found.append(entry[3:])
    return sorted(set(found))


# ------------------------------------------------------------------------------ output


def _diff(path: str, old: str, new: str) -> list[str]:
    lines = difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                 fromfile=f"a/{path}", tofile=f"b/{path}")
    return [ln.rstrip("\n") for ln in lines]


def render(m: Migration, applied: bool) -> str:
    p = m.cfg.proto
    lines: list[str] = []
    do = "" if applied else "would "
    head = ("migrate-proto: applied" if applied else
            "migrate-proto: plan (dry run: nothing is changed; `--apply` carries it out)")
    lines.append(head)
    legacy = p.legacy_module or "(no [proto] legacy_module)"
    lines.append(f"  from {legacy}{' in ' + m.legacy_dir if m.legacy_dir else ''} to the generated "
                 f"package {p.package} (made from {p.sources} into {p.out}/{p.package})")
    for w in m.warnings:
        lines.append(f"  warning: {w}")

    lines.append("")
    lines.append("1. ignore rules for generated protobuf code (.gitignore, .dockerignore)")
    if not m.ignore:
        lines.append("   nothing to do: git and every build's .dockerignore already ignore "
                     + ", ".join(PROTO_PATTERNS))
    for ic in m.ignore:
        lines.append(f"   {ic.path}: {do}add {', '.join(ic.rules)} to the managed block")
        if not applied:
            lines += ["     " + d for d in _diff(ic.path, ic.old, ic.new)]

    lines.append("")
    lines.append(f"2. Dockerfiles generate the code into {p.out} (checked, never edited)")
    for d in m.dockerfiles:
        state = "OK" if d.ok else "TO DO"
        lines.append(f"   {d.path}: {state}: {d.message}")
        if not d.ok and d.add:
            lines += ["       " + a for a in d.add]

    lines.append("")
    lines.append(f"3. imports of {legacy}'s generated modules -> {p.package}")
    if not m.rewrites and not m.notes and not m.unparsed:
        lines.append("   nothing to do: no tracked file imports them")
    for rw in m.rewrites:
        lines.append(f"   {rw.path}: {do}rewrite {rw.what}")
        if not applied:
            lines += ["     " + d for d in _diff(rw.path, rw.old, rw.new)]
    for n in m.notes:
        lines.append(f"   {n.path}:{n.line}: reported, not rewritten: `{n.code}`: {n.why}")
    for path, why in m.unparsed:
        lines.append(f"   {path}: skipped: {why}")

    lines.append("")
    lines.append("4. untrack the generated files (git rm --cached: they stay on disk)")
    if not m.untrack:
        lines.append("   nothing to do: git tracks no generated protobuf code")
    for path in m.untrack:
        lines.append(f"   {do}untrack {path}")
    if m.untrack:
        lines.append(f"   {do}run: git rm --cached -q -- " + " ".join(shlex.quote(u) for u in m.untrack))

    lines.append("")
    changes = len(m.plan)
    if not changes:
        lines.append("migrate-proto: nothing to change: the repo is migrated")
    elif applied:
        lines.append(f"migrate-proto: done ({changes} change(s)); review `git status` and `git diff`, "
                     "then commit; `cleanroom verify` checks the result")
    else:
        lines.append(f"migrate-proto: {changes} change(s) planned; run `cleanroom migrate-proto --apply`")
    manual = m.manual
    if manual:
        lines.append(f"migrate-proto: left to do by hand ({len(manual)}):")
        lines += [f"  - {x}" for x in manual]
    return "\n".join(lines)


def migrate(ws: Workspace, apply: bool = False, allow_dirty: bool = False) -> str:
    """Plan the migration; with ``apply`` carry it out. Returns the report to print."""
    m = plan_migration(ws)
    if apply and m.plan and not allow_dirty:
        changed = dirty(ws.repo, m.touched)
        if changed:
            raise BadInput(
                f"refusing to apply: {len(changed)} file(s) it would change have uncommitted changes "
                "(commit or stash them first, or pass --allow-dirty)",
                "\n".join(f"  {c}" for c in changed))
    if apply:
        execute(m.plan)
        return render(m, applied=True)
    report = render(m, applied=False)
    changed = dirty(ws.repo, m.touched) if m.plan else []
    if changed:
        report += ("\nmigrate-proto: note: --apply will refuse until these have no uncommitted "
                   "changes (or pass --allow-dirty): " + ", ".join(changed))
    return report
