"""verify: every rule of the doctrine as a check, one finding per defect.

Each rule is a function from the verify context to findings, registered once in :data:`RULES`
(name and order; the formats and ``checked`` read that table). The context computes once what
several rules share: git's view of the artifacts in the tree (one walk, by git, with the policy as
the exclude list), the builds (:mod:`cleanroom.builds`: as Docker and Compose define them) and
the ignore file each reads, grouped: builds that share a context and an ignore file share their
defects, so a gap is one finding naming every build it affects.

What cannot be checked (a remote or outside context, a Dockerfile BuildKit cannot parse, a
Dockerfile whose context nothing declares) is a one-line note, never a finding and never a crash.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from . import dockerfiles, policy
from .builds import Build, Discovery, discover, is_dockerfile_name, undeclared
from .config import Config
from .dockerfiles import Source
from .drift import MISSING, find_drift
from .errors import BadInput
from .findings import Finding, human_size
from .gitutil import Listing, index_heads, not_ignored, require_repo
from .policy import examples

if TYPE_CHECKING:
    from .context import BuilderModel
    from .dockerignore import Matcher

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
class VerifyContext:
    repo: Path
    cfg: Config
    out_dir: Path | None = None
    check_generated: bool = False
    # The git listing, when the caller started it early (see start_listing).
    listing: Listing | None = None
    notes: list[str] = field(default_factory=list)
    _matchers: dict[tuple[Path | None, str], Matcher] = field(default_factory=dict)
    _skipped: dict[tuple[int, str], bool] = field(default_factory=dict)
    _docker_gaps: list[DockerGap] | None = None
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
        from .plan import mounts_under

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
        from .dockerignore import ignore_file_for

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
        from .context import choose_builder

        return choose_builder()

    def matcher(self, bi: BuildIgnore) -> Matcher:
        """Docker's matcher for the file this build reads, with the builder's semantics (as
        this machine's client drives it; current Docker for a builder not in use here)."""
        from .context import model_for
        from .dockerignore import Matcher, read

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


# ------------------------------------------------------------------------------ the rules


def _fmt(v: object) -> str:
    return "(absent)" if v == MISSING else repr(v)


def rule_tracked_artifact(ctx: VerifyContext) -> Iterator[Finding]:
    """One finding per folder: its tracked artifacts go with one `git rm --cached`."""
    groups: dict[str, list[str]] = {}
    for path in ctx.tracked_artifacts:
        if ctx.allowed(path):
            continue
        root, _pattern, is_dir = policy.root_of(path, ctx.specs)
        groups.setdefault(root + "/" if is_dir else path.rpartition("/")[0], []).append(path)
    for where, paths in sorted(groups.items()):
        pats = sorted({ctx.pattern_of(p) for p in paths})
        if len(paths) == 1:
            yield Finding(
                "tracked-artifact", paths[0],
                f"git tracks a build artifact ({pats[0]}: {policy.why(pats[0])}); the doctrine: "
                "artifacts are regenerated, never committed",
                f"git rm --cached -- '{paths[0]}' (keeps the file on disk), and make sure an ignore "
                "rule covers it (`cleanroom verify --fix` adds missing rules)",
            )
            continue
        if where.endswith("/"):
            what, target = f"the folder {where}", where
        else:
            what = f"{where}/" if where else "the repo root"
            target = " ".join(f"'{where}/{policy.parse(p).body}'" if where else f"'{policy.parse(p).body}'"
                              for p in pats)
        yield Finding(
            "tracked-artifact", where or ".",
            f"git tracks {len(paths)} build artifacts in {what} ({', '.join(pats)}): {examples(paths)}; "
            "the doctrine: artifacts are regenerated, never committed",
            f"git rm -r --cached -- {target if where.endswith('/') else target} (keeps the files on "
            "disk), and make sure ignore rules cover them (`cleanroom verify --fix` adds missing rules)",
            related=tuple(paths),
        )


def rule_untracked_artifact(ctx: VerifyContext) -> Iterator[Finding]:
    for entry, files in ctx.untracked_not_ignored:
        what = ("a build artifact that git shows as untracked" if not entry.endswith("/") else
                f"an artifact folder whose files git shows as untracked ({examples(files)})")
        yield Finding(
            "untracked-artifact", entry,
            f"{what}: nothing ignores it, so it can be committed",
            "add an ignore rule for it to .gitignore (`cleanroom verify --fix`), or delete it "
            "(`cleanroom clean --yes`)",
            related=tuple(files) if entry.endswith("/") else (),
        )


def gitignore_gaps(ctx: VerifyContext) -> dict[str, list[str]]:
    """Policy pattern -> the probe paths git does not ignore (empty: fully covered)."""
    per_pattern: dict[str, list[str]] = {}
    for probe in ctx.probes_not_ignored.result():
        per_pattern.setdefault(ctx.gitignore_probes[probe], []).append(probe)
    return per_pattern


def rule_gitignore_gap(ctx: VerifyContext) -> Iterator[Finding]:
    gaps = gitignore_gaps(ctx)
    if gaps and not ctx.gitignore_files:
        # no .gitignore at all: one defect, one finding naming every line it must hold
        pats = list(gaps)
        yield Finding(
            "gitignore-gap", ".gitignore",
            f"the repo has no .gitignore: git ignores none of the {len(pats)} artifact patterns "
            f"({examples(pats)})",
            f"create .gitignore with the lines {examples([policy.git_rule(p) for p in pats])} "
            "(`cleanroom verify --fix` writes them, with a comment each)",
            related=tuple(pats),
        )
        return
    for pat, probes in gaps.items():
        yield Finding(
            "gitignore-gap", ".gitignore",
            f"artifact pattern '{pat}' is not covered: git does not ignore the probe path(s) "
            + examples(probes),
            f"add the line `{policy.git_rule(pat)}` to .gitignore (`cleanroom verify --fix` adds it "
            "to a managed block)",
        )


@dataclass(frozen=True)
class DockerGap:
    group: IgnoreGroup
    pattern: str
    leaked: list[str]  # probe paths the context would send (context-relative)
    real: list[str]  # artifact files of this checkout the context would send (repo-relative)
    copied: list[Source]  # what a build copies that the pattern names

    @property
    def ignore_name(self) -> str:
        return self.group.ignore_name

    @property
    def fixable(self) -> bool:
        return not self.copied


def _entries(ctx: VerifyContext) -> list[str]:
    return sorted(set(ctx.tracked_artifacts) | set(ctx.disk_entries))


def _leaks(ctx: VerifyContext, g: IgnoreGroup) -> list[str]:
    """The repo's artifact files (repo-relative) that some build of ``g`` would send, as
    :func:`docker_gaps` found them (it decides how closely to look)."""
    docker_gaps(ctx)
    return ctx._leaks.get((g.context, g.ignore_path), [])


def _exceptions(ctx: VerifyContext, g: IgnoreGroup) -> tuple[set[str], bool]:
    """The ``!`` lines of the group's ignore file(s): (literal paths, whether any has a wildcard)."""
    literal: set[str] = set()
    wild = False
    for bi in g.members:
        for pat in ctx.matcher(bi).patterns:
            if not pat.exclusion:
                continue
            if any(ch in pat.text for ch in "*?[\\"):
                wild = True
            else:
                literal.add(pat.text.strip("/"))
    return literal, wild


def _compute_leaks(ctx: VerifyContext, g: IgnoreGroup, entries: list[str], everything: bool) -> list[str]:
    """Which of ``entries`` (repo-relative, inside the context) some build of ``g`` sends.

    Every entry is asked when ``everything``; otherwise (no pattern has a gap, so the ignore file
    excludes every artifact pattern in general) only entries a ``!`` line could re-include: those
    at or below a literal ``!`` path. A ``!`` line with a wildcard makes every entry suspect."""
    ctx_rel = ctx.rel(g.context) if g.context != ctx.repo else ""
    prefix = ctx_rel + "/" if ctx_rel else ""
    literal, wild = _exceptions(ctx, g)
    if not everything and not wild:
        import bisect

        chosen: list[str] = []
        for lit in sorted(literal):
            full = prefix + lit
            k = bisect.bisect_left(entries, full)
            while k < len(entries) and (entries[k].rstrip("/") == full or entries[k].startswith(full + "/")):
                chosen.append(entries[k])
                k += 1
        entries = chosen
    found: set[str] = set()
    for bi in g.members:
        matcher = ctx.matcher(bi)
        for entry in entries:
            if ctx.allowed(entry.rstrip("/")):
                continue
            inner = entry[len(prefix):]
            if entry.endswith("/"):
                if ctx.folder_skipped(matcher, inner) or (ctx.repo / entry / ".git").exists():
                    continue
                for root, _dirs, files in os.walk(ctx.repo / entry):
                    rel = ctx.rel(Path(root))
                    found.update(f"{rel}/{f}" for f in files
                                 if ctx.sent(matcher, f"{rel}/{f}"[len(prefix):]))
            elif ctx.sent(matcher, inner):
                found.add(entry)
    return sorted(found)


def docker_gaps(ctx: VerifyContext) -> list[DockerGap]:
    """Per ignore file (group of builds) and policy pattern, what Docker would send (computed
    once per run: two rules read it)."""
    if ctx._docker_gaps is None:
        ctx._docker_gaps = _docker_gaps(ctx)
    return ctx._docker_gaps


def _docker_gaps(ctx: VerifyContext) -> list[DockerGap]:
    gaps = []
    all_entries = _entries(ctx)
    for g in ctx.groups:
        ctx_rel = ctx.rel(g.context) if g.context != ctx.repo else ""
        prefix = ctx_rel + "/" if ctx_rel else ""
        entries = [e for e in all_entries if e.startswith(prefix)] if prefix else all_entries
        in_repo = [spec for spec in ctx.specs if spec.pattern in ctx.present]
        present = policy.present([e for e in entries if e in ctx.tracked_set], in_repo,
                                 shallow=[e for e in entries if e not in ctx.tracked_set]) if prefix else ctx.present
        top = sorted(
            e.name for e in os.scandir(g.context)
            if e.is_dir(follow_symlinks=False) and e.name != ".git"
        ) if g.context.is_dir() else []
        kinds = ctx.kinds(g)
        leaked_by: dict[str, list[str]] = {}
        for pat in ctx.patterns:
            spec = policy.parse(pat)
            probes = policy.probes(pat)
            if spec.anchored:
                # anchored at the repo root: inside this context only if the context is the root
                if ctx_rel:
                    continue
            else:
                probes += [f"{d}/{probes[0]}" for d in top]
            kind = policy.KIND.get(pat)
            if kind is not None and kind not in kinds and pat not in present:
                continue  # no such project in this context: the artifact cannot arise there
            leaked_by[pat] = [p for p in probes if any(ctx.sent(ctx.matcher(bi), p) for bi in g.members)]
        real_all = _compute_leaks(ctx, g, entries, everything=any(leaked_by.values()))
        ctx._leaks[(g.context, g.ignore_path)] = real_all
        copied_all = [s for b in g.builds for s in ctx.sources_of(b)]
        for pat, leaked in leaked_by.items():
            spec = policy.parse(pat)
            real = [p for p in real_all if policy.root_of(p, [spec])[1]]
            if leaked or real:
                copied = [s for s in copied_all if not s.glob and policy.matches(
                    pat, s.path + "/x" if (g.context / s.path).is_dir() else s.path)]
                gaps.append(DockerGap(g, pat, leaked, real, copied))
    return gaps


def _where_copied(ctx: VerifyContext, group: IgnoreGroup, s: Source) -> str:
    for b in group.builds:
        if s in ctx.sources_of(b):
            return f"{b.rel_dockerfile(ctx.repo)}:{s.instruction.line}"
    return f"line {s.instruction.line}"


def rule_dockerignore_gap(ctx: VerifyContext) -> Iterator[Finding]:
    gaps = docker_gaps(ctx)
    # A build that reads no ignore file at all has one defect (the missing file), not one per
    # pattern: one finding naming every pattern the file must hold.
    missing: dict[str, list[DockerGap]] = {}
    for g in gaps:
        if g.group.ignore_path is None and g.fixable:
            missing.setdefault(g.ignore_name, []).append(g)
    for name, items in missing.items():
        grp = items[0].group
        real = sorted({r for g in items for r in g.real})
        rules = [policy.docker_rule(g.pattern) for g in items]
        yield Finding(
            "dockerignore-gap", name,
            f"{grp.label} reads no ignore file: {len(items)} artifact pattern(s) are not excluded from "
            f"the context ({examples([g.pattern for g in items])})"
            + (f"; Docker would send {len(real)} file(s) of this checkout: {examples(real)}" if real else ""),
            f"create {name} with the lines {examples(rules)} (`cleanroom verify --fix` writes them, "
            "with a comment each)",
            related=tuple(b.name for b in grp.builds),
        )
    for g in gaps:
        if g.group.ignore_path is None and g.fixable:
            continue
        grp = g.group
        sends = []
        if g.real:
            size = sum(_tree_size(ctx.repo / r) for r in g.real)
            sends.append(f"{len(g.real)} file(s) of this checkout ({human_size(size)}): {examples(g.real)}")
        if g.leaked:
            sends.append(f"probe path(s) {examples(g.leaked)}")
        message = (f"{grp.label} {grp.state}: artifact pattern '{g.pattern}' is not excluded from "
                   f"the context; Docker would send " + "; ".join(sends))
        if g.copied:
            lines = ", ".join(sorted({_where_copied(ctx, grp, s) for s in g.copied}))
            what = ", ".join(sorted({s.path for s in g.copied}))
            message += (f". The Dockerfile copies it ({lines}: {what}), which contradicts the "
                        f"doctrine ({policy.why(g.pattern)})")
            fix = (f"change {lines} so the image makes {what} itself (e.g. copy the manifest only and "
                   f"let the install step create the lock), then add `{policy.docker_rule(g.pattern)}` "
                   f"to {g.ignore_name}; `cleanroom verify --fix` will not add it while the build "
                   "copies it (that would break the build)")
        else:
            fix = (f"add the line `{policy.docker_rule(g.pattern)}` to {g.ignore_name} (Docker anchors "
                   "patterns at the context root; `cleanroom verify --fix` adds it)")
        yield Finding("dockerignore-gap", g.ignore_name, message, fix,
                      related=tuple(b.name for b in grp.builds))


def rule_context_leak(ctx: VerifyContext) -> Iterator[Finding]:
    """Artifact files a context would send although the ignore file covers their pattern
    (a '!' line re-includes them, or a nested layout slips past): one finding per deciding line."""
    gapped = {(g.group.ignore_name, g.pattern) for g in docker_gaps(ctx)}
    for grp in ctx.groups:
        ctx_rel = ctx.rel(grp.context) if grp.context != ctx.repo else ""
        prefix = ctx_rel + "/" if ctx_rel else ""
        by_line: dict[str, list[str]] = {}
        for path in _leaks(ctx, grp):
            pattern = ctx.pattern_of(path) or ""
            if (grp.ignore_name, pattern) in gapped:
                continue  # reported as that pattern's dockerignore-gap
            decided = ctx.matcher(grp.members[0]).match(path[len(prefix):])
            why = (f"{ctx.rel(Path(decided.source)) if Path(decided.source).is_absolute() else decided.source}:"
                   f"{decided.line} `{decided}` re-includes it" if decided is not None
                   else "no line of it excludes it")
            by_line.setdefault(why, []).append(path)
        for why, paths in sorted(by_line.items()):
            size = sum(_tree_size(ctx.repo / p) for p in paths)
            yield Finding(
                "context-leak", paths[0] if len(paths) == 1 else grp.ignore_name,
                f"{len(paths)} artifact file(s) ({human_size(size)}) would be sent in the context of "
                f"{grp.label}: {examples(paths)}; {grp.ignore_name}: {why}",
                f"exclude them in {grp.ignore_name} (a line after the one that re-includes them), or "
                "delete them (`cleanroom clean --yes`)",
                related=tuple(paths),
            )


def rule_dead_ignore_file(ctx: VerifyContext) -> Iterator[Finding]:
    from .dockerignore import read

    read_by = {bi.ignore_path.resolve() for bi in ctx.build_ignores if bi.ignore_path}
    # A folder with a Dockerfile no build declares may be the context of that build (a Makefile
    # runs `cd python && docker build ...`): its ignore file is not called dead.
    unknown = {d.rpartition("/")[0] for d in ctx.undeclared_dockerfiles}
    unknown_own = {f"{d}.dockerignore" for d in ctx.undeclared_dockerfiles}
    builds = ", ".join(f"{b.name} (context {b.rel_context(ctx.repo) or '.'})" for b in ctx.builds)
    for rel in ctx.ignore_files:
        path = (ctx.repo / rel).resolve()
        if path in read_by or rel.rpartition("/")[0] in unknown or rel in unknown_own:
            continue
        yield Finding(
            "dead-ignore-file", rel,
            "no build reads this ignore file: Docker reads only <context>/.dockerignore, or "
            "(BuildKit) <Dockerfile>.dockerignore next to the Dockerfile; "
            + (f"builds here: {builds}" if builds else "this repo declares no Docker build"),
            "move its rules into the .dockerignore at the build's context root "
            "(as patterns relative to that root), then delete this file",
        )
    for p in sorted(read_by):
        ign = read(p)
        for pat in ign.dead_lines:
            yield Finding(
                "dead-ignore-file", ctx.rel(p),
                f"line '{pat.text}' can never match: Docker does not support paths outside the "
                "context ('..')",
                "rewrite it relative to the build context root, or remove it",
                line=pat.line,
            )


def rule_variant_drift(ctx: VerifyContext) -> Iterator[Finding]:
    v = ctx.cfg.variants
    if not v.enabled:
        return
    missing = [f for f in (v.binary, v.source) if not (ctx.repo / f).is_file()]
    if missing:
        yield Finding(
            "variant-drift", missing[0],
            f"the variant file {missing[0]} is missing"
            + (f" (so is {missing[1]})" if len(missing) > 1 else "")
            + ": a repo with variants needs both (binary and source)",
            f"add {missing[0]} (copy the other variant and change only its dependency sources and "
            "versions), or turn variants off: [variants] enabled = false in cleanroom.toml",
        )
        return
    for d in find_drift(ctx.repo, ctx.cfg):
        yield Finding(
            "variant-drift", v.source,
            f"shared key '{d.key}' differs between the variants: "
            f"{v.binary} has {_fmt(d.binary)}, {v.source} has {_fmt(d.source)}",
            f"make '{d.key}' identical in {v.binary} and {v.source}, or, if it may legitimately "
            "differ, add its section to [variants] may_differ in cleanroom.toml",
        )


@dataclass(frozen=True)
class CopyProblem:
    dockerfile: str  # repo-relative
    source: Source
    builds: tuple[str, ...]
    why: str  # "excluded by .dockerignore:3 `x`" or "does not exist in the context"
    missing: bool
    artifact: str  # the policy pattern naming the source ("" when none)


def _glob_hits(context: Path, pattern: str) -> list[str]:
    import glob as globmod

    hits = globmod.glob(pattern, root_dir=context, recursive=False, include_hidden=True)
    return sorted(h.replace(os.sep, "/") for h in hits)


def copy_problems(ctx: VerifyContext) -> list[CopyProblem]:
    """COPY/ADD (and RUN --mount=type=bind) sources a build cannot have: excluded by its ignore
    file, or not in its context."""
    found: dict[tuple[str, int, str], CopyProblem] = {}
    for bi in ctx.build_ignores:
        b = bi.build
        matcher = ctx.matcher(bi)
        for s in ctx.sources_of(b):
            df = b.rel_dockerfile(ctx.repo)
            key = (df, s.instruction.line, s.path)
            paths = _glob_hits(b.context, s.path) if s.glob else [s.path]
            if not s.glob and not os.path.lexists(b.context / s.path):
                paths = []
            artifact = ctx.pattern_of(f"{b.rel_context(ctx.repo)}/{s.path}".lstrip("/")) or ""
            if not paths:
                why, missing = ("does not exist in the context" if not s.glob
                                else "matches nothing in the context"), True
            else:
                sent = [p for p in paths if _sends(ctx, matcher, b.context, p)]
                if sent:
                    continue
                decided = matcher.match(paths[0])
                pruned = matcher.pruned_ancestor(paths[0])
                if pruned is not None:
                    decided = matcher.match(pruned)
                src = decided.source if decided is not None else ""
                shown = ctx.rel(Path(src)) if src and Path(src).is_absolute() else src
                why = (f"is excluded by {shown}:{decided.line} `{decided}`" if decided is not None
                       else "is not sent")
                missing = False
            old = found.get(key)
            names = tuple(sorted({*(old.builds if old else ()), f"{b.name} ({bi.builder})"}))
            found[key] = CopyProblem(df, s, names, why if old is None else old.why, missing, artifact)
    return [found[k] for k in sorted(found)]


def _sends(ctx: VerifyContext, matcher: Matcher, context: Path, inner: str) -> bool:
    """Is ``inner`` (a file, or a folder with anything sent below it) in the context?"""
    full = context / inner
    if not full.is_dir() or full.is_symlink():
        return ctx.sent(matcher, inner)
    if ctx.folder_skipped(matcher, inner):
        return False
    if not matcher.excluded(inner):
        return True
    for root, _dirs, files in os.walk(full):
        rel = os.path.relpath(root, context).replace(os.sep, "/")
        if any(ctx.sent(matcher, f"{rel}/{f}") for f in files):
            return True
    return False


def rule_copy_excluded(ctx: VerifyContext) -> Iterator[Finding]:
    for p in copy_problems(ctx):
        ins = p.source.instruction
        builds = ", ".join(p.builds)
        message = (f"`{ins.original}` copies {p.source.path}, which {p.why} of build(s) {builds}: "
                   + ("the build fails: it is not in the context" if p.missing else
                      "the build fails: Docker does not send it"))
        if p.artifact:
            message += (f"; {p.source.path} is a build artifact ({p.artifact}: {policy.why(p.artifact)}), "
                        "so the Dockerfile contradicts the doctrine")
            fix = (f"remove {p.source.written} from line {ins.line} of {p.dockerfile}: the image makes it "
                   "itself (e.g. `poetry install` writes the lock inside the image)")
        elif p.missing:
            fix = f"add {p.source.path} to the context, or remove it from line {ins.line} of {p.dockerfile}"
        else:
            fix = (f"stop excluding {p.source.path}: remove or narrow that line, or add "
                   f"`!{p.source.path}` after it")
        yield Finding("copy-excluded", p.dockerfile, message, fix, line=ins.line)


def rule_generated(ctx: VerifyContext) -> Iterator[Finding]:
    if not ctx.check_generated or ctx.out_dir is None:
        return
    from . import proto
    from .workspace import Workspace

    st = proto.status(Workspace(ctx.repo, ctx.cfg), ctx.out_dir)
    if st.current:
        return
    yield Finding(
        "generated-missing" if st.missing else "generated-stale",
        str(st.target.package_dir),
        ("the generated protobuf package is missing" if st.missing
         else "the generated protobuf package does not match the sources") + ": " + "; ".join(st.reasons),
        f"cleanroom proto --out {ctx.out_dir}",
    )


@dataclass(frozen=True)
class Rule:
    names: tuple[str, ...]  # the finding names it can give
    check: Callable[[VerifyContext], Iterable[Finding]]
    applies: Callable[[VerifyContext], bool] = lambda ctx: True
    waits_on_git: bool = False  # run last: it needs a background git answer


# The rules, in report order: registered once, read by every format and by `checked`.
RULES: tuple[Rule, ...] = (
    Rule(("tracked-artifact",), rule_tracked_artifact),
    Rule(("untracked-artifact",), rule_untracked_artifact, waits_on_git=True),
    Rule(("gitignore-gap",), rule_gitignore_gap, waits_on_git=True),
    Rule(("dockerignore-gap",), rule_dockerignore_gap, lambda ctx: bool(ctx.builds)),
    Rule(("copy-excluded",), rule_copy_excluded, lambda ctx: bool(ctx.builds)),
    Rule(("dead-ignore-file",), rule_dead_ignore_file),
    Rule(("context-leak",), rule_context_leak, lambda ctx: bool(ctx.builds)),
    Rule(("variant-drift",), rule_variant_drift, lambda ctx: bool(ctx.cfg.variants.enabled)),
    Rule(("generated-missing", "generated-stale"), rule_generated, lambda ctx: ctx.check_generated),
)
RULE_NAMES: tuple[str, ...] = tuple(n for r in RULES for n in r.names)


@dataclass
class Report:
    findings: list[Finding]
    checked: list[str]
    skipped: dict[str, str]  # rule -> why it did not apply
    notes: list[str]


_SKIP_WHY = {
    "dockerignore-gap": "no Docker build in this repo",
    "copy-excluded": "no Docker build in this repo",
    "context-leak": "no Docker build in this repo",
    "variant-drift": "no pyproject variants in this repo ([variants] enabled)",
    "generated-missing": "no generated package to check (--out DIR)",
    "generated-stale": "no generated package to check (--out DIR)",
}


def start_listing(repo: Path, cfg: Config) -> Listing:
    """Start verify's git questions (call it as early as possible: git works while Python does)."""
    return Listing(repo, [*cfg.artifact_patterns(repo), *policy.LISTED_NAMES])


def run(repo: Path, cfg: Config, out_dir: Path | None = None, check_generated: bool = False,
        listing: Listing | None = None) -> Report:
    require_repo(repo)
    ctx = VerifyContext(repo=repo, cfg=cfg, out_dir=out_dir, check_generated=check_generated,
                        listing=listing)
    ctx.warm()
    ctx.prefetch()
    ctx.undeclared_dockerfiles  # noqa: B018 (its note)
    findings: list[Finding] = []
    checked: list[str] = []
    skipped: dict[str, str] = {}
    try:
        ordered = [r for r in RULES if not r.waits_on_git] + [r for r in RULES if r.waits_on_git]
        for rule in ordered:
            if rule.applies(ctx):
                findings.extend(rule.check(ctx))
        for rule in RULES:
            for name in rule.names:
                if rule.applies(ctx):
                    checked.append(name)
                else:
                    skipped[name] = _SKIP_WHY.get(name, "does not apply")
    finally:
        ctx._pool.shutdown(wait=False)
    return Report(findings, checked, skipped, ctx.notes)


def run_verify(repo: Path, cfg: Config, out_dir: Path | None = None,
               check_generated: bool = False) -> tuple[list[Finding], list[str]]:
    r = run(repo, cfg, out_dir, check_generated)
    return r.findings, r.checked


# ------------------------------------------------------------------------------ --fix


@dataclass
class FixResult:
    written: list[str]  # what was (or would be) written, one line each
    refused: list[str]  # rules not added, and why


def fix(repo: Path, cfg: Config, dry_run: bool = False) -> FixResult:
    """Add the missing ignore rules to managed blocks; never a rule that would exclude what a
    build copies, never a line Docker would refuse, never a file outside the repo."""
    from .fix import fix_plan, safe_docker_rules
    from .plan import execute

    require_repo(repo)
    ctx = VerifyContext(repo=repo, cfg=cfg)
    refused: list[str] = []
    git_gaps = [(repo / ".gitignore", pat) for pat in gitignore_gaps(ctx)]
    dock: list[tuple[Path, str]] = []
    by_file: dict[str, list[DockerGap]] = {}
    for g in docker_gaps(ctx):
        if not g.fixable:
            refused.append(f"{g.ignore_name}: not adding `{policy.docker_rule(g.pattern)}`: a build "
                           "copies what it names (see the dockerignore-gap finding)")
            continue
        by_file.setdefault(g.ignore_name, []).append(g)
    for name, gaps in by_file.items():
        path = repo / name
        try:
            real = path.resolve()
        except OSError as exc:
            raise BadInput(f"{path}: cannot resolve: {exc}") from None
        if real != repo.resolve() and repo.resolve() not in real.parents:
            refused.append(f"{name}: not written: it resolves outside the repo ({real})")
            continue
        sources = [s for g in gaps for b in g.group.builds for s in ctx.sources_of(b)]
        ok, why_not = safe_docker_rules(ctx, gaps[0].group, [g.pattern for g in gaps], sources)
        refused += [f"{name}: {w}" for w in why_not]
        dock += [(path, pat) for pat in ok]
    plan = fix_plan(git_gaps, dock)
    execute(plan, dry_run=dry_run)
    return FixResult([a.show() for a in plan], refused)


__all__ = ["RULES", "RULE_NAMES", "Report", "VerifyContext", "docker_gaps", "fix", "gitignore_gaps",
           "run", "run_verify"]
