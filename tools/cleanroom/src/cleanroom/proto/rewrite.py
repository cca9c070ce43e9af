"""Python sources rewritten from the legacy generated modules to the generated package.

libcst keeps every byte it does not change (formatting, comments, CRLF line ends). What it
rewrites, in the files that can import the legacy module (``[proto] legacy_module``, e.g.
``pkg.grpc``):

* imports of its generated modules, absolute and relative (``from .x_pb2 import *``, ``from . import
  x_pb2``, ``from pkg.grpc.x_pb2 import Msg``, ``import pkg.grpc.x_pb2 as m``) and the uses of an
  unaliased ``import pkg.grpc.x_pb2`` (``pkg.grpc.x_pb2.Msg``);
* in a facade (a package of the legacy module: ``pkg/grpc/__init__.py``) the same, plus a binding
  of each generated module it imported, so ``import pkg.grpc as rpc; rpc.Msg`` and
  ``rpc.x_pb2.Msg`` keep working: the facade stays;
* string literals that are dotted paths to a generated module (``mock.patch("pkg.grpc.x_pb2.Msg")``,
  ``importlib.import_module(...)``); an f-string that names one is reported with its line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import libcst as cst
from libcst.helpers import get_full_name_for_node

_GENERATED = re.compile(r"^[A-Za-z_]\w*_pb2(_grpc)?$")
_BOM = "\ufeff"
_GENERATED_FILE = re.compile(r"_pb2(_grpc)?\.pyi?$")


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
        self._srx: re.Pattern[str] | None = None
        self._mrx: re.Pattern[str] | None = None

    def in_string(self, literal: str) -> tuple[str, str] | None:
        """(old dotted prefix, new one) when the string literal (quotes included) starts with a
        dotted path to a generated legacy module (``"pkg.grpc.x_pb2.Msg"``)."""
        m = self._string_rx().search(literal)
        if m is None:
            return None
        dotted = m.group(1)
        rest = self.rest_of(dotted)
        return (dotted, self.new(rest)) if rest is not None else None

    def mentions(self, text: str) -> bool:
        return self._mention_rx().search(text) is not None

    def _string_rx(self) -> re.Pattern[str]:
        if self._srx is None:
            leg = re.escape(self.legacy)
            self._srx = re.compile(rf"^[rRbBuU]{{0,2}}(?:'|\"|\'\'\'|\"\"\")({leg}(?:\.\w+)*?\.\w+_pb2(?:_grpc)?)(?=[.'\"]|$)")
        return self._srx

    def _mention_rx(self) -> re.Pattern[str]:
        if self._mrx is None:
            self._mrx = re.compile(rf"{re.escape(self.legacy)}(?:\.\w+)*?\.\w+_pb2")
        return self._mrx

    def rest_of(self, module: str) -> str | None:
        """``pkg.proto.sub.x_pb2`` -> ``sub.x_pb2``; None when not a generated legacy module the
        package will hold (an orphan, which no .proto regenerates, stays where it is)."""
        if not module.startswith(self.legacy + "."):
            return None
        rest = module[len(self.legacy) + 1 :]
        if not _GENERATED.match(rest.rsplit(".", 1)[-1]):
            return None
        if self.known and rest not in self.known and len(self._by_base.get(rest.rsplit(".", 1)[-1], [])) != 1:
            self.unknown.add(rest)
            return None
        return rest

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

    def __init__(self, names: ModuleMap, file_module: str | None, is_package: bool,
                 attrs: dict[str, str], facade: bool = False, text: str = "") -> None:
        super().__init__()
        # Line numbers, for the few nodes reported, are found in the text (libcst's position
        # metadata costs a second on a 200 KB file): each kind of node is met in text order.
        self._text = text
        self._cursor: dict[str, int] = {}
        self.names = names
        self.file_module = file_module
        self.is_package = is_package
        self.attrs = attrs
        # A package of the legacy module itself (its __init__): importing a submodule used to bind
        # it as an attribute (``pkg.grpc.x_pb2``), so the rewrite binds the new module there too.
        self.facade = facade
        self.changed: list[tuple[int, str]] = []  # (line, original code) per rewritten statement
        self.notes: list[tuple[int, str, str]] = []  # (line, code, why)
        self.strings: list[tuple[int, str]] = []  # (line, old literal) per rewritten string
        self.refers = False  # an import names the legacy module (or below), rewritten or not
        self.attr_uses = 0
        self._in_import = 0
        self._bound: set[str] = set()
        self._empty = cst.Module(body=[])

    # -- helpers

    def _line(self, kind: str, code: str) -> int:
        start = self._cursor.get(kind, 0)
        at = self._text.find(code, start)
        if at < 0:
            at = self._text.find(code)
        if at < 0:
            return 0
        self._cursor[kind] = at + 1
        return self._text.count("\n", 0, at) + 1

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
        if mod == legacy or mod.startswith(legacy + ".") or (
                legacy.startswith(mod + ".") and not isinstance(node.names, cst.ImportStar) and any(
                    f"{mod}.{get_full_name_for_node(a.name)}" == legacy for a in node.names)):
            self.refers = True
        if mod == legacy or mod.startswith(legacy + "."):
            rest = self.names.rest_of(mod)
            if rest is not None:  # from pkg.proto.x_pb2 import Msg (from .x_pb2 import *)
                new = self.names.new(rest)
                stmt = node.with_changes(module=_dotted(new), relative=())
                leaf = rest.split(".", 1)[0]
                if self.facade and "." not in rest and leaf not in self._bound:
                    # keep `pkg.grpc.x_pb2` an attribute of the facade, as the old import made it
                    self._bound.add(leaf)
                    parent, _, name = new.rpartition(".")
                    bind = cst.ImportFrom(module=_dotted(parent), names=[cst.ImportAlias(name=cst.Name(name))])
                    return [bind, stmt]
                return [stmt]
            if isinstance(node.names, cst.ImportStar):
                return None  # the facade stays: what it exported, it still exports
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
                    if alias.asname is None:
                        self._bound.add(name)
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
        return None

    def _import(self, node: cst.Import) -> list[cst.BaseSmallStatement] | None:
        changed = False
        names = []
        for alias in node.names:
            full = get_full_name_for_node(alias.name) or ""
            if full == self.names.legacy or full.startswith(self.names.legacy + "."):
                self.refers = True
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

    def leave_SimpleString(self, original_node: cst.SimpleString,
                           updated_node: cst.SimpleString) -> cst.SimpleString:
        """A dotted path in a string (``mock.patch("pkg.grpc.x_pb2.Msg")``,
        ``importlib.import_module("pkg.grpc.x_pb2")``) that names a generated module."""
        if self._in_import:
            return updated_node
        value = updated_node.value
        m = self.names.in_string(value)
        if m is None:
            return updated_node
        old, new = m
        self.strings.append((self._line("string", value), value))
        return updated_node.with_changes(value=value.replace(old, new, 1))

    def visit_FormattedString(self, node: cst.FormattedString) -> None:
        text = self._empty.code_for_node(node)
        if self.names.mentions(text):
            self.notes.append((self._line("fstring", text), text, "an f-string names a generated module of the legacy "
                               f"module: change it to {self.names.package} by hand"))

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
        line = 0
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
            line = line or self._line("statement", code)
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
    changed: list[tuple[int, str]]  # (line, statement) per import rewritten
    notes: list[tuple[int, str, str]]  # (line, code, why) what is left to do by hand
    attr_uses: int
    strings: list[tuple[int, str]]  # (line, literal) per string rewritten
    refers: bool = False  # it imports the legacy module (or below), changed or not

    @property
    def what(self) -> str:
        parts = [f"{len(self.changed)} import(s)"] if self.changed else []
        if self.attr_uses:
            parts.append(f"{self.attr_uses} use(s)")
        if self.strings:
            parts.append(f"{len(self.strings)} string(s)")
        return " and ".join(parts) or "nothing"


def rewrite_source(text: str, names: ModuleMap, file_module: str | None = None,
                   is_package: bool = False, facade: bool = False) -> FileRewrite:
    """``text`` with its references to generated legacy modules rewritten. A BOM and the line
    ends (CRLF) are kept. Raises ``libcst.ParserSyntaxError`` when ``text`` does not parse."""
    bom = text.startswith(_BOM)
    module = cst.parse_module(text[1:] if bom else text)
    scan = _UnaliasedImports(names)
    module.visit(scan)
    rw = ImportRewriter(names, file_module, is_package, scan.found, facade, text[1:] if bom else text)
    new = module.visit(rw)
    code = new.code
    return FileRewrite(_BOM + code if bom else code, rw.changed, rw.notes, rw.attr_uses, rw.strings,
                       rw.refers or bool(rw.strings))


def candidate_rx(legacy: str) -> re.Pattern[str]:
    """Lines that can refer to the legacy module's generated code: an import naming it or a
    package above it (``from pkg import grpc``), a dotted path in a string. Only files with such a
    line (or, inside the legacy module's top package, a relative import) are parsed, once each."""
    parts = legacy.split(".")
    leg = re.escape(legacy)
    parents = "|".join(re.escape(".".join(parts[:i])) for i in range(len(parts) - 1, 0, -1))
    modules = rf"{leg}(?:\.[\w.]+)?" + (f"|{parents}" if parents else "")
    return re.compile(
        rf"(?m)^[ \t]*(?:from[ \t]+(?:{modules})[ \t]+import\b|import[ \t][^\n]*\b{leg}\b)"
        rf"|['\"]{leg}\.\w"
    )


# ------------------------------------------------------------------------------ layout


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
