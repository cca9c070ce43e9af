"""git as the truth about gitignore: every question is asked of git itself.

Nothing here re-implements gitignore matching: the artifact policy is handed to git as an
exclude file (``--exclude-from``), and probes are asked with ``git check-ignore --no-index``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from .errors import BadInput, ToolMissing


def _git_bin() -> str:
    git = shutil.which("git")
    if git is None:
        raise ToolMissing("git is not installed; install it (e.g. `apt-get install git`)")
    return git


def git(repo: Path, *args: str, stdin: bytes | None = None, ok: Sequence[int] = (0,)) -> bytes:
    """Run git in ``repo``; returns stdout. A non-accepted exit code is a BadInput."""
    p = subprocess.run(
        [_git_bin(), "-c", "core.quotePath=false", *args],
        cwd=repo,
        input=stdin,
        capture_output=True,
        check=False,
        env={**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"},
    )
    if p.returncode not in ok:
        msg = p.stderr.decode(errors="replace").strip().splitlines()
        raise BadInput(f"git {args[0]} failed in {repo}: {msg[-1] if msg else p.returncode}")
    return p.stdout


def split0(data: bytes) -> list[str]:
    return [s.decode("utf-8", "surrogateescape") for s in data.split(b"\0") if s]


def require_repo(repo: Path) -> None:
    """Exit 2 (BadInput) when ``repo`` is not the top of a git work tree."""
    _git_bin()
    p = subprocess.run(
        [_git_bin(), "rev-parse", "--show-toplevel"], cwd=repo, capture_output=True, text=True,
        check=False,
    )
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


def artifact_listing(repo: Path, policy: str) -> tuple[list[str], list[str]]:
    """(tracked paths, untracked paths on disk) that the policy patterns match.

    The two git calls run side by side: one reads the index, the other is the one walk of the
    tree. ``--directory`` makes git report a matching folder (``.venv/``, ``__pycache__/``) as
    one entry, ending in ``/``, instead of descending into it.
    """
    base = [_git_bin(), "-c", "core.quotePath=false", "ls-files", "-z", "--ignored",
            f"--exclude-from={policy}"]
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}
    procs = [
        subprocess.Popen([*base, "--cached"], cwd=repo, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE),
        subprocess.Popen([*base, "--others", "--directory"], cwd=repo, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE),
    ]
    outs = []
    for p in procs:
        out, err = p.communicate()
        if p.returncode != 0:
            msg = err.decode(errors="replace").strip().splitlines()
            raise BadInput(f"git ls-files failed in {repo}: {msg[-1] if msg else p.returncode}")
        outs.append(split0(out))
    return outs[0], _collapse(outs[1])


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
    p = subprocess.run(
        [_git_bin(), "cat-file", "--batch"], cwd=repo, capture_output=True, check=False,
        input=b"".join(b":" + path.encode("utf-8", "surrogateescape") + b"\n" for path in paths),
        env={**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"},
    )
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
