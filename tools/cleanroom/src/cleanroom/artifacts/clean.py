"""``clean``: list (and with ``--yes`` delete) the host-side artifacts the policy names.

What is listed is exactly what ``verify`` sees as artifacts on disk: the untracked files that the
artifact policy's patterns match, ignored or not (:attr:`RepoScan.disk_artifacts`, one git
walk). Files are grouped under the folder a pattern names (``__pycache__/``, ``dist/``), so a
folder is listed (and removed) once, with its total size.

Never deleted: a tracked file (a folder holding one is not removed whole: its untracked artifact
files are, one by one), a path the config allows (``[[artifacts.allow]]``), anything outside the
repo, anything the policy does not name, and what the running interpreter uses (its environment,
the metadata of a package installed from the repo). Symlinks are removed as links, never followed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from cleanroom.artifacts import policy
from cleanroom.artifacts.scan import RepoScan
from cleanroom.core.actions import Plan, Remove
from cleanroom.core.config import Config
from cleanroom.core.git import file_size, git, require_repo, split0
from cleanroom.core.report import human_size
from cleanroom.core.workspace import Workspace


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
    ctx = RepoScan(repo=repo, cfg=cfg)
    specs = ctx.specs
    out = Cleanup(repo)
    groups: dict[str, tuple[str, bool, list[str]]] = {}
    nested: list[str] = []
    for path in ctx.disk_artifacts:
        if path.endswith("/"):  # a nested repository or a mount point: never looked into
            nested.append(path)
            why = ("a mount point: skipped, nothing in it is deleted" if path.rstrip("/") in ctx.mounts
                   else "a nested git repository")
            out.kept.append((path, why))
            continue
        root, pattern, is_dir = policy.root_of(path, specs)
        if not pattern:  # only what the policy names is ever deleted
            out.kept.append((path, "not named by the artifact policy"))
            continue
        groups.setdefault(root, (pattern, is_dir, []))[2].append(path)

    # A folder is removed whole only when nothing in it is tracked, allowed, nested or mounted.
    # One that holds tracked files is a source folder that happens to have an artifact's name
    # (tools/build/): of its untracked files only those another pattern names are deleted.
    folders = [r for r, (_, is_dir, _) in groups.items() if is_dir]
    holding: set[str] = set()
    tracked_in: set[str] = set()
    if folders:
        for t in split0(git(repo, "ls-files", "-z", "--", *(f":(literal){f}" for f in folders))):
            hit = {f for f in folders if t.startswith(f + "/")}
            holding |= hit
            tracked_in |= hit
        for t in nested:
            holding.update(f for f in folders if t.startswith(f + "/"))
    in_use = _in_use(repo)
    final: dict[str, tuple[str, bool, list[str]]] = {}
    for root, (pattern, is_dir, files) in groups.items():
        if is_dir and (root in holding or ctx.allowed(root) or any(ctx.allowed(f) for f in files)):
            why = ("holds tracked files" if root in tracked_in else
                   "holds a nested repository or a mount point" if root in holding
                   else "holds paths allowed in cleanroom.toml")
            keep_own = root in tracked_in
            kept_n = 0
            for f in files:
                inner_root, inner_pat, inner_dir = policy.root_of(f[len(root) + 1:], specs)
                if keep_own and not inner_pat:
                    kept_n += 1
                    continue
                if inner_pat and inner_dir:
                    sub = f"{root}/{inner_root}"
                    final.setdefault(sub, (inner_pat, True, []))[2].append(f)
                else:
                    final[f] = (inner_pat or pattern, False, [f])
            what = (f"{kept_n} untracked file(s) in it kept: a folder git tracks files in is a source folder"
                    if keep_own else "only its other artifact files are deleted")
            out.kept.append((root + "/", f"{why}: {what}"))
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


def delete(c: Cleanup) -> tuple[list[str], set[str]]:
    """Delete every item, never crossing a mount point. Returns a line per path that could not be
    deleted (an immutable file, a read-only mount; not the folders above it, which stay only
    because it does) and the items not wholly deleted; the rest is done."""
    import shutil

    failed: list[str] = []
    left: set[str] = set()
    repo_dev = c.repo.stat().st_dev

    below: list[str] = []  # what could not be deleted in the current item's folder

    def onerror(fn: object, path: str, exc: object) -> None:
        err = exc[1] if isinstance(exc, tuple) else exc
        rel = os.path.relpath(path, c.repo)
        if any(b.startswith(rel + os.sep) for b in below):
            return  # a folder kept by what is in it: that path has its line
        below.append(rel)
        failed.append(f"could not delete {rel}: {getattr(err, 'strerror', None) or err}")

    for item in c.items:
        p = c.repo / item.path
        below.clear()
        try:
            if item.link or not item.folder:
                p.unlink(missing_ok=True)
            elif p.lstat().st_dev != repo_dev:
                failed.append(f"could not delete {item.shown}: a mount point (skipped)")
                left.add(item.path)
            else:
                shutil.rmtree(p, onerror=onerror)
        except OSError as exc:
            failed.append(f"could not delete {item.shown}: {exc.strerror or exc}")
            left.add(item.path)
        if below:
            left.add(item.path)
    return failed, left


def render(c: Cleanup, deleted: bool, left: Collection[str] = ()) -> str:
    if not c.items:
        lines = ["clean: nothing to delete: no host-side artifacts the policy names"]
    else:
        done = [i for i in c.items if i.path not in left]
        if not deleted:
            head = f"would delete (run with --yes to delete): {len(c.items)} artifact(s), {human_size(c.size)}"
        elif left:
            head = (f"deleted: {len(done)} of {len(c.items)} artifact(s), "
                    f"{human_size(sum(i.size for i in done))}")
        else:
            head = f"deleted: {len(c.items)} artifact(s), {human_size(c.size)}"
        lines = [f"clean: {head}"]
        width = max(len(i.shown) for i in c.items)
        for i in c.items:
            what = f"{i.files} file(s)" if i.folder else "a link, removed as a link" if i.link else ""
            note = f"  ({i.pattern}{', ' + what if what else ''})"
            if i.path in left:
                note += "  not (wholly) deleted: see below"
            lines.append(f"  {i.shown.ljust(width)}  {human_size(i.size).rjust(10)}{note}")
    for path, why in c.kept:
        lines.append(f"  kept {path}: {why}")
    return "\n".join(lines)


def clean(ws: Workspace, yes: bool = False) -> tuple[str, int]:
    """List the artifacts (``yes``: delete them). Returns the report and the exit code (1 when
    something could not be deleted)."""
    c = plan_clean(ws.repo, ws.cfg)
    failed, left = delete(c) if yes else ([], set())
    report = render(c, deleted=yes, left=left)
    if failed:
        report += "\n" + "\n".join(f"clean: {f}" for f in failed)
        report += f"\nclean: {len(failed)} path(s) could not be deleted; the rest were"
    return report, 1 if failed else 0
