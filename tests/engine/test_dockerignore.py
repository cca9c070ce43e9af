""".dockerignore semantics (cleanroom.dockerignore.matcher) against moby's own test tables and the
corners Docker users trip on. No Docker needed: expectations are moby's, ported by hand."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from cleanroom.dockerignore.matcher import (
    DockerignoreError,
    IgnoreFile,
    Matcher,
    Pattern,
    ignore_file_for,
    parse,
    read,
    walk_context,
)


def matcher(*lines: str) -> Matcher:
    return Matcher(parse("\n".join(lines)).patterns)


def texts(ignore: IgnoreFile) -> list[str]:
    """The pattern list as ReadAll + patternmatcher.New leave it (``!`` re-prepended)."""
    return [str(p) for p in ignore.patterns]


# --------------------------------------------------------------------------------------------
# moby/patternmatcher patternmatcher_test.go: TestMatches (MatchesOrParentMatches)

MOBY_MATCHES = [
    ("**", "file", True),
    ("**", "file/", True),
    ("**/", "file", True),  # weird one
    ("**/", "file/", True),
    ("**", "/", True),
    ("**/", "/", True),
    ("**", "dir/file", True),
    ("**/", "dir/file", True),
    ("**", "dir/file/", True),
    ("**/", "dir/file/", True),
    ("**/**", "dir/file", True),
    ("**/**", "dir/file/", True),
    ("dir/**", "dir/file", True),
    ("dir/**", "dir/file/", True),
    ("dir/**", "dir/dir2/file", True),
    ("dir/**", "dir/dir2/file/", True),
    ("**/dir", "dir", True),
    ("**/dir", "dir/file", True),
    ("**/dir2/*", "dir/dir2/file", True),
    ("**/dir2/*", "dir/dir2/file/", True),
    ("**/dir2/**", "dir/dir2/dir3/file", True),
    ("**/dir2/**", "dir/dir2/dir3/file/", True),
    ("**file", "file", True),
    ("**file", "dir/file", True),
    ("**/file", "dir/file", True),
    ("**file", "dir/dir/file", True),
    ("**/file", "dir/dir/file", True),
    ("**/file*", "dir/dir/file", True),
    ("**/file*", "dir/dir/file.txt", True),
    ("**/file*txt", "dir/dir/file.txt", True),
    ("**/file*.txt", "dir/dir/file.txt", True),
    ("**/file*.txt*", "dir/dir/file.txt", True),
    ("**/**/*.txt", "dir/dir/file.txt", True),
    ("**/**/*.txt2", "dir/dir/file.txt", False),
    ("**/*.txt", "file.txt", True),
    ("**/**/*.txt", "file.txt", True),
    ("a**/*.txt", "a/file.txt", True),
    ("a**/*.txt", "a/dir/file.txt", True),
    ("a**/*.txt", "a/dir/dir/file.txt", True),
    ("a/*.txt", "a/dir/file.txt", False),
    ("a/*.txt", "a/file.txt", True),
    ("a/*.txt**", "a/file.txt", True),
    ("a[b-d]e", "ae", False),
    ("a[b-d]e", "ace", True),
    ("a[b-d]e", "aae", False),
    ("a[^b-d]e", "aze", True),
    (".*", ".foo", True),
    (".*", "foo", False),
    ("abc.def", "abcdef", False),
    ("abc.def", "abc.def", True),
    ("abc.def", "abcZdef", False),
    ("abc?def", "abcZdef", True),
    ("abc?def", "abcdef", False),
    ("a\\\\", "a\\", True),
    ("**/foo/bar", "foo/bar", True),
    ("**/foo/bar", "dir/foo/bar", True),
    ("**/foo/bar", "dir/dir2/foo/bar", True),
    ("abc/**", "abc", False),
    ("abc/**", "abc/def", True),
    ("abc/**", "abc/def/ghi", True),
    ("**/.foo", ".foo", True),
    ("**/.foo", "bar.foo", False),
    ("a(b)c/def", "a(b)c/def", True),
    ("a(b)c/def", "a(b)c/xyz", False),
    ("a.|)$(}+{bc", "a.|)$(}+{bc", True),
    (
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        True,
    ),
    ("dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", True),
    ("a\\*b", "a*b", True),  # unix-only entry
]


@pytest.mark.parametrize(("pattern", "path", "expected"), MOBY_MATCHES)
def test_moby_matches_table(pattern: str, path: str, expected: bool) -> None:
    assert matcher(pattern).excluded(path) is expected


MOBY_MULTI = [
    (["**", "!util/docker/web"], "util/docker/web/foo", False),
    (["**", "!util/docker/web", "util/docker/web/foo"], "util/docker/web/foo", True),
    (
        ["**", "!dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl"],
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        False,
    ),
    (["**", "!dist/*.whl"], "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", False),
]


@pytest.mark.parametrize(("patterns", "path", "expected"), MOBY_MULTI)
def test_moby_multi_pattern_table(patterns: list[str], path: str, expected: bool) -> None:
    assert matcher(*patterns).excluded(path) is expected


# moby TestMatch: filepath.Match's table run through the pattern matcher (None = no error).
MOBY_MATCH = [
    ("abc", "abc", True),
    ("*", "abc", True),
    ("*c", "abc", True),
    ("a*", "a", True),
    ("a*", "abc", True),
    ("a*", "ab/c", True),  # the parent "ab" matches
    ("a*/b", "abc/b", True),
    ("a*/b", "a/c/b", False),
    ("a*b*c*d*e*/f", "axbxcxdxe/f", True),
    ("a*b*c*d*e*/f", "axbxcxdxexxx/f", True),
    ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", False),
    ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", False),
    ("a*b?c*x", "abxbbxdbxebxczzx", True),
    ("a*b?c*x", "abxbbxdbxebxczzy", False),
    ("ab[c]", "abc", True),
    ("ab[b-d]", "abc", True),
    ("ab[e-g]", "abc", False),
    ("ab[^c]", "abc", False),
    ("ab[^b-d]", "abc", False),
    ("ab[^e-g]", "abc", True),
    ("a\\*b", "a*b", True),
    ("a\\*b", "ab", False),
    ("a?b", "a☺b", True),
    ("a[^a]b", "a☺b", True),
    ("a???b", "a☺b", False),
    ("a[^a][^a][^a]b", "a☺b", False),
    ("[a-ζ]*", "α", True),
    ("*[a-ζ]", "A", False),
    ("a?b", "a/b", False),
    ("a*b", "a/b", False),
    ("[\\]a]", "]", True),
    ("[\\-]", "-", True),
    ("[x\\-]", "x", True),
    ("[x\\-]", "-", True),
    ("[x\\-]", "z", False),
    ("[\\-x]", "x", True),
    ("[\\-x]", "-", True),
    ("[\\-x]", "a", False),
    ("*x", "xxx", True),
]


@pytest.mark.parametrize(("pattern", "path", "expected"), MOBY_MATCH)
def test_moby_match_table(pattern: str, path: str, expected: bool) -> None:
    assert matcher(pattern).excluded(path) is expected


@pytest.mark.parametrize(
    "pattern",
    ["[]a]", "[-]", "[x-]", "[-x]", "\\", "[a-b-c]", "[", "[^", "[^bc", "a[", "[^]", "ab\\"],
)
def test_moby_bad_patterns_are_errors(pattern: str) -> None:
    with pytest.raises(DockerignoreError, match="syntax error in pattern"):
        matcher(pattern)


def test_moby_small_cases() -> None:
    assert matcher("*").excluded("fileutils.go")
    assert matcher("*.go").excluded("fileutils.go")
    assert matcher("!fileutils.go", "*.go").excluded("fileutils.go")
    assert not matcher("*.go", "!fileutils.go").excluded("fileutils.go")
    assert not matcher("docs", "!docs/README.md").excluded("docs/README.md")
    assert not matcher("docs/", "!docs/README.md").excluded("docs/README.md")
    assert not matcher("docs/*", "!docs/README.md").excluded("docs/README.md")
    assert not matcher("*.go").excluded(".git")


def test_lone_bang_is_an_error_with_location() -> None:
    ignore = parse("a\n\n!\n", "ctx/.dockerignore")
    with pytest.raises(DockerignoreError, match=r"ctx/\.dockerignore:3: illegal exclusion"):
        Matcher(ignore.patterns)
    # "!/" survives ReadAll as "!/" but patternmatcher.New cleans it to "!".
    with pytest.raises(DockerignoreError, match="illegal exclusion"):
        matcher("!/")
    with pytest.raises(DockerignoreError, match="illegal exclusion"):
        matcher("!   ")


# --------------------------------------------------------------------------------------------
# ignorefile.ReadAll (moby ignorefile_test.go TestReadAll) and friends


def test_moby_readall() -> None:
    content = (
        "test1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n! /inverted/abs/path\n!\n! "
    )
    ignore = parse(content)
    assert [p.text for p in ignore.patterns] == [
        "test1",
        "test2",
        "a/file/here",
        "lastfile",
        "inverted/abs/path",
        "",
        "",
    ]
    assert [p.exclusion for p in ignore.patterns] == [False] * 4 + [True] * 3
    assert [p.line for p in ignore.patterns] == [1, 2, 3, 5, 7, 8, 9]


def test_cleaning() -> None:
    ignore = parse(
        "a//b\n./c/./d/\ne/../f\n../g\n..\n/\n.\n/h/\n!/i/../j\n!../k\n  !  l  \na /\n!../..\n"
    )
    assert texts(ignore) == [
        "a/b",
        "c/d",
        "f",
        "../g",
        "..",
        "/",
        ".",
        "h",
        "!j",
        "!../k",
        "!l",
        "a",  # ReadAll's Clean leaves "a ", New's TrimSpace drops the space
        ".",  # "!../.." -> New cleans "!../.." to "." (an include, and a dead one)
    ]
    assert [str(p) for p in ignore.dead_lines] == ["../g", "..", "/", ".", "!../k", "."]
    assert [p.line for p in ignore.dead_lines] == [4, 5, 6, 7, 10, 13]


def test_dead_lines_never_match() -> None:
    dead = ("../x", "..", "../**", "../*", ".", "/", "!../x")
    ignore = parse("\n".join(dead))
    assert ignore.dead_lines == ignore.patterns
    m = Matcher(ignore.patterns)
    for path in ("x", "a/x", "..x", "...", ".x", "a/..b", "x/y/z"):
        assert m.match(path) is None, path


def test_comments_only_in_column_zero() -> None:
    ignore = parse("#comment\n  # not a comment\n\t#tab\n#\n \n")
    assert texts(ignore) == ["# not a comment", "#tab"]
    assert [p.line for p in ignore.patterns] == [2, 3]
    m = Matcher(ignore.patterns)
    assert m.excluded("# not a comment")
    assert m.excluded("#tab")
    assert not m.excluded("#comment")
    assert matcher("\\#comment").excluded("#comment")


def test_blank_and_whitespace_lines_and_line_numbers() -> None:
    text = "\n   \n\t\t\nfoo\n\n  bar  \r\n\f\v\n  !  baz\n# x\nqux"
    ignore = parse(text, "some/.dockerignore")
    assert [(str(p), p.line, p.source) for p in ignore.patterns] == [
        ("foo", 4, "some/.dockerignore"),
        ("bar", 6, "some/.dockerignore"),
        ("!baz", 8, "some/.dockerignore"),
        ("qux", 10, "some/.dockerignore"),
    ]


def test_go_whitespace_not_python_whitespace() -> None:
    # \x1c-\x1f are str.isspace() in Python but not unicode.IsSpace in Go: they stay.
    assert texts(parse("\x1cfoo\x1f")) == ["\x1cfoo\x1f"]
    # NBSP and ideographic space are Go whitespace.
    assert texts(parse("\xa0foo\u3000")) == ["foo"]


def test_bom_first_line_only() -> None:
    assert texts(parse("\ufeff# comment\nfoo\n")) == ["foo"]
    assert texts(parse("\ufeffbar\n")) == ["bar"]
    assert texts(parse("foo\n\ufeffbar\n")) == ["foo", "\ufeffbar"]


def test_crlf_and_lone_cr() -> None:
    ignore = parse("foo\r\n# c\r\n!bar\r\n\r\nbaz\r")
    assert texts(ignore) == ["foo", "!bar", "baz"]
    assert [p.line for p in ignore.patterns] == [1, 3, 5]
    # bufio.ScanLines splits on \n only; a lone \r inside a line is data (then trimmed if at
    # an end).
    assert texts(parse("a\rb\n")) == ["a\rb"]


def test_read_file(tmp_path: Path) -> None:
    f = tmp_path / ".dockerignore"
    f.write_bytes(b"\xef\xbb\xbf*.pyc\r\n!keep.pyc\n\xff\xfe\n")
    ignore = read(f)
    assert ignore.path == f
    assert [p.source for p in ignore.patterns] == [str(f)] * 3
    assert texts(ignore)[:2] == ["*.pyc", "!keep.pyc"]
    m = Matcher(ignore.patterns)
    assert m.excluded("a.pyc") and not m.excluded("keep.pyc")
    assert m.excluded(os.fsdecode(b"\xff\xfe"))  # undecodable names compare byte for byte


def test_read_missing_file(tmp_path: Path) -> None:
    ignore = read(tmp_path / "nope")
    assert ignore == IgnoreFile(path=None, patterns=(), dead_lines=())
    assert not Matcher(ignore.patterns).excluded("anything")


# --------------------------------------------------------------------------------------------
# Matching semantics


def test_anchored_at_root() -> None:
    m = matcher("*.md", "foo")
    assert m.excluded("README.md")
    assert not m.excluded("docs/README.md")
    assert m.excluded("foo")
    assert m.excluded("foo/bar/baz")  # the folder is excluded, so everything below it
    assert not m.excluded("a/foo")
    assert not m.excluded("foobar")


def test_last_match_wins_and_deciding_pattern() -> None:
    ignore = parse("*.log\n!important.log\nimportant*\n")
    m = Matcher(ignore.patterns)
    p = m.match("important.log")
    assert p is ignore.patterns[2] and not p.exclusion and p.line == 3
    assert m.excluded("important.log")
    assert m.match("x.txt") is None
    m2 = matcher("*.log", "important*", "!important.log")
    decided = m2.match("important.log")
    assert decided is not None and decided.exclusion and decided.line == 3
    assert not m2.excluded("important.log")


def test_star_star_then_reinclude_dir() -> None:
    m = matcher("**", "!src", "src/**/*.pyc")
    assert m.excluded("README.md")
    assert m.excluded("docs/a/b.txt")
    assert not m.excluded("src")
    assert not m.excluded("src/pkg/mod.py")
    assert m.excluded("src/pkg/mod.pyc")
    assert m.excluded("src/mod.pyc")  # "**/" may match zero segments


def test_reinclude_under_excluded_folder() -> None:
    m = matcher("build", "!build/keep", "!build/dist/*.whl")
    assert m.excluded("build")
    assert m.excluded("build/tmp/x.o")
    assert not m.excluded("build/keep")
    assert not m.excluded("build/keep/deep/file")
    assert not m.excluded("build/dist/a.whl")
    assert m.excluded("build/dist/a.tar.gz")
    # A later include of the parent wins again.
    m2 = matcher("build", "!build/keep", "build")
    assert m2.excluded("build/keep")


def test_negation_only_re_includes_what_it_names() -> None:
    m = matcher("*", "!*.md", "README*")
    assert not m.excluded("CHANGES.md")
    assert m.excluded("README.md")
    assert m.excluded("src/x.py")
    assert m.excluded("docs/a.md")  # "*" excludes "docs"; "!*.md" does not match "docs"


@pytest.mark.parametrize(
    ("pattern", "yes", "no"),
    [
        (
            "**/node_modules",
            ["node_modules", "a/node_modules/x", "a/b/node_modules"],
            ["xnode_modules", "a/node_modules2"],
        ),
        ("a/**/b", ["a/b", "a/x/b", "a/x/y/b/z"], ["a", "b", "x/a/b", "a/xb"]),
        ("a/**", ["a/x", "a/x/y"], ["a", "ab"]),
        ("**/*.py[co]", ["x.pyc", "a/b/x.pyo"], ["x.py", "x.pyd"]),
        ("**", ["a", "a/b", ".x"], []),
        ("**foo", ["foo", "xfoo", "a/barfoo"], ["foo.txt"]),  # moby's suffix shortcut
        ("a**", ["a", "abc", "a/b"], ["ba"]),  # moby's prefix shortcut
        ("**/a/**/", ["a/x", "q/a/x/y"], ["a", "q/a"]),
    ],
)
def test_double_star_positions(pattern: str, yes: list[str], no: list[str]) -> None:
    m = matcher(pattern)
    for path in yes:
        assert m.excluded(path), path
    for path in no:
        assert not m.excluded(path), path


def test_trailing_slash_and_leading_slash() -> None:
    m = matcher("/build/", "logs/")
    assert m.excluded("build")  # a trailing slash does not restrict to directories
    assert m.excluded("build/x")
    assert m.excluded("logs")
    assert not m.excluded("a/build")
    assert not m.excluded("a/logs")
    assert not matcher("/").excluded("x")


def test_dot_files() -> None:
    m = matcher(".*", "!.dockerignore")
    assert m.excluded(".git")
    assert m.excluded(".git/config")
    assert m.excluded(".env")
    assert not m.excluded(".dockerignore")
    assert not m.excluded("a/.env")
    assert matcher("*").excluded(".hidden")  # "*" matches leading dots, unlike a shell
    assert matcher("**/.env").excluded("deep/er/.env")


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("my file.txt", "my file.txt", True),
        ("my\\ file.txt", "my file.txt", True),
        ("dir with space/*", "dir with space/x", True),
        ("trailing  ", "trailing", True),
        ("\\[x\\]", "[x]", True),
        ("[[]x]", "[x]", True),
        ("[x]", "[x]", False),
        ("lit[1]", "lit1", True),
        ("a\\*b", "axb", False),
        ("a\\?b", "a?b", True),
        ("a\\?b", "axb", False),
        ("\\!important", "!important", True),
        ("\\#hash", "#hash", True),
        ("x#y", "x#y", True),
        ("café/*.txt", "café/menu.txt", True),
        ("日本語", "日本語/x", True),
        ("caf?", "café", True),
        ("??", "日本", True),
        ("[é]", "é", True),
        ("a+b(c)", "a+b(c)", True),
        ("a+b*", "a+bc", True),
        ("a+b*", "aab", False),
        ("{a,b}", "a", False),  # no brace expansion
        ("{a,b}", "{a,b}", True),
        ("a^b", "a^b", True),  # exact match: "^" is literal
        ("a^*", "a^b", False),  # regexp: Go reads the raw "^" as an anchor
        ("[?]", "?", False),  # "?" inside [...] becomes "[^/]" inside the class, as in moby
        ("[?]", "^]", True),
        ("[[:digit:]]x", "7x", True),
        ("[[:digit:]]x", "ax", False),
        ("v\\d", "v1", True),  # "\d" reaches Go's regexp as a digit class
        ("v\\d", "vd", False),
        ("x\\n", "x\n", True),
        ("a.*", "a.b", True),
        ("a.*", "ab", False),
        ("*", "name\nwith newline", True),
        ("**.txt", "a\nb.txt", True),
        ("a/**", "a/x\ny", True),
    ],
)
def test_odd_names(pattern: str, path: str, expected: bool) -> None:
    assert matcher(pattern).excluded(path) is expected


@pytest.mark.parametrize("pattern", ["a\\q*", "x\\1*", "[z-a]*", "[[:nope:]]", "a\\p{L}"])
def test_go_regexp_errors(pattern: str) -> None:
    with pytest.raises(DockerignoreError, match="bad pattern"):
        matcher(pattern)


def test_dollar_is_end_of_text_not_before_newline() -> None:
    assert not matcher("a*").excluded("b")
    assert not matcher("x*y").excluded("xy\n")


def test_pattern_objects() -> None:
    p = Pattern("foo/*", False, 3, "<string>")
    assert Matcher([p]).match("foo/bar") is p
    assert p == Pattern("foo/*", False, 3, "<string>")
    assert str(Pattern("x", True, 1, "f")) == "!x"
    assert not Matcher([]).excluded("x")


def test_may_prune() -> None:
    assert matcher("build").may_prune("build")
    assert not matcher("build").may_prune("src")
    m = matcher("build", "!build/keep")
    assert not m.may_prune("build")  # a "!" pattern names something below it
    assert matcher("build", "!src/keep").may_prune("build")
    # BuildKit: a wildcard in any "!" pattern turns pruning off; the classic CLI ignores that.
    w = matcher("*", "!**/keep")
    assert not w.may_prune("a")
    assert w.may_prune("a", classic=True)
    assert not w.excluded("a/keep")


def test_match_is_fast_enough() -> None:
    m = matcher(
        "**/__pycache__",
        "*.md",
        "!README.md",
        "build",
        "dist/**",
        "**/*.py[co]",
        ".git",
        "node_modules",
        "!node_modules/keep",
        "docs/**/*.tmp",
        "a/b/c",
        "**/.DS_Store",
    )
    paths = [f"pkg{i % 50}/sub{i % 7}/mod{i}.py" for i in range(100_000)]
    start = time.perf_counter()
    n = sum(m.excluded(p) for p in paths)
    assert n == 0
    assert time.perf_counter() - start < 10.0


# --------------------------------------------------------------------------------------------
# ignore_file_for


def test_ignore_file_for(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    (ctx / "docker").mkdir(parents=True)
    dockerfile = ctx / "docker" / "app.Dockerfile"
    dockerfile.write_text("FROM scratch\n")
    assert ignore_file_for(ctx, dockerfile, buildkit=True) is None
    assert ignore_file_for(ctx, dockerfile, buildkit=False) is None
    (ctx / ".dockerignore").write_text("*\n")
    assert ignore_file_for(ctx, dockerfile, buildkit=True) == ctx / ".dockerignore"
    own = ctx / "docker" / "app.Dockerfile.dockerignore"
    own.write_text("x\n")
    assert ignore_file_for(ctx, dockerfile, buildkit=True) == own
    assert ignore_file_for(ctx, dockerfile, buildkit=False) == ctx / ".dockerignore"
    (ctx / ".dockerignore").unlink()
    assert ignore_file_for(ctx, dockerfile, buildkit=False) is None
    assert ignore_file_for(ctx, dockerfile, buildkit=True) == own


# --------------------------------------------------------------------------------------------
# walk_context


def make_tree(root: Path, files: list[str]) -> None:
    for rel in files:
        path = root / rel
        if rel.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(rel)


def walked(root: Path, m: Matcher, keep: tuple[str, ...] = (), **kw: bool) -> set[str]:
    return {rel for rel, _ in walk_context(root, m, keep, **kw)}


TREE = [
    "Dockerfile",
    ".dockerignore",
    "README.md",
    "src/app.py",
    "src/app.pyc",
    "src/pkg/__pycache__/m.cpython-311.pyc",
    "src/pkg/m.py",
    "build/out.o",
    "build/keep/k.txt",
    "build/deep/er/x.o",
    "docs/a.md",
    "docs/b.tmp",
    "empty/",
    "sp ace/f #1!.txt",
    "ünï/cödé.txt",
]


def test_walk_without_patterns(tmp_path: Path) -> None:
    make_tree(tmp_path, TREE)
    assert walked(tmp_path, matcher()) == {t for t in TREE if not t.endswith("/")}


def test_walk_excludes_and_prunes(tmp_path: Path) -> None:
    make_tree(tmp_path, TREE)
    m = matcher("build", "**/__pycache__", "*.pyc", "**/*.pyc", "docs/*.tmp", "Dockerfile")
    assert walked(tmp_path, m) == {
        ".dockerignore",
        "README.md",
        "src/app.py",
        "src/pkg/m.py",
        "docs/a.md",
        "sp ace/f #1!.txt",
        "ünï/cödé.txt",
    }


def test_walk_does_not_descend_pruned_dirs(tmp_path: Path) -> None:
    make_tree(tmp_path, ["ok.txt", "secret/x.txt"])
    (tmp_path / "secret").chmod(0)
    try:
        if os.access(tmp_path / "secret", os.R_OK):
            pytest.skip("running as root: permissions are not enforced")
        assert walked(tmp_path, matcher("secret")) == {"ok.txt"}
        with pytest.raises(PermissionError):
            walked(tmp_path, matcher("secret", "!secret/x.txt"))
    finally:
        (tmp_path / "secret").chmod(0o755)


def test_walk_pruning_is_observable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_tree(tmp_path, TREE)
    seen: list[str] = []
    real = os.scandir

    def spy(path: str) -> object:
        seen.append(os.path.relpath(path, tmp_path))
        return real(path)

    monkeypatch.setattr(os, "scandir", spy)
    walked(tmp_path, matcher("build", "src"))
    assert "build" not in seen and "src" not in seen and "docs" in seen
    seen.clear()
    walked(tmp_path, matcher("build", "!build/keep"))
    assert "build" in seen and "build/keep" in seen and "build/deep" not in seen


def test_walk_reinclude_under_excluded_dir(tmp_path: Path) -> None:
    make_tree(tmp_path, TREE)
    m = matcher("build", "!build/keep")
    got = walked(tmp_path, m)
    assert "build/keep/k.txt" in got
    assert "build/out.o" not in got and "build/deep/er/x.o" not in got


def test_walk_wildcard_exception_buildkit_vs_classic(tmp_path: Path) -> None:
    make_tree(tmp_path, ["a/keep", "a/drop", "b/c/keep", "keep", "top"])
    m = matcher("*", "!**/keep")
    assert walked(tmp_path, m) == {"a/keep", "b/c/keep", "keep"}
    assert walked(tmp_path, m, classic=True) == {"keep"}


def test_walk_keep_forces_files(tmp_path: Path) -> None:
    make_tree(tmp_path, ["docker/Dockerfile", "docker/other", ".dockerignore", "src/x"])
    m = matcher("*")
    assert walked(tmp_path, m) == set()
    keep = ("docker/Dockerfile", ".dockerignore")
    assert walked(tmp_path, m, keep, classic=True) == {"docker/Dockerfile", ".dockerignore"}
    assert walked(tmp_path, m, ("./docker/Dockerfile",)) == {"docker/Dockerfile"}
    assert walked(tmp_path, m, ("missing/Dockerfile",)) == set()


def test_walk_symlinks_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    make_tree(outside, ["o1", "sub/o2"])
    ctx = tmp_path / "ctx"
    make_tree(ctx, ["real/f", "excluded/f"])
    (ctx / "link_dir").symlink_to(outside)
    (ctx / "link_file").symlink_to(ctx / "real" / "f")
    (ctx / "dangling").symlink_to(ctx / "nowhere")
    (ctx / "real" / "loop").symlink_to(ctx)
    (ctx / "excluded" / "link").symlink_to(outside)
    result = dict(walk_context(ctx, matcher("excluded")))
    assert set(result) == {"real/f", "link_dir", "link_file", "dangling", "real/loop"}
    for name in ("link_dir", "link_file", "dangling", "real/loop"):
        assert os.path.islink(ctx / name)
        assert result[name].st_mode == os.lstat(ctx / name).st_mode
    # A symlink is matched by its own name, like a file.
    assert set(dict(walk_context(ctx, matcher("link_*")))) == {
        "real/f",
        "excluded/f",
        "excluded/link",
        "dangling",
        "real/loop",
    }


def test_walk_skips_special_files(tmp_path: Path) -> None:
    make_tree(tmp_path, ["f"])
    os.mkfifo(tmp_path / "fifo")
    assert walked(tmp_path, matcher()) == {"f"}


def test_walk_dirs(tmp_path: Path) -> None:
    make_tree(tmp_path, ["empty/", "build/keep/k", "build/drop/d", "src/a", "gone/x"])
    m = matcher("build", "!build/keep", "gone")
    assert walked(tmp_path, m, dirs=True) == {
        "empty",
        "build",
        "build/keep",
        "build/keep/k",
        "src",
        "src/a",
    }
    assert walked(tmp_path, m, dirs=True, classic=True) == {
        "empty",
        "build/keep",
        "build/keep/k",
        "src",
        "src/a",
    }
    # An excluded directory with nothing sent below it is not sent.
    assert walked(tmp_path, matcher("*", "!src"), dirs=True) == {"src", "src/a"}


def test_walk_relpaths_and_stats(tmp_path: Path) -> None:
    make_tree(tmp_path, ["a/b/c.txt"])
    ((rel, st),) = walk_context(tmp_path, matcher())
    assert rel == "a/b/c.txt"
    assert st.st_size == len("a/b/c.txt")


def test_walk_agrees_with_matcher(tmp_path: Path) -> None:
    """With BuildKit pruning the walk sends exactly the files the matcher keeps."""
    make_tree(tmp_path, TREE)
    every = walked(tmp_path, matcher())
    for lines in (
        ("*", "!src", "src/**/*.pyc"),
        ("**", "!**/*.md"),
        ("build", "!build/*/k.txt", "docs"),
        ("*/", "!sp ace"),
        ("**/__pycache__", "!src/pkg/__pycache__/*.pyc"),
    ):
        m = matcher(*lines)
        assert walked(tmp_path, m) == {p for p in every if not m.excluded(p)}, lines
