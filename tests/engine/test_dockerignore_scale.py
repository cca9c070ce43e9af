"""A 20,000-line .dockerignore (cleanroom.dockerignore.matcher at scale): the matcher files patterns
under the literal text every match must show and tries a path only against the few filed
where it looks, so a big ignore file costs about what a small one does. These tests check that
this changes no answer (no timing here: correctness only):

* against a reference that tries every pattern, one at a time, on every path and parent
  (each pattern's own regexp, as the matcher translates it), for each way Docker matches;
* a matcher over many patterns against one over a few, where the extra patterns cannot
  match anything: every decision, check and walk must come out the same.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from cleanroom.dockerignore.matcher import (
    BUILDKIT,
    CLASSIC,
    LEGACY,
    LEGACY_MATCH,
    PARENTS,
    DockerignoreError,
    Matcher,
    Pattern,
    Semantics,
    _Index,
    check_file,
    parse,
    walk_context,
)

LINES = 20_000
SEMANTICS = [PARENTS, BUILDKIT, CLASSIC, LEGACY, LEGACY_MATCH]

# (pattern line, paths it should match or nearly match) per shape; line i uses shape i % len.
# Realistic shapes first, then the corners of the literal keys: "**/" swallowing the "/"
# ("a**/b" matches "ab"), a class matching "/", escapes, "^", a BOM, fileutils' operators.
Shape = tuple[str, Callable[[int], list[str]]]
SHAPES: list[Shape] = [
    ("dir{i}/", lambda i: [f"dir{i}/f.txt", f"x/dir{i}", f"dir{i}x"]),
    ("**/*.ext{i}", lambda i: [f"a/b/c.ext{i}", f"c.ext{i}", f"c.ext{i}0"]),
    ("file{i}.txt", lambda i: [f"file{i}.txt", f"d/file{i}.txt", f"file{i}.txt/in"]),
    ("!keep{i}", lambda i: [f"keep{i}", f"keep{i}/x", f"dir{i - 3}/keep{i}"]),
    ("a/*/b{i}", lambda i: [f"a/x/b{i}", f"a/b{i}", f"a/x/y/b{i}", f"a/x/b{i}/z"]),
    ("src/**/gen{i}.py", lambda i: [f"src/gen{i}.py", f"src/p/q/gen{i}.py", f"srcgen{i}.py"]),
    ("build{i}/**", lambda i: [f"build{i}/o.o", f"build{i}", f"x/build{i}/o"]),
    ("**/cache{i}", lambda i: [f"cache{i}", f"x/cache{i}/y", f"xcache{i}"]),
    ("data/[abc]{i}/*.csv", lambda i: [f"data/b{i}/t.csv", f"data/d{i}/t.csv"]),
    ("logs/*/run{i}.log", lambda i: [f"logs/2024/run{i}.log", f"logs/run{i}.log"]),
    ("!a/*/b{i}/keep", lambda i: [f"a/x/b{i - 6}/keep", f"a/x/b{i}/keep"]),
    ("p{i}**/q", lambda i: [f"p{i}q", f"p{i}x/y/q", f"p{i}/q"]),
    ("x{i}/**/y", lambda i: [f"x{i}/y", f"x{i}/p/y", f"x{i}y"]),
    ("k{i}?**/v{i}", lambda i: [f"k{i}xv{i}", f"k{i}x/v{i}", f"k{i}x/y/v{i}", f"k{i}/v{i}"]),
    ("?**/**/u{i}", lambda i: [f"xu{i}", f"x/u{i}", f"u{i}"]),
    ("*m**/n{i}/o", lambda i: [f"xmn{i}/o", f"xm/n{i}/o", f"m/y/n{i}/o"]),
    ("***/z{i}/w", lambda i: [f"z{i}/w", f"m/z{i}/w", f"mz{i}/w"]),
    ("q{i}[/]r*", lambda i: [f"q{i}/r", f"q{i}/rs", f"q{i}r"]),
    ("[^x]y{i}", lambda i: [f"ay{i}", f"xy{i}", f"a/y{i}"]),
    ("lit{i}\\*", lambda i: [f"lit{i}*", f"lit{i}x"]),
    ("re{i}+(x|y)", lambda i: [f"re{i}+(x|y)", f"re{i}{i}x", f"re{i}y"]),
    ("\ufeffbom{i}*", lambda i: [f"bom{i}x", f"\ufeffbom{i}x"]),
    ("n{i}^x*", lambda i: [f"n{i}^x", f"n{i}x"]),
    ("!**/*.keep{i}", lambda i: [f"s/t.keep{i}", f"t.keep{i}"]),
]


def big_ignore(lines: int = LINES) -> str:
    return "\n".join(SHAPES[i % len(SHAPES)][0].format(i=i) for i in range(lines)) + "\n"


def sample_paths() -> list[str]:
    """Paths aimed at lines near the start and the end of the file (and their neighbours),
    plus some no line is about."""
    out: list[str] = []
    n = len(SHAPES)
    for s, (_line, paths) in enumerate(SHAPES):
        for i in (s, s + n * (LINES // n - 1)):
            out += paths(i)
    out += ["Dockerfile", ".dockerignore", "README.md", "src/app.py", "a", "a/b/c/d/e", "x\ny"]
    return list(dict.fromkeys(out))


# --------------------------------------------------------------------------------------------
# The reference: every pattern tried on its own


class Regexes:
    """Each pattern's regexp (``Pattern.translated``), compiled one by one, and which of them
    match a string (every one tried)."""

    def __init__(self, patterns: Sequence[Pattern], legacy: bool) -> None:
        self.compiled: list[re.Pattern[str] | None] = []
        for p in patterns:
            regex = p.translated(legacy)[0]
            self.compiled.append(None if regex is None else re.compile(regex, re.ASCII))
        self._hits: dict[str, frozenset[int]] = {}

    def hits(self, s: str) -> frozenset[int]:
        got = self._hits.get(s)
        if got is None:
            got = self._hits[s] = frozenset(
                k for k, rx in enumerate(self.compiled) if rx is not None and rx.match(s))
        return got


def contains_wildcards(text: str) -> bool:
    """fsutil's containsWildcards: ``*``, ``?`` or ``[`` not escaped by ``\\``."""
    escaped = False
    for c in text:
        if not escaped and c in "*?[":
            return True
        escaped = not escaped and c == "\\"
    return False


class Reference:
    """How ``patterns`` decide, the slow way: every pattern's regexp tried on the path and on
    each of its parents (:class:`Regexes`); the deciding rules spelled out as in moby
    (``MatchesOrParentMatches``, ``MatchesUsingParentResults``), fileutils (``Matches``) and
    the walks' pruning."""

    def __init__(self, patterns: Sequence[Pattern], semantics: Semantics,
                 regexes: Regexes | None = None) -> None:
        self.patterns = list(patterns)
        self.semantics = semantics
        self.regexes = regexes or Regexes(patterns, semantics.regex == "legacy")
        self.exceptions = [p.text for p in self.patterns if p.exclusion]
        # patternmatcher.New's own refusals (whatever the regexp flavour): every check fails.
        self.refused = any((p.translated()[1] or "bad pattern").startswith(("illegal", "syntax"))
                           for p in self.patterns)
        self._states: dict[str, tuple[int, frozenset[int] | None]] = {}

    def hits(self, s: str) -> frozenset[int]:
        """Every pattern whose regexp matches ``s`` itself."""
        return self.regexes.hits(s)

    def own(self, s: str) -> int:
        return max(self.hits(s), default=-1)

    def mupr(self, d: str, parent_info: frozenset[int] | None) -> frozenset[int]:
        matched = False
        info: set[int] = set()
        parents = prefixes(d)
        for k, p in enumerate(self.patterns):
            match = parent_info is not None and k in parent_info
            if not match:
                if p.exclusion != matched:
                    continue
                match = k in self.hits(d) or (
                    parent_info is None and any(k in self.hits(q) for q in parents))
            if match:
                info.add(k)
                matched = not p.exclusion
        return frozenset(info)

    def state(self, d: str) -> tuple[int, frozenset[int] | None]:
        """MatchesUsingParentResults' result for folder ``d``, as the walk carries it down."""
        got = self._states.get(d)
        if got is None:
            head, sep, _ = d.rpartition("/")
            parent = self.state(head) if sep else (-1, None)
            if self.own(d) < 0:
                got = parent[0], parent[1] or frozenset()
            else:
                info = self.mupr(d, parent[1])
                got = max(info, default=-1), info
            self._states[d] = got
        return got

    def best(self, path: str) -> int:
        parents = prefixes(path)
        own = self.own(path)
        mode = self.semantics.match
        if mode == "parents":
            return max([own] + [self.own(q) for q in parents])
        if mode == "legacy":
            dep = [k for n, q in enumerate(parents, 1) for k in self.hits(q)
                   if self.patterns[k].depth == n]
            return max([own] + dep)
        return max(own, self.state(parents[-1])[0] if parents else -1)

    def excluded(self, path: str) -> bool:
        k = self.best(path)
        return k >= 0 and not self.patterns[k].exclusion

    def may_prune(self, d: str, rule: str) -> bool:
        if not self.excluded(d):
            return False
        if not self.exceptions:
            return True
        if rule == "wildcards" and any(contains_wildcards(t) for t in self.exceptions):
            return False
        return not any((t + "/").startswith(d + "/") for t in self.exceptions)

    def check_file(self, path: str) -> Pattern | None:
        """``check_file``: every pattern in order, moby's skipping of those that cannot change
        the result, None when Go's check fails."""
        if self.refused:
            return None
        skip = self.semantics.regex != "legacy"
        parents = prefixes(path)
        matched: Pattern | None = None
        for k, p in enumerate(self.patterns):
            if skip and p.exclusion != (matched is not None):
                continue
            if self.regexes.compiled[k] is None:
                return None
            hit = k in self.hits(path)
            if not hit and parents:
                if self.semantics.match == "legacy":
                    hit = p.depth <= len(parents) and k in self.hits(parents[p.depth - 1])
                else:
                    hit = any(k in self.hits(q) for q in parents)
            if hit:
                matched = None if p.exclusion else p
        return matched


def prefixes(path: str) -> list[str]:
    """The parents of ``path``, outermost first."""
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


@pytest.fixture(scope="module")
def big() -> tuple[Pattern, ...]:
    patterns = parse(big_ignore()).patterns
    assert len(patterns) == LINES
    return patterns


@pytest.fixture(scope="module")
def references(big: tuple[Pattern, ...]) -> dict[str, Reference]:
    flavours = {legacy: Regexes(big, legacy) for legacy in (False, True)}
    # One per way of matching (BuildKit's and the classic walk's differ only in pruning).
    shared: dict[tuple[str, str], Reference] = {}
    for s in SEMANTICS:
        if (s.match, s.regex) not in shared:
            shared[s.match, s.regex] = Reference(big, s, flavours[s.regex == "legacy"])
    return {s.name: shared[s.match, s.regex] for s in SEMANTICS}


# --------------------------------------------------------------------------------------------
# 20,000 lines against the reference


@pytest.mark.parametrize("semantics", SEMANTICS, ids=lambda s: s.name)
def test_big_file_decides_like_the_reference(
        big: tuple[Pattern, ...], references: dict[str, Reference], semantics: Semantics) -> None:
    ref = references[semantics.name]
    m = Matcher(big, semantics)
    rule = semantics.prune
    for path in sample_paths():
        want = ref.best(path)
        got = m.match(path)
        assert got is (big[want] if want >= 0 else None), path
        assert m.excluded(path) == ref.excluded(path), path
        for d in prefixes(path):
            assert m.may_prune(d) == ref.may_prune(d, rule), (path, d)
            assert m.may_prune(d, classic=True) == ref.may_prune(d, "prefix"), (path, d)


@pytest.mark.parametrize("semantics", SEMANTICS, ids=lambda s: s.name)
def test_big_file_check_file_like_the_reference(
        big: tuple[Pattern, ...], references: dict[str, Reference], semantics: Semantics) -> None:
    ref = references[semantics.name]
    for path in sample_paths()[::3] + ["Dockerfile", ".dockerignore"]:
        assert check_file(big, path, semantics) is ref.check_file(path), path
    for path in ("Dockerfile", "keep3", "a/x/b4/keep"):  # a list: indexed afresh each time
        assert check_file(list(big), path, semantics) is ref.check_file(path), path


def test_big_file_walk_like_the_reference(
        tmp_path: Path, big: tuple[Pattern, ...], references: dict[str, Reference]) -> None:
    # A tree of the sample paths (those a file system can hold side by side).
    files: list[str] = []
    for path in sample_paths():
        if "\n" in path or any(f.startswith(path + "/") or path.startswith(f + "/") for f in files):
            continue
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(path)
        files.append(path)
    assert len(files) > 100
    for semantics in SEMANTICS:
        ref = references[semantics.name]
        m = Matcher(big, semantics)
        for classic in (False, True):
            rule = "prefix" if classic else semantics.prune
            want = {f for f in files if not ref.excluded(f)
                    and not any(ref.may_prune(d, rule) for d in prefixes(f))}
            got = {rel for rel, _ in walk_context(tmp_path, m, classic=classic)}
            assert got == want, (semantics.name, classic)


def test_every_matching_pattern_is_a_candidate(
        big: tuple[Pattern, ...], references: dict[str, Reference]) -> None:
    """The index's promise: a pattern whose regexp matches a string is among the patterns
    the index offers for that string (whatever it files it under)."""
    for legacy, name in ((False, PARENTS.name), (True, LEGACY.name)):
        ref = references[name]
        index = _Index(big, legacy)
        for path in sample_paths():
            for s in [path, *prefixes(path)]:
                missing = ref.hits(s) - index.candidates(s)
                assert not missing, (s, [str(big[k]) for k in missing])


def test_big_file_with_a_bad_line_fails_where_docker_does() -> None:
    lines = big_ignore(2_000).splitlines()
    lines.insert(1_000, "bad\\q*")  # patternmatcher.New accepts it; its regexp does not compile
    patterns = parse("\n".join(lines)).patterns
    with pytest.raises(DockerignoreError, match=r"<string>:1001: bad pattern"):
        Matcher(patterns)
    for semantics in SEMANTICS:
        ref = Reference(patterns, semantics)
        for path in ("Dockerfile", ".dockerignore", "dir5/f.txt", "keep3", "a/x/b4"):
            assert check_file(patterns, path, semantics) is ref.check_file(path), path
    # A line patternmatcher.New refuses fails every check.
    lines[1_000] = "[z"
    patterns = parse("\n".join(lines)).patterns
    with pytest.raises(DockerignoreError, match=r"<string>:1001: syntax error"):
        Matcher(patterns)
    assert check_file(patterns, "file2.txt", PARENTS) is None


# --------------------------------------------------------------------------------------------
# Many patterns against a few


SMALL = """\
.git
**/__pycache__
*.md
!README.md
build
!build/keep
docs/**/*.tmp
src/*/gen
**/*.py[co]
a/*/b
!a/x/b/keep
"""

# 20,000 lines no path of TREE matches (nor names a folder of it): added to SMALL, they must
# change nothing the matcher decides about TREE, nor what a walk of it sends.
FILLER: list[str] = [
    "zdir{i}/",
    "**/*.zext{i}",
    "zfile{i}.txt",
    "!zkeep{i}",
    "a/*/zb{i}",
    "src/**/zgen{i}.py",
    "build/zz{i}/**",
    "**/zcache{i}",
    "data/[abc]z{i}/*.csv",
    "!**/*.zkeep{i}",
]

TREE = [
    "Dockerfile", ".dockerignore", "README.md", "NOTES.md", "src/app.py", "src/app.pyc",
    "src/pkg/__pycache__/m.pyc", "src/pkg/gen", "src/pkg/gen2", "src/gen", "build/out.o",
    "build/keep/k.txt", "build/zz/x", "docs/a/b.tmp", "docs/c.md", "a/x/b/keep", "a/x/b/drop",
    "a/y/b", "a/b", "data/a1/t.csv", "zz/file1.txt", "keep/x",
]


@functools.cache
def filler(n: int) -> tuple[Pattern, ...]:
    text = "\n".join(FILLER[i % len(FILLER)].format(i=i) for i in range(n))
    return parse(text, "filler").patterns


@pytest.mark.parametrize("semantics", SEMANTICS, ids=lambda s: s.name)
@pytest.mark.parametrize("where", ["before", "after", "between"])
def test_many_patterns_agree_with_few(tmp_path: Path, semantics: Semantics, where: str) -> None:
    small = parse(SMALL).patterns
    extra = filler(LINES)
    if where == "before":
        many = extra + small
    elif where == "after":
        many = small + extra
    else:  # each line of SMALL somewhere among the filler
        mixed = list(extra)
        for j, p in enumerate(small):
            mixed.insert(j * (len(extra) // len(small)) + j, p)
        many = tuple(mixed)
    few_m, many_m = Matcher(small, semantics), Matcher(many, semantics)
    paths = TREE + [d for f in TREE for d in prefixes(f)]
    for path in paths:
        assert many_m.match(path) is few_m.match(path), path
        assert check_file(many, path, semantics) is check_file(small, path, semantics), path
        # Pruning by the prefix rule too ("!" lines of the filler name no folder of the tree).
        assert many_m.pruned_ancestor(path, classic=True) == few_m.pruned_ancestor(
            path, classic=True), path
    for rel in TREE:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(rel)
    for classic in (False, True):
        for dirs in (False, True):
            assert [r for r, _ in walk_context(tmp_path, many_m, classic=classic, dirs=dirs)] == [
                r for r, _ in walk_context(tmp_path, few_m, classic=classic, dirs=dirs)], (
                classic, dirs)


def test_many_copies_of_one_pattern() -> None:
    """One bucket holding thousands of patterns (tried as one alternation): the last
    matching line still decides."""
    lines = [f"data/[abc]{i % 7}/*.csv" if i % 2 else f"!data/[abc]{i % 7}/x.csv"
             for i in range(5_000)]
    patterns = parse("\n".join(lines)).patterns
    for semantics in SEMANTICS:
        m = Matcher(patterns, semantics)
        ref = Reference(patterns, semantics)
        for path in ("data/a3/x.csv", "data/b6/y.csv", "data/d3/x.csv", "data/c0/x.csv/z"):
            want = ref.best(path)
            assert m.match(path) is (patterns[want] if want >= 0 else None), (semantics.name, path)
