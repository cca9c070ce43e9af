""".dockerignore semantics, as moby/BuildKit implement them.

This is a port of three pieces of Go code, kept as close to their behaviour as Python allows:

* ``github.com/moby/patternmatcher/ignorefile.ReadAll`` -> :func:`parse` / :func:`read`:
  a UTF-8 BOM is dropped from the first line; a line is a comment only when ``#`` is in column 0
  (``"  # x"`` is the pattern ``# x``); lines are split on ``\\n`` (a trailing ``\\r`` goes with
  the whitespace trim); each line is ``strings.TrimSpace``-d, blank lines skipped; a leading ``!``
  is split off and the rest trimmed again; the rest is ``filepath.Clean``-ed and one leading
  ``/`` dropped; the ``!`` is put back.
* ``patternmatcher.New`` + ``Pattern.compile``/``match`` + ``MatchesOrParentMatches`` ->
  :class:`Matcher`: each ReadAll line is trimmed and cleaned once more (so ``"!/"`` becomes the
  illegal pattern ``"!"`` and ``"!../.."`` becomes the include pattern ``"."``), checked with
  ``filepath.Match``'s syntax rules, and translated to the *same* regular expression moby builds
  (``*`` -> ``[^/]*``, ``?`` -> ``[^/]``, ``**`` -> ``(.*/)?`` or ``.*``, ``\\x`` kept as a
  regexp escape, ``[``/``]`` passed through untouched, ``.+()|{}$`` escaped, everything else
  literal), including moby's exact/prefix/suffix shortcuts (``**foo`` is "ends with ``foo``", not
  ``(.*/)?foo``). The Go (RE2) regexp is then re-expressed as a Python regexp with the same
  meaning (see ``_GoRegex``). Patterns are anchored at the context root; a path is decided by
  the *last* pattern that matches the path itself or any of its parent directories; ``!``
  patterns re-include.
* BuildKit's ``fsutil`` walker (and the docker CLI's ``archive.TarWithOptions``) ->
  :func:`walk_context`: an excluded directory is not descended into when no ``!`` pattern could
  re-include anything below it (:meth:`Matcher.may_prune`); symlinks are reported, never
  followed.

Which files a builder force-sends is a property of the builder, not of the matcher: the classic
builder (docker CLI) always sends the Dockerfile and ``.dockerignore`` even when excluded
(``build.TrimBuildFilesFromExcludes``) -> pass them in ``keep``; BuildKit reads both through a
separate channel and sends them in the context only if not excluded -> ``keep=()``.
:func:`ignore_file_for` says which ignore file each builder reads.

Known differences from Go (all in corners no real ignore file reaches):

* a pattern whose regexp moby cannot compile is reported when the :class:`Matcher` is built;
  moby only fails when that pattern is first evaluated during the walk (and Docker then fails
  the build either way);
* ``\\p{...}``/``\\pL`` Unicode classes (reachable only as ``\\p`` escapes in a pattern) are
  refused with an error instead of being implemented;
* names that are not valid UTF-8 are compared byte for byte (``surrogateescape``); Go's regexp
  would read each bad byte as U+FFFD;
* ReadAll fails on a line longer than 64 KiB (``bufio.Scanner``); :func:`parse` accepts it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cleanroom.errors import BadInput

__all__ = [
    "DockerignoreError",
    "IgnoreFile",
    "Matcher",
    "Pattern",
    "ignore_file_for",
    "parse",
    "read",
    "walk_context",
]

STRING_SOURCE = "<string>"

# Go's unicode.IsSpace (what strings.TrimSpace trims). Python's str.strip() also trims
# \x1c-\x1f, which Go keeps.
_GO_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000"
)
_BOM = "\ufeff"


class DockerignoreError(BadInput):
    """A pattern Docker would refuse (``!`` alone, bad ``[...]`` syntax, a bad regexp)."""


def _trim(s: str) -> str:
    return s.strip(_GO_SPACE)


def _clean(p: str) -> str:
    """Go's ``path/filepath.Clean`` for ``/``-separated paths."""
    if p == "":
        return "."
    rooted = p[0] == "/"
    parts: list[str] = []
    for comp in p.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append("..")
            continue
        parts.append(comp)
    out = "/".join(parts)
    if rooted:
        return "/" + out
    return out or "."


def _go_dir(p: str) -> str:
    """Go's ``filepath.Dir``: everything up to the last ``/``, cleaned (``"."`` when none)."""
    return _clean(p[: p.rfind("/") + 1])


# --------------------------------------------------------------------------------------------
# filepath.Match syntax check (what patternmatcher.New runs on every pattern)


def _glob_syntax_error(p: str) -> str | None:
    """Return why ``filepath.Match(p, ".")`` would fail with ErrBadPattern, or None."""
    n = len(p)

    def get_esc(i: int) -> int:
        # filepath.getEsc: one (possibly escaped) char of a [...] class; returns the next index.
        if i >= n or p[i] in "-]":
            raise ValueError
        if p[i] == "\\":
            i += 1
            if i >= n:
                raise ValueError
        if "\udc80" <= p[i] <= "\udcff":  # an undecodable byte (utf8.RuneError)
            raise ValueError
        i += 1
        if i >= n:
            raise ValueError
        return i

    i = 0
    try:
        while i < n:
            c = p[i]
            if c == "\\":
                if i + 1 >= n:
                    return "trailing backslash"
                i += 2
            elif c == "[":
                i += 1
                if i < n and p[i] == "^":
                    i += 1
                nrange = 0
                while True:
                    if i < n and p[i] == "]" and nrange > 0:
                        i += 1
                        break
                    i = get_esc(i)
                    if p[i] == "-":
                        i = get_esc(i + 1)
                    nrange += 1
            else:
                i += 1
    except ValueError:
        return "bad character class"
    return None


# --------------------------------------------------------------------------------------------
# moby's Pattern.compile, and the Go regexp it builds re-expressed for Python's re

_SHOULD_ESCAPE = ".+()|{}$"


def _moby_compile(pattern: str) -> tuple[str, str]:
    """Port of ``Pattern.compile`` (unix separator).

    Returns ``(kind, arg)``: ``("exact", text)``, ``("prefix", prefix)``, ``("suffix", suffix)``
    or ``("regexp", go_regexp_source)``.
    """
    reg = ["^"]
    kind = "exact"
    n = len(pattern)
    pos = 0
    i = 0
    while pos < n:
        ch = pattern[pos]
        pos += 1
        if ch == "*":
            if pos < n and pattern[pos] == "*":
                pos += 1
                if pos < n and pattern[pos] == "/":  # treat **/ as **
                    pos += 1
                if pos >= n:  # "**" at the end: accept everything
                    if kind == "exact":
                        kind = "prefix"
                    else:
                        reg.append(".*")
                        kind = "regexp"
                else:
                    reg.append("(.*/)?")
                    kind = "regexp"
                if i == 0:
                    kind = "suffix"
            else:
                reg.append("[^/]*")
                kind = "regexp"
        elif ch == "?":
            reg.append("[^/]")
            kind = "regexp"
        elif ch in _SHOULD_ESCAPE:
            reg.append("\\" + ch)
        elif ch == "\\":
            if pos < n:
                reg.append("\\" + pattern[pos])
                pos += 1
                kind = "regexp"
            else:
                reg.append("\\")
        elif ch in "[]":
            reg.append(ch)
            kind = "regexp"
        else:
            reg.append(ch)
        i += 1
    if kind == "exact":
        return kind, pattern
    if kind == "prefix":
        return kind, pattern[:-2]
    if kind == "suffix":
        return kind, pattern[2:]
    reg.append("$")
    return kind, "".join(reg)


class _GoRegexError(Exception):
    pass


_MAX_RUNE = 0x10FFFF
_Ranges = list[tuple[int, int]]

_PERL_CLASSES: dict[str, _Ranges] = {
    "d": [(0x30, 0x39)],
    "s": [(0x09, 0x0A), (0x0C, 0x0D), (0x20, 0x20)],
    "w": [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)],
}
_POSIX_CLASSES: dict[str, _Ranges] = {
    "alnum": [(0x30, 0x39), (0x41, 0x5A), (0x61, 0x7A)],
    "alpha": [(0x41, 0x5A), (0x61, 0x7A)],
    "ascii": [(0x00, 0x7F)],
    "blank": [(0x09, 0x09), (0x20, 0x20)],
    "cntrl": [(0x00, 0x1F), (0x7F, 0x7F)],
    "digit": [(0x30, 0x39)],
    "graph": [(0x21, 0x7E)],
    "lower": [(0x61, 0x7A)],
    "print": [(0x20, 0x7E)],
    "punct": [(0x21, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7E)],
    "space": [(0x09, 0x0D), (0x20, 0x20)],
    "upper": [(0x41, 0x5A)],
    "word": [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)],
    "xdigit": [(0x30, 0x39), (0x41, 0x46), (0x61, 0x66)],
}
_OCTAL = "01234567"
_HEX = "0123456789abcdefABCDEF"


def _negate(ranges: _Ranges) -> _Ranges:
    out: _Ranges = []
    nxt = 0
    for lo, hi in sorted(ranges):
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = max(nxt, hi + 1)
    if nxt <= _MAX_RUNE:
        out.append((nxt, _MAX_RUNE))
    return out


def _char(cp: int) -> str:
    return f"\\U{cp:08x}"


def _class_re(ranges: _Ranges) -> str:
    if not ranges:
        return "(?!)"
    body = "".join(_char(lo) if lo == hi else f"{_char(lo)}-{_char(hi)}" for lo, hi in ranges)
    return f"[{body}]"


class _GoRegex:
    """Translate the subset of Go (RE2, Perl flags) regexp syntax moby's compile can emit.

    Go semantics kept: ``^``/``$`` are text anchors (``$`` is ``\\z``, not "before a final
    newline"); ``.`` excludes ``\\n``; ``\\d \\s \\w \\b`` are ASCII; ``[[:alpha:]]`` POSIX
    classes; octal/hex/C escapes; ``\\Q...\\E``; ``\\q``-style unknown escapes, ``\\1``, bad
    ranges and stacked repetitions are errors.
    """

    def __init__(self, src: str) -> None:
        self.s = src
        self.i = 0

    def fail(self, why: str) -> _GoRegexError:
        return _GoRegexError(f"{why} in regexp {self.s!r}")

    def translate(self) -> str:
        s = self.s
        out: list[str] = []
        # What the last emitted item is: "atom" (repeatable), "repeat", or "none" (start/"("/"|").
        last = "none"
        depth = 0
        while self.i < len(s):
            c = s[self.i]
            if c in "*+?":
                self.i += 1
                if last == "repeat":
                    raise self.fail("invalid nested repetition operator")
                if last == "none":
                    raise self.fail("missing argument to repetition operator")
                lazy = self.i < len(s) and s[self.i] == "?"
                if lazy:
                    self.i += 1
                out.append(c + ("?" if lazy else ""))
                last = "repeat"
                continue
            if c == "(":
                if s.startswith("(?", self.i):
                    raise self.fail("unsupported group syntax")
                self.i += 1
                depth += 1
                out.append("(?:")
                last = "none"
            elif c == ")":
                if depth == 0:
                    raise self.fail("unexpected )")
                self.i += 1
                depth -= 1
                out.append(")")
                last = "atom"
            elif c == "|":
                self.i += 1
                out.append("|")
                last = "none"
            elif c == "^":
                self.i += 1
                out.append("(?:\\A)")
                last = "atom"
            elif c == "$":
                self.i += 1
                out.append("(?:\\Z)")
                last = "atom"
            elif c == ".":
                self.i += 1
                out.append("[^\\n]")
                last = "atom"
            elif c == "[":
                out.append(_class_re(self.parse_class()))
                last = "atom"
            elif c == "\\":
                piece = self.parse_top_escape()
                if piece:
                    out.append(piece)
                    last = "atom"
            else:
                self.i += 1
                out.append(_char(ord(c)))
                last = "atom"
        if depth:
            raise self.fail("missing closing )")
        return "".join(out)

    def parse_top_escape(self) -> str:
        s = self.s
        t = s[self.i + 1 : self.i + 2]
        if t == "":
            raise self.fail("trailing backslash")
        simple = {"A": "(?:\\A)", "z": "(?:\\Z)", "b": "(?:\\b)", "B": "(?:\\B)"}
        if t in simple:
            self.i += 2
            return simple[t]
        if t == "C":
            raise self.fail("invalid escape \\C")
        if t == "Q":
            end = s.find("\\E", self.i + 2)
            lit = s[self.i + 2 :] if end < 0 else s[self.i + 2 : end]
            self.i = len(s) if end < 0 else end + 2
            return "".join(_char(ord(ch)) for ch in lit)
        if t in "pP":
            raise self.fail("Unicode classes (\\p) are not supported")
        perl = self.parse_perl_class()
        if perl is not None:
            return _class_re(perl)
        return _char(self.parse_escape())

    def parse_perl_class(self) -> _Ranges | None:
        t = self.s[self.i + 1 : self.i + 2]
        if self.s[self.i : self.i + 1] != "\\" or t.lower() not in _PERL_CLASSES:
            return None
        self.i += 2
        ranges = _PERL_CLASSES[t.lower()]
        return _negate(ranges) if t.isupper() else list(ranges)

    def parse_escape(self) -> int:
        """Go ``parser.parseEscape``: the rune of a single-character escape at ``self.i``."""
        s = self.s
        start = self.i
        self.i += 1
        if self.i >= len(s):
            raise self.fail("trailing backslash")
        c = s[self.i]
        self.i += 1
        if ord(c) < 0x80 and not c.isalnum():
            return ord(c)
        nxt = s[self.i : self.i + 1]
        if c == "0" or (c in "1234567" and nxt != "" and nxt in _OCTAL):
            r = int(c)
            for _ in range(2):
                nxt = s[self.i : self.i + 1]
                if nxt == "" or nxt not in _OCTAL:
                    break
                r = r * 8 + int(nxt)
                self.i += 1
            return r
        if c == "x" and nxt != "":
            if nxt == "{":
                end = s.find("}", self.i + 1)
                digits = s[self.i + 1 : end] if end >= 0 else ""
                if digits and all(d in _HEX for d in digits):
                    r = int(digits, 16)
                    if r <= _MAX_RUNE:
                        self.i = end + 1
                        return r
            else:
                two = s[self.i : self.i + 2]
                if len(two) == 2 and all(d in _HEX for d in two):
                    self.i += 2
                    return int(two, 16)
        controls = {"a": 7, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11}
        if c in controls:
            return controls[c]
        raise self.fail(f"invalid escape {s[start : self.i]!r}")

    def parse_class(self) -> _Ranges:
        """Go ``parser.parseClass`` (Perl flags: ``-`` allowed anywhere, negation includes \\n)."""
        s = self.s
        self.i += 1  # [
        negated = s.startswith("^", self.i)
        if negated:
            self.i += 1
        ranges: _Ranges = []
        first = True
        while self.i >= len(s) or s[self.i] != "]" or first:
            first = False
            if s.startswith("[:", self.i) and self.i + 2 < len(s):
                end = s.find(":]", self.i + 2)
                if end >= 0:
                    name = s[self.i + 2 : end]
                    neg = name.startswith("^")
                    group = _POSIX_CLASSES.get(name[1:] if neg else name)
                    if group is None:
                        raise self.fail(f"invalid character class range [:{name}:]")
                    ranges.extend(_negate(group) if neg else group)
                    self.i = end + 2
                    continue
            if s.startswith(("\\p", "\\P"), self.i):
                raise self.fail("Unicode classes (\\p) are not supported")
            perl = self.parse_perl_class()
            if perl is not None:
                ranges.extend(perl)
                continue
            lo = self.parse_class_char()
            hi = lo
            if s.startswith("-", self.i) and self.i + 1 < len(s) and s[self.i + 1] != "]":
                self.i += 1
                hi = self.parse_class_char()
                if hi < lo:
                    raise self.fail("invalid character class range")
            ranges.append((lo, hi))
        self.i += 1  # ]
        ranges = _negate(_negate(ranges))  # sort and merge
        return _negate(ranges) if negated else ranges

    def parse_class_char(self) -> int:
        if self.i >= len(self.s):
            raise self.fail("missing closing ]")
        if self.s[self.i] == "\\":
            return self.parse_escape()
        self.i += 1
        return ord(self.s[self.i - 1])


def _python_regex(kind: str, arg: str) -> str:
    """A Python regexp (used with ``re.match``) equivalent to moby's test for one pattern."""
    if kind == "exact":
        return re.escape(arg) + r"\Z"
    if kind == "prefix":
        return re.escape(arg) + r"(?s:.*)\Z"
    if kind == "suffix":
        alts = [r"(?s:.*)" + re.escape(arg) + r"\Z"]
        if arg.startswith("/"):  # "**/foo" also matches "foo"
            alts.append(re.escape(arg[1:]) + r"\Z")
        return "|".join(alts)
    return _GoRegex(arg).translate()


# --------------------------------------------------------------------------------------------
# Parsed patterns


@dataclass(frozen=True)
class Pattern:
    """One effective pattern line.

    ``text`` is the pattern as moby's matcher holds it (``Pattern.String()``: trimmed, cleaned,
    no leading ``/``, no ``!``); ``exclusion`` is True for a ``!`` (re-include) line; ``line`` is
    the 1-based line in ``source`` (the ignore file's path, or ``"<string>"``).
    """

    text: str
    exclusion: bool
    line: int
    source: str
    _regex: str | None = field(default=None, init=False, repr=False, compare=False)
    _error: str | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        regex: str | None = None
        error: str | None = None
        if self.exclusion and self.text == "":
            error = 'illegal exclusion pattern: "!"'
        elif (why := _glob_syntax_error(self.text)) is not None:
            error = f"syntax error in pattern ({why})"
        else:
            try:
                regex = _python_regex(*_moby_compile(self.text))
                re.compile(regex)
            except (_GoRegexError, re.error) as exc:
                regex, error = None, f"bad pattern: {exc}"
        object.__setattr__(self, "_regex", regex)
        object.__setattr__(self, "_error", error)

    @property
    def dead(self) -> bool:
        """True when the pattern can never match a path inside the context (``..``, ``../x``,
        ``.``, ``/``); detection is syntactic only."""
        t = self.text
        return t in ("..", ".", "/") or t.startswith("../")

    def __str__(self) -> str:
        return ("!" if self.exclusion else "") + self.text


@dataclass(frozen=True)
class IgnoreFile:
    """A parsed ignore file. ``patterns`` holds every pattern line in order (dead ones
    included: they are harmless); ``dead_lines`` is the subset that can never match.
    ``path`` is the file read, or None (parsed from a string, or the file does not exist)."""

    path: Path | None
    patterns: tuple[Pattern, ...]
    dead_lines: tuple[Pattern, ...]


def _readall_lines(text: str) -> Iterator[tuple[int, str]]:
    """ignorefile.ReadAll: yields (1-based line number, pattern string as ReadAll returns it)."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # bufio.ScanLines: no empty token after a final newline
    for lineno, raw in enumerate(lines, start=1):
        if lineno == 1 and raw.startswith(_BOM):
            raw = raw[len(_BOM) :]
        raw = raw.removesuffix("\r")
        if raw.startswith("#"):
            continue
        pattern = _trim(raw)
        if pattern == "":
            continue
        invert = pattern[0] == "!"
        if invert:
            pattern = _trim(pattern[1:])
        if pattern:
            pattern = _clean(pattern)
            if len(pattern) > 1 and pattern[0] == "/":
                pattern = pattern[1:]
        if invert:
            pattern = "!" + pattern
        yield lineno, pattern


def parse(text: str, source: str = STRING_SOURCE) -> IgnoreFile:
    """Parse ignore-file text with ReadAll + patternmatcher.New semantics (never raises; a
    pattern Docker would refuse makes :class:`Matcher` raise)."""
    patterns: list[Pattern] = []
    for lineno, readall in _readall_lines(text):
        # patternmatcher.New: TrimSpace, Clean, then split off "!".
        p = _trim(readall)
        if p == "":
            continue
        p = _clean(p)
        exclusion = p[0] == "!"
        if exclusion:
            p = p[1:]
        patterns.append(Pattern(p, exclusion, lineno, source))
    return IgnoreFile(
        path=None,
        patterns=tuple(patterns),
        dead_lines=tuple(p for p in patterns if p.dead),
    )


def read(path: Path) -> IgnoreFile:
    """Read and parse an ignore file; a missing file gives an IgnoreFile with no patterns."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return IgnoreFile(path=None, patterns=(), dead_lines=())
    parsed = parse(data.decode("utf-8", "surrogateescape"), str(path))
    return IgnoreFile(path=Path(path), patterns=parsed.patterns, dead_lines=parsed.dead_lines)


# --------------------------------------------------------------------------------------------
# Matching


def _contains_wildcards(name: str) -> bool:
    """fsutil's containsWildcards (unix): ``*``, ``?`` or ``[`` not escaped by ``\\``."""
    i = 0
    while i < len(name):
        ch = name[i]
        if ch == "\\":
            i += 1
        elif ch in "*?[":
            return True
        i += 1
    return False


class Matcher:
    """moby's PatternMatcher with ``MatchesOrParentMatches`` semantics.

    Raises :class:`DockerignoreError` where ``patternmatcher.New`` would fail (a lone ``!``, a
    malformed ``[...]``, a trailing ``\\``) or the pattern's regexp would not compile.
    """

    _CACHE_LIMIT = 1 << 20

    def __init__(self, patterns: Sequence[Pattern]) -> None:
        self.patterns: tuple[Pattern, ...] = tuple(patterns)
        for p in self.patterns:
            if p._error is not None:
                raise DockerignoreError(f"{p.source}:{p.line}: {p._error}", f"pattern: {str(p)!r}")
        self.has_exclusions = any(p.exclusion for p in self.patterns)
        # BuildKit only prunes excluded dirs when every "!" pattern is a plain path.
        self._prefix_exceptions = not any(
            p.exclusion and _contains_wildcards(p.text) for p in self.patterns
        )
        self._exception_prefixes = tuple(p.text + "/" for p in self.patterns if p.exclusion)
        # One alternation, latest pattern first: re.match picks the first alternative that
        # matches, i.e. the last matching pattern; m.lastindex says which.
        n = len(self.patterns)
        self._combined: re.Pattern[str] | None = None
        if n:
            alts = (f"((?:{self.patterns[k]._regex}))" for k in range(n - 1, -1, -1))
            self._combined = re.compile("|".join(alts), re.ASCII)
        self._dir_cache: dict[str, int] = {}

    def _self_best(self, path: str) -> int:
        """Index of the last pattern matching ``path`` itself (-1: none)."""
        if self._combined is None:
            return -1
        m = self._combined.match(path)
        if m is None or m.lastindex is None:
            return -1
        return len(self.patterns) - m.lastindex

    def _chain_best(self, d: str) -> int:
        """Index of the last pattern matching ``d`` or any prefix of it (split on ``/``)."""
        cached = self._dir_cache.get(d)
        if cached is not None:
            return cached
        head, sep, _ = d.rpartition("/")
        up = self._chain_best(head) if sep else -1
        best = max(up, self._self_best(d))
        if len(self._dir_cache) >= self._CACHE_LIMIT:
            self._dir_cache.clear()
        self._dir_cache[d] = best
        return best

    def _best(self, relpath: str) -> int:
        parent = _go_dir(relpath)
        up = -1 if parent == "." else self._chain_best(parent)
        return max(up, self._self_best(relpath))

    def match(self, relpath: str) -> Pattern | None:
        """The deciding pattern for ``relpath`` (posix, relative to the context root): the last
        pattern matching the path or one of its parents; None if no line matches. The path is
        excluded iff the result is not None and not ``.exclusion``."""
        best = self._best(relpath)
        return self.patterns[best] if best >= 0 else None

    def excluded(self, relpath: str) -> bool:
        """``MatchesOrParentMatches``: is ``relpath`` left out of the build context?"""
        best = self._best(relpath)
        return best >= 0 and not self.patterns[best].exclusion

    def _prunable(self, reldir: str, classic: bool) -> bool:
        """Given that ``reldir`` is excluded: may the walk skip everything below it?"""
        if not self.has_exclusions:
            return True
        if not classic and not self._prefix_exceptions:
            return False
        dir_slash = reldir + "/"
        return not any(p.startswith(dir_slash) for p in self._exception_prefixes)

    def may_prune(self, reldir: str, *, classic: bool = False) -> bool:
        """True if directory ``reldir`` is excluded and the walk skips its contents.

        BuildKit (default): prune only when no ``!`` pattern has a wildcard and none names a
        path below the directory; this never loses a re-included file (barring ``\\``-escaped
        ``!`` patterns, as in fsutil). ``classic=True``: the docker CLI's rule, which ignores
        wildcards, so e.g. ``*`` + ``!**/keep`` sends no ``dir/keep`` with the classic builder.
        """
        return self.excluded(reldir) and self._prunable(reldir, classic)


# --------------------------------------------------------------------------------------------
# Which ignore file, and the context walk


def ignore_file_for(context: Path, dockerfile: Path, buildkit: bool) -> Path | None:
    """The ignore file a build of ``context`` with ``dockerfile`` reads, or None.

    BuildKit: ``<dockerfile>.dockerignore`` next to the Dockerfile (``docker/app.Dockerfile`` ->
    ``docker/app.Dockerfile.dockerignore``) when it exists, else ``<context>/.dockerignore``.
    Classic builder: only ``<context>/.dockerignore``. A relative ``dockerfile`` is taken as the
    CLI takes ``-f``: relative to the current directory.
    """
    if buildkit:
        own = dockerfile.with_name(dockerfile.name + ".dockerignore")
        if own.is_file():
            return own
    shared = context / ".dockerignore"
    return shared if shared.is_file() else None


def walk_context(
    context: Path,
    matcher: Matcher,
    keep: Sequence[str] = (),
    *,
    classic: bool = False,
    dirs: bool = False,
) -> Iterator[tuple[str, os.stat_result]]:
    """Yield ``(posix relpath, lstat)`` for every regular file and symlink the build sends.

    ``keep``: context-relative posix paths sent even when excluded (pass the Dockerfile and
    ``.dockerignore`` for the classic builder, nothing for BuildKit). Symlinks are yielded as
    links and never followed; other special files (fifos, sockets, devices) are skipped.
    Excluded directories are pruned per :meth:`Matcher.may_prune` (``classic`` picks the CLI's
    rule). ``dirs=True`` also yields directories that are sent: those not excluded, plus (not
    ``classic``) excluded ones that hold something sent, as BuildKit sends parents.
    Order: directory-listing order, parents before children.
    """
    keep_set = {_clean(k) for k in keep}
    keep_dirs: set[str] = set()
    for k in keep_set:
        head = k
        while "/" in head:
            head = head.rpartition("/")[0]
            keep_dirs.add(head)
    patterns = matcher.patterns
    # Excluded directories descended into but not yet yielded (dirs=True, BuildKit only).
    pending: list[tuple[str, os.stat_result]] = []

    def flush() -> Iterator[tuple[str, os.stat_result]]:
        if pending:
            if dirs and not classic:
                yield from pending
            pending.clear()

    def walk(abs_dir: str, rel_dir: str, dir_best: int) -> Iterator[tuple[str, os.stat_result]]:
        with os.scandir(abs_dir) as it:
            entries = list(it)
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            best = max(dir_best, matcher._self_best(rel))
            excluded = best >= 0 and not patterns[best].exclusion
            if entry.is_dir(follow_symlinks=False):
                if excluded:
                    if rel not in keep_dirs and matcher._prunable(rel, classic):
                        continue
                    depth = len(pending)
                    pending.append((rel, entry.stat(follow_symlinks=False)))
                    yield from walk(entry.path, rel, best)
                    del pending[depth:]
                else:
                    yield from flush()
                    if dirs:
                        yield rel, entry.stat(follow_symlinks=False)
                    yield from walk(entry.path, rel, best)
            elif entry.is_symlink() or entry.is_file(follow_symlinks=False):
                if excluded and rel not in keep_set:
                    continue
                yield from flush()
                yield rel, entry.stat(follow_symlinks=False)

    yield from walk(os.fspath(context), "", -1)
