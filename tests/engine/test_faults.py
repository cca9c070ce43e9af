"""A fault matrix: bad inputs and real faults across every command, each held to the CLI's
contract (README, cli/app.py):

* the exit code: 0 ok, 1 findings or a failed step (a write that failed), 2 bad input or config
  (nothing changed), 3 a needed tool missing;
* one line ``cleanroom CMD: error: ...`` first on stderr (detail lines only where a case says
  so); ``clean`` reports each path it could not delete in its own documented line; never a
  ``Traceback``;
* the state: where the command must change nothing, every path under the repo (bytes, mode, link
  target), ``git status --porcelain --untracked-files=all`` and ``git ls-files -s`` are as they
  were.

The faults are real: read-only bind mounts, a full tmpfs, an immutable file (``chattr +i``), a
bind mount inside the repo, signals sent to a running process, a corrupted git index, a held
index lock, file names that are not UTF-8, a removed working folder, standard output on
``/dev/full``. Mounts and chattr need root (this machine and CI run as root); elsewhere those
cases are skipped, saying why. One fault is injected rather than found: a slow disk (a
``sitecustomize`` that makes ``os.fsync`` wait), so that a signal lands inside ``select``'s and
``verify --fix``'s write every time rather than by luck.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers import ENGINE_SRC, GENERATED_PB2, ROOT, git, pause_env, set_config

NOT_ROOT = os.geteuid() != 0
NEEDS_ROOT = f"needs root (mount, chattr); this runs as uid {os.geteuid()}"
PKG = "spectralmc_proto"  # the seed cleanroom.toml's [proto] package


# ------------------------------------------------------------------------------ running


@dataclass
class Run:
    rc: int
    raw_out: bytes
    raw_err: bytes

    @property
    def out(self) -> str:
        return self.raw_out.decode("utf-8", "surrogateescape")

    @property
    def err(self) -> str:
        return self.raw_err.decode("utf-8", "surrogateescape")

    @property
    def text(self) -> str:
        return f"rc={self.rc}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


def _env(extra: dict[str, str] | None = None, pythonpath: str = str(ENGINE_SRC)) -> dict[str, str]:
    """The environment a user has, minus settings this machine happens to hold: only what a case
    sets is there (a stray CLEANROOM_* would add a warning line; DOCKER_CONTAINER moves outputs)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLEANROOM_") and k != "DOCKER_CONTAINER"}
    env["PYTHONPATH"] = pythonpath
    env.update(extra or {})
    return env


def crun(*args: str, cwd: Path, env: dict[str, str] | None = None, stdout: int | None = None,
         timeout: float = 180) -> Run:
    """The CLI as a user runs it; output kept as bytes (a file name need not be UTF-8)."""
    p = subprocess.run([sys.executable, "-m", "cleanroom", *args], cwd=cwd, env=_env(env),
                       stdout=stdout if stdout is not None else subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout, check=False)
    return Run(p.returncode, p.stdout or b"", p.stderr)


def no_traceback(r: Run) -> None:
    assert "Traceback" not in r.out and "Traceback" not in r.err, r.text


def assert_error(r: Run, cmd: str | None, rc: int | tuple[int, ...], needles: tuple[str, ...] = (),
                 detail: bool = False) -> str:
    """Exit code ``rc``; stderr's first line is ``cleanroom CMD: error: ...`` holding every needle;
    no other line unless ``detail``; no traceback. Returns the line."""
    rcs = rc if isinstance(rc, tuple) else (rc,)
    assert r.rc in rcs, r.text
    no_traceback(r)
    lines = r.err.splitlines()
    assert lines, f"no error line\n{r.text}"
    prefix = f"cleanroom {cmd}: error: " if cmd else "cleanroom: error: "
    assert lines[0].startswith(prefix), r.text
    if not detail:
        assert len(lines) == 1, f"more than the one error line on stderr\n{r.text}"
    for n in needles:
        assert n in lines[0], f"{n!r} not in the error line {lines[0]!r}"
    return lines[0]


# ------------------------------------------------------------------------------ state


Tree = dict[str, tuple[object, ...]]
State = tuple[Tree, bytes, bytes]


def tree(root: Path) -> Tree:
    """Every path under ``root`` but .git: a file's bytes and mode, a folder, a link's target."""
    out: Tree = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if os.path.samefile(dirpath, root):
            dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in sorted(dirnames + filenames):
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", st.st_mode & 0o7777)
            else:
                out[rel] = ("file", st.st_mode & 0o7777, Path(p).read_bytes())
    return out


def state(repo: Path) -> State:
    """The tree, ``git status --porcelain --untracked-files=all`` and ``git ls-files -s`` (asked
    without taking git's optional locks, so asking changes nothing)."""
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}

    def g(*args: str) -> bytes:
        return subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, check=False).stdout

    return tree(repo), g("status", "--porcelain", "--untracked-files=all"), g("ls-files", "-s")


def commit(repo: Path, msg: str = "change") -> None:
    git(repo, "add", "-A", "-f")
    git(repo, "commit", "-q", "-m", msg, "--allow-empty")


def sh(*argv: str | Path) -> None:
    p = subprocess.run([str(a) for a in argv], capture_output=True, text=True, check=False)
    if p.returncode:
        raise OSError(p.returncode, f"{' '.join(map(str, argv))}: {p.stderr.strip()}")


# ------------------------------------------------------------------------------ building blocks


def write(repo: Path, rel: str, data: str | bytes) -> None:
    p = repo / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        p.write_bytes(data)
    else:
        p.write_text(data)


def append(repo: Path, rel: str, data: bytes) -> None:
    with open(repo / rel, "ab") as fh:
        fh.write(data)


def drop_lines(repo: Path, rel: str, needle: str) -> None:
    p = repo / rel
    p.write_bytes(b"".join(ln for ln in p.read_bytes().splitlines(True) if needle.encode() not in ln))


def add_proto(repo: Path) -> None:
    shutil.copytree(ROOT / "proto", repo / "proto")


LEGACY_PROTO = 'syntax = "proto3";\npackage legacy;\nmessage Thing { int32 n = 1; }\n'


def legacy(repo: Path) -> None:
    """A repo before migrate-proto: proto/thing.proto compiled into pkg/gen (tracked), imported by
    pkg/use.py, no ignore rule for generated code, [proto] legacy_module = "pkg.gen"."""
    write(repo, "proto/thing.proto", LEGACY_PROTO)
    write(repo, "pkg/__init__.py", "")
    write(repo, "pkg/gen/__init__.py", "")
    write(repo, "pkg/use.py", "from pkg.gen import thing_pb2\n\n\ndef make() -> object:\n"
                              "    return thing_pb2.Thing(n=1)\n")
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{repo / 'proto'}",
                    f"--python_out={repo / 'pkg/gen'}", str(repo / "proto/thing.proto")],
                   check=True, capture_output=True)
    drop_lines(repo, ".gitignore", "_pb2")
    set_config(repo, "proto", "legacy_module", "pkg.gen")
    commit(repo, "checked-in generated code")


def gap_in(repo: Path, rel: str, needle: str) -> None:
    """Remove the rule for dist/ from an ignore file (committed): verify --fix has one to add."""
    drop_lines(repo, rel, needle)
    commit(repo, f"no {needle} in {rel}")


@contextlib.contextmanager
def read_only(src: Path, dst: Path) -> Iterator[Path]:
    """``src`` seen read-only at ``dst`` (a bind mount, remounted ro); unmounted in the end."""
    with bind(src, dst):
        sh("mount", "-o", "remount,bind,ro", dst)
        yield dst


@contextlib.contextmanager
def mounted(dst: Path, *mount_args: str | Path, what: str) -> Iterator[Path]:
    """``mount MOUNT_ARGS DST`` (root only; skipped with the reason where it cannot be done),
    unmounted in the end (lazily if busy)."""
    if NOT_ROOT:
        pytest.skip(NEEDS_ROOT)
    dst.mkdir(parents=True, exist_ok=True)
    try:
        sh("mount", *mount_args, dst)
    except OSError as exc:
        pytest.skip(f"cannot {what} here: {exc}")
    try:
        yield dst
    finally:
        try:
            sh("umount", dst)
        except OSError:
            sh("umount", "-l", dst)


def bind(src: Path, dst: Path) -> contextlib.AbstractContextManager[Path]:
    return mounted(dst, "--bind", src, what="bind-mount")


def small_tmpfs(dst: Path, size: str = "64k") -> contextlib.AbstractContextManager[Path]:
    return mounted(dst, "-t", "tmpfs", "-o", f"size={size}", "tmpfs", what="mount a tmpfs")


IMPORT_ALL = r"""
import importlib, sys
sys.setrecursionlimit(20000)  # the benchmark schema's long import chains
from pathlib import Path
d, pkg = Path(sys.argv[1]).resolve(), sys.argv[2]
sys.path.insert(0, str(d))
mods = sorted(".".join(p.relative_to(d).with_suffix("").parts).removesuffix(".__init__")
              for p in (d / pkg).rglob("*.py"))
for m in mods:
    mod = importlib.import_module(m)
    assert str(Path(mod.__file__).resolve()).startswith(str(d)), mod.__file__
print(len(mods))
"""


def importable(out: Path, pkg: str) -> int:
    """Import every module of ``out/pkg`` in a fresh interpreter; the number of modules."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    p = subprocess.run([sys.executable, "-c", IMPORT_ALL, str(out), pkg], cwd=out, env=env,
                       capture_output=True, text=True, timeout=120, check=False)
    assert p.returncode == 0, p.stderr
    return int(p.stdout)


# ------------------------------------------------------------------------------ the matrix


@dataclass(frozen=True)
class Case:
    """One bad input: set the repo up, run ``argv`` (``{repo}``, ``{tmp}`` filled in), expect
    ``rc`` and, with ``cmd``, one error line holding ``needles``. ``out`` must appear on stdout.
    Unless ``changes``, the state must be as it was."""

    argv: tuple[str, ...]
    rc: int | tuple[int, ...]
    cmd: str | None = None
    needles: tuple[str, ...] = ()
    setup: Callable[[Path, Path], object] | None = None
    env: dict[str, str] = field(default_factory=dict)
    detail: bool = False
    out: tuple[str, ...] = ()
    changes: bool = False
    error: bool = True  # False: no error line (the command runs; rc 0/1)


def check_case(case: Case, repo: Path, tmp: Path) -> Run:
    if case.setup is not None:
        case.setup(repo, tmp)

    def fill(s: str) -> str:
        return s.replace("{repo}", str(repo)).replace("{tmp}", str(tmp))

    argv = tuple(fill(a) for a in case.argv)
    before = state(repo)
    r = crun(*argv, cwd=repo, env={k: fill(v) for k, v in case.env.items()})
    if case.error:
        assert_error(r, case.cmd, case.rc, tuple(fill(n) for n in case.needles), detail=case.detail)
    else:
        rcs = case.rc if isinstance(case.rc, tuple) else (case.rc,)
        assert r.rc in rcs, r.text
        no_traceback(r)
        assert "error:" not in r.err, r.text
    for n in case.out:
        assert fill(n) in r.out, f"{fill(n)!r} not on stdout\n{r.text}"
    if not case.changes:
        assert state(repo) == before, f"the command changed the repo\n{r.text}"
    return r


def run_matrix(cases: dict[str, Case]) -> Callable[..., object]:
    """A test over ``cases``, one parameter each, named by its key."""

    @pytest.mark.parametrize("name", list(cases), ids=list(cases))
    def test(name: str, repo: Path, tmp_path: Path) -> None:
        check_case(cases[name], repo, tmp_path)

    return test


# ---------------------------------------------------------------- usage: commands, options, --repo

LONG = "/" + "/".join(["d" * 200] * 25)  # 5000 characters: longer than PATH_MAX (4096)


def _plain_folder(repo: Path, tmp: Path) -> None:
    (tmp / "plain").mkdir()
    (tmp / "a-file").write_text("not a folder\n")


USAGE: dict[str, Case] = {
    "unknown-command": Case(("frobnicate",), 2, None, ("invalid choice: 'frobnicate'",)),
    "no-command": Case((), 2, None, ("required: COMMAND",)),
    "unknown-option-verify": Case(("verify", "--bogus"), 2, "verify", ("unrecognized arguments: --bogus",)),
    "unknown-option-before-command": Case(("--bogus", "clean", "--yes"), 2, "clean", ("--bogus",)),
    "unknown-option-proto": Case(("proto", "--outt", "x"), 2, "proto", ("unrecognized arguments: --outt",)),
    "bad-format-choice": Case(("verify", "--format", "xml"), 2, "verify", ("invalid choice: 'xml'",)),
    "select-without-variant": Case(("select",), 2, "select", ("variant",)),
    "select-nosuchvariant": Case(("select", "nosuchvariant"), 2, "select", ("unknown variant 'nosuchvariant'",)),
    "build-nosuchvariant": Case(("build", "nosuch"), 2, "build", ("invalid choice: 'nosuch'",)),
    "context-build-nosuch": Case(("context", "--build", "nosuch"), 2, "context", ("--build nosuch: no such build",)),
    "context-builder-kaniko": Case(("context", "--builder", "kaniko"), 2, "context", ("invalid choice: 'kaniko'",)),
    "select-index-url-not-a-url": Case(("select", "binary", "--index-url", "not a url"), 2, "select",
                                       ("--index-url 'not a url'",)),
    "select-index-url-ftp": Case(("select", "binary", "--index-url", "ftp://x/simple"), 2, "select",
                                 ("--index-url 'ftp://x/simple'", "http(s)://")),
    "select-index-url-empty": Case(("select", "binary", "--index-url", ""), 2, "select", ("expected a URL",)),
    "select-without-nosuch-group": Case(("select", "binary", "--without", "nosuch"), 2, "select",
                                        ("no dependency group 'nosuch'",)),
    "select-without-required-group": Case(("select", "binary", "--without", "dev"), 2, "select",
                                          ("group 'dev' is not optional",)),
    "select-wheels-no-folder": Case(("select", "binary", "--wheels", "{tmp}/nope"), 2, "select",
                                    ("--wheels {tmp}/nope: no such folder",)),
    "proto-out-empty": Case(("proto", "--out", ""), 2, "proto", ("--out ''",)),
    "verify-out-empty": Case(("verify", "--out", ""), 2, "verify", ("--out ''",)),
    "proto-out-blank": Case(("proto", "--out", "  "), 2, "proto", ("expected a folder",)),
    "proto-check-out-empty": Case(("proto", "--check", "--out", ""), 2, "proto", ("--out ''",)),
    "proto-out-below-a-file": Case(("proto", "--out", "{tmp}/a-file/out"), 2, "proto",
                                   ("cannot write to the output folder {tmp}/a-file/out", "--out DIR"),
                                   setup=lambda r, t: (_plain_folder(r, t), add_proto(r)), detail=True),
    "repo-is-a-file": Case(("--repo", "{tmp}/a-file", "verify"), 2, "verify", ("a-file: not a folder",),
                           setup=_plain_folder),
    "repo-missing": Case(("--repo", "{tmp}/nope", "clean", "--yes"), 2, "clean", ("nope: no such folder",)),
    "repo-not-git-verify": Case(("--repo", "{tmp}/plain", "verify"), 2, "verify",
                                ("plain is not a git repository",), setup=_plain_folder),
    "repo-not-git-verify-json": Case(("--repo", "{tmp}/plain", "verify", "--json"), 2, "verify",
                                     ("not a git repository",), setup=_plain_folder,
                                     out=('"exit_code": 2',)),
    "repo-not-git-clean": Case(("--repo", "{tmp}/plain", "clean", "--yes"), 2, "clean",
                               ("plain is not a git repository",), setup=_plain_folder),
    "repo-not-git-migrate": Case(("--repo", "{tmp}/plain", "migrate-proto", "--apply"), 2, "migrate-proto",
                                 ("plain is not a git repository",), setup=_plain_folder),
    "repo-not-git-context": Case(("--repo", "{tmp}/plain", "context"), 2, "context",
                                 ("not a git repository",), setup=_plain_folder),
    "repo-inside-a-repo": Case(("--repo", "{repo}/docker", "verify"), 2, "verify",
                               ("is inside the git repository {repo}",)),
    "repo-is-the-git-folder": Case(("--repo", "{repo}/.git", "clean"), 2, "clean", ("not a git repository",)),
    "repo-longer-than-path-max-verify": Case(("--repo", LONG, "verify"), 2, "verify", ("File name too long",)),
    "repo-longer-than-path-max-select": Case(("--repo", LONG, "select", "binary"), 2, "select",
                                             ("File name too long",)),
    "config-missing": Case(("--config", "{tmp}/missing.toml", "verify"), 2, "verify",
                           ("{tmp}/missing.toml: config file not found",)),
    "config-is-a-folder": Case(("--config", "{tmp}", "select", "binary"), 2, "select",
                               ("{tmp}: cannot read config",)),
}
test_usage = run_matrix(USAGE)


# ---------------------------------------------------------------- settings (CLEANROOM_*)

SETTINGS: dict[str, Case] = {
    "with-gpu-maybe-build": Case(("build", "binary"), 2, "build", ("CLEANROOM_WITH_GPU='maybe'",),
                                 env={"CLEANROOM_WITH_GPU": "maybe"}),
    "with-gpu-maybe-up": Case(("up",), 2, "up", ("CLEANROOM_WITH_GPU='maybe'",), env={"CLEANROOM_WITH_GPU": "maybe"}),
    "with-gpu-maybe-verify": Case(("verify",), 2, "verify", ("CLEANROOM_WITH_GPU",),
                                  env={"CLEANROOM_WITH_GPU": "maybe"}),
    "with-gpu-maybe-doctor": Case(("doctor",), 2, "doctor", ("CLEANROOM_WITH_GPU",),
                                  env={"CLEANROOM_WITH_GPU": "maybe"}),
    "index-url-newline": Case(("select", "binary"), 2, "select", ("CLEANROOM_INDEX_URL='x\\ny'", "whitespace"),
                              env={"CLEANROOM_INDEX_URL": "x\ny"}),
    "index-url-ftp": Case(("select", "binary"), 2, "select", ("CLEANROOM_INDEX_URL='ftp://x'",),
                          env={"CLEANROOM_INDEX_URL": "ftp://x"}),
    "builder-kaniko": Case(("context",), 2, "context", ("CLEANROOM_BUILDER='kaniko'", "buildkit or classic"),
                           env={"CLEANROOM_BUILDER": "kaniko"}),
    "builder-kaniko-build": Case(("build", "binary"), 2, "build", ("CLEANROOM_BUILDER",),
                                 env={"CLEANROOM_BUILDER": "kaniko"}),
    "base-image-space": Case(("build", "binary"), 2, "build", ("CLEANROOM_BASE_IMAGE='a b'",),
                             env={"CLEANROOM_BASE_IMAGE": "a b"}),
    "native-from-source-injection": Case(("build", "source"), 2, "build",
                                         ("CLEANROOM_NATIVE_FROM_SOURCE='torch;rm -rf /'",),
                                         env={"CLEANROOM_NATIVE_FROM_SOURCE": "torch;rm -rf /"}),
    "test-log-newline": Case(("test-all",), 2, "test-all", ("CLEANROOM_TEST_LOG",),
                             env={"CLEANROOM_TEST_LOG": "/tmp/a\nb"}),
    "with-gpu-maybe-down": Case(("down",), 2, "down", ("CLEANROOM_WITH_GPU",), env={"CLEANROOM_WITH_GPU": "maybe"}),
}


@pytest.mark.parametrize("name", list(SETTINGS), ids=list(SETTINGS))
def test_settings_refused_before_anything_runs(name: str, repo: Path, tmp_path: Path) -> None:
    r = check_case(SETTINGS[name], repo, tmp_path)
    assert r.out == "", r.text  # no stage announced, nothing printed before the refusal
    assert not (repo / ".cleanroom").exists()


@pytest.mark.parametrize("value", ["YES", "1", "off", "True", "ON", ""], ids=lambda v: f"with-gpu={v!r}")
def test_with_gpu_accepts_its_yes_and_no_values(value: str, repo: Path) -> None:
    r = crun("select", "binary", "--dry-run", cwd=repo, env={"CLEANROOM_WITH_GPU": value})
    assert r.rc == 0, r.text
    assert "CLEANROOM_WITH_GPU" not in r.err and "error" not in r.err, r.text
    assert not (repo / "pyproject.toml").exists()


# ---------------------------------------------------------------- config (cleanroom.toml)

BAD_CONFIGS: dict[str, tuple[str | bytes, str]] = {
    "unknown-key": ("[proto]\nbogus = 1\n", "unknown key 'proto.bogus'"),
    "unknown-section": ("[nope]\nx = 1\n", "unknown section '[nope]'"),
    "wrong-type": ("[proto]\nsources = 3\n", "proto.sources: expected a string, got 3"),
    "wrong-type-bool": ('[variants]\nenabled = "yes"\n', "variants.enabled: expected true or false"),
    "wrong-type-list": ("[docker]\ncompose = 3\n", "docker.compose: expected a list"),
    "section-not-a-table": ("proto = 1\n", "'proto' must be a table"),
    "malformed-toml": ('[proto\nsources = "x"\n', "not valid TOML"),
    "control-character": ('[proto]\npackage = "a\\u0007b"\n', "proto.package: 'a\\x07b' holds a control character"),
    "newline-in-a-list": ('[artifacts]\nextra = ["a\\nb"]\n', "artifacts.extra[0]"),
    "drop-not-a-pattern": ('[artifacts]\ndrop = ["nope"]\n', "artifacts.drop[0]: 'nope' is not a pattern"),
    "negated-pattern": ('[artifacts]\nextra = ["!keep.lock"]\n', "'!keep.lock' is not an artifact pattern"),
    "root-as-pattern": ('[artifacts]\nextra = ["/"]\n', "'/' is not an artifact pattern"),
    "builds-empty-dockerfile": ('[[docker.builds]]\ndockerfile = ""\n', "docker.builds[0].dockerfile"),
    "builds-without-dockerfile": ('[[docker.builds]]\ncontext = "."\n',
                                  "docker.builds[0]: missing required key 'dockerfile'"),
    "builds-not-tables": ('[docker]\nbuilds = ["Dockerfile"]\n', "docker.builds[0]: expected a table"),
    "allow-without-reason": ('[[artifacts.allow]]\npath = "x.lock"\n',
                             "artifacts.allow[0]: missing required key 'reason'"),
    "not-utf8": (b'[proto]\nsources = "\xff"\n', "cannot read config"),
    "variants-target-outside": ('[variants]\ntarget = "../outside.toml"\n',
                                "variants.target: '../outside.toml' is not a path inside the repo"),
    "variants-target-absolute": ('[variants]\ntarget = "/tmp/pyproject.toml"\n',
                                 "variants.target: '/tmp/pyproject.toml' is not a path inside the repo"),
}


@pytest.mark.parametrize("name", list(BAD_CONFIGS), ids=list(BAD_CONFIGS))
def test_bad_config_names_file_and_key(name: str, repo: Path, tmp_path: Path) -> None:
    text, needle = BAD_CONFIGS[name]
    write(repo, "cleanroom.toml", text)
    commit(repo, "bad config")
    before = state(repo)
    r = crun("verify", cwd=repo)
    assert_error(r, "verify", 2, (f"{repo}/cleanroom.toml: ", needle))
    assert state(repo) == before
    # the same file given with --config, from outside the repo
    other = tmp_path / "elsewhere.toml"
    other.write_bytes(text if isinstance(text, bytes) else text.encode())
    r = crun("--config", str(other), "verify", cwd=repo)
    assert_error(r, "verify", 2, (f"{other}: ", needle))
    assert state(repo) == before


def test_select_never_writes_outside_the_repo(repo: Path) -> None:
    set_config(repo, "variants", "target", "../outside.toml")
    before = state(repo)
    r = crun("select", "binary", cwd=repo)
    assert_error(r, "select", 2, ("variants.target: '../outside.toml'",))
    assert not (repo.parent / "outside.toml").exists()
    assert state(repo) == before


# One bad config, every command: each refuses it (exit 2) before doing anything, Docker or not.
COMMANDS = {
    "select": ("select", "binary"), "select-dry-run": ("select", "source", "--dry-run"),
    "verify": ("verify",), "verify-fix": ("verify", "--fix"), "verify-json": ("verify", "--json"),
    "context": ("context",), "context-json": ("context", "--json"), "proto": ("proto",),
    "proto-check": ("proto", "--check"), "migrate-proto": ("migrate-proto",),
    "migrate-proto-apply": ("migrate-proto", "--apply"), "clean": ("clean",), "clean-yes": ("clean", "--yes"),
    "build": ("build", "binary"), "up": ("up",), "down": ("down",), "test-all": ("test-all",),
    "shell": ("shell",),
}


@pytest.mark.parametrize("name", list(COMMANDS), ids=list(COMMANDS))
def test_bad_config_refused_by_every_command(name: str, repo: Path) -> None:
    add_proto(repo)
    (repo / "pkg/__pycache__").mkdir(parents=True)
    (repo / "pkg/__pycache__/m.pyc").write_bytes(b"\0")
    write(repo, "cleanroom.toml", "[proto]\nbogus = 1\n")
    before = state(repo)
    argv = COMMANDS[name]
    r = crun(*argv, cwd=repo)
    assert_error(r, argv[0], 2, (f"{repo}/cleanroom.toml: unknown key 'proto.bogus'",))
    if "--json" in argv:
        assert json.loads(r.out)["exit_code"] == 2
    else:
        assert r.out == "", r.text
    assert state(repo) == before


# ---------------------------------------------------------------- input files


def _proto_with(files: dict[str, str | bytes]) -> Callable[[Path, Path], None]:
    def setup(repo: Path, tmp: Path) -> None:
        add_proto(repo)
        for rel, data in files.items():
            write(repo, rel, data)

    return setup


def _symlink(rel: str, target: str, base: Callable[[Path, Path], None] | None = None) -> Callable[[Path, Path], None]:
    def setup(repo: Path, tmp: Path) -> None:
        if base is not None:
            base(repo, tmp)
        os.symlink(target, repo / rel)

    return setup


def _then(*steps: Callable[[Path], object]) -> Callable[[Path, Path], None]:
    def setup(repo: Path, tmp: Path) -> None:
        for s in steps:
            s(repo)

    return setup


def _gitignore_not_utf8(repo: Path) -> None:
    append(repo, ".gitignore", b"# caf\xe9 (latin-1)\n")
    gap_in(repo, ".gitignore", "dist/")


def _gitignore_folder(repo: Path) -> None:
    (repo / ".gitignore").unlink()
    write(repo, ".gitignore/README.txt", "a folder named .gitignore\n")


def _dockerignore_not_utf8(repo: Path) -> None:
    append(repo, ".dockerignore", b"# caf\xe9 (latin-1)\n")
    gap_in(repo, ".dockerignore", "dist")


def _hand_edit(repo: Path) -> None:
    write(repo, "pyproject.toml", "[project]\nname = 'mine'\n")


COMPOSE_NOT_UTF8 = b"services:\n  app:\n    build: caf\xe9\n"
BAD_PROTO = b'syntax = "proto3";\nmessage \xff { int32 n = 1; }\n'

INPUTS: dict[str, Case] = {
    # compose files
    "compose-not-utf8-verify": Case(("verify",), 2, "verify", ("docker/docker-compose.yml: not valid UTF-8",),
                                    setup=_then(lambda r: write(r, "docker/docker-compose.yml", COMPOSE_NOT_UTF8))),
    "compose-not-utf8-context": Case(("context",), 2, "context", ("docker-compose.yml: not valid UTF-8",),
                                     setup=_then(lambda r: write(r, "docker/docker-compose.yml", COMPOSE_NOT_UTF8))),
    "compose-not-utf8-verify-fix": Case(("verify", "--fix"), 2, "verify", ("not valid UTF-8",),
                                        setup=_then(lambda r: write(r, "docker/docker-compose.yml",
                                                                    COMPOSE_NOT_UTF8))),
    "compose-not-yaml": Case(("verify",), 2, "verify", ("docker-compose.yml", "not valid YAML"),
                             setup=_then(lambda r: write(r, "docker/docker-compose.yml", "services: [\n"))),
    "compose-top-level-list": Case(("verify",), 2, "verify", ("expected a mapping at the top level",),
                                   setup=_then(lambda r: write(r, "docker/docker-compose.yml", "- a\n"))),
    "compose-dockerfile-with-nul": Case(("verify",), 0, error=False, out=("Docker\x00file does not exist",),
                                        setup=_then(lambda r: write(r, "docker/docker-compose.yml",
                                                                    'services:\n  app:\n    build:\n      context: ..\n'
                                                                    '      dockerfile: "docker/Docker\\0file"\n'))),
    "compose-services-a-list": Case(("context",), 2, "context", ("'services' must be a mapping",),
                                    setup=_then(lambda r: write(r, "docker/docker-compose.yml", "services: [a]\n"))),
    # the config and the variants
    "config-not-utf8-select": Case(("select", "binary"), 2, "select", ("cleanroom.toml: cannot read config",),
                                   setup=_then(lambda r: append(r, "cleanroom.toml", b"# \xff\n"))),
    "variant-not-utf8-select": Case(("select", "binary"), 2, "select", ("pyproject.binary.toml: cannot read",),
                                    setup=_then(lambda r: append(r, "pyproject.binary.toml", b"# \xff\n"))),
    "variant-not-utf8-verify": Case(("verify",), 2, "verify", ("pyproject.binary.toml: cannot read",),
                                    setup=_then(lambda r: append(r, "pyproject.binary.toml", b"# \xff\n"))),
    "variant-not-toml-select": Case(("select", "source"), 2, "select", ("pyproject.source.toml:", "not valid TOML"),
                                    setup=_then(lambda r: append(r, "pyproject.source.toml", b"[[[\n"))),
    "variant-not-toml-verify": Case(("verify",), 2, "verify", ("pyproject.source.toml", "not valid TOML"),
                                    setup=_then(lambda r: append(r, "pyproject.source.toml", b"[[[\n"))),
    "variant-missing-select": Case(("select", "source"), 2, "select", ("pyproject.source.toml: file not found",),
                                   setup=_then(lambda r: (r / "pyproject.source.toml").unlink())),
    "pyproject-hand-edited": Case(("select", "binary"), 2, "select", ("edited by hand", "--force"),
                                  setup=_then(_hand_edit), detail=True),
    "pyproject-is-a-folder": Case(("select", "binary"), 2, "select", ("pyproject.toml: exists and is not a regular",),
                                  setup=_then(lambda r: write(r, "pyproject.toml/x", "x"))),
    "pyproject-is-a-link": Case(("select", "binary", "--force"), 2, "select", ("not a regular file",),
                                setup=_symlink("pyproject.toml", "pyproject.binary.toml")),
    # ignore files
    "gitignore-not-utf8-verify-fix": Case(("verify", "--fix"), 2, "verify",
                                          (".gitignore: not valid UTF-8", "fix its encoding"),
                                          setup=_then(_gitignore_not_utf8)),
    "gitignore-not-utf8-verify": Case(("verify",), 1, error=False, out=("gitignore-gap",),
                                      setup=_then(_gitignore_not_utf8)),
    "gitignore-not-utf8-migrate-apply": Case(("migrate-proto", "--apply"), 2, "migrate-proto",
                                             (".gitignore: not valid UTF-8",),
                                             setup=_then(legacy, lambda r: append(r, ".gitignore", b"# \xff\n"),
                                                         lambda r: commit(r, "latin-1"))),
    "gitignore-a-folder-verify-fix": Case(("verify", "--fix"), 2, "verify", (".gitignore: cannot read",),
                                          setup=_then(_gitignore_folder)),
    "gitignore-a-folder-verify": Case(("verify",), (0, 1), error=False, setup=_then(_gitignore_folder)),
    "dockerignore-not-utf8-verify": Case(("verify",), 1, error=False, out=("dockerignore-gap",),
                                         setup=_then(_dockerignore_not_utf8)),
    "dockerignore-not-utf8-verify-fix": Case(("verify", "--fix"), 1, error=False,
                                             out=(".dockerignore: not written: cannot read it",),
                                             setup=_then(_dockerignore_not_utf8)),
    "dockerignore-not-utf8-context": Case(("context",), 0, error=False, out=("docker/Dockerfile",),
                                          setup=_then(_dockerignore_not_utf8)),
    "dockerignore-bad-pattern-verify": Case(("verify",), 2, "verify", (".dockerignore:", "bad pattern"),
                                            setup=_then(lambda r: append(r, ".dockerignore", b"[z-a]\n")),
                                            detail=True),
    "dockerignore-bad-pattern-context": Case(("context",), 2, error=False,
                                             out=("# build 'app': error: {repo}/.dockerignore:", "bad pattern"),
                                             setup=_then(lambda r: append(r, ".dockerignore", b"[z-a]\n"))),
    # Dockerfiles: what cannot be read is said, not crashed on
    "dockerfile-not-utf8-verify": Case(("verify",), (0, 1), error=False,
                                       out=("note: docker/Dockerfile: not valid UTF-8", "what it copies is not checked"),
                                       setup=_then(lambda r: write(r, "docker/Dockerfile",
                                                                   b"FROM scratch\nCOPY caf\xe9 /ctx/\n"))),
    "dockerfile-not-utf8-verify-json": Case(("verify", "--json"), (0, 1), error=False,
                                            out=('"docker/Dockerfile: not valid UTF-8',),
                                            setup=_then(lambda r: write(r, "docker/Dockerfile",
                                                                        b"FROM scratch\nCOPY caf\xe9 /ctx/\n"))),
    "dockerfile-unparsable-verify": Case(("verify",), (0, 1), error=False, out=("docker/Dockerfile",),
                                         setup=_then(lambda r: write(r, "docker/Dockerfile",
                                                                     "FROM scratch\nCOPY <<EOF /x\nnever closed\n"))),
    # protobuf sources
    "proto-dangling-symlink": Case(("proto", "--out", "{tmp}/out"), 2, "proto",
                                   ("proto/gone.proto", "a dangling symlink"),
                                   setup=_symlink("proto/gone.proto", "nowhere.proto", _proto_with({}))),
    "proto-symlink-loop": Case(("proto", "--out", "{tmp}/out"), 2, "proto", ("proto/loop.proto", "a symlink loop"),
                               setup=_symlink("proto/loop.proto", "loop.proto", _proto_with({}))),
    "proto-check-dangling-symlink": Case(("proto", "--check", "--out", "{tmp}/out"), 2, "proto",
                                         ("proto/gone.proto", "dangling"),
                                         setup=_symlink("proto/gone.proto", "nowhere.proto", _proto_with({}))),
    "proto-keyword-folder": Case(("proto", "--out", "{tmp}/out"), 2, "proto",
                                 ("proto/class/x.proto", "'class' is a Python keyword", "could not be imported"),
                                 setup=_proto_with({"proto/class/x.proto": LEGACY_PROTO})),
    "proto-folder-with-space": Case(("proto", "--out", "{tmp}/out"), 2, "proto",
                                    ("proto/my dir/x.proto", "'my dir' is not a Python identifier"),
                                    setup=_proto_with({"proto/my dir/x.proto": LEGACY_PROTO})),
    "proto-file-starts-with-digit": Case(("proto", "--out", "{tmp}/out"), 2, "proto",
                                         ("proto/1x.proto", "'1x_pb2' is not a Python identifier"),
                                         setup=_proto_with({"proto/1x.proto": LEGACY_PROTO})),
    "proto-two-files-one-module": Case(("proto", "--out", "{tmp}/out"), 2, "proto",
                                       ("proto/x-1/y.proto and proto/x_1/y.proto", "'x_1.y_pb2'"),
                                       setup=_proto_with({"proto/x-1/y.proto": LEGACY_PROTO,
                                                          "proto/x_1/y.proto": LEGACY_PROTO.replace("legacy", "l2")})),
    "proto-dotted-file-clashes-with-folder": Case(("proto", "--out", "{tmp}/out"), 2, "proto",
                                                  ("proto/a.b.proto and proto/a/b.proto", "'a.b_pb2'"),
                                                  setup=_proto_with({"proto/a/b.proto": LEGACY_PROTO,
                                                                     "proto/a.b.proto": LEGACY_PROTO.replace("legacy", "l2")})),
    "proto-package-keyword": Case(("proto", "--out", "{tmp}/out"), 2, "proto",
                                  ("[proto] package 'class' is a Python keyword",),
                                  setup=lambda r, t: (add_proto(r), set_config(r, "proto", "package", "class"))),
    "proto-package-keyword-migrate": Case(("migrate-proto",), 2, "migrate-proto",
                                          ("[proto] package 'class' is a Python keyword",),
                                          setup=lambda r, t: (legacy(r), set_config(r, "proto", "package", "class"))),
    "proto-package-not-identifier": Case(("proto", "--out", "{tmp}/out"), 2, "proto",
                                         ("[proto] package 'my-pkg' is not a Python identifier",),
                                         setup=lambda r, t: (add_proto(r), set_config(r, "proto", "package", "my-pkg"))),
    "proto-package-folder-is-a-link": Case(("proto", "--out", "{tmp}/out"), 2, "proto",
                                           ("{tmp}/out/spectralmc_proto is a symbolic link", "remove the link"),
                                           setup=lambda r, t: (add_proto(r), (t / "elsewhere").mkdir(),
                                                               (t / "out").mkdir(),
                                                               os.symlink(t / "elsewhere", t / "out" / PKG))),
    "proto-not-utf8": Case(("proto", "--out", "{tmp}/out"), 2, "proto", ("protoc failed", "nothing was replaced"),
                           setup=_proto_with({"proto/bad.proto": BAD_PROTO}), detail=True),
    "proto-sources-missing": Case(("proto", "--out", "{tmp}/out"), 2, "proto", ("proto sources folder proto not found",)),
    "proto-no-protos": Case(("proto", "--out", "{tmp}/out"), 2, "proto", ("no .proto files under proto",),
                            setup=_then(lambda r: write(r, "proto/README", "none yet\n"))),
}
test_input_files = run_matrix(INPUTS)


def test_hyphen_in_a_proto_folder_becomes_an_underscore(repo: Path, tmp_path: Path) -> None:
    """`proto/x-1/y.proto`: protoc's module name is x_1.y_pb2 (folders too): generated and
    importable under that name, not refused."""
    add_proto(repo)
    write(repo, "proto/x-1/y.proto", 'syntax = "proto3";\npackage hy;\nmessage Y { int32 n = 1; }\n')
    out = tmp_path / "out"
    r = crun("proto", "--out", str(out), cwd=repo)
    assert r.rc == 0, r.text
    assert (out / PKG / "x_1" / "y_pb2.py").is_file()
    assert importable(out, PKG) > 4


def test_a_leftover_temporary_link_is_removed_as_a_link(repo: Path, tmp_path: Path) -> None:
    """A link where proto keeps its temporary tree (left by a run that swapped a linked package
    folder out): removed as a link, what it points to untouched, the run not stuck on it."""
    add_proto(repo)
    elsewhere = tmp_path / "elsewhere"
    write(elsewhere, "mine.txt", "keep\n")
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(elsewhere, out / f".{PKG}.tmp")
    r = crun("proto", "--out", str(out), cwd=repo)
    assert r.rc == 0, r.text
    assert sorted(os.listdir(out)) == [f".{PKG}.lock", PKG]
    assert (elsewhere / "mine.txt").read_text() == "keep\n"
    assert importable(out, PKG) > 4


# ---------------------------------------------------------------- file names that are not UTF-8

ODD = os.fsdecode(b"x\xff_pb2.py")  # a tracked artifact whose name is not UTF-8


def _odd_names(repo: Path) -> None:
    (repo / ODD).write_text(GENERATED_PB2)
    git(repo, "add", "-f", "--", ODD)
    git(repo, "commit", "-q", "-m", "a generated file with a latin-1 name")


def test_json_stays_utf8_with_a_name_that_is_not(repo: Path) -> None:
    _odd_names(repo)
    before = state(repo)
    r = crun("verify", "--json", cwd=repo)
    assert r.rc == 1, r.text
    no_traceback(r)
    doc = json.loads(r.raw_out.decode("utf-8"))  # strictly: a JSON reader gets UTF-8
    paths = [f["path"] for f in doc["findings"] if f["rule"] == "tracked-artifact"]
    assert paths == ["x\\xff_pb2.py"], paths  # the byte escaped, visibly
    assert state(repo) == before


@pytest.mark.parametrize("fmt", ["text", "concise", "github"])
def test_other_formats_name_the_file_as_its_bytes(repo: Path, fmt: str) -> None:
    _odd_names(repo)
    before = state(repo)
    r = crun("verify", "--format", fmt, cwd=repo)
    assert r.rc == 1, r.text
    no_traceback(r)
    assert b"x\xff_pb2.py" in r.raw_out  # the name a shell can paste back
    assert state(repo) == before


def test_context_json_stays_utf8_with_a_name_that_is_not(repo: Path) -> None:
    (repo / os.fsdecode(b"data\xff.txt")).write_text("data\n")
    r = crun("context", "--json", cwd=repo)
    assert r.rc == 0, r.text
    doc = json.loads(r.raw_out.decode("utf-8"))
    assert any("data\\xff.txt" in f["path"] for b in doc["builds"] for f in b["files"]), doc


def test_clean_deletes_an_artifact_whose_name_is_not_utf8(repo: Path) -> None:
    name = os.fsdecode(b"caf\xe9.pyc")
    (repo / name).write_bytes(b"\0")
    r = crun("clean", "--yes", cwd=repo)
    assert r.rc == 0, r.text
    no_traceback(r)
    assert not (repo / name).exists()


# ---------------------------------------------------------------- read-only repo and output

@dataclass(frozen=True)
class RO:
    argv: tuple[str, ...]
    rc: int | tuple[int, ...]
    cmd: str
    needles: tuple[str, ...]
    setup: Callable[[Path], object] | None = None
    detail: bool = False


READ_ONLY: dict[str, RO] = {
    "select-binary": RO(("select", "binary"), 1, "select",
                        ("cannot write {ro}/pyproject.toml: Read-only file system",)),
    "select-force-over-hand-edit": RO(("select", "binary", "--force"), 1, "select",
                                      ("cannot write {ro}/pyproject.toml: Read-only file system",),
                                      setup=_hand_edit),
    "verify-fix-gitignore": RO(("verify", "--fix"), 1, "verify",
                               ("cannot write {ro}/.gitignore: Read-only file system",),
                               setup=lambda r: gap_in(r, ".gitignore", "dist/")),
    "verify-fix-dockerignore": RO(("verify", "--fix"), 1, "verify",
                                  ("cannot write {ro}/.dockerignore: Read-only file system",),
                                  setup=lambda r: gap_in(r, ".dockerignore", "dist")),
    "migrate-proto-apply": RO(("migrate-proto", "--apply"), 1, "migrate-proto",
                              ("cannot write {ro}/.git/", "Read-only file system", "nothing was changed"),
                              setup=legacy),
    "proto-default-out": RO(("proto",), 2, "proto",
                            ("cannot write to the output folder {ro}/.cleanroom/proto (Read-only file system)",),
                            setup=add_proto, detail=True),
}


@pytest.mark.parametrize("name", list(READ_ONLY), ids=list(READ_ONLY))
def test_read_only_repo(name: str, repo: Path, tmp_path: Path) -> None:
    case = READ_ONLY[name]
    if case.setup is not None:
        case.setup(repo)
    before = state(repo)
    with read_only(repo, tmp_path / "ro") as ro:
        r = crun(*case.argv, cwd=ro)
    assert_error(r, case.cmd, case.rc, tuple(n.replace("{ro}", str(ro)) for n in case.needles),
                 detail=case.detail)
    assert ".tmp" not in r.err  # the file it was to write is named, not a temporary one
    assert state(repo) == before  # nothing half-written, no temporary file left


def test_read_only_repo_clean_says_each_path(repo: Path, tmp_path: Path) -> None:
    for rel in ("pkg/__pycache__/m.pyc", "pkg/__pycache__/n.pyc", "dist/x.whl"):
        write(repo, rel, b"\0")
    before = state(repo)
    with read_only(repo, tmp_path / "ro") as ro:
        r = crun("clean", "--yes", cwd=ro)
    assert r.rc == 1, r.text
    no_traceback(r)
    assert r.err == ""
    failed = [ln for ln in r.out.splitlines() if ln.startswith("clean: could not delete")]
    assert sorted(failed) == sorted([
        "clean: could not delete dist/x.whl: Read-only file system",
        "clean: could not delete pkg/__pycache__/m.pyc: Read-only file system",
        "clean: could not delete pkg/__pycache__/n.pyc: Read-only file system",
    ]), r.out
    assert r.out.startswith("clean: deleted: 0 of 2 artifact(s)"), r.out
    assert state(repo) == before


@pytest.mark.parametrize("command", [("verify",), ("context",), ("select", "binary", "--dry-run"),
                                     ("verify", "--fix", "--dry-run"), ("clean",), ("migrate-proto",),
                                     ("proto", "--check")], ids=" ".join)
def test_read_only_repo_can_still_be_checked(command: tuple[str, ...], repo: Path, tmp_path: Path) -> None:
    legacy(repo)
    before = state(repo)
    with read_only(repo, tmp_path / "ro") as ro:
        r = crun(*command, cwd=ro)
    assert r.rc in (0, 1), r.text
    no_traceback(r)
    assert "error" not in r.err, r.text
    assert state(repo) == before


def test_proto_into_a_read_only_folder(repo: Path, tmp_path: Path) -> None:
    add_proto(repo)
    empty = tmp_path / "empty"
    empty.mkdir()
    before = state(repo)
    with read_only(empty, tmp_path / "ro-out") as ro:
        r = crun("proto", "--out", str(ro), cwd=repo)
    assert_error(r, "proto", 2, (f"cannot write to the output folder {ro} (Read-only file system)",), detail=True)
    assert list(empty.iterdir()) == []
    assert state(repo) == before


def test_proto_into_a_read_only_folder_keeps_the_previous_output(repo: Path, tmp_path: Path) -> None:
    add_proto(repo)
    out = tmp_path / "out"
    assert crun("proto", "--out", str(out), cwd=repo).rc == 0
    src = repo / "proto" / "common.proto"
    src.write_text(src.read_text() + "\nmessage Later { int32 n = 1; }\n")  # stale now
    previous = tree(out)
    with read_only(out, tmp_path / "ro-out") as ro:
        r = crun("proto", "--out", str(ro), cwd=repo)
        assert_error(r, "proto", 2, (f"cannot write to the output folder {ro}", "Read-only file system"),
                     detail=True)
    assert tree(out) == previous
    assert importable(out, PKG) > 4


# ---------------------------------------------------------------- a full disk

def test_proto_into_a_full_tmpfs(tmp_path: Path) -> None:
    r_ = _bench_repo(tmp_path / "big", 40)
    with small_tmpfs(tmp_path / "full") as d:
        r = crun("proto", "--out", str(d), cwd=r_)
        line = assert_error(r, "proto", (1, 2), (str(d),), detail=True)
        assert "No space left on device" in line, r.text
        left = sorted(os.listdir(d))
        assert left in ([], [".big_proto.lock"]), left  # no package, no temporary tree


def test_proto_into_a_full_tmpfs_keeps_the_previous_output(tmp_path: Path) -> None:
    r_ = tmp_path / "big"
    write(r_, "proto/m0.proto", 'syntax = "proto3";\npackage bench.m0;\nmessage M0 { int32 n = 1; }\n')
    with small_tmpfs(tmp_path / "full") as d:
        assert crun("proto", "--out", str(d), cwd=r_).rc == 0
        previous = tree(d / "big_proto")
        shutil.rmtree(r_ / "proto")
        _bench_tree(r_ / "proto", 40)
        r = crun("proto", "--out", str(d), cwd=r_)
        line = assert_error(r, "proto", (1, 2), (str(d),), detail=True)
        assert "No space left on device" in line, r.text
        assert tree(d / "big_proto") == previous  # the previous output intact
        assert sorted(os.listdir(d)) == [".big_proto.lock", "big_proto"]  # no temporary tree
        assert importable(d, "big_proto") == 2


# ---------------------------------------------------------------- clean: what it must not delete

def _named_like_ignore_files(repo: Path) -> dict[str, bytes]:
    keep = {"notes/team.dockerignore/README.txt": b"x\n", "notes/.gitignore/README.txt": b"y\n",
            "notes/.dockerignore/README.txt": b"z\n"}
    for rel, data in keep.items():
        write(repo, rel, data)
    write(repo, "pkg/__pycache__/m.pyc", b"\0")
    return keep


@pytest.mark.parametrize("command", [("clean", "--yes"), ("clean",), ("verify",), ("verify", "--fix"),
                                     ("context",)], ids=" ".join)
def test_folders_named_like_ignore_files(command: tuple[str, ...], repo: Path) -> None:
    keep = _named_like_ignore_files(repo)
    before = state(repo)
    r = crun(*command, cwd=repo)
    assert r.rc == 0, r.text
    no_traceback(r)
    for rel, data in keep.items():
        assert (repo / rel).read_bytes() == data, rel
    if command == ("clean", "--yes"):
        assert not (repo / "pkg/__pycache__").exists()
    else:
        assert state(repo) == before


@pytest.mark.parametrize("target", ["build", "pkg/__pycache__"])
def test_clean_skips_a_mount_point(target: str, repo: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    write(outside, "keep.txt", b"outside the repo\n")
    write(outside, "x.pyc", b"\0")
    write(repo, "dist/x.whl", b"w")
    (repo / target).mkdir(parents=True)
    was = tree(outside)
    with bind(outside, repo / target):
        r = crun("clean", "--yes", cwd=repo)
        assert r.rc == 0, r.text
        no_traceback(r)
        assert f"kept {target}/: a mount point: skipped" in r.out, r.out
    assert tree(outside) == was and len(was) == 2
    assert not (repo / "dist").exists()  # the rest was done


def test_clean_reports_an_immutable_file_and_deletes_the_rest(repo: Path) -> None:
    if NOT_ROOT:
        pytest.skip(NEEDS_ROOT)
    for rel in ("pkg/__pycache__/m.pyc", "pkg/__pycache__/k.pyc", "other/__pycache__/n.pyc", "dist/x.whl",
                "poetry.lock"):
        write(repo, rel, b"\0")
    stuck = repo / "pkg/__pycache__/m.pyc"
    if subprocess.run(["chattr", "+i", str(stuck)], capture_output=True, check=False).returncode:
        pytest.skip("chattr +i is not supported here")
    try:
        r = crun("clean", "--yes", cwd=repo)
    finally:
        subprocess.run(["chattr", "-i", str(stuck)], check=False)
    assert r.rc == 1, r.text
    no_traceback(r)
    failed = [ln for ln in r.out.splitlines() if ln.startswith("clean: could not delete")]
    assert failed == ["clean: could not delete pkg/__pycache__/m.pyc: Operation not permitted"], r.out
    assert "clean: 1 path(s) could not be deleted; the rest were" in r.out
    assert stuck.exists()
    for gone in ("pkg/__pycache__/k.pyc", "other/__pycache__", "dist", "poetry.lock"):
        assert not (repo / gone).exists(), gone


# ---------------------------------------------------------------- signals

def _bench_tree(src: Path, n: int) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from bench_proto import make_tree
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    make_tree(src, n)


def _bench_repo(r: Path, n: int) -> Path:
    _bench_tree(r / "proto", n)
    return r


def _popen(args: list[str], cwd: Path, env: dict[str, str] | None = None,
           pythonpath: str = str(ENGINE_SRC)) -> subprocess.Popen[bytes]:
    def default_sigint() -> None:  # a shell may have started pytest with SIGINT ignored
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    return subprocess.Popen([sys.executable, "-m", "cleanroom", *args], cwd=cwd, env=_env(env, pythonpath),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=default_sigint)


def _wait_for(p: subprocess.Popen[bytes], needle: str, timeout: float = 90) -> str:
    """Read the process's stderr until a line holds ``needle``."""
    assert p.stderr is not None
    seen = ""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        ready, _, _ = select.select([p.stderr], [], [], 0.1)
        if ready:
            line = p.stderr.readline().decode(errors="replace")
            seen += line
            if needle in line:
                return seen
            if not line and p.poll() is not None:
                break
    p.kill()
    raise AssertionError(f"never saw {needle!r}; stderr so far: {seen}")


def _finish(p: subprocess.Popen[bytes]) -> Run:
    out, err = p.communicate(timeout=60)
    return Run(p.returncode, out, err)


@pytest.fixture(scope="module")
def big_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 150-file schema (the benchmark's) and its generated package, made once."""
    base = tmp_path_factory.mktemp("big")
    r = _bench_repo(base / "big", 150)
    out = base / "out"
    done = crun("proto", "--out", str(out), cwd=r)
    assert done.rc == 0, done.text
    return r, out


PROTO_SIGNALS = {
    "sigkill-at-protoc": ("protoc", signal.SIGKILL, -signal.SIGKILL, "old"),
    "sigkill-at-rewrite": ("rewrite", signal.SIGKILL, -signal.SIGKILL, "old"),
    "sigint-at-staged": ("staged", signal.SIGINT, 130, "old"),
    "sigint-at-protoc": ("protoc", signal.SIGINT, 130, "old"),
    "sigterm-at-rewrite": ("rewrite", signal.SIGTERM, 143, "old"),
    "sigterm-after-the-swap": ("swap", signal.SIGTERM, 143, "new"),
}


@pytest.mark.parametrize("name", list(PROTO_SIGNALS), ids=list(PROTO_SIGNALS))
def test_proto_signalled_mid_run(name: str, big_template: tuple[Path, Path], tmp_path: Path) -> None:
    stage, sig, rc, expect = PROTO_SIGNALS[name]
    r = tmp_path / "big"
    shutil.copytree(big_template[0], r)
    out = tmp_path / "out"
    shutil.copytree(big_template[1], out, symlinks=True)
    pkg = "big_proto"
    previous = tree(out / pkg)
    m0 = r / "proto" / "m0.proto"
    m0.write_text(m0.read_text() + "\nmessage Later { int32 n = 1; }\n")
    p = _popen(["proto", "--out", str(out)], r, pause_env(stage), pythonpath=pause_env(stage)["PYTHONPATH"])
    try:
        _wait_for(p, f"paused at {stage}")
    except AssertionError:
        if stage == "swap":
            _finish(p)
            pytest.skip("no renameat2 RENAME_EXCHANGE here (the fallback swap has no pause)")
        raise
    p.send_signal(sig)
    done = _finish(p)
    assert done.rc == rc, done.text
    no_traceback(done)
    if sig != signal.SIGKILL:
        last = done.err.splitlines()[-1]
        assert last == f"cleanroom proto: {'interrupted' if sig == signal.SIGINT else 'terminated'}", done.text
        # unwound: the temporary tree is gone with the run
        assert sorted(os.listdir(out)) == [".big_proto.lock", pkg], os.listdir(out)
    if expect == "old":
        assert tree(out / pkg) == previous
    else:
        assert "class Later" in (out / pkg / "m0_pb2.pyi").read_text()
    assert importable(out, pkg) > 300
    again = crun("proto", "--out", str(out), cwd=r)
    assert again.rc == 0, again.text
    assert sorted(os.listdir(out)) == [".big_proto.lock", pkg]
    assert "class Later" in (out / pkg / "m0_pb2.pyi").read_text()


SLOW_FSYNC = """\
import os, sys, time
_fsync = os.fsync
def fsync(fd):
    print("fault: fsync", file=sys.stderr, flush=True)
    time.sleep(float(os.environ.get("FAULT_FSYNC_SECONDS", "60")))
    return _fsync(fd)
os.fsync = fsync
"""

WRITE_SIGNALS = {
    "select-sigint": (("select", "binary"), "pyproject.toml", signal.SIGINT, 130),
    "select-sigterm": (("select", "binary"), "pyproject.toml", signal.SIGTERM, 143),
    "select-sigkill": (("select", "binary"), "pyproject.toml", signal.SIGKILL, -signal.SIGKILL),
    "verify-fix-sigterm": (("verify", "--fix"), ".gitignore", signal.SIGTERM, 143),
}


@pytest.mark.parametrize("name", list(WRITE_SIGNALS), ids=list(WRITE_SIGNALS))
def test_signal_inside_a_write_leaves_the_old_file(name: str, repo: Path, tmp_path: Path) -> None:
    """The signal lands while the new file is being made durable (a slow disk): the file is the
    old one, whole, and (but for SIGKILL) no temporary file is left beside it."""
    argv, target, sig, rc = WRITE_SIGNALS[name]
    if target == "pyproject.toml":
        assert crun("select", "source", cwd=repo).rc == 0
    else:
        gap_in(repo, ".gitignore", "dist/")
    old = (repo / target).read_bytes()
    before = state(repo)
    hook = tmp_path / "slow-disk"
    write(hook, "sitecustomize.py", SLOW_FSYNC)
    p = _popen(list(argv), repo, pythonpath=f"{hook}{os.pathsep}{ENGINE_SRC}")
    _wait_for(p, "fault: fsync")
    p.send_signal(sig)
    done = _finish(p)
    assert done.rc == rc, done.text
    no_traceback(done)
    assert (repo / target).read_bytes() == old
    if sig == signal.SIGKILL:
        # nothing can clean up after SIGKILL: at most the temporary file, never a partial target
        now = state(repo)[0]
        extra = sorted(set(now) - set(before[0]))
        assert all(e.startswith(f".{target}.") and e.endswith(".tmp") for e in extra), extra
        assert {k: v for k, v in now.items() if k not in extra} == before[0]
    else:
        assert state(repo) == before
    again = crun(*argv, cwd=repo)
    assert again.rc in (0, 1), again.text
    assert (repo / target).read_bytes() != old  # and the next run writes it
    # ... and removes what a killed writer left beside it
    assert [e for e in os.listdir(repo) if e.startswith(f".{target}.") and e.endswith(".tmp")] == []


# ---------------------------------------------------------------- git faults

def _no_commits(repo: Path, tmp: Path) -> None:
    shutil.rmtree(repo / ".git")
    git(repo, "init", "-q", "-b", "main")


def _detached(repo: Path, tmp: Path) -> None:
    write(repo, "notes.txt", "second\n")
    commit(repo, "second")
    git(repo, "checkout", "-q", "--detach", "HEAD~1")


def _corrupt_index(repo: Path, tmp: Path) -> None:
    (repo / ".git/index").write_bytes(b"junk that is not an index\n" * 8)


def _junk_head(repo: Path, tmp: Path) -> None:
    (repo / ".git/HEAD").write_text("junk\n")


GIT_FAULTS: dict[str, tuple[Callable[[Path, Path], None], tuple[str, ...], int | tuple[int, ...], tuple[str, ...]]] = {
    # (setup, argv, rc, needles of the error line: none = the command runs)
    "no-commits-verify": (_no_commits, ("verify",), (0, 1), ()),
    "no-commits-verify-json": (_no_commits, ("verify", "--json"), (0, 1), ()),
    "no-commits-clean": (_no_commits, ("clean", "--yes"), 0, ()),
    "no-commits-migrate": (_no_commits, ("migrate-proto",), 0, ()),
    "detached-head-verify": (_detached, ("verify",), (0, 1), ()),
    "detached-head-clean": (_detached, ("clean",), 0, ()),
    "corrupt-index-verify": (_corrupt_index, ("verify",), 2, ("git ls-files failed", "index file")),
    "corrupt-index-verify-json": (_corrupt_index, ("verify", "--json"), 2, ("index file",)),
    "corrupt-index-verify-fix": (_corrupt_index, ("verify", "--fix"), 2, ("index file",)),
    "corrupt-index-clean": (_corrupt_index, ("clean", "--yes"), 2, ("index file",)),
    "corrupt-index-migrate-apply": (_corrupt_index, ("migrate-proto", "--apply"), 2, ("index file",)),
    "junk-head-verify": (_junk_head, ("verify",), 2, ("not a git repository",)),
    "junk-head-clean": (_junk_head, ("clean", "--yes"), 2, ("not a git repository",)),
}


@pytest.mark.parametrize("name", list(GIT_FAULTS), ids=list(GIT_FAULTS))
def test_git_faults(name: str, repo: Path, tmp_path: Path) -> None:
    setup, argv, rc, needles = GIT_FAULTS[name]
    setup(repo, tmp_path)
    index = (repo / ".git/index").read_bytes() if (repo / ".git/index").exists() else None
    before = state(repo)
    r = crun(*argv, cwd=repo)
    if needles:
        assert_error(r, argv[0], rc, needles)
    else:
        assert r.rc in (rc if isinstance(rc, tuple) else (rc,)), r.text
        no_traceback(r)
        assert "error" not in r.err, r.text
    if "--json" in argv:
        json.loads(r.out)
    assert state(repo) == before
    now = (repo / ".git/index").read_bytes() if (repo / ".git/index").exists() else None
    assert now == index


def test_shallow_clone(repo: Path, tmp_path: Path) -> None:
    legacy(repo)
    clone = tmp_path / "shallow"
    git(tmp_path, "clone", "-q", "--depth", "1", f"file://{repo}", str(clone))
    assert (clone / ".git/shallow").exists()
    before = state(clone)
    for argv in (("verify",), ("migrate-proto",), ("clean",)):
        r = crun(*argv, cwd=clone)
        assert r.rc in (0, 1), r.text
        no_traceback(r)
    assert state(clone) == before
    r = crun("migrate-proto", "--apply", cwd=clone)
    assert r.rc == 0 and "migrate-proto: applied" in r.out, r.text
    assert "pkg/gen/thing_pb2.py" not in git(clone, "ls-files")


def test_worktree(repo: Path, tmp_path: Path) -> None:
    """A linked worktree: .git is a file there, the index and locks live in the main repo's
    git folder."""
    legacy(repo)
    wt = tmp_path / "wt"
    git(repo, "worktree", "add", "-q", str(wt))
    assert (wt / ".git").is_file()
    before = state(wt)
    for argv in (("verify",), ("clean",), ("migrate-proto",), ("context",)):
        r = crun(*argv, cwd=wt)
        assert r.rc in (0, 1), r.text
        no_traceback(r)
    assert state(wt) == before
    r = crun("migrate-proto", "--apply", cwd=wt)
    assert r.rc == 0, r.text
    assert "pkg/gen/thing_pb2.py" not in git(wt, "ls-files")
    assert "pkg/gen/thing_pb2.py" in git(repo, "ls-files")  # the main checkout is untouched


def test_migrate_apply_with_the_index_locked_changes_nothing(repo: Path) -> None:
    """Another git command holds the index: --apply would have swapped the files in and then
    failed to untrack; it must refuse first."""
    legacy(repo)
    lock = repo / ".git/index.lock"
    lock.write_bytes(b"")
    before = state(repo)
    r = crun("migrate-proto", "--apply", cwd=repo)
    assert_error(r, "migrate-proto", 1, (f"cannot write {lock}", "index is locked", "nothing was changed"))
    assert state(repo) == before
    assert not (repo / ".git/cleanroom-migrate-proto.json").exists()
    lock.unlink()
    r = crun("migrate-proto", "--apply", cwd=repo)
    assert r.rc == 0, r.text


# ---------------------------------------------------------------- the process's own surroundings

@pytest.mark.parametrize("argv", [("verify",), ("verify", "--json"), ("context",), ("clean",),
                                  ("select", "binary", "--dry-run"), ("migrate-proto",),
                                  ("proto", "--check", "--out", "/nonexistent-out")], ids=" ".join)
def test_standard_output_on_a_full_disk(argv: tuple[str, ...], repo: Path) -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    add_proto(repo)
    before = state(repo)
    with open("/dev/full", "wb") as full:
        r = crun(*argv, cwd=repo, stdout=full.fileno())
    assert_error(r, argv[0], 1, ("cannot write standard output: No space left on device",))
    assert state(repo) == before


def test_closed_pipe_is_quiet(repo: Path) -> None:
    p = subprocess.Popen([sys.executable, "-m", "cleanroom", "context"], cwd=repo, env=_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None
    p.stdout.close()  # `cleanroom context | head -0`
    err = p.stderr.read() if p.stderr else b""
    p.wait(timeout=60)
    assert p.returncode in (0, 1), err
    assert err == b"", err


@pytest.mark.parametrize("argv", [("verify",), ("select", "binary"), ("clean", "--yes")], ids=" ".join)
def test_working_folder_removed(argv: tuple[str, ...], repo: Path, tmp_path: Path) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    before = state(repo)
    script = f'cd "{gone}" && rmdir "{gone}" && exec "{sys.executable}" -m cleanroom {" ".join(argv)}'
    p = subprocess.run(["sh", "-c", script], env=_env(), capture_output=True, check=False, timeout=60)
    err = p.stderr.decode(errors="replace")
    lines = [ln for ln in err.splitlines() if not ln.startswith("sh:")]  # the shell's own getcwd note
    r = Run(p.returncode, p.stdout, "\n".join(lines).encode())
    assert_error(r, argv[0], 2, ("the current folder cannot be found", "--repo"))
    assert state(repo) == before


def test_cache_folder_unusable(repo: Path, tmp_path: Path) -> None:
    """$XDG_CACHE_HOME is a file: the cache only saves time, so the commands run without it."""
    (tmp_path / "a-file").write_text("")
    before = state(repo)
    for argv in (("verify",), ("context",), ("clean",)):
        r = crun(*argv, cwd=repo, env={"XDG_CACHE_HOME": str(tmp_path / "a-file")})
        assert r.rc == 0, r.text
        no_traceback(r)
    assert state(repo) == before
