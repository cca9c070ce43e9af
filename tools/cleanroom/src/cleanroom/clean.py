"""``clean``: list (and with ``--yes`` delete) the host-side artifacts the policy names.

What is listed is exactly what ``verify`` sees as artifacts on disk: the untracked files that the
artifact policy's patterns match, ignored or not (:attr:`VerifyContext.disk_artifacts`, one git
walk). Files are grouped under the folder a pattern names (``__pycache__/``, ``dist/``), so a
folder is listed (and removed) once, with its total size.

Never deleted: a tracked file (a folder holding one is not removed whole: its untracked artifact
files are, one by one), a path the config allows (``[[artifacts.allow]]``), anything outside the
repo, anything the policy does not name, and what the running interpreter uses (its environment,
the metadata of a package installed from the repo). Symlinks are removed as links, never followed.
"""

from __future__ import annotations

import fnmatch
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import policy
from .config import Config
from .findings import human_size
from .gitutil import file_size, git, require_repo, split0
from .plan import Plan, Remove, execute
from .verify import VerifyContext
from .workspace import Workspace


@dataclass(frozen=True)
class Item:
    """One thing to delete: a file, a link, or a folder a pattern names."""

    path: str  # repo-relative, '/'-separated
    pattern: str  # the policy pattern that names it
    size: int
    files: int
    folder: bool
    link: bool = False

    @property
    def shown(self) -> str:
        return self.path + ("/" if self.folder else "")


@dataclass
class Cleanup:
    repo: Path
    items: list[Item] = field(default_factory=list)
    kept: list[tuple[str, str]] = field(default_factory=list)  # (path, why not deleted)

    @property
    def size(self) -> int:
        return sum(i.size for i in self.items)

    @property
    def plan(self) -> Plan:
        return [Remove(self.repo / i.path, f"{i.pattern}, {human_size(i.size)}") for i in self.items]


def _match(spec: policy.Spec, parts: Sequence[str]) -> bool:
    """Whether the path ``parts`` itself (not something under it) is what ``spec`` names."""
    if not spec.anchored:
        return fnmatch.fnmatchcase(parts[-1], spec.body)
    if "**" in spec.body:
        return fnmatch.fnmatchcase("/".join(parts), spec.body.replace("**/", "*"))
    body = spec.body.split("/")
    return len(body) == len(parts) and all(fnmatch.fnmatchcase(p, b) for p, b in zip(parts, body, strict=True))


def _root_of(path: str, specs: Sequence[policy.Spec]) -> tuple[str, str, bool]:
    """(the shortest prefix of ``path`` a pattern names, that pattern, whether it is a folder)."""
    parts = path.split("/")
    for i in range(1, len(parts) + 1):
        is_dir = i < len(parts)
        for spec in specs:
            if spec.dir_only and not is_dir:
                continue
            if _match(spec, parts[:i]):
                return "/".join(parts[:i]), spec.pattern, is_dir
    return path, "", False


def _in_use(repo: Path) -> list[Path]:
    """Folders in the repo the running interpreter depends on: its environment and the
    ``*.egg-info`` metadata directly on sys.path (an editable install's)."""
    out = []
    top = repo.resolve()
    prefix = Path(sys.prefix).resolve()
    if prefix == top or top in prefix.parents:
        out.append(prefix)
    for entry in sys.path:
        try:
            d = Path(entry or ".").resolve()
            if d != top and top not in d.parents:
                continue
            out += [d / n for n in os.listdir(d) if n.endswith((".egg-info", ".dist-info"))]
        except OSError:
            continue
    return out


def _inside(path: Path, repo: Path) -> bool:
    """True when ``path``'s folder, resolved, is within the repo (the path itself may be a link)."""
    top = repo.resolve()
    parent = path.parent.resolve()
    return parent == top or top in parent.parents


def plan_clean(repo: Path, cfg: Config) -> Cleanup:
    require_repo(repo)
    ctx = VerifyContext(repo=repo, cfg=cfg)
    specs = [policy.parse(p) for p in ctx.patterns]
    out = Cleanup(repo)
    groups: dict[str, tuple[str, bool, list[str]]] = {}
    nested: list[str] = []
    for path in ctx.disk_artifacts:
        if path.endswith("/"):  # git does not descend into a nested repository: never deleted
            nested.append(path)
            out.kept.append((path, "a nested git repository"))
            continue
        root, pattern, is_dir = _root_of(path, specs)
        groups.setdefault(root, (pattern or "(policy)", is_dir, []))[2].append(path)

    # A folder is removed whole only when nothing in it is tracked or allowed.
    folders = [r for r, (_, is_dir, _) in groups.items() if is_dir]
    holding: set[str] = set()
    if folders:
        for t in [*split0(git(repo, "ls-files", "-z", "--", *(f":(literal){f}" for f in folders))), *nested]:
            holding.update(f for f in folders if t.startswith(f + "/"))
    in_use = _in_use(repo)
    final: dict[str, tuple[str, bool, list[str]]] = {}
    for root, (pattern, is_dir, files) in groups.items():
        if is_dir and (root in holding or ctx.allowed(root) or any(ctx.allowed(f) for f in files)):
            why = ("holds tracked files or a nested repository" if root in holding
                   else "holds paths allowed in cleanroom.toml")
            out.kept.append((root + "/", f"{why}: only its other artifact files are deleted"))
            for f in files:
                final[f] = (pattern, False, [f])
        else:
            final[root] = (pattern, is_dir, files)

    for root, (pattern, is_dir, files) in sorted(final.items()):
        p = repo / root
        if ctx.allowed(root):
            out.kept.append((root, "allowed in cleanroom.toml [artifacts] allow"))
            continue
        if not _inside(p, repo):
            out.kept.append((root, "outside the repo (through a link)"))
            continue
        link = p.is_symlink()
        if link:
            is_dir = False
        else:
            real = p.resolve()
            if any(real == u or real in u.parents or u in real.parents for u in in_use):
                out.kept.append((root, f"in use by the running Python ({sys.executable})"))
                continue
        size = sum(file_size(repo / f) for f in files)
        out.items.append(Item(root, pattern, size, len(files), is_dir, link))
    return out


def render(c: Cleanup, deleted: bool) -> str:
    if not c.items:
        lines = ["clean: nothing to delete: no host-side artifacts the policy names"]
    else:
        head = "deleted" if deleted else "would delete (run with --yes to delete)"
        lines = [f"clean: {head}: {len(c.items)} artifact(s), {human_size(c.size)}"]
        width = max(len(i.shown) for i in c.items)
        for i in c.items:
            what = f"{i.files} file(s)" if i.folder else "a link, removed as a link" if i.link else ""
            note = f"  ({i.pattern}{', ' + what if what else ''})"
            lines.append(f"  {i.shown.ljust(width)}  {human_size(i.size).rjust(10)}{note}")
    for path, why in c.kept:
        lines.append(f"  kept {path}: {why}")
    return "\n".join(lines)


def clean(ws: Workspace, yes: bool = False) -> str:
    """List the artifacts (``yes``: delete them). Returns the report to print."""
    c = plan_clean(ws.repo, ws.cfg)
    if yes:
        execute(c.plan)
    return render(c, deleted=yes)
