"""Pyproject variants: load them and select one into the root ``pyproject.toml``.

``select`` writes the root ``pyproject.toml`` (a build artifact) from ``pyproject.<variant>.toml``
with tomlkit, so comments and order survive. Its first line is a stamp saying the file is
generated, from which variant, and not to edit it; the stamp also carries a digest of the body so
that a later ``select`` can tell its own output from a hand edit, which it refuses to clobber.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.items import AoT
from tomlkit.toml_document import TOMLDocument

from cleanroom.core.actions import Plan, WriteFile
from cleanroom.core.config import Config
from cleanroom.core.errors import BadInput
from cleanroom.core.toml import get_path, parse_toml_file

VARIANTS = ("binary", "source")
INDEX_SOURCE_NAME = "cleanroom-index"
_DIGEST_RE = re.compile(r"^# cleanroom-digest: sha256:([0-9a-f]{64})$", re.M)


def load_variant(repo: Path, cfg: Config, name: str) -> tuple[Path, TOMLDocument]:
    """Parse ``pyproject.<name>.toml``; a missing or malformed file is a one-line BadInput."""
    if name not in VARIANTS:
        raise BadInput(f"unknown variant '{name}' (expected one of: {', '.join(VARIANTS)})")
    path = repo / cfg.variants.path_of(name)
    return path, parse_toml_file(path)


def _dependency_tables(doc: Any) -> Iterator[tuple[str, Any]]:
    poetry = get_path(doc, "tool.poetry") or {}
    if isinstance(poetry.get("dependencies"), dict):
        yield "main", poetry["dependencies"]
    for gname, group in (poetry.get("group") or {}).items():
        if isinstance(group, dict) and isinstance(group.get("dependencies"), dict):
            yield gname, group["dependencies"]


def _sources_used(deps: Any) -> set[str]:
    used: set[str] = set()
    for spec in deps.values():
        specs = spec if isinstance(spec, list) else [spec]
        for s in specs:
            if isinstance(s, dict) and isinstance(s.get("source"), str):
                used.add(s["source"])
    return used


def _group_tables(doc: Any) -> tuple[Any, Any]:
    """Poetry's ``[tool.poetry.group]`` and PEP 735's ``[dependency-groups]`` (either may be
    absent: then an empty dict)."""
    poetry = get_path(doc, "tool.poetry")
    pgroups = poetry.get("group", {}) if isinstance(poetry, dict) else {}
    dgroups = doc.get("dependency-groups", {})
    return (pgroups if isinstance(pgroups, dict) else {}), (dgroups if isinstance(dgroups, dict) else {})


def _includes(dgroups: Any, name: str) -> list[str]:
    """The [dependency-groups] that include group ``name`` (``{include-group = name}``)."""
    return [g for g, items in dgroups.items() if isinstance(items, list)
            and any(isinstance(i, dict) and i.get("include-group") == name for i in items)]


def drop_groups(doc: TOMLDocument, groups: Sequence[str], file: Path) -> list[str]:
    """Remove optional dependency groups and the package sources only they used.

    A group is Poetry's (``[tool.poetry.group.<g>]``) or PEP 735's (``[dependency-groups]``), or
    both (Poetry 2 marks a PEP 735 group optional in ``[tool.poetry.group.<g>]``). Returns the
    names of the sources removed.
    """
    poetry = get_path(doc, "tool.poetry")
    pgroups, dgroups = _group_tables(doc)
    for g in groups:
        if g not in pgroups and g not in dgroups:
            known = ", ".join(dict.fromkeys([*pgroups, *dgroups])) or "none"
            raise BadInput(f"{file}: no dependency group '{g}' (groups: {known})")
        if not (pgroups.get(g) or {}).get("optional", False):
            raise BadInput(f"{file}: group '{g}' is not optional ([tool.poetry.group.{g}] optional = true); "
                           "only optional groups can be left out")
        users = [u for u in _includes(dgroups, g) if u not in groups]
        if users:
            raise BadInput(f"{file}: group '{g}' is included by [dependency-groups] {', '.join(users)}; "
                           "leave those out too, or drop the include-group")
    dropped_use: set[str] = set()
    for g in groups:
        if g in pgroups:
            dropped_use |= _sources_used(pgroups[g].get("dependencies", {}))
            del pgroups[g]
        if g in dgroups:
            del dgroups[g]
    if not pgroups and isinstance(poetry, dict) and "group" in poetry:
        del poetry["group"]
    if not dgroups and "dependency-groups" in doc:
        del doc["dependency-groups"]
    still_used: set[str] = set()
    for _, deps in _dependency_tables(doc):
        still_used |= _sources_used(deps)
    removed: list[str] = []
    sources = poetry.get("source") if isinstance(poetry, dict) else None
    if isinstance(sources, AoT | list):
        keep = [s for s in sources if s.get("name") not in (dropped_use - still_used)]
        removed = [s.get("name") for s in sources if s.get("name") in (dropped_use - still_used)]
        if removed:
            if keep:
                new = tomlkit.aot()
                for s in keep:
                    new.append(s)
                poetry["source"] = new
            else:
                del poetry["source"]
    return removed


def add_index_source(doc: TOMLDocument, url: str) -> None:
    """Make ``url`` (a simple-API index) Poetry's primary source, ahead of any others."""
    poetry = doc.setdefault("tool", tomlkit.table(True)).setdefault("poetry", tomlkit.table())
    src = tomlkit.table()
    src["name"] = INDEX_SOURCE_NAME
    src["url"] = url
    src["priority"] = "primary"
    existing = poetry.get("source")
    new = tomlkit.aot()
    new.append(src)
    if isinstance(existing, AoT | list):
        for s in existing:
            new.append(s)
        del poetry["source"]
    poetry["source"] = new


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


_REQ_NAME = re.compile(r"\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)")


def _req_name(req: Any) -> str | None:
    """The distribution name of a PEP 508 string (None for anything else)."""
    m = _REQ_NAME.match(req) if isinstance(req, str) else None
    return _norm(m.group(1)) if m else None


def _direct_reference(req: str, dist: str, whl: Path) -> str:
    """``req`` pointed at a wheel file, keeping its markers: ``dist @ file:///... ; markers``."""
    markers = req.split(";", 1)[1].strip() if ";" in req else ""
    return f"{dist} @ {whl.as_uri()}" + (f" ; {markers}" if markers else "")


def _poetry_main(doc: TOMLDocument) -> Any:
    """``[tool.poetry.dependencies]``, made when missing."""
    tool = doc.setdefault("tool", tomlkit.table(True))
    return tool.setdefault("poetry", tomlkit.table()).setdefault("dependencies", tomlkit.table())


def use_local_wheels(doc: TOMLDocument, wheels: Sequence[Path]) -> list[str]:
    """Point each wheel's package at the wheel file, wherever it is declared: a Poetry table
    entry becomes a path dependency; a PEP 508 string in [dependency-groups] becomes a direct
    reference; one in [project].dependencies gets a Poetry path entry beside it (Poetry 2 lets
    [tool.poetry.dependencies] add a source to a [project] dependency). A package declared nowhere
    is added to the main dependencies ([project] when it lists them). Returns the names."""
    tables = list(_dependency_tables(doc))
    project = doc.get("project")
    pdeps = project.get("dependencies") if isinstance(project, dict) else None
    _, dgroups = _group_tables(doc)
    names = []
    for whl in sorted(wheels):
        dist = whl.name.split("-")[0]
        spec = tomlkit.inline_table()
        spec["path"] = str(whl)
        found = False
        for _, deps in tables:
            for key in [k for k in list(deps) if _norm(k) == _norm(dist)]:
                old = deps[key]
                if isinstance(old, dict) and "markers" in old:
                    spec["markers"] = old["markers"]
                deps[key] = spec
                found = True
        for items in dgroups.values():
            if isinstance(items, list):
                for i, req in enumerate(list(items)):
                    if _req_name(req) == _norm(dist):
                        items[i] = _direct_reference(req, dist, whl)
                        found = True
        if isinstance(pdeps, list) and any(_req_name(r) == _norm(dist) for r in pdeps):
            if not found:
                _poetry_main(doc)[dist] = spec
            found = True
        if not found:
            if isinstance(pdeps, list):
                pdeps.append(f"{dist} @ {whl.as_uri()}")
            else:
                _poetry_main(doc)[dist] = spec
        names.append(dist)
    return names


def digest(body: str) -> str:
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Selection:
    variant: str
    variant_file: str
    without: tuple[str, ...]
    index_url: str | None
    content: str


def render(repo: Path, cfg: Config, variant: str, without: Sequence[str] = (),
           index_url: str | None = None, wheels_dir: Path | None = None) -> Selection:
    """Build the generated ``pyproject.toml`` text (pure: reads the variant, writes nothing)."""
    path, doc = load_variant(repo, cfg, variant)
    removed = drop_groups(doc, list(dict.fromkeys(without)), path) if without else []
    if index_url:
        add_index_source(doc, index_url)
    local: list[str] = []
    if wheels_dir is not None:
        if not wheels_dir.is_dir():
            raise BadInput(f"--wheels {wheels_dir}: no such folder")
        local = use_local_wheels(doc, [p.resolve() for p in wheels_dir.glob("*.whl")])
    body = tomlkit.dumps(doc)
    rel = cfg.variants.path_of(variant)
    notes = []
    if without:
        notes.append("without group(s): " + ", ".join(without))
        if removed:
            notes.append("dropped source(s): " + ", ".join(removed))
    if index_url:
        notes.append(f"primary index from CLEANROOM_INDEX_URL: {index_url}")
    if local:
        notes.append(f"local wheels from {wheels_dir}: " + ", ".join(local))
    cmd = f"cleanroom select {variant}" + "".join(f" --without {g}" for g in without)
    cmd += f" --wheels {wheels_dir}" if wheels_dir is not None else ""
    stamp = (
        f"# GENERATED by `{cmd}` from {rel} -- DO NOT EDIT: edit {rel} and select again."
        + (f" ({'; '.join(notes)})" if notes else "")
        + "\n"
        + f"# cleanroom-digest: sha256:{digest(body)}\n"
    )
    return Selection(variant, rel, tuple(without), index_url, stamp + body)


def written_by_select(text: str) -> bool:
    """True when ``text`` is exactly what some ``select`` wrote (its digest matches its body)."""
    lines = text.split("\n", 2)
    if len(lines) < 3 or not lines[0].startswith("# GENERATED by `cleanroom select"):
        return False
    m = _DIGEST_RE.match(lines[1])
    return m is not None and m.group(1) == digest(lines[2])


def select_plan(repo: Path, cfg: Config, variant: str, without: Sequence[str] = (),
                index_url: str | None = None, force: bool = False,
                wheels_dir: Path | None = None) -> tuple[Selection, Plan]:
    """Plan the write of the root ``pyproject.toml``; refuses to clobber a hand edit."""
    sel = render(repo, cfg, variant, without, index_url, wheels_dir)
    target = repo / cfg.variants.target
    if target.is_symlink() or (target.exists() and not target.is_file()):
        raise BadInput(f"{target}: exists and is not a regular file; remove it first")
    if target.exists() and not force:
        try:
            current = target.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise BadInput(f"{target}: cannot read: {exc}") from None
        if current != sel.content and not written_by_select(current):
            diff = "".join(
                difflib.unified_diff(
                    current.splitlines(keepends=True),
                    sel.content.splitlines(keepends=True),
                    fromfile=f"{cfg.variants.target} (now)",
                    tofile=f"{cfg.variants.target} (select {variant})",
                )
            )
            raise BadInput(
                f"{target} was edited by hand (it is not what `cleanroom select` wrote); "
                f"refusing to overwrite it. Move your change into {sel.variant_file}, "
                "or pass --force to discard it",
                detail=diff,
            )
    return sel, [WriteFile(target, sel.content, f"from {sel.variant_file}")]
