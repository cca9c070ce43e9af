"""git as the truth about gitignore: every question is asked of git itself.

Nothing here re-implements gitignore matching: the artifact policy is handed to git as an
exclude file (``--exclude-from``), and probes are asked with ``git check-ignore --no-index``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from cleanroom.core import runner
from cleanroom.core.cache import read_json, write_json
from cleanroom.core.errors import BadInput, ToolMissing

GIT_ENV = {"GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}


def _git_bin() -> str:
    git = shutil.which("git")
    if git is None:
        raise ToolMissing("git is not installed; install it (e.g. `apt-get install git`)")
    return git


def git(repo: Path, *args: str, stdin: bytes | None = None, ok: Sequence[int] = (0,)) -> bytes:
    """Run git in ``repo``; returns stdout. A non-accepted exit code is a BadInput."""
    p = runner.run([_git_bin(), "-c", "core.quotePath=false", *args], cwd=repo, input=stdin, text=False,
                   env=GIT_ENV)
    if p.returncode not in ok:
        raise BadInput(f"git {args[0]} failed in {repo}: {_verdict(p.stderr, p.returncode)}")
    return bytes(p.stdout)


def _verdict(stderr: bytes, rc: int) -> str:
    """git's own verdict from its stderr (``fatal: ...``), not the advice it prints below it."""
    msg = stderr.decode(errors="replace").strip().splitlines()
    for kind in ("fatal:", "error:"):
        for line in msg:
            if line.startswith(kind):
                return line
    return msg[-1] if msg else f"exit code {rc}"


def split0(data: bytes) -> list[str]:
    return [s.decode("utf-8", "surrogateescape") for s in data.split(b"\0") if s]


def require_repo(repo: Path) -> None:
    """Exit 2 (BadInput) when ``repo`` is not the top of a git work tree."""
    _git_bin()
    p = runner.run([_git_bin(), "rev-parse", "--show-toplevel"], cwd=repo)
    if p.returncode != 0:
        raise BadInput(f"{repo} is not a git repository (verify compares the tree with git; run `git init`)")
    if Path(p.stdout.strip()).resolve() != repo.resolve():
        raise BadInput(f"{repo} is inside the git repository {p.stdout.strip()}; pass --repo {p.stdout.strip()}")


class PolicyFile:
    """The artifact patterns written to a temporary exclude file for ``--exclude-from``."""

    def __init__(self, patterns: Iterable[str]) -> None:
        fd, name = tempfile.mkstemp(prefix="cleanroom-policy-", suffix=".gitignore")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("\n".join(patterns) + "\n")
        self.path = name

    def __enter__(self) -> str:
        return self.path

    def __exit__(self, *exc: object) -> None:
        os.unlink(self.path)


def _collapse(entries: list[str]) -> list[str]:
    """``ls-files --others --ignored --directory`` also names an untracked folder whose whole
    content is ignored (``a/``) before that content (``a/x.lock``, ``a/__pycache__/``): keep
    only entries with nothing listed below them, so a folder entry means "this whole folder"."""
    entries = sorted(entries)
    out = []
    for i, e in enumerate(entries):
        if e.endswith("/") and i + 1 < len(entries) and entries[i + 1].startswith(e):
            continue
        out.append(e)
    return out


class Listing:
    """The three questions verify asks git of the tree, started at once so that git answers them
    side by side (and while the rest of the engine is imported):

    * the tracked paths the policy patterns match (the index, ``--cached --ignored``);
    * the untracked paths on disk they match (the one walk of the tree, ``--others --ignored
      --directory``: a matching folder, ``.venv/`` or ``__pycache__/``, is one entry ending in
      ``/``);
    * the untracked files the repo's own ignore rules do not ignore (``--others
      --exclude-standard``), the ones that could be committed.
    """

    def __init__(self, repo: Path, patterns: Sequence[str]) -> None:
        self.repo = repo
        self._policy = PolicyFile(patterns)
        git_bin = _git_bin()
        base = [git_bin, "-c", "core.quotePath=false", "ls-files", "-z"]
        env = {**os.environ, **GIT_ENV}
        pol = f"--exclude-from={self._policy.path}"
        argvs = [[*base, "--ignored", pol, "--others", "--directory"],
                 [*base, "--others", "--exclude-standard"]]
        # The index's answer only changes with the index: remembered by its stat and the policy.
        self._cache = _IndexCache(repo, patterns)
        self._tracked = self._cache.get()
        if self._tracked is None:
            argvs.append([*base, "--ignored", pol, "--cached"])
        self._procs = [
            runner.spawn(argv, cwd=repo, env=env, stdout=runner.PIPE, stderr=runner.PIPE)
            for argv in argvs
        ]
        self._result: tuple[list[str], list[str], list[str]] | None = None

    def result(self) -> tuple[list[str], list[str], list[str]]:
        """(tracked policy paths, untracked policy paths, untracked files git would not ignore)."""
        if self._result is None:
            outs = []
            try:
                for p in self._procs:
                    out, err = p.communicate()
                    if p.returncode != 0:
                        raise BadInput(f"git ls-files failed in {self.repo}: {_verdict(err, p.returncode)}")
                    outs.append(split0(out))
            finally:
                self._policy.__exit__()
            others, loose = outs[0], outs[1]
            if self._tracked is None:
                self._tracked = outs[2]
                self._cache.put(self._tracked)
            self._result = (self._tracked, _collapse(others), loose)
        return self._result


class _IndexCache:
    """What ``ls-files --cached --ignored`` answered for an index, in ``$XDG_CACHE_HOME/cleanroom``,
    keyed by the index file's identity (inode, size, mtime in ns: git replaces it by a rename on
    every write) and the patterns. Matching every index entry against the patterns is git's
    costliest answer on a big repo (0.16 s for 70,000 entries) and the index seldom changes
    between two runs. A repo whose index git keeps elsewhere (a worktree, GIT_INDEX_FILE) is not
    cached."""

    def __init__(self, repo: Path, patterns: Sequence[str]) -> None:
        import hashlib

        self.key = ""
        index = repo / ".git" / "index"
        if "GIT_INDEX_FILE" in os.environ or not (repo / ".git").is_dir():
            return
        try:
            st = index.stat()
        except OSError:
            return
        h = hashlib.sha256(f"{repo.resolve()}|{st.st_ino}|{st.st_size}|{st.st_mtime_ns}".encode())
        h.update("\0".join(patterns).encode("utf-8", "surrogateescape"))
        self.key = h.hexdigest()
        self.name = f"index-{hashlib.sha256(str(repo.resolve()).encode()).hexdigest()[:16]}.json"

    def get(self) -> list[str] | None:
        if not self.key:
            return None
        data = read_json(self.name)
        if not isinstance(data, dict) or data.get("key") != self.key or not isinstance(data.get("tracked"), list):
            return None
        return [str(p) for p in data["tracked"]]

    def put(self, tracked: list[str]) -> None:
        if self.key:
            write_json(self.name, {"key": self.key, "tracked": tracked})


def not_ignored(repo: Path, paths: Sequence[str]) -> list[str]:
    """Those of ``paths`` (existing or not) that the repo's ignore rules do NOT ignore."""
    if not paths:
        return []
    out = git(repo, "check-ignore", "--no-index", "-z", "--stdin", "-v", "-n",
              stdin=b"\0".join(p.encode("utf-8", "surrogateescape") for p in paths) + b"\0",
              ok=(0, 1))
    # -v -n -z: source, linenum, pattern, path per record; an unmatched path has empty fields.
    raw = out.split(b"\0")
    result: list[str] = []
    i = 0
    while i + 3 < len(raw):
        source, _line, pattern, path = raw[i : i + 4]
        i += 4
        negated = pattern.startswith(b"!")
        if not source or negated:
            result.append(path.decode("utf-8", "surrogateescape"))
    return result


def file_size(path: Path) -> int:
    try:
        st = path.lstat()
    except OSError:
        return 0
    return st.st_size


def index_heads(repo: Path, paths: Sequence[str], size: int = 4096) -> dict[str, bytes]:
    """The first ``size`` bytes of each path's content as git's index holds it (what a commit
    would hold, whatever the work tree says); a path not in the index is left out."""
    if not paths:
        return {}
    p = runner.run([_git_bin(), "cat-file", "--batch"], cwd=repo, text=False, env=GIT_ENV,
                   input=b"".join(b":" + path.encode("utf-8", "surrogateescape") + b"\n" for path in paths))
    out: dict[str, bytes] = {}
    data, pos = p.stdout, 0
    for path in paths:
        nl = data.find(b"\n", pos)
        if nl < 0:
            break
        header = data[pos:nl].split()
        pos = nl + 1
        if len(header) != 3 or header[1] != b"blob":
            continue  # "<spec> missing"
        n = int(header[2])
        out[path] = data[pos : pos + min(n, size)]
        pos += n + 1
    return out
