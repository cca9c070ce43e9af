"""Ask the real Docker engine what a build context holds, and compare with the computed one.

A throwaway build (``FROM scratch`` + ``COPY . /cleanroom-ctx/``: no base image needed, so it
works without a registry) receives the context exactly as the builder sends it; ``docker create``
plus ``docker export`` return its files. The matcher's own listing of the same context (files and
symlinks; empty folders are not compared) must agree exactly.
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from .builds import Build, discover_builds
from .config import Config
from .dockerenv import Builder, require_engine
from .errors import StepFailed
from .findings import Finding

PREFIX = "cleanroom-ctx/"
PROBE_DOCKERFILE = 'FROM scratch\nCOPY . /cleanroom-ctx/\nCMD ["/none"]\n'


@dataclass(frozen=True)
class Diff:
    builder: str
    only_engine: list[str]  # the engine received these; the computed listing lacks them
    only_computed: list[str]  # computed as sent; the engine did not receive them


def _run(argv: list[str], env: dict[str, str], what: str) -> bytes:
    import os

    p = subprocess.run(argv, capture_output=True, env={**os.environ, **env}, check=False)
    if p.returncode != 0:
        raise StepFailed(f"{what} failed: {p.stderr.decode(errors='replace').strip()[-500:]}")
    return p.stdout


def engine_files(context: Path, dockerfile_ignore: Path | None, builder: Builder) -> set[str]:
    """Files and symlinks (posix relpaths) the engine receives for ``context``.

    ``dockerfile_ignore``: a BuildKit ``<Dockerfile>.dockerignore`` to honour (copied beside the
    throwaway Dockerfile); ``None`` leaves the context's own ``.dockerignore`` in charge.
    """
    env = builder.environ()
    tag = f"cleanroom-ctx-probe:{uuid.uuid4().hex[:12]}"
    with tempfile.TemporaryDirectory(prefix="cleanroom-ctx-") as tmp:
        df = Path(tmp) / "Dockerfile"
        df.write_text(PROBE_DOCKERFILE)
        if dockerfile_ignore is not None:
            shutil.copyfile(dockerfile_ignore, Path(tmp) / "Dockerfile.dockerignore")
        cid = ""
        try:
            _run([builder.client, "build", "-q", "-f", str(df), "-t", tag, str(context)], env,
                 f"throwaway context build ({builder.name})")
            cid = _run([builder.client, "create", tag], env, "docker create").decode().strip()
            proc = subprocess.Popen([builder.client, "export", cid], stdout=subprocess.PIPE)
            assert proc.stdout is not None
            files: set[str] = set()
            with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
                for m in tar:
                    name = m.name.lstrip("./")
                    if name.startswith(PREFIX) and (m.isfile() or m.issym() or m.islnk()):
                        files.add(name[len(PREFIX):])
            proc.wait()
        finally:
            if cid:
                subprocess.run([builder.client, "rm", "-f", cid], capture_output=True, check=False)
            subprocess.run([builder.client, "rmi", "-f", tag], capture_output=True, check=False)
    if builder.name == "classic":
        # The classic CLI ships a Dockerfile from outside the context under a random name.
        files = {f for f in files if not (f.startswith(".dockerfile.") and "/" not in f)}
    return files


def computed_files(context: Path, ignore_file: Path | None) -> set[str]:
    from .dockerignore import Matcher, read, walk_context

    patterns = read(ignore_file).patterns if ignore_file else ()
    return {rel for rel, _ in walk_context(context, Matcher(patterns))}


def compare(build: Build, builder: Builder) -> Diff:
    from .dockerignore import ignore_file_for

    ign = ignore_file_for(build.context, build.dockerfile, buildkit=builder.name == "buildkit")
    ctx_ignore = build.context / ".dockerignore"
    df_ignore = ign if ign is not None and ign != ctx_ignore else None
    engine = engine_files(build.context, df_ignore, builder)
    computed = computed_files(build.context, ign)
    return Diff(builder.name, sorted(engine - computed), sorted(computed - engine))


def engine_findings(repo: Path, cfg: Config) -> list[Finding]:
    env = require_engine()
    out: list[Finding] = []
    for build in discover_builds(repo, cfg):
        for builder in env.builders:
            d = compare(build, builder)
            for path in d.only_engine:
                out.append(Finding(
                    "engine-context-diff", path,
                    f"the engine ({d.builder}) received this file in the context of build "
                    f"'{build.name}', but cleanroom's matcher computed it as excluded",
                    "report this as a cleanroom matcher bug (include the ignore file)",
                ))
            for path in d.only_computed:
                out.append(Finding(
                    "engine-context-diff", path,
                    f"cleanroom's matcher computed this file as sent in build '{build.name}', "
                    f"but the engine ({d.builder}) did not receive it",
                    "report this as a cleanroom matcher bug (include the ignore file)",
                ))
    return out
