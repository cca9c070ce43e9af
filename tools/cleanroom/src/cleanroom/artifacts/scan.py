"""The repo scan that verify's rules, --fix, clean and migrate-proto share: computed once, lazily.

Git's view of the artifacts in the tree (one walk, by git, with the policy as the exclude list),
the builds (:mod:`cleanroom.docker.builds`: as Docker and Compose define them) and the ignore file
each reads, grouped: builds that share a context and an ignore file share their defects. What
cannot be checked (a remote or outside context, a Dockerfile BuildKit cannot parse, a Dockerfile
whose context nothing declares) is a one-line note.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cleanroom.artifacts import policy
from cleanroom.artifacts.policy import examples
from cleanroom.core.actions import mounts_under
from cleanroom.core.config import Config
from cleanroom.core.git import Listing, index_heads, not_ignored
from cleanroom.docker import dockerfiles
from cleanroom.docker.builds import Build, Discovery, discover, is_dockerfile_name, undeclared
from cleanroom.docker.context import choose_builder, model_for
from cleanroom.docker.dockerfiles import Source
from cleanroom.dockerignore.matcher import Matcher, ignore_file_for, read

if TYPE_CHECKING:
    from cleanroom.docker.context import BuilderModel
    from cleanroom.dockerignore.matcher import Matcher


MARKER_NAMES = policy.MARKER_NAMES


def _is_ignore_file(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return name == ".dockerignore" or name.endswith(".dockerignore")


def _is_gitignore(path: str) -> bool:
    return path.rsplit("/", 1)[-1] == ".gitignore"


def _is_dockerfile(path: str) -> bool:
    return is_dockerfile_name(path.rsplit("/", 1)[-1])


def _tree_size(path: Path) -> int:
    """Bytes under ``path`` (a file, a link as itself, or a folder, links not followed)."""
    try:
        st = path.lstat()
    except OSError:
        return 0
    if not path.is_dir() or path.is_symlink():
        return st.st_size
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


@dataclass(frozen=True)
class BuildIgnore:
    """A build and the ignore file it reads (per builder when they differ)."""

    build: Build
    builder: str  # "buildkit" or "classic"
    ignore_path: Path | None

    @property
    def label(self) -> str:
        return f"build '{self.build.name}' ({self.builder})"


@dataclass
class IgnoreGroup:
    """The builds that read one ignore file from one context: they share every Docker-side defect.
    ``ignore_name`` is the file's repo-relative path (for none: the ``.dockerignore`` that would
    be read, at the context root)."""

    context: Path
    ignore_path: Path | None
    ignore_name: str
    members: list[BuildIgnore] = field(default_factory=list)

    @property
    def builds(self) -> list[Build]:
        seen: dict[str, Build] = {}
        for m in self.members:
            seen.setdefault(m.build.name, m.build)
        return list(seen.values())

    @property
    def label(self) -> str:
        names = [b.name for b in self.builds]
        also = sum(len(b.also) for b in self.builds)
        builders = sorted({m.builder for m in self.members})
        who = f"build '{names[0]}'" if len(names) == 1 else "builds " + ", ".join(f"'{n}'" for n in names)
        if also:
            who += f" (+{also} service(s) with the same build)"
        return f"{who} ({', '.join(builders)})"

    @property
    def state(self) -> str:
        return "reads no ignore file" if self.ignore_path is None else f"read {self.ignore_name}"


@dataclass
class RepoScan:
    """One repo, scanned once and lazily: what git says about its artifacts, its builds and
    the ignore files they read. verify's rules, ``verify --fix``, ``clean`` and
    ``migrate-proto`` share it."""

    repo: Path
    cfg: Config
    out_dir: Path | None = None
    check_generated: bool = False
    # The git listing, when the caller started it early (see start_listing).
    listing: Listing | None = None
    notes: list[str] = field(default_factory=list)
    _matchers: dict[tuple[Path | None, str], Matcher] = field(default_factory=dict)
    _skipped: dict[tuple[int, str], bool] = field(default_factory=dict)
    _docker_gaps: list[Any] | None = None  # artifacts.gaps.DockerGap, computed there once
    _leaks: dict[tuple[Path, Path | None], list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.cfg = self.cfg.resolved(self.repo)

    def rel(self, p: Path) -> str:
        return os.path.relpath(p, self.repo).replace(os.sep, "/")

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    @cached_property
    def patterns(self) -> tuple[str, ...]:
        return self.cfg.artifact_patterns(self.repo)

    @cached_property
    def specs(self) -> list[policy.Spec]:
        return [policy.parse(p) for p in self.patterns]

    def pattern_of(self, path: str) -> str:
        """The policy pattern that names ``path`` (a folder when it ends in "/"), or ""."""
        return policy.root_of(path + "x" if path.endswith("/") else path, self.specs)[1]

    @cached_property
    def _listing(self) -> tuple[list[str], list[str], list[str], list[str], list[str], list[str]]:
        """(tracked artifacts, untracked artifacts on disk, docker ignore files, .gitignore
        files, Dockerfiles, marker files), from one walk by git with the policy (plus the names of
        ignore files, Dockerfiles and project markers) as the exclude list. Untracked artifact
        folders are one entry ending in "/"."""
        if self.listing is None:
            self.listing = start_listing(self.repo, self.cfg)
        tracked, others, _ = self.listing.result()
        # The listed names (ignore files, Dockerfiles, markers) among them; a folder so named
        # (an untracked `team.dockerignore/`) comes as one entry too.
        named = {p for p in (*tracked, *others) if _LISTED_RE.match(p.rstrip("/").rpartition("/")[2])}
        files = [p for p in named if not p.endswith("/")]
        ign = sorted(p for p in files if _is_ignore_file(p))
        gi = sorted(p for p in files if _is_gitignore(p))
        dfs = sorted(p for p in files if _is_dockerfile(p))
        marks = sorted(p for p in files if _is_marker(p))
        # a listed name is an artifact only when the policy names it too, and so is a file git
        # matched only through a folder so named (`notes/team.dockerignore/README.txt`): only the
        # paths with such a part are asked (asking the policy of every one is the slow part)
        not_artifact = {p for p in (*tracked, *others)
                        if any(_LISTED_RE.match(part) for part in p.rstrip("/").split("/"))
                        and not self.pattern_of(p)}
        return ([p for p in tracked if p not in not_artifact], [p for p in others if p not in not_artifact],
                ign, gi, dfs, marks)

    @cached_property
    def tracked_artifacts(self) -> list[str]:
        """Tracked files the policy names, but those named like protobuf output that hold none
        (hand-written shims: sources, with a note)."""
        named = [p for p in self._listing[0] if policy.is_proto_artifact(p)]
        heads = index_heads(self.repo, named, 8192)
        shims = [p for p in named if p in heads and not policy.looks_generated(heads[p])]
        out = [p for p in self._listing[0] if p not in set(shims)]
        if shims:
            self.note(f"{len(shims)} tracked file(s) named like protobuf output hold no generated "
                      f"code (no protoc banner or protobuf import): kept as sources: {examples(shims)}")
        return out

    @property
    def disk_entries(self) -> list[str]:
        """Untracked artifacts on disk; a whole artifact folder is one entry ending in "/"."""
        return self._listing[1]

    @cached_property
    def mounts(self) -> set[str]:
        """Mount points inside the repo (repo-relative): never looked into, never deleted."""

        top = str(self.repo.resolve())
        return {os.path.relpath(m, top).replace(os.sep, "/") for m in mounts_under(self.repo) if m != top}

    @cached_property
    def disk_artifacts(self) -> list[str]:
        """Untracked artifact files on disk, folders expanded (links not followed); a nested
        git repository or a mount point stays one entry ending in "/" (never looked into)."""
        out: list[str] = []
        mounts = self.mounts
        for e in self.disk_entries:
            if not e.endswith("/"):
                out.append(e)
                continue
            top = self.repo / e
            if (top / ".git").exists() or e.rstrip("/") in mounts:
                out.append(e)
                continue
            for root, dirs, files in os.walk(top):
                rel = self.rel(Path(root))
                nested = [d for d in dirs if (Path(root) / d / ".git").exists() or f"{rel}/{d}" in mounts]
                out += [f"{rel}/{d}/" for d in nested]
                dirs[:] = sorted(d for d in dirs if d not in nested)
                out += [f"{rel}/{f}" for f in sorted(files)]
        return out

    @property
    def ignore_files(self) -> list[str]:
        return self._listing[2]

    @property
    def gitignore_files(self) -> list[str]:
        return self._listing[3]

    @property
    def dockerfiles(self) -> list[str]:
        return self._listing[4]

    @property
    def markers(self) -> list[str]:
        return self._listing[5]

    @cached_property
    def repo_kinds(self) -> set[str]:
        """The kinds of project (policy.MARKERS) anywhere in the repo: from the marker files
        git listed, else (a Python project with no manifest) a short look for a .py file."""
        kinds = _kinds_of(self.markers)
        if "python" not in kinds and _has_python_file(self.repo):
            kinds.add("python")
        return kinds

    def kinds(self, group: IgnoreGroup) -> set[str]:
        """The kinds of project whose files a build of ``group`` sends: an artifact can arise in
        its context only where such a project is (a Go context need not exclude Python caches)."""
        prefix = self.rel(group.context) + "/" if group.context != self.repo else ""
        sent = [m[len(prefix):] for m in self.markers if m.startswith(prefix)
                and any(self.sent(self.matcher(bi), m[len(prefix):]) for bi in group.members)]
        kinds = _kinds_of(sent)
        if "python" not in kinds:
            # Python files sent without a manifest (or with it excluded): a short look
            def sends(rel: str) -> bool:
                return any(self.sent(self.matcher(bi), rel) for bi in group.members)

            def skips(rel: str) -> bool:
                return all(self.folder_skipped(self.matcher(bi), rel) for bi in group.members)

            if _has_python_file(group.context, accept=sends, skip=skips):
                kinds.add("python")
        return kinds

    @cached_property
    def discovery(self) -> Discovery:
        d = discover(self.repo, self.cfg)
        for n in d.notes:
            self.note(n)
        return d

    @property
    def builds(self) -> list[Build]:
        return self.discovery.builds

    @cached_property
    def undeclared_dockerfiles(self) -> list[str]:
        found = undeclared(self.repo, self.builds, self.dockerfiles)
        if found:
            self.note(f"{len(found)} Dockerfile(s) that no compose file or config builds, so their "
                      f"context is unknown: {examples(found)}: not checked; declare each with its "
                      "context in cleanroom.toml ([[docker.builds]] dockerfile = ..., context = ...)")
        return found

    @cached_property
    def build_ignores(self) -> list[BuildIgnore]:
        out = []
        for b in self.builds:
            bk = ignore_file_for(b.context, b.dockerfile, buildkit=True)
            classic = ignore_file_for(b.context, b.dockerfile, buildkit=False)
            out.append(BuildIgnore(b, "buildkit", bk))
            if classic != bk and b.inline is None:
                out.append(BuildIgnore(b, "classic", classic))
        return out

    @cached_property
    def groups(self) -> list[IgnoreGroup]:
        by: dict[tuple[Path, Path | None], IgnoreGroup] = {}
        for bi in self.build_ignores:
            ctx_rel = bi.build.rel_context(self.repo)
            name = self.rel(bi.ignore_path) if bi.ignore_path else (
                f"{ctx_rel}/.dockerignore" if ctx_rel else ".dockerignore")
            g = by.setdefault((bi.build.context, bi.ignore_path),
                              IgnoreGroup(bi.build.context, bi.ignore_path, name))
            g.members.append(bi)
        return list(by.values())

    # Two git questions are asked in background threads as soon as the listing is known, so
    # that git answers them while the Docker-side rules run in Python.
    @cached_property
    def _pool(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(max_workers=2, thread_name_prefix="cleanroom-git")

    @cached_property
    def untracked_not_ignored(self) -> list[tuple[str, list[str]]]:
        """Untracked artifact entries that the repo's ignore rules do not ignore: a file, or a
        folder with the files in it git does not ignore (a __pycache__/ whose files `*.pyc`
        ignores is fine), from the listing's third answer."""
        assert self.listing is not None
        loose = self.listing.result()[2]
        files = {e for e in self.disk_entries if not e.endswith("/")}
        folders = {e for e in self.disk_entries if e.endswith("/")}
        out: dict[str, list[str]] = {}
        for u in loose:
            if u in files:
                out[u] = [u]
                continue
            head = u
            while "/" in head:
                head = head.rpartition("/")[0]
                if head + "/" in folders:
                    out.setdefault(head + "/", []).append(u)
                    break
        return sorted((e, fs) for e, fs in out.items() if not self.allowed(e.rstrip("/")))

    @cached_property
    def tracked_set(self) -> set[str]:
        return set(self._listing[0])

    @cached_property
    def present(self) -> set[str]:
        """The policy patterns some artifact of this checkout (tracked or on disk) matches."""
        return policy.present(self._listing[0], self.specs, shallow=self._listing[1])

    @cached_property
    def relevant_patterns(self) -> list[str]:
        """The policy patterns this repo's .gitignore must cover: those of the kinds of project it
        holds (no JavaScript lockfiles in a Python-only repo), the config's own, and any pattern a
        file of the repo matches."""
        kinds = self.repo_kinds
        present = self.present
        return [p for p in self.patterns
                if policy.KIND.get(p) is None or policy.KIND[p] in kinds or p in present]

    @cached_property
    def gitignore_probes(self) -> dict[str, str]:
        """Probe path -> policy pattern: at the root, nested, and in every folder holding a
        .gitignore of its own (where a '!' line could re-include an artifact)."""
        extra = sorted({f.rsplit("/", 1)[0] for f in self.gitignore_files if "/" in f})
        by_probe: dict[str, str] = {}
        for pat in self.relevant_patterns:
            ps = policy.probes(pat)
            if not policy.parse(pat).anchored:
                ps += [f"{d}/{ps[0]}" for d in extra]
            for p in ps:
                by_probe.setdefault(p, pat)
        return by_probe

    @cached_property
    def probes_not_ignored(self) -> Future[list[str]]:
        return self._pool.submit(not_ignored, self.repo, list(self.gitignore_probes))

    def warm(self) -> None:
        """The Docker side, which needs no answer from git: done while git walks the tree."""
        for bi in self.build_ignores:
            self.matcher(bi)
        self.sources  # noqa: B018

    def prefetch(self) -> None:
        """Start the background git questions."""
        self.probes_not_ignored  # noqa: B018 (starts it)

    @cached_property
    def builder_model(self) -> BuilderModel:
        """The builder a build here would use, modelled (its matching semantics)."""

        return choose_builder()

    def matcher(self, bi: BuildIgnore) -> Matcher:
        """Docker's matcher for the file this build reads, with the builder's semantics (as
        this machine's client drives it; current Docker for a builder not in use here)."""

        model = self.builder_model
        walk = model.walk if model.name == bi.builder else model_for(bi.builder).walk
        key = (bi.ignore_path, walk.name)
        if key not in self._matchers:
            ign = read(bi.ignore_path) if bi.ignore_path else None
            self._matchers[key] = Matcher(ign.patterns if ign else (), walk)
        return self._matchers[key]

    def folder_skipped(self, matcher: Matcher, inner_dir: str) -> bool:
        """Does the context walk skip folder ``inner_dir`` (or a folder above it) whole? As
        ``Matcher.pruned_ancestor``, memoized per folder: artifact paths share their folders."""
        d = inner_dir.rstrip("/")
        if not d:
            return False
        key = (id(matcher), d)
        hit = self._skipped.get(key)
        if hit is None:
            parent = d.rpartition("/")[0]
            hit = self.folder_skipped(matcher, parent) or matcher.may_prune(d)
            self._skipped[key] = hit
        return hit

    def sent(self, matcher: Matcher, inner: str) -> bool:
        """Would the context walk send file ``inner`` (context-relative; need not exist)? As the
        walk decides: a folder above it that is skipped, else the file's own match."""
        return not self.folder_skipped(matcher, inner.rpartition("/")[0]) and not matcher.excluded(inner)

    def allowed(self, path: str) -> bool:
        return policy.allowed(path, self.cfg.artifacts.allow) is not None

    @cached_property
    def sources(self) -> dict[Path, list[Source] | None]:
        """Per Dockerfile (by path; an inline one by its build's context), what the build reads
        from its context; None when BuildKit cannot parse it (noted)."""
        out: dict[Path, list[Source] | None] = {}
        for b in self.builds:
            key = b.dockerfile if b.inline is None else b.context / f"<inline {b.name}>"
            if key in out:
                continue
            text = b.dockerfile_text()
            where = b.rel_dockerfile(self.repo)
            if text is None:
                out[key] = None
                try:
                    b.dockerfile.read_bytes().decode("utf-8")
                except UnicodeDecodeError as exc:
                    self.note(f"{where}: not valid UTF-8 ({exc.reason} at byte {exc.start}): what it "
                              "copies is not checked")
                except (FileNotFoundError, ValueError):
                    pass  # no Dockerfile (or a NUL in its path): discovery says so
                except OSError as exc:
                    self.note(f"{where}: cannot be read ({exc.strerror or exc}): what it copies is not checked")
                continue
            try:
                out[key] = dockerfiles.context_sources(dockerfiles.parse(text, where))
            except dockerfiles.DockerfileError as exc:
                self.note(f"{exc.message}: what it copies is not checked")
                out[key] = None
        return out

    def sources_of(self, b: Build) -> list[Source]:
        key = b.dockerfile if b.inline is None else b.context / f"<inline {b.name}>"
        return self.sources.get(key) or []


_MARKER_RE = re.compile("|".join(fnmatch.translate(g) for g in MARKER_NAMES))


_LISTED_RE = re.compile("|".join(fnmatch.translate(g) for g in policy.LISTED_NAMES))


def _is_marker(path: str) -> bool:
    return not path.endswith("/") and _MARKER_RE.match(path.rpartition("/")[2]) is not None


def _has_python_file(top: Path, depth: int = 4, budget: int = 5000,
                     accept: Callable[[str], bool] = lambda rel: True,
                     skip: Callable[[str], bool] = lambda rel: False) -> bool:
    """A .py file ``accept`` takes, within ``depth`` folders of ``top``, not below a folder
    ``skip`` names (looked at no more than ``budget`` entries)."""
    todo = [(top, "", 0)]
    seen = 0
    while todo:
        folder, rel, level = todo.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        seen += len(entries)
        for e in entries:
            child = f"{rel}{e.name}"
            if e.name.endswith(".py") and e.is_file(follow_symlinks=False) and accept(child):
                return True
            if (e.is_dir(follow_symlinks=False) and level + 1 < depth
                    and e.name not in (".git", "node_modules") and not skip(child)):
                todo.append((Path(e.path), child + "/", level + 1))
        if seen > budget:
            return False
    return False


def _kinds_of(paths: Iterable[str]) -> set[str]:
    found: set[str] = set()
    for p in paths:
        name = p.rsplit("/", 1)[-1]
        for kind, globs in policy.MARKERS.items():
            if kind not in found and any(fnmatch.fnmatchcase(name, g) for g in globs):
                found.add(kind)
    return found


def start_listing(repo: Path, cfg: Config) -> Listing:
    """Start verify's git questions (call it as early as possible: git works while Python does)."""
    return Listing(repo, [*cfg.artifact_patterns(repo), *policy.LISTED_NAMES])
