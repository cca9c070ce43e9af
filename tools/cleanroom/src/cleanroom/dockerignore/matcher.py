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
  patterns re-include. A path is tried only against the patterns whose literal text it shows
  (see ``_Index``): a 20,000-line ignore file costs about what a short one does.
* BuildKit's ``fsutil`` walker (and the docker CLI's ``archive.TarWithOptions``) ->
  :func:`walk_context`: an excluded directory is not descended into when no ``!`` pattern could
  re-include anything below it (:meth:`Matcher.may_prune`); symlinks are reported, never
  followed.

How paths are decided depends on the Docker code that walks the context, measured against the
engine (tests/engine/test_context_engine.py): :class:`Semantics` names the variants (moby's
``MatchesOrParentMatches``, the default; ``MatchesUsingParentResults`` of a docker >= 23 CLI and
of current fsutil; docker 20.10's fileutils ``Matches`` with its own regexp, still what Debian's
docker.io client runs for BuildKit), and :mod:`cleanroom.docker.context` picks one per builder and
models the files a builder force-sends (the classic CLI's ``TrimBuildFilesFromExcludes``
plus the daemon's removal). :func:`ignore_file_for` says which ignore file each builder reads.

Known differences from Go (all in corners no real ignore file reaches):

* a pattern whose regexp moby cannot compile is reported when the :class:`Matcher` is built;
  moby only fails when that pattern is first evaluated during the walk, and with its
  skip-what-cannot-change-the-result evaluation it may never evaluate it (e.g. ``!`` + a bad
  class after lines that match nothing): Docker then builds, cleanroom refuses;
* ``\\p{...}``/``\\pL`` Unicode classes (reachable only as ``\\p`` escapes in a pattern) are
  refused with an error instead of being implemented;
* names that are not valid UTF-8 are compared byte for byte (``surrogateescape``); Go's regexp
  would read each bad byte as U+FFFD;
* ReadAll fails on a line longer than 64 KiB (``bufio.Scanner``); :func:`parse` accepts it.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cleanroom.core.errors import BadInput

__all__ = [
    "DockerignoreError",
    "IgnoreFile",
    "Matcher",
    "Pattern",
    "Semantics",
    "check_file",
    "ignore_file_for",
    "parse",
    "read",
    "walk_context",
    "walk_entries",
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


class _BadPattern(Exception):
    pass


def _scan_chunk(p: str) -> tuple[bool, str, str]:
    """filepath.scanChunk: (leading star, chunk up to the next unbracketed ``*``, rest)."""
    star = False
    while p.startswith("*"):
        p = p[1:]
        star = True
    inrange = False
    i = 0
    while i < len(p):
        c = p[i]
        if c == "\\":
            if i + 1 < len(p):
                i += 1
        elif c == "[":
            inrange = True
        elif c == "]":
            inrange = False
        elif c == "*" and not inrange:
            break
        i += 1
    return star, p[:i], p[i:]


def _get_esc(chunk: str) -> tuple[str, str]:
    """filepath.getEsc: one (possibly escaped) char of a ``[...]`` class, and the rest."""
    if not chunk or chunk[0] in "-]":
        raise _BadPattern("bad character class")
    if chunk[0] == "\\":
        chunk = chunk[1:]
        if not chunk:
            raise _BadPattern("bad character class")
    if "\udc80" <= chunk[0] <= "\udcff":  # an undecodable byte (utf8.RuneError)
        raise _BadPattern("bad character class")
    rest = chunk[1:]
    if not rest:
        raise _BadPattern("bad character class")
    return chunk[0], rest


def _match_chunk(chunk: str, s: str) -> tuple[str, bool]:
    """filepath.matchChunk: once the match has failed it goes on checking the chunk's syntax
    (but no further chunk)."""
    failed = False
    while chunk:
        if not failed and not s:
            failed = True
        c = chunk[0]
        if c == "[":
            r = ""
            if not failed:
                r, s = s[0], s[1:]
            chunk = chunk[1:]
            negated = chunk.startswith("^")
            if negated:
                chunk = chunk[1:]
            match = False
            nrange = 0
            while True:
                if chunk.startswith("]") and nrange > 0:
                    chunk = chunk[1:]
                    break
                lo, chunk = _get_esc(chunk)
                hi = lo
                if chunk[0] == "-":
                    hi, chunk = _get_esc(chunk[1:])
                if r and lo <= r <= hi:
                    match = True
                nrange += 1
            if match == negated:
                failed = True
        elif c == "?":
            if not failed:
                if s[0] == "/":
                    failed = True
                s = s[1:]
            chunk = chunk[1:]
        else:
            if c == "\\":
                chunk = chunk[1:]
                if not chunk:
                    raise _BadPattern("trailing backslash")
            if not failed:
                if chunk[0] != s[0]:
                    failed = True
                s = s[1:]
            chunk = chunk[1:]
    return ("", False) if failed else (s, True)


def _go_match(pattern: str, name: str) -> bool:
    """filepath.Match (unix); raises _BadPattern where Go returns ErrBadPattern. Go checks
    only the chunks the match reaches: ``Match("]*[", ".")`` fails at ``]`` and is no error."""
    while pattern:
        star, chunk, pattern = _scan_chunk(pattern)
        if star and chunk == "":
            return "/" not in name
        t, ok = _match_chunk(chunk, name)
        if ok and (not t or pattern):
            name = t
            continue
        if star:
            found = False
            for i in range(len(name)):
                if name[i] == "/":
                    break
                t, ok = _match_chunk(chunk, name[i + 1 :])
                if ok:
                    if not pattern and t:
                        continue
                    name, found = t, True
                    break
            if found:
                continue
        return False
    return not name


def _glob_syntax_error(p: str) -> str | None:
    """Return why ``filepath.Match(p, ".")`` (patternmatcher.New's syntax check) fails, or
    None."""
    try:
        _go_match(p, ".")
    except _BadPattern as exc:
        return str(exc)
    return None


# --------------------------------------------------------------------------------------------
# moby's Pattern.compile, and the Go regexp it builds re-expressed for Python's re

_SHOULD_ESCAPE = ".+()|{}$"
_BAD_REGEXP = "bad pattern"  # how the error for a regexp Go would not compile starts


def _moby_compile(pattern: str) -> tuple[str, str]:
    """Port of ``Pattern.compile`` (unix separator).

    Returns ``(kind, arg)``: ``("exact", text)``, ``("prefix", prefix)``, ``("suffix", suffix)``
    or ``("regexp", go_regexp_source)``.
    """
    reg = ["^"]
    kind = "exact"
    n = len(pattern)
    # text/scanner skips a BOM that starts its input: "\ufeffa*" compiles as "a*" (but an exact
    # or prefix/suffix match still compares with the BOM).
    pos = 1 if pattern.startswith(_BOM) else 0
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


# How a character is written in the Python regexp: ASCII letters, digits, "_" and "/" as
# themselves, other printable ASCII as "\\" + it (always a literal, in or out of a class),
# anything else as \UXXXXXXXX. (Python compiles "\U" escapes slowly: a big ignore file has many.)
_CHAR_RE = {cp: chr(cp) for cp in range(0x21, 0x7F) if chr(cp).isalnum() or chr(cp) in "_/"}
_CHAR_RE.update({cp: "\\" + chr(cp) for cp in range(0x20, 0x7F) if cp not in _CHAR_RE})


def _char(cp: int) -> str:
    got = _CHAR_RE.get(cp)
    return got if got is not None else f"\\U{cp:08x}"


def _class_re(ranges: _Ranges) -> str:
    if not ranges:
        return "(?!)"
    if ranges[0][0] == 0 and ranges[-1][1] == _MAX_RUNE:
        # Mostly everything (e.g. "[^/]"): the complement compiles much faster.
        rest = _negate(ranges)
        if not rest:
            return "(?s:.)"
        body = "".join(_char(lo) if lo == hi else f"{_char(lo)}-{_char(hi)}" for lo, hi in rest)
        return f"[^{body}]"
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
        self.top_level_alternation = False  # a "|" outside any group: Go then searches

    def parse_repeat(self) -> tuple[int, int] | None:
        """Go ``parser.parseRepeat`` at ``{``: ``{n}``, ``{n,}``, ``{n,m}`` -> (min, max; -1 for
        none) and advances; None (``{`` is then a literal) when it is not a repeat."""
        m = re.compile(r"\{(0|[1-9][0-9]*)(?:(,)(0|[1-9][0-9]*)?)?\}").match(self.s, self.i)
        if m is None:
            return None
        lo = int(m.group(1))
        hi = lo if m.group(2) is None else (-1 if m.group(3) is None else int(m.group(3)))
        if lo > 1000 or hi > 1000 or (hi >= 0 and lo > hi):
            raise self.fail("invalid repeat count")
        self.i = m.end()
        return lo, hi

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
            rep: str | None = None
            if c in "*+?":
                self.i += 1
                rep = c
            elif c == "{":
                bounds = self.parse_repeat()
                if bounds is not None:
                    lo, hi = bounds
                    rep = f"{{{lo}}}" if hi == lo else (f"{{{lo},}}" if hi < 0 else f"{{{lo},{hi}}}")
            if rep is not None:
                if last == "repeat":
                    raise self.fail("invalid nested repetition operator")
                if last == "none":
                    raise self.fail("missing argument to repetition operator")
                lazy = self.i < len(s) and s[self.i] == "?"
                if lazy:
                    self.i += 1
                out.append(rep + ("?" if lazy else ""))
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
                if depth == 0:
                    self.top_level_alternation = True
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


def _legacy_compile(pattern: str) -> str:
    """Port of the Go regexp ``pkg/fileutils`` (docker <= 20.10) builds for a pattern: only
    ``.`` and ``$`` are escaped, so ``+ ( ) | { } ^`` keep their regexp meaning (``a+b`` also
    matches ``aab``; ``file (1).txt`` matches ``file 1.txt``), and there are no exact/prefix/
    suffix shortcuts (``**foo`` is ``^(.*/)?foo$``)."""
    reg = ["^"]
    n = len(pattern)
    pos = 1 if pattern.startswith(_BOM) else 0  # text/scanner skips a leading BOM
    while pos < n:
        ch = pattern[pos]
        pos += 1
        if ch == "*":
            if pos < n and pattern[pos] == "*":
                pos += 1
                if pos < n and pattern[pos] == "/":
                    pos += 1
                reg.append(".*" if pos >= n else "(.*/)?")
            else:
                reg.append("[^/]*")
        elif ch == "?":
            reg.append("[^/]")
        elif ch in ".$":
            reg.append("\\" + ch)
        elif ch == "\\":
            if pos < n:
                reg.append("\\" + pattern[pos])
                pos += 1
            else:
                reg.append("\\")
        else:
            reg.append(ch)
    reg.append("$")
    return "".join(reg)


def _legacy_python_regex(pattern: str) -> str:
    """A Python regexp (used with ``re.match``) testing what Go's ``MatchString`` (a search,
    not an anchored match) tests for the legacy regexp of ``pattern``."""
    go = _GoRegex(_legacy_compile(pattern))
    py = go.translate()
    # "^a|b$" is "starts with a, or ends with b": search semantics.
    return f"(?s:.*?)(?:{py})" if go.top_level_alternation else py


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
    _cache: dict[bool, tuple[str | None, str | None]] = field(
        default_factory=dict, init=False, repr=False, compare=False)
    _facts: dict[bool, _Facts] = field(default_factory=dict, init=False, repr=False, compare=False)

    def translated(self, legacy: bool = False) -> tuple[str | None, str | None]:
        """(Python regexp, None) for this pattern with moby's (``legacy=False``) or fileutils'
        regexp, or (None, why Docker refuses it). Computed once, when first asked."""
        got = self._cache.get(legacy)
        if got is not None:
            return got
        if legacy and not any(c in self.text for c in "+(){}|"):
            # Without those (the only characters the two escape differently), fileutils
            # builds the very regexp moby builds when moby's is a regexp (no exact, prefix or
            # suffix shortcut): same translation, same errors; and both refuse the same lines.
            moby = self.translated(False)
            if moby[0] is None or _moby_compile(self.text)[0] == "regexp":
                self._cache[legacy] = moby
                return moby
        regex: str | None = None
        error: str | None = None
        if self.exclusion and self.text == "":
            error = 'illegal exclusion pattern: "!"'
        elif (why := _glob_syntax_error(self.text)) is not None:
            error = f"syntax error in pattern ({why})"
        else:
            try:
                regex = (_legacy_python_regex(self.text) if legacy
                         else _python_regex(*_moby_compile(self.text)))
                re.compile(regex)
            except (_GoRegexError, re.error) as exc:
                regex, error = None, f"{_BAD_REGEXP}: {exc}"
        self._cache[legacy] = (regex, error)
        return regex, error

    @property
    def depth(self) -> int:
        """Number of ``/``-separated parts (fileutils' ``len(pattern.dirs)``)."""
        return self.text.count("/") + 1

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
    except OSError as exc:
        raise DockerignoreError(f"{path}: cannot read: {exc.strerror or exc}") from None
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


@dataclass(frozen=True)
class Semantics:
    """How one piece of Docker code decides what a pattern list excludes.

    ``match``: ``"parents"`` (``MatchesOrParentMatches``: the last pattern matching the path or
    any parent wins), ``"parent-results"`` (``MatchesUsingParentResults``, what archive.Tar and
    fsutil walk with since docker 23: per pattern, the parent's result is inherited; a pattern
    skipped for a parent is not re-checked against the parents, so ``d``, ``!d/f``, ``d`` sends
    ``d/f``), ``"legacy"`` (fileutils ``Matches``, docker <= 20.10 and the deprecated
    ``patternmatcher.Matches``: a pattern of N parts is tried on the path and on the path's
    first N parent parts only, so ``**/foo`` + ``!a/b/foo/keep`` sends ``a/b/foo/x``).
    ``regex``: ``"moby"`` (patternmatcher) or ``"legacy"`` (fileutils' regexp, see
    :func:`_legacy_compile`). ``prune``: when an excluded folder is skipped: ``"prefix"`` (the
    CLI's archive walk and old fsutil: unless a ``!`` pattern's text starts with the folder's
    path) or ``"wildcards"`` (fsutil since 2022: never when any ``!`` pattern has a wildcard).
    """

    name: str
    match: str
    regex: str
    prune: str


#: ``MatchesOrParentMatches`` with fsutil's pruning: the default, and what ``verify`` asks.
PARENTS = Semantics("parents", "parents", "moby", "wildcards")
#: BuildKit fed by a current client (buildx, docker >= 23): fsutil's walk.
BUILDKIT = Semantics("buildkit", "parent-results", "moby", "wildcards")
#: The classic builder fed by a docker >= 23 CLI: archive.TarWithOptions.
CLASSIC = Semantics("classic", "parent-results", "moby", "prefix")
#: docker <= 20.10 (CLI archive walk, its built-in BuildKit client's fsutil, the daemon's
#: removal of an excluded Dockerfile/.dockerignore): fileutils.
LEGACY = Semantics("legacy", "legacy", "legacy", "prefix")
#: The deprecated ``patternmatcher.Matches`` (docker >= 23 CLI's TrimBuildFilesFromExcludes).
LEGACY_MATCH = Semantics("legacy-match", "legacy", "moby", "prefix")

# A path filepath.Clean would change: an empty, "." or ".." part, or a leading/trailing "/".
_UNCLEAN = re.compile(r"(?:^|/)\.{0,2}(?:/|$)")

# Per-directory walk state: (index of the deciding pattern for the folder's children before
# their own name is tried, or -1; MatchesUsingParentResults' result: the indexes, ascending, of
# the patterns recorded as matching the folder, or None at the root).
_DirState = tuple[int, "tuple[int, ...] | None"]
_ROOT: _DirState = (-1, None)


def _combine(regexes: Sequence[str]) -> re.Pattern[str]:
    """One alternation, latest first: ``re.match`` picks the first alternative that matches,
    i.e. the last matching pattern; ``len(regexes) - m.lastindex`` is its index."""
    alts = (f"((?:{regexes[k]}))" for k in range(len(regexes) - 1, -1, -1))
    return re.compile("|".join(alts), re.ASCII)


# --------------------------------------------------------------------------------------------
# The pattern index: a path is tried only against the patterns that could match it
#
# Trying every pattern on every path (or one alternation of them all: Python's re compiles a
# 20,000-branch alternation in tens of seconds, and tries the branches one by one) makes a big
# ignore file cost patterns x paths. Instead every pattern is filed under one literal that each
# path it matches must show, whichever the fewest patterns share:
#
#   _EXACT  its whole text (no wildcard: it matches that one path);
#   _LAST   the text after a literal "/" after its last wildcard (or after a "**/" that is a
#           whole part): the path's last part ("a/*/b5", "**/b5": the last part is "b5");
#   _TAIL   else the text after its last wildcard: the end of the last part ("**/*.ext5":
#           the last part ends with ".ext5");
#   _HEAD   the text before its first wildcard: the start of the path ("log5?.txt");
#   _PART   a literal part between two literal "/": a part of the path ("src/*/gen5/*.py").
#
# A path looks itself up (its whole text, its last part, the ends of its last part and its own
# starts: one dict probe per distinct key length, its parts) and tries only the patterns filed
# there, plus the few with no such literal (escapes, "^", ...), so its cost hardly depends on
# the number of patterns. The filter is only ever a necessary condition: whether a candidate
# matches is still decided by its own (moby or fileutils) regexp, so results are unchanged.

# Characters that can make a pattern's regexp more than literal text, "*" and "?": the
# character classes and escapes moby passes to the regexp, "^" (not escaped by moby), and for
# fileutils' legacy regexp the operators it does not escape.
_SPECIAL = {False: re.compile(r"[\[\]\\^]"), True: re.compile(r"[\[\]\\^+(){}|]")}
_WILD = re.compile(r"[*?\[\]]")
# The kinds of key, in the order preferred between keys that as many patterns share.
_EXACT, _LAST, _TAIL, _HEAD, _PART = range(5)


def _keyable(text: str, legacy: bool) -> bool:
    """Does every match of ``text``'s regexp start with the text before its first ``*?[]`` and
    end with the text after its last one? True unless something can give literal characters
    another meaning: an escape (``\\Q...``, ``\\b``), ``^`` outside ``[^``, a BOM (the regexp
    skips it, the literal would not), or (legacy) a regexp operator (``a|b``, ``ab{0}``)."""
    if text.startswith(_BOM) or "\\" in text:
        return False
    if legacy and any(c in text for c in "+(){}|"):
        return False
    i = text.find("^")
    while i >= 0:
        if i == 0 or text[i - 1] != "[":
            return False
        i = text.find("^", i + 1)
    return True


class _Facts:
    """What matching needs to know about one pattern for one regexp flavour (moby's, or
    fileutils' with ``legacy``); worked out once per :class:`Pattern` (see :func:`_facts`)."""

    __slots__ = ("pattern", "legacy", "text", "depth", "refused", "error", "exact", "keys", "_rx")

    def __init__(self, p: Pattern, legacy: bool) -> None:
        t = p.text
        self.pattern = p
        self.legacy = legacy
        self.text = t
        self.depth = t.count("/") + 1
        self._rx: re.Pattern[str] | None = None
        # Only literal text, "*" and "?": nothing patternmatcher.New or the regexp compiler can
        # refuse, so no need to translate it now (most lines of a big file are like that).
        plain = t != "" and not t.startswith(_BOM) and _SPECIAL[legacy].search(t) is None
        # error: why Docker refuses it; refused: patternmatcher.New's own checks fail (not
        # only the regexp).
        self.error = None if plain else p.translated(legacy)[1]
        self.refused = self.error is not None and not self.error.startswith(_BAD_REGEXP)
        # exact: no wildcard, it matches the one path equal to its text (moby's "exact" kind;
        # fileutils' "^text$" with only literals in it).
        self.exact = False
        # The literals every path it matches shows, as (kind, text): _EXACT (the path is the
        # text), _LAST (its last part is), _TAIL (its last part ends with it), _HEAD (it starts
        # with it), _PART (one of its parts is); none: no such literal is known.
        self.keys: tuple[tuple[int, str], ...] = ()
        if self.error is None and (plain or _keyable(t, legacy)):
            m = _WILD.search(t)
            if m is None:
                self.exact = True
                self.keys = ((_EXACT, t),)
                return
            keys: list[tuple[int, str]] = []
            j = max(t.rfind("*"), t.rfind("?"), t.rfind("["), t.rfind("]"))
            tail = t[j + 1 :]
            # The tail is literal, each "/" in it too but one right after "**": "**/" is
            # "(.*/)?", so "**/b" also matches "b", and "x?**/b" "xyb".
            swallowed = tail.startswith("/") and t[j - 1 : j] == "*"
            if swallowed:
                tail = tail[1:]
            if "/" in tail:
                keys.append((_LAST, tail[tail.rfind("/") + 1 :]))
            elif tail:
                # After a "**" that is a whole part (at the start, or after a "/" no "**/"
                # swallows), the tail is a whole part too: "a/**/b" ends with the part "b".
                whole = swallowed and (j < 2 or (t[j - 2] == "/" and t[j - 4 : j - 2] != "**"))
                keys.append((_LAST if whole else _TAIL, tail))
            head = t[: m.start()]
            if head:
                keys.append((_HEAD, head))
            if "/" in t and "[" not in t and "]" not in t:  # a class may hold or match "/"
                keys += ((_PART, part) for part in _literal_parts(t))
            self.keys = tuple(keys)

    def regex(self) -> str:
        regex = self.pattern.translated(self.legacy)[0]
        assert regex is not None
        return regex

    def matches(self, s: str) -> bool:
        """Does this pattern's regexp match ``s`` (the path itself, no parents)?"""
        if self.exact:
            return s == self.text
        rx = self._rx
        if rx is None:
            rx = self._rx = re.compile(self.regex(), re.ASCII)
        return rx.match(s) is not None


def _literal_parts(text: str) -> tuple[str, ...]:
    """The parts of wildcard pattern ``text`` (no ``[...]``) that every path it matches has as
    a whole part: those without ``*`` or ``?``, after the start or a literal ``/``. A ``/``
    right after ``**`` may be the one ``**/`` swallows (``a**/b`` matches ``ab``), so the part
    after it does not count. The ``/`` after a part is always literal."""
    out: dict[str, None] = {}
    pos = 0
    for part in text.split("/"):
        swallowed = pos >= 3 and text[pos - 3 : pos - 1] == "**"
        if part and "*" not in part and "?" not in part and not swallowed:
            out[part] = None
        pos += len(part) + 1
    return tuple(out)


def _facts(p: Pattern, legacy: bool) -> _Facts:
    got = p._facts.get(legacy)
    if got is None:
        got = p._facts[legacy] = _Facts(p, legacy)
    return got


class _Bucket:
    """The patterns (indexes, ascending) filed under one key. ``certain``: every member
    matches every path that reaches the bucket (the exact-text buckets)."""

    __slots__ = ("certain", "members", "facts", "rx", "by_depth")

    def __init__(self, certain: bool, facts: list[_Facts]) -> None:
        self.certain = certain
        self.members: list[int] = []
        self.facts = facts
        self.rx: re.Pattern[str] | None = None  # the members' alternation, when first needed
        self.by_depth: dict[int, _Bucket] = {}  # the members of N parts, when first needed

    def best(self, s: str, best: int) -> int:
        """``best``, or the last member matching ``s`` if that comes later."""
        members = self.members
        if not members or members[-1] <= best:
            return best
        if self.certain:
            return members[-1]
        rx = self.rx
        if rx is None:
            rx = self.rx = _combine([self.facts[k].regex() for k in members])
        m = rx.match(s)
        if m is None or m.lastindex is None:
            return best
        k = members[len(members) - m.lastindex]
        return k if k > best else best

    def best_of_depth(self, s: str, best: int, depth: int) -> int:
        """:meth:`best` among the members of ``depth`` parts."""
        sub = self.by_depth.get(depth)
        if sub is None:
            sub = self.by_depth[depth] = _Bucket(self.certain, self.facts)
            sub.members = [k for k in self.members if self.facts[k].depth == depth]
        return sub.best(s, best)


class _Index:
    """The patterns of one list filed by literal text (see the comment above): O(patterns) to
    build, and :meth:`buckets` costs one dict probe per distinct key length, whatever the
    number of patterns. Patterns Docker refuses are not filed."""

    def __init__(self, patterns: Sequence[Pattern], legacy: bool) -> None:
        self.facts = facts = [_facts(p, legacy) for p in patterns]
        self.exact: dict[str, _Bucket] = {}
        self.lasts: dict[str, _Bucket] = {}
        self.tails: dict[str, _Bucket] = {}
        self.heads: dict[str, _Bucket] = {}
        self.parts: dict[str, _Bucket] = {}
        self.always = _Bucket(False, facts)
        tables = (self.exact, self.lasts, self.tails, self.heads, self.parts)
        # How many patterns each key would take (were each filed under all of its keys).
        shared = Counter(key for f in facts if f.error is None for key in f.keys)
        for k, f in enumerate(facts):
            keys = f.keys
            if f.error is not None:
                continue
            if not keys:
                self.always.members.append(k)
                continue
            # The key the fewest patterns share (fewest to try), the longest on a tie.
            key = keys[0] if len(keys) == 1 else min(
                keys, key=lambda kk: (shared[kk], -len(kk[1]), kk[0]))
            table = tables[key[0]]
            bucket = table.get(key[1])
            if bucket is None:
                bucket = table[key[1]] = _Bucket(key[0] == _EXACT, facts)
            bucket.members.append(k)
        self.tail_lens = sorted({len(t) for t in self.tails})
        self.head_lens = sorted({len(h) for h in self.heads})

    def buckets(self, s: str) -> list[_Bucket]:
        """The buckets holding every pattern that could match ``s`` (as a whole)."""
        out: list[_Bucket] = []
        cut = s.rfind("/") + 1
        last = s[cut:]
        for table, key in ((self.exact, s), (self.lasts, last)):
            got = table.get(key)
            if got is not None:
                out.append(got)
        n = len(s)
        for size in self.tail_lens:  # a tail holds no "/": it ends the last part
            if size > n - cut:
                break
            got = self.tails.get(s[n - size :])
            if got is not None:
                out.append(got)
        for size in self.head_lens:
            if size > n:
                break
            got = self.heads.get(s[:size])
            if got is not None:
                out.append(got)
        if self.parts:
            for part in s.split("/"):
                got = self.parts.get(part)
                if got is not None and got not in out:  # ("a/a": the same bucket once)
                    out.append(got)
        if self.always.members:
            out.append(self.always)
        return out

    def candidates(self, s: str, depth: int | None = None) -> set[int]:
        """The patterns (of ``depth`` parts, when given) that could match ``s``."""
        out: set[int] = set()
        facts = self.facts
        for b in self.buckets(s):
            if depth is None:
                out.update(b.members)
            else:
                out.update(k for k in b.members if facts[k].depth == depth)
        return out


class Matcher:
    """moby's PatternMatcher, with the :class:`Semantics` of one builder (default
    ``MatchesOrParentMatches``).

    Raises :class:`DockerignoreError` where ``patternmatcher.New`` would fail (a lone ``!``, a
    malformed ``[...]``, a trailing ``\\``) or the pattern's regexp would not compile.

    Built in time linear in the number of patterns; a path costs about the same whatever their
    number (see :class:`_Index`).
    """

    _CACHE_LIMIT = 1 << 20

    def __init__(self, patterns: Sequence[Pattern], semantics: Semantics = PARENTS) -> None:
        self.patterns: tuple[Pattern, ...] = tuple(patterns)
        self.semantics = semantics
        index = _Index(self.patterns, semantics.regex == "legacy")
        for p, f in zip(self.patterns, index.facts, strict=True):
            if f.error is not None:
                raise DockerignoreError(f"{p.source}:{p.line}: {f.error}", f"pattern: {str(p)!r}")
        self._index = index
        self._facts = index.facts
        self.has_exclusions = any(p.exclusion for p in self.patterns)
        self._wildcard_exceptions = any(
            p.exclusion and _contains_wildcards(p.text) for p in self.patterns
        )
        # The folders a "!" pattern names or names something below: the prefix pruning rule's
        # "some '!' pattern's text + '/' starts with the folder + '/'", as one set lookup.
        self._exception_dirs: frozenset[str] = frozenset(
            d for p in self.patterns if p.exclusion for d in _slash_prefixes(p.text))
        # legacy: the pattern lengths (in parts) there are, ascending.
        self._depths = sorted({f.depth for f in self._facts})
        self._prefix_cache: dict[str, int] = {}
        self._state_cache: dict[str, _DirState] = {}

    # -- one path, its own name only

    def _self_best(self, path: str) -> int:
        """Index of the last pattern matching ``path`` itself (-1: none). The walk's hot path:
        :meth:`_Index.buckets` written out."""
        index = self._index
        best = -1
        b = index.exact.get(path)
        if b is not None:
            best = b.members[-1]
        cut = path.rfind("/") + 1
        b = index.lasts.get(path[cut:])
        if b is not None:
            best = b.best(path, best)
        n = len(path)
        tails = index.tails
        for size in index.tail_lens:
            if size > n - cut:
                break
            b = tails.get(path[n - size :])
            if b is not None:
                best = b.best(path, best)
        heads = index.heads
        for size in index.head_lens:
            if size > n:
                break
            b = heads.get(path[:size])
            if b is not None:
                best = b.best(path, best)
        parts = index.parts
        if parts:
            for part in path.split("/"):
                b = parts.get(part)
                if b is not None:
                    best = b.best(path, best)
        return index.always.best(path, best)

    def _self_best_of_depth(self, path: str, depth: int) -> int:
        """Index of the last pattern of ``depth`` parts matching ``path`` itself (-1: none)."""
        best = -1
        for b in self._index.buckets(path):
            best = b.best_of_depth(path, best, depth)
        return best

    # -- folder state, as a walk carries it from parent to child

    def _mupr(self, path: str, parent_info: tuple[int, ...] | None) -> tuple[int, ...]:
        """``MatchesUsingParentResults``: the patterns recorded as matching ``path``.

        Go runs through every pattern; only those the parent recorded and those that could
        match ``path`` (or, with no parent result, one of its parents) can be recorded, so
        only those are visited, in the same order: the others leave the state unchanged."""
        index = self._index
        inherited = frozenset(parent_info or ())
        todo = index.candidates(path) | inherited
        prefixes: list[str] = []
        if parent_info is None:
            parent = _go_dir(path)
            if parent != ".":
                parts = parent.split("/")
                prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
                for pre in prefixes:
                    todo |= index.candidates(pre)
        facts = self._facts
        matched = False
        info: list[int] = []
        for k in sorted(todo):
            exclusion = self.patterns[k].exclusion
            match = k in inherited
            if not match:
                if exclusion != matched:
                    continue  # cannot change the result; recorded as "no match"
                f = facts[k]
                match = f.matches(path) or any(f.matches(pre) for pre in prefixes)
            if match:
                info.append(k)
                matched = not exclusion
        return tuple(info)

    def _legacy_base(self, d: str) -> int:
        """fileutils ``Matches``: the last pattern of N parts matching the first N parts of
        folder ``d`` (the parent check every child of ``d`` gets)."""
        best = -1
        parts = d.split("/")
        for depth in self._depths:
            if depth > len(parts):
                break
            prefix = "/".join(parts[:depth])
            got = self._prefix_cache.get(prefix)
            if got is None:
                got = self._self_best_of_depth(prefix, depth)
                if len(self._prefix_cache) >= self._CACHE_LIMIT:
                    self._prefix_cache.clear()
                self._prefix_cache[prefix] = got
            if got > best:
                best = got
        return best

    def _enter(self, d: str, parent: _DirState, self_best: int) -> _DirState:
        """The state of folder ``d`` (whose own last matching pattern is ``self_best``)."""
        mode = self.semantics.match
        if mode == "parents":
            return (max(parent[0], self_best), None)
        if mode == "legacy":
            return (self._legacy_base(d), None)
        if self_best < 0:  # no pattern matches d itself: it inherits its parent's results
            return (parent[0], parent[1] or ())
        info = self._mupr(d, parent[1])
        return (info[-1] if info else -1, info)

    def _state(self, d: str) -> _DirState:
        cached = self._state_cache.get(d)
        if cached is not None:
            return cached
        head, sep, _ = d.rpartition("/")
        parent = self._state(head) if sep else _ROOT
        st = self._enter(d, parent, self._self_best(d))
        if len(self._state_cache) >= self._CACHE_LIMIT:
            self._state_cache.clear()
        self._state_cache[d] = st
        return st

    def _best(self, relpath: str) -> int:
        if _UNCLEAN.search(relpath) is None:  # already clean: Dir is everything before the "/"
            cut = relpath.rfind("/")
            parent = relpath[:cut] if cut > 0 else "."
        else:
            parent = _go_dir(relpath)
        up = -1 if parent == "." else self._state(parent)[0]
        own = self._self_best(relpath)
        return own if own > up else up

    # -- the API

    def match(self, relpath: str) -> Pattern | None:
        """The deciding pattern for ``relpath`` (posix, relative to the context root), with
        this matcher's semantics; None if no line matches. The path is excluded iff the result
        is not None and not ``.exclusion``. Folders above it are taken as folders (it need not
        exist)."""
        best = self._best(relpath)
        return self.patterns[best] if best >= 0 else None

    def excluded(self, relpath: str) -> bool:
        """Is ``relpath`` left out of the build context (by the patterns alone)?"""
        best = self._best(relpath)
        return best >= 0 and not self.patterns[best].exclusion

    def _prunable(self, reldir: str, rule: str) -> bool:
        """Given that ``reldir`` is excluded: may the walk skip everything below it?"""
        if not self.has_exclusions:
            return True
        if rule == "wildcards" and self._wildcard_exceptions:
            return False
        return reldir not in self._exception_dirs

    def may_prune(self, reldir: str, *, classic: bool = False) -> bool:
        """True if directory ``reldir`` is excluded and the walk skips its contents.

        ``prune="wildcards"`` (fsutil): prune only when no ``!`` pattern has a wildcard and
        none names a path below the directory; ``prune="prefix"`` or ``classic=True``: the
        archive walk's rule, which ignores wildcards, so e.g. ``*`` + ``!**/keep`` sends no
        ``dir/keep``.
        """
        rule = "prefix" if classic else self.semantics.prune
        return self.excluded(reldir) and self._prunable(reldir, rule)

    def pruned_ancestor(self, relpath: str, *, classic: bool = False) -> str | None:
        """The first folder above ``relpath`` that a walk skips (so ``relpath`` is not sent
        whatever decides it), or None."""
        parts = _clean(relpath).split("/")
        for i in range(1, len(parts)):
            d = "/".join(parts[:i])
            if self.may_prune(d, classic=classic):
                return d
        return None


def _slash_prefixes(text: str) -> Iterator[str]:
    """Every ``d`` for which ``text + "/"`` starts with ``d + "/"``: ``text`` itself and its
    parts up to each ``/`` in it."""
    yield text
    i = text.find("/")
    while i >= 0:
        yield text[:i]
        i = text.find("/", i + 1)


# check_file is asked about a few files in a row with the same patterns (the classic builder's
# Dockerfile and .dockerignore, for the CLI and for the daemon): the indexes of the last few
# tuples of patterns seen are kept. Keyed by identity, and each tuple is held, so its id cannot
# be reused by another; a list (which could change) is indexed afresh each time.
_recent_indexes: list[tuple[tuple[Pattern, ...], bool, _Index]] = []


def _index_for(patterns: Sequence[Pattern], legacy: bool) -> _Index:
    if not isinstance(patterns, tuple):
        return _Index(patterns, legacy)
    for held, flavour, index in _recent_indexes:
        if held is patterns and flavour == legacy:
            return index
    index = _Index(patterns, legacy)
    _recent_indexes.insert(0, (patterns, legacy, index))
    del _recent_indexes[4:]
    return index


def check_file(patterns: Sequence[Pattern], path: str, semantics: Semantics) -> Pattern | None:
    """One path checked the way callers that ignore the error do it (the classic CLI's
    ``TrimBuildFilesFromExcludes``, the daemon's removal of an excluded Dockerfile and
    ``.dockerignore``): the pattern that excludes ``path``, or None when it is not excluded,
    or when Go's check fails: a pattern ``patternmatcher.New`` refuses fails it outright; a
    regexp that does not compile fails it when evaluation reaches that pattern (moby's regexps
    skip patterns that cannot change the result; fileutils' evaluates every one)."""
    legacy_re = semantics.regex == "legacy"
    index = _index_for(patterns, legacy_re)
    facts = index.facts
    if any(f.refused for f in facts):
        return None
    skip = not legacy_re
    parent = _go_dir(path)
    parts = [] if parent == "." else parent.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    # Go runs through every pattern; a pattern that cannot match the path or the parents it is
    # tried on leaves the result unchanged, so only those that could, and those whose regexp
    # fails, are visited (in the same order).
    todo = index.candidates(path)
    for i, pre in enumerate(prefixes):
        todo |= index.candidates(pre, i + 1 if semantics.match == "legacy" else None)
    todo.update(k for k, f in enumerate(facts) if f.error is not None)
    matched: Pattern | None = None
    for k in sorted(todo):
        p = patterns[k]
        if skip and p.exclusion != (matched is not None):
            continue
        f = facts[k]
        if f.error is not None:
            return None
        hit = f.matches(path)
        if not hit and parts:
            if semantics.match == "legacy":
                hit = f.depth <= len(parts) and f.matches(prefixes[f.depth - 1])
            else:
                hit = any(f.matches(pre) for pre in prefixes)
        if hit:
            matched = None if p.exclusion else p
    return matched


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


def walk_entries(
    context: Path,
    matcher: Matcher,
    keep: Sequence[str] = (),
    *,
    classic: bool = False,
    dirs: bool = False,
) -> Iterator[tuple[str, os.DirEntry[str]]]:
    """:func:`walk_context` without the ``lstat``: ``(posix relpath, os.DirEntry)``, for
    callers that need no sizes (the entry's own ``stat`` is cached when asked)."""
    keep_set = {_clean(k) for k in keep}
    keep_dirs: set[str] = set()
    for k in keep_set:
        head = k
        while "/" in head:
            head = head.rpartition("/")[0]
            keep_dirs.add(head)
    patterns = matcher.patterns
    rule = "prefix" if classic else matcher.semantics.prune
    self_best = matcher._self_best
    enter = matcher._enter
    prunable = matcher._prunable
    yield_pending = dirs and not classic

    def scan(path: str) -> Iterator[os.DirEntry[str]]:
        with os.scandir(path) as it:
            return iter(list(it))

    # Excluded directories descended into but not yet yielded (dirs=True, BuildKit only).
    pending: list[tuple[str, os.DirEntry[str]]] = []
    # Frames: (entries left, folder relpath, its state, len(pending) before it was entered).
    stack: list[tuple[Iterator[os.DirEntry[str]], str, _DirState, int]] = [
        (scan(os.fspath(context)), "", _ROOT, 0)
    ]
    while stack:
        it, rel_dir, state, _ = stack[-1]
        base = state[0]
        prefix = rel_dir + "/" if rel_dir else ""
        for entry in it:
            rel = prefix + entry.name
            own = self_best(rel)
            best = own if own > base else base
            excluded = best >= 0 and not patterns[best].exclusion
            if entry.is_dir(follow_symlinks=False):
                if excluded:
                    if rel not in keep_dirs and prunable(rel, rule):
                        continue
                    mark = len(pending)
                    pending.append((rel, entry))
                else:
                    if pending:
                        if yield_pending:
                            yield from pending
                        pending.clear()
                    if dirs:
                        yield rel, entry
                    mark = len(pending)
                stack.append((scan(entry.path), rel, enter(rel, state, own), mark))
                break
            if entry.is_symlink() or entry.is_file(follow_symlinks=False):
                if excluded and rel not in keep_set:
                    continue
                if pending:
                    if yield_pending:
                        yield from pending
                    pending.clear()
                yield rel, entry
        else:
            mark = stack.pop()[3]
            del pending[mark:]


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
    Matching follows the matcher's :class:`Semantics`; excluded directories are pruned per
    :meth:`Matcher.may_prune` (``classic`` forces the CLI's prefix rule). ``dirs=True`` also
    yields directories that are sent: those not excluded, plus (not ``classic``) excluded ones
    that hold something sent, as BuildKit sends parents.
    Order: directory-listing order, parents before children. One pass, no recursion.
    """
    for rel, entry in walk_entries(context, matcher, keep, classic=classic, dirs=dirs):
        yield rel, entry.stat(follow_symlinks=False)
