"""``migrate-proto``: move a repo that tracks generated protobuf code onto the doctrine.

The doctrine's "Protobuf Migration Status" lists four manual steps; this module makes them one
plan, shown first (dry run) and carried out with ``--apply``:

1. ignore rules for the generated files in ``.gitignore`` and in the ``.dockerignore`` every build
   reads (a managed block, marked as added by migrate-proto);
2. a check that each image that runs Python generates the code into ``[proto] out`` (the engine's
   proto step), with the exact lines to add where one does not (Dockerfiles are never edited);
3. the Python sources rewritten from the legacy module (``[proto] legacy_module``, e.g.
   ``pkg.grpc``) to the generated package (``[proto] package``) by :mod:`cleanroom.proto.rewrite`:
   imports of every form, facades (kept, so ``import pkg.grpc as rpc`` still works) and dotted
   paths in strings (``mock.patch("pkg.grpc.x_pb2.Msg")``);
4. the generated files untracked (``git rm --cached``: they stay on disk) -- only those a
   ``.proto`` under ``[proto] sources`` regenerates; an orphan stays tracked, with its fix.

Before anything is called migrated the plan is *proven*: the package is generated into a
temporary folder, and every module the plan touches is imported in a subprocess, once from the
repo as it is and once from a shadow copy as the plan leaves it (the untracked files absent):
proven, not proven (it did not import before either, e.g. a missing dependency) or failed.
``--apply`` refuses (exit 1, nothing changed) when one failed.

``--apply`` is interruptible: every new file is written beside its target first, under a journal
in the git folder; then the files are swapped in and the index changed last, with SIGINT and
SIGTERM held off. A run killed before the swap leaves the tree as it was (the next run removes
the leftovers); one killed during it is finished by the next run. Each says which.

Nothing needs a cleanroom.toml: the legacy module is the package holding the tracked generated
files, the sources the folder the tracked ``.proto`` files import from, and the package's name
``<legacy top package>_proto``; the report says what it found.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import keyword
import os
import re
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import libcst as cst

from cleanroom.artifacts import policy
from cleanroom.artifacts.fix import read_ignore_text, with_rules
from cleanroom.artifacts.gaps import docker_gaps, gitignore_gaps
from cleanroom.artifacts.scan import RepoScan
from cleanroom.core import runner
from cleanroom.core.config import Config, derive_package
from cleanroom.core.errors import BadInput, CleanroomError, StepFailed
from cleanroom.core.git import git, require_repo, split0
from cleanroom.core.workspace import Workspace
from cleanroom.proto import generate as proto
from cleanroom.proto.dockerfile_check import check_dockerfiles
from cleanroom.proto.migrate_report import render
from cleanroom.proto.migration import PROTO_PATTERNS, IgnoreChange, Migration, Note, Proof, Rewrite
from cleanroom.proto.rewrite import ModuleMap, candidate_rx, find_legacy_dir, module_of, rewrite_source

_SERVICE = re.compile(r"^\s*service\s+\w+", re.M)


_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


_IMPORT = re.compile(r'^\s*import\s+(?:public\s+|weak\s+)?"([^"]+)"\s*;', re.M)


JOURNAL = "cleanroom-migrate-proto.json"


BY = "cleanroom migrate-proto"


def _legacy_dir_module(d: str, tracked: set[str]) -> tuple[str, str]:
    """(import root, dotted module) of folder ``d``: up through the folders that are packages
    (hold a tracked ``__init__.py``); a namespace folder at the top counts up to ``src/``."""
    parts = d.split("/")
    i = len(parts) - 1
    while i > 0 and "/".join(parts[:i]) + "/__init__.py" in tracked:
        i -= 1
    root = "/".join(parts[:i])
    return root, ".".join(parts[i:])


def _detect_legacy(generated: Sequence[str], tracked: set[str]) -> tuple[str, str] | None:
    """The package that holds the tracked generated files: (module, folder), or None when they
    lie in several unrelated places. Generated files a tracked .proto (by name) makes count
    first: kserve's docs/ and test/ hold orphans beside the one package its .proto makes."""
    protos = {p.rpartition("/")[2][: -len(".proto")] for p in tracked if p.endswith(".proto")}
    made = [g for g in generated if re.sub(r"_pb2(_grpc)?\.pyi?$", "", g.rpartition("/")[2]) in protos]
    dirs = sorted({p.rpartition("/")[0] for p in (made or generated)})
    if not dirs:
        return None
    common = os.path.commonpath(dirs) if all(dirs) else ""
    if not common:
        return None
    root, module = _legacy_dir_module(common, tracked)
    if not module or not all(p.isidentifier() for p in module.split(".")):
        return None
    return module, common


def _detect_sources(repo: Path, protos: Sequence[str], stems: set[str], near: str | None = None) -> str | None:
    """The include root of the .proto files that make the generated code (by name, ``stems``;
    all tracked ones when none does): the folder their imports are relative to (``protos/`` for
    ``import "feast/core/x.proto"``), else the folder they share."""
    if not protos:
        return None
    mine = [p for p in protos if p.rpartition("/")[2][: -len(".proto")] in stems] or list(protos)
    if near:  # the ones beside the generated code first (kserve has a copy under docs/)
        mine = [p for p in mine if p.startswith(near + "/")] or mine
    votes: dict[str, int] = {}
    for p in mine:
        try:
            text = (repo / p).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for imp in _IMPORT.findall(text):
            if imp.startswith("google/"):
                continue
            d = p.rpartition("/")[0]
            while True:
                if f"{d}/{imp}".lstrip("/") in protos:
                    votes[d] = votes.get(d, 0) + 1
                    break
                if not d:
                    break
                d = d.rpartition("/")[0]
    if votes:
        return sorted(votes, key=lambda d: (-votes[d], len(d)))[0] or "."
    dirs = [p.rpartition("/")[0] for p in mine]
    return (os.path.commonpath(dirs) if all(dirs) else "") or "."


def _known_modules(ws: Workspace) -> tuple[frozenset[str], str | None]:
    """The modules the proto step generates (``x_pb2``, ``x_pb2_grpc``), or why none."""

    try:
        protos = proto.find_protos(proto.resolve_target(ws))
    except BadInput as exc:
        return frozenset(), exc.message
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


def _submodule_hint(repo: Path) -> str:
    """When a submodule is not checked out (pymilvus keeps its .proto files in one)."""
    if not (repo / ".gitmodules").is_file():
        return ""
    try:
        out = git(repo, "submodule", "status").decode(errors="replace")
    except BadInput:
        return ""
    missing = [ln.split()[1] for ln in out.splitlines() if ln.startswith("-") and len(ln.split()) > 1]
    return (f"; the submodule(s) {', '.join(missing)} are not checked out: `git submodule update --init`"
            if missing else "")


def _produced(rest_path: str, known: frozenset[str]) -> bool:
    """Does a .proto regenerate the generated file at ``rest_path`` (relative to the legacy
    folder): its module (``sub/x_pb2.pyi`` -> ``sub.x_pb2``) or, flattened, its base name."""
    mod = re.sub(r"\.pyi?$", "", rest_path).replace("/", ".")
    base = mod.removesuffix("_grpc")
    if base in known:
        return True
    leaf = base.rsplit(".", 1)[-1]
    return sum(1 for k in known if k.rsplit(".", 1)[-1] == leaf) == 1


def _proto_cfg(cfg: Config) -> Config:
    """``cfg`` with the artifact policy narrowed to the protobuf patterns."""
    return dataclasses.replace(
        cfg, artifacts=dataclasses.replace(cfg.artifacts, patterns=PROTO_PATTERNS, extra=(), drop=()),
        variants=dataclasses.replace(cfg.variants, enabled=False))


def _why(cfg: Config, pattern: str) -> str:
    p = cfg.proto
    out = p.out.rstrip("/") + "/" + p.package
    kind = {"*_pb2.py": "protobuf code", "*_pb2.pyi": "protobuf stubs",
            "*_pb2_grpc.py": "gRPC code", "*_pb2_grpc.pyi": "gRPC stubs"}.get(pattern, "generated code")
    return (f"{pattern}: {kind}, generated from {p.sources} by `cleanroom proto` into "
            f"{out} in the container (regenerate: `cleanroom proto`)")


def _ignore_changes(ctx: RepoScan) -> list[IgnoreChange]:
    """The managed-block rules that close every protobuf gitignore/dockerignore gap."""
    per_file: dict[Path, list[tuple[str, str]]] = {}
    for pat in gitignore_gaps(ctx):
        per_file.setdefault(ctx.repo / ".gitignore", []).append((policy.git_rule(pat), _why(ctx.cfg, pat)))
    for gap in docker_gaps(ctx):
        if not gap.fixable:
            continue
        rules = per_file.setdefault(ctx.repo / gap.ignore_name, [])
        rule = (policy.docker_rule(gap.pattern), _why(ctx.cfg, gap.pattern))
        if rule not in rules:
            rules.append(rule)
    out = []
    for path, rules in per_file.items():
        old = read_ignore_text(path)
        new = with_rules(old, rules, by=BY)
        if new != old:
            out.append(IgnoreChange(ctx.rel(path), tuple(r for r, _ in rules), old, new))
    return out


def _validate(cfg: Config) -> None:
    p = cfg.proto
    if not p.package.isidentifier() or keyword.iskeyword(p.package):
        why = "a Python keyword" if keyword.iskeyword(p.package) else "not a Python identifier"
        raise BadInput(f"[proto] package {p.package!r} is {why}: the generated package could not be imported")
    if p.legacy_module and not _DOTTED.match(p.legacy_module):
        raise BadInput(f"[proto] legacy_module {p.legacy_module!r} is not a dotted module name "
                       "(e.g. 'pkg.proto')")
    if p.legacy_module == p.package:
        raise BadInput(f"[proto] legacy_module and package are both {p.package!r}: the generated "
                       "package must have a new name")


def _tracked(repo: Path) -> tuple[list[str], set[str], set[str]]:
    """(tracked .py/.pyi paths, every tracked path, tracked symlinks)."""
    py: list[str] = []
    every: set[str] = set()
    links: set[str] = set()
    for entry in split0(git(repo, "ls-files", "-z", "-s")):
        meta, _, path = entry.partition("\t")
        every.add(path)
        if meta.startswith("120000"):
            links.add(path)
        if path.endswith((".py", ".pyi")):
            py.append(path)
    return py, every, links


def _resolve(ws: Workspace, m_found: list[str], generated: list[str], every: set[str]) -> Config:
    """The proto settings, each configured or found: the legacy module, the sources, the package."""
    cfg = ws.cfg
    p = cfg.proto
    legacy = p.legacy_module
    if not legacy and generated:
        hit = _detect_legacy(generated, every)
        if hit is None:
            dirs = sorted({g.rpartition("/")[0] or "." for g in generated})
            raise BadInput(
                "the tracked generated code lies in several places ("
                + policy.examples(dirs) + "): set [proto] legacy_module in cleanroom.toml to the "
                "package to migrate (e.g. legacy_module = \"pkg.grpc\")")
        legacy = hit[0]
        m_found.append(f"legacy_module = {legacy!r} (the package holding the tracked generated code)")
    sources = p.sources
    if not cfg.is_set("proto.sources") and not ws.path(sources).is_dir():
        protos = [x for x in every if x.endswith(".proto")]
        stems = {re.sub(r"_pb2(_grpc)?\.pyi?$", "", g.rpartition("/")[2]) for g in generated}
        near = find_legacy_dir([x for x in every if x.endswith((".py", ".pyi"))], legacy) if legacy else None
        found = _detect_sources(ws.repo, protos, stems, near)
        if found is not None:
            sources = found
            m_found.append(f"sources = {found!r} (the folder the tracked .proto files import from)")
    package = p.package if cfg.is_set("proto.package") else derive_package(legacy, ws.repo)
    if not cfg.is_set("proto.package") and package != p.package:
        m_found.append(f"package = {package!r}")
    return dataclasses.replace(cfg, proto=dataclasses.replace(p, legacy_module=legacy, sources=sources,
                                                              package=package))


def plan_migration(ws: Workspace, prove: bool = True) -> Migration:
    """Everything migrate-proto would do, computed (and proven) without changing anything."""
    repo = ws.repo
    require_repo(repo)
    tracked_py, every, links = _tracked(repo)
    ctx0 = RepoScan(repo=repo, cfg=_proto_cfg(ws.cfg))
    generated = [p for p in ctx0.tracked_artifacts if not ctx0.allowed(p)]
    found: list[str] = []
    cfg = _resolve(ws, found, generated, every)
    _validate(cfg)
    ws = Workspace(repo, cfg)
    legacy = cfg.proto.legacy_module
    ctx = RepoScan(repo=repo, cfg=_proto_cfg(cfg), listing=ctx0.listing)
    legacy_dir = find_legacy_dir(tracked_py, legacy) if legacy else None
    m = Migration(repo, cfg, legacy, legacy_dir, found)
    m.warnings += [n for n in ctx0.notes if "named like protobuf output" in n]
    protos = [x for x in every if x.endswith(".proto")]
    if not generated and not protos:
        return m  # no protobuf here at all: nothing to migrate
    if cfg.is_set("proto.legacy_module") and legacy_dir is None:
        raise BadInput(f"[proto] legacy_module = {legacy!r}: no such package in the repo (no folder "
                       f"{legacy.replace('.', '/')} with Python files is tracked)")
    if legacy_dir is not None and not any(g.startswith(legacy_dir + "/") for g in generated) and generated:
        raise BadInput(f"[proto] legacy_module = {legacy!r} ({legacy_dir}) holds none of the tracked "
                       f"generated files; they lie in {policy.examples(sorted({g.rpartition('/')[0] for g in generated}))}")

    # 1. ignore rules; 2. Dockerfiles (only where there is something to generate from)
    m.ignore = _ignore_changes(ctx)
    known, why_none = _known_modules(ws)
    if known:
        m.dockerfiles = check_dockerfiles(repo, cfg, ctx)
    elif generated:
        m.warnings.append(f"no .proto sources to regenerate from ({why_none}){_submodule_hint(repo)}: "
                          "nothing is untracked")
    # 4. (before 3: it decides what is rewritten) which generated files go
    for g in generated:
        if legacy_dir is None or not g.startswith(legacy_dir + "/"):
            m.outside.append(g)
        elif known and _produced(g[len(legacy_dir) + 1:], known):
            m.untrack.append(g)
        else:
            m.orphans.append(g)
    twins: dict[str, list[str]] = {}
    for g in m.untrack:
        if g.endswith("_pb2.py"):
            twins.setdefault(g.rpartition("/")[2], []).append(g)
    for name, paths in twins.items():
        if len(paths) > 1:
            m.warnings.append(f"{len(paths)} generated copies of one module ({policy.examples(paths)}): one "
                              f".proto makes one {name} in {cfg.proto.package}; a facade choosing between "
                              "them (e.g. by protobuf version) needs a look by hand")
    if m.outside:
        m.warnings.append(f"{len(m.outside)} generated file(s) outside {legacy} stay tracked "
                          f"(migrate them by setting [proto] legacy_module to their package): "
                          f"{policy.examples(m.outside)}")
    # 3. the sources that refer to the legacy module
    if legacy and m.untrack:
        _plan_rewrites(m, tracked_py, links, known, set(generated))
    if found and (m.untrack or m.rewrites):
        m.settings = _settings_change(ws, cfg)
    if prove and (m.untrack or m.rewrites):
        m.proof = prove_plan(m, tracked_py)
    return m


def _settings_change(ws: Workspace, cfg: Config) -> IgnoreChange | None:
    """cleanroom.toml with the [proto] settings that were found written in (comments kept)."""
    import tomlkit

    path = ws.cfg.source or ws.repo / "cleanroom.toml"
    if path.resolve() != ws.repo.resolve() and ws.repo.resolve() not in path.resolve().parents:
        return None
    try:
        old = path.read_text(encoding="utf-8") if path.exists() else ""
        doc = tomlkit.parse(old)
    except (OSError, UnicodeDecodeError, tomlkit.exceptions.ParseError) as exc:
        raise BadInput(f"{path}: cannot read: {exc}") from None
    if "proto" not in doc:
        doc["proto"] = tomlkit.table()
    table = doc["proto"]
    p = cfg.proto
    for key, value in (("sources", p.sources), ("package", p.package), ("legacy_module", p.legacy_module)):
        if not ws.cfg.is_set(f"proto.{key}"):
            table[key] = value
            table[key].comment("found by `cleanroom migrate-proto`")
    new = tomlkit.dumps(doc)
    return IgnoreChange(os.path.relpath(path, ws.repo), (), old, new) if new != old else None


def _plan_rewrites(m: Migration, tracked_py: Sequence[str], links: set[str], known: frozenset[str],
                   generated: set[str]) -> None:
    legacy, legacy_dir = m.legacy, m.legacy_dir
    names = ModuleMap(legacy, m.package, known)
    cand = candidate_rx(legacy)
    # a relative import can only reach the legacy module from inside its top package
    depth = legacy.count(".")
    top_dir = "/".join(legacy_dir.split("/")[: len(legacy_dir.split("/")) - depth]) + "/" if legacy_dir else "\0"
    relative = re.compile(r"(?m)^[ \t]*from[ \t]+\.")
    gone = set(m.untrack)
    for path in tracked_py:
        if path in gone:
            continue
        inside = legacy_dir is not None and path.startswith(legacy_dir + "/")
        if path in generated and not inside:
            continue  # generated code outside the legacy module: not ours to change
        file = m.repo / path
        try:
            data = file.read_bytes()
        except FileNotFoundError:
            continue
        except OSError as exc:
            m.unparsed.append((path, f"cannot read: {exc.strerror or exc}"))
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            m.unparsed.append((path, f"not valid UTF-8 ({exc.reason} at byte {exc.start}): check it by hand"))
            continue
        if not inside and cand.search(text) is None and not (
                path.startswith(top_dir) and relative.search(text) is not None):
            continue  # cannot refer to the legacy module's generated code
        mod, is_pkg = module_of(path, legacy_dir, legacy)
        facade = inside and is_pkg
        try:
            res = rewrite_source(text, names, mod, is_pkg, facade=facade)
        except cst.ParserSyntaxError as exc:
            m.unparsed.append((path, f"does not parse ({str(exc).splitlines()[0]}): check it by hand"))
            continue
        for line, code, why in res.notes:
            m.notes.append(Note(path, line, code, why))
        if res.refers or res.new != text:
            m.users.append(path)
        if res.new == text:
            continue
        if path in links:
            m.notes.append(Note(path, 0, "", f"a symlink: its target is rewritten, not the link "
                                f"({os.readlink(m.repo / path)})"))
            continue
        m.rewrites.append(Rewrite(path, data, res.new.encode("utf-8"), res.what, facade))
    for rest in sorted(names.unknown):
        m.warnings.append(f"{legacy}.{rest} is imported but no .proto under {m.cfg.proto.sources} "
                          "generates it: its imports are left as they are")


_PROVE = r"""
import importlib, json, sys
spec = json.loads(sys.argv[1])
sys.path[:0] = spec["path"]
out = {}
for mod in spec["modules"]:
    try:
        importlib.import_module(mod)
        out[mod] = ""
    except BaseException as exc:  # noqa: BLE001 - every failure is a result
        out[mod] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
with open(spec["result"], "w", encoding="utf-8") as fh:
    json.dump(out, fh)
"""


def _import_root(path: str, every: set[str]) -> tuple[str, str] | None:
    """(sys.path entry, module name) a file imports as: up through the package folders."""
    parts = path.split("/")
    stem = re.sub(r"\.py$", "", parts[-1])
    if parts[-1].endswith(".pyi") or not all(p.isidentifier() for p in [*parts[:-1], stem]):
        return None
    mod = [] if stem == "__init__" else [stem]
    i = len(parts) - 1
    while i > 0 and "/".join(parts[:i]) + "/__init__.py" in every:
        mod.insert(0, parts[i - 1])
        i -= 1
    return "/".join(parts[:i]), ".".join(mod)


def _run_imports(path: list[str], modules: list[str], timeout: float = 120) -> dict[str, str]:
    with tempfile.TemporaryDirectory(prefix="cleanroom-prove-") as tmp:
        result = Path(tmp) / "result.json"
        spec = json.dumps({"path": path, "modules": modules, "result": str(result)})
        try:
            runner.run([sys.executable, "-c", _PROVE, spec], cwd=tmp, timeout=timeout,
                       env={"PYTHONDONTWRITEBYTECODE": "1"}, unset=("PYTHONPATH", "PYTHONSTARTUP"))
            data = json.loads(result.read_text(encoding="utf-8"))
        except (OSError, ValueError, CleanroomError) as exc:
            return {m: f"the import run did not finish ({type(exc).__name__})" for m in modules}
    return {m: str(data.get(m, "not reached")) for m in modules}


def prove_plan(m: Migration, tracked_py: Sequence[str]) -> list[Proof]:
    """Generate the package into a temporary folder, then import every module the plan touches,
    from the repo as it is and from a shadow copy as the plan leaves it."""

    every = set(split0(git(m.repo, "ls-files", "-z")))
    touched = {r.path for r in m.rewrites} | set(m.users)
    if m.legacy_dir is not None:
        touched |= {p for p in tracked_py if p.startswith(m.legacy_dir + "/") and p.endswith("/__init__.py")}
    touched |= {n.path for n in m.notes}
    roots: dict[str, str] = {}
    for p in sorted(touched):
        hit = _import_root(p, every)
        if hit is not None and hit[1]:
            roots[hit[1]] = hit[0]
    if not roots:
        return []
    modules = sorted(roots)
    with tempfile.TemporaryDirectory(prefix="cleanroom-migrate-") as tmp:
        gen = Path(tmp) / "generated"
        try:
            import contextlib
            import io

            with open(os.devnull, "w") as quiet, contextlib.redirect_stderr(io.StringIO()):
                proto.generate(Workspace(m.repo, m.cfg), gen, stream=quiet)  # protoc's warnings: not ours
        except BadInput as exc:
            return [Proof(mod, "failed", f"the package cannot be generated: {exc.message}") for mod in modules]
        shadow = Path(tmp) / "shadow"
        new = {r.path: r.new for r in m.rewrites}
        gone = set(m.untrack)
        for p in tracked_py:
            if p in gone:
                continue
            dst = shadow / p
            dst.parent.mkdir(parents=True, exist_ok=True)
            if p in new:
                dst.write_bytes(new[p])
            elif (m.repo / p).exists():
                dst.symlink_to(m.repo / p)
        used_roots = sorted(set(roots.values()))
        before = _run_imports([str(m.repo / r) if r else str(m.repo) for r in used_roots], modules)
        after = _run_imports([str(gen), *(str(shadow / r) if r else str(shadow) for r in used_roots)], modules)
    out = []
    for mod in modules:
        if before[mod]:
            out.append(Proof(mod, "not proven", f"it does not import before the migration either ({before[mod]})"))
        elif after[mod]:
            out.append(Proof(mod, "failed", after[mod]))
        else:
            out.append(Proof(mod, "proven"))
    return out


def _git_dir(repo: Path) -> Path:
    d = Path(git(repo, "rev-parse", "--git-dir").decode().strip())
    return d if d.is_absolute() else repo / d


def _staging(repo: Path) -> Path:
    """Where --apply writes the new files before swapping them in: inside the git folder (same
    filesystem as the work tree, and never a stray file in it)."""
    return _git_dir(repo) / "cleanroom-migrate-staging"


def _tmp_of(repo: Path, target: Path) -> Path:
    return _staging(repo) / os.path.relpath(target, repo).replace(os.sep, "%")


def _finish_or_roll_back(repo: Path, act: bool = True) -> str:
    """A journal left by an interrupted --apply: before the swap, remove its temporary files
    (the tree is as it was); during it, finish the swap and the index change. Says which (with
    ``act`` False: only says what the next --apply will do)."""
    journal = _git_dir(repo) / JOURNAL
    try:
        data = json.loads(journal.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return ""
    except (OSError, ValueError):
        data = {"state": "writing", "files": []}
    if not act:
        return ("an --apply was interrupted " + ("during the swap: the next --apply finishes it"
                if data.get("state") == "swapping" else "before it changed anything: the next --apply "
                "removes its temporary files"))
    files = [repo / f for f in data.get("files", [])]
    if data.get("state") == "swapping":
        for target in files:
            tmp = _tmp_of(repo, target)
            if tmp.exists():
                os.replace(tmp, target)
        untrack = list(data.get("untrack", []))
        if untrack:
            git(repo, "rm", "--cached", "-q", "--ignore-unmatch", "--", *untrack)
        msg = "an interrupted --apply was finished: the repo is fully migrated"
    else:
        msg = "an interrupted --apply had not changed anything yet: its temporary files are removed"
    import shutil

    shutil.rmtree(_staging(repo), ignore_errors=True)
    journal.unlink(missing_ok=True)
    return msg


class _Held:
    """SIGINT and SIGTERM held off while the swap runs (delivered when it is over)."""

    def __enter__(self) -> None:
        self.old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})

    def __exit__(self, *exc: object) -> None:
        signal.pthread_sigmask(signal.SIG_SETMASK, self.old)


def _term_as_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _stage(tmp: Path, data: bytes, target: Path) -> None:
    """One new file written into the staging folder, with its target's mode."""
    tmp.write_bytes(data)
    if target.exists():
        os.chmod(tmp, target.stat().st_mode & 0o7777)


def _swap(tmp: Path, target: Path) -> None:
    """One staged file put in place (a rename: the target is the old file or the new, never half)."""
    os.replace(tmp, target)


def apply_migration(m: Migration) -> None:
    """Write every new file beside its target, then swap them in and untrack, index last."""
    repo = m.repo
    journal = _git_dir(repo) / JOURNAL
    writes: list[tuple[Path, bytes]] = [(repo / i.path, i.new.encode("utf-8")) for i in m.text_changes]
    writes += [(repo / r.path, r.new) for r in m.rewrites]
    state = {"state": "writing", "files": [os.path.relpath(t, repo) for t, _ in writes], "untrack": m.untrack}
    staging = _staging(repo)
    lock = _git_dir(repo) / "index.lock"
    if m.untrack and lock.exists():  # `git rm --cached` would fail after the files were swapped
        raise StepFailed(f"cannot write {lock}: git's index is locked (another git command is running, "
                         "or one crashed and left the lock; remove it if none runs): nothing was changed")
    old_term = signal.signal(signal.SIGTERM, _term_as_interrupt)
    try:
        try:
            staging.mkdir(exist_ok=True)
            journal.write_text(json.dumps(state), encoding="utf-8")
            for target, data in writes:
                _stage(_tmp_of(repo, target), data, target)
                # a target that is not writable (a read-only file or folder) fails here, not mid-swap
                if not os.access(target if target.exists() else target.parent, os.W_OK):
                    raise PermissionError(13, "Permission denied", str(target))
        except BaseException as exc:
            import shutil

            shutil.rmtree(staging, ignore_errors=True)
            with contextlib.suppress(OSError):  # a read-only repo: there is none to remove
                journal.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise StepFailed(f"cannot write {exc.filename or repo}: {exc.strerror or exc}: nothing "
                                 "was changed") from None
            raise
        try:
            with _Held():
                state["state"] = "swapping"
                journal.write_text(json.dumps(state), encoding="utf-8")
                for target, _ in writes:
                    _swap(_tmp_of(repo, target), target)
                if m.untrack:
                    git(repo, "rm", "--cached", "-q", "--", *m.untrack)
                journal.unlink(missing_ok=True)
                staging.rmdir()
        except KeyboardInterrupt:
            if journal.exists():
                raise
            # the signal came during the swap, which was let finish: the migration is complete
            print("migrate-proto: interrupted, but the migration had already completed", flush=True)
    finally:
        signal.signal(signal.SIGTERM, old_term)


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


def migrate(ws: Workspace, apply: bool = False, allow_dirty: bool = False) -> tuple[str, int]:
    """Plan (and prove) the migration; with ``apply`` carry it out. Returns (report, exit code)."""
    require_repo(ws.repo)
    pre = _finish_or_roll_back(ws.repo, act=apply)
    m = plan_migration(ws)
    head = f"migrate-proto: {pre}\n" if pre else ""
    if apply and m.failed:
        return head + render(m, applied=False), 1
    if apply and not m.nothing and not allow_dirty:
        changed = dirty(ws.repo, m.touched)
        if changed:
            raise BadInput(
                f"refusing to apply: {len(changed)} file(s) it would change have uncommitted changes "
                "(commit or stash them first, or pass --allow-dirty)",
                "\n".join(f"  {c}" for c in changed))
    if apply and not m.nothing:
        apply_migration(m)
        return head + render(m, applied=True), 0
    report = head + render(m, applied=False)
    changed = dirty(ws.repo, m.touched) if not m.nothing else []
    if changed:
        report += ("\nmigrate-proto: note: --apply will refuse until these have no uncommitted "
                   "changes (or pass --allow-dirty): " + ", ".join(changed))
    return report, 0


__all__ = ["Migration", "apply_migration", "find_legacy_dir", "migrate", "plan_migration", "prove_plan", "render"]
