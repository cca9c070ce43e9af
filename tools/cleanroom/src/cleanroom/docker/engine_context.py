"""Ask the real Docker engine what a build context holds, and compare with the computed one.

A throwaway build (``FROM scratch`` + ``COPY . /cleanroom-ctx/``: no base image needed, so it
works without a registry) receives the context exactly as the builder sends it; BuildKit's
``--output type=tar`` (classic: ``docker create`` + ``docker export``) returns its files. The
listing :mod:`cleanroom.docker.context` computes for the same build (files and symlinks; empty folders
are not compared) must agree exactly.

Probe builds run side by side (the differential tests, parallel CI jobs on one engine). The
classic builder caches by content: two probes whose contexts send the same files would share the
images their steps made, and ``docker rmi`` of one probe's tag also deletes those untagged
parents while the other is about to use them ("unable to find image"). So classic probes build
with ``--no-cache``: each makes images of its own, and removing them touches no other build.
Measured on this machine, sequential probes of a 50-file and of a 20 MB context: 0.43 s cached vs
0.40 s without the cache (median of 10), 6.4 s vs 6.9 s (median of 4): no difference beyond the
noise. (A label unique to the probe is not enough: the classic builder commits an image for an
``ARG`` line too, shared again.) BuildKit's ``--output`` makes no image at all.
"""

from __future__ import annotations

import os
import re
import shutil
import tarfile
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from cleanroom.core import runner
from cleanroom.core.config import Config
from cleanroom.core.errors import StepFailed
from cleanroom.core.report import Finding
from cleanroom.docker.builds import Build, discover_builds
from cleanroom.docker.context import model_of, plan_for
from cleanroom.docker.engine import Builder, require_engine
from cleanroom.dockerignore.matcher import ignore_file_for

PREFIX = "cleanroom-ctx/"
PROBE_DOCKERFILE = 'FROM scratch\nCOPY . /cleanroom-ctx/\nCMD ["/none"]\n'


@dataclass(frozen=True)
class Diff:
    builder: str
    only_engine: list[str]  # the engine received these; the computed listing lacks them
    only_computed: list[str]  # computed as sent; the engine did not receive them


def _run(argv: list[str], env: dict[str, str], what: str) -> bytes:
    p = runner.run(argv, env=env, text=False)
    if p.returncode != 0:
        raise StepFailed(f"{what} failed: {p.stderr.decode(errors='replace').strip()[-500:]}")
    return bytes(p.stdout)


_RANDOM_DOCKERFILE = re.compile(r"\.dockerfile\.[0-9a-f]{20}")


def _members(stream: IO[bytes], prefix: str) -> set[str]:
    files: set[str] = set()
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for m in tar:
            name = m.name
            while name.startswith("./"):
                name = name[2:]
            name = name.lstrip("/")
            if name.startswith(prefix) and (m.isfile() or m.issym() or m.islnk()):
                files.add(name[len(prefix):])
    return files


def engine_files(context: Path, dockerfile_ignore: Path | None, builder: Builder,
                 dockerfile: Path | None = None) -> set[str]:
    """Files and symlinks (posix relpaths) the engine receives for ``context``.

    ``dockerfile_ignore``: a BuildKit ``<Dockerfile>.dockerignore`` to honour (copied beside the
    throwaway Dockerfile); ``None`` leaves the context's own ``.dockerignore`` in charge.
    ``dockerfile``: build with this Dockerfile instead of a throwaway one outside the context
    (it must hold :data:`PROBE_DOCKERFILE`; the tests use it to put the Dockerfile inside the
    context, where the builders treat it specially). BuildKit exports the result as a tar
    (``--output``); the classic builder needs ``docker create`` + ``docker export``.
    """
    env = {**os.environ, **builder.environ()}
    tag = f"cleanroom-ctx-probe:{uuid.uuid4().hex[:12]}"
    with tempfile.TemporaryDirectory(prefix="cleanroom-ctx-") as tmp:
        df = dockerfile
        if df is None:
            df = Path(tmp) / "Dockerfile"
            df.write_text(PROBE_DOCKERFILE)
            if dockerfile_ignore is not None:
                shutil.copyfile(dockerfile_ignore, Path(tmp) / "Dockerfile.dockerignore")
        if builder.name == "buildkit":
            out = Path(tmp) / "out.tar"
            _run([builder.client, "build", "-q", "-f", str(df), "--output", f"type=tar,dest={out}",
                  str(context)], env, f"throwaway context build ({builder.name})")
            with out.open("rb") as fh:
                return _members(fh, PREFIX)
        cid = ""
        try:
            _run([builder.client, "build", "-q", "--no-cache", "-f", str(df), "-t", tag, str(context)], env,
                 f"throwaway context build ({builder.name})")
            cid = _run([builder.client, "create", tag], env, "docker create").decode().strip()
            proc = runner.spawn([builder.client, "export", cid], stdout=runner.PIPE, env={**os.environ, **env})
            assert proc.stdout is not None
            files = _members(proc.stdout, PREFIX)
            proc.wait()
        finally:
            if cid:
                runner.run([builder.client, "rm", "-f", cid], env=env)
            runner.run([builder.client, "rmi", "-f", tag], env=env)
    # The classic CLI ships a Dockerfile from outside the context under a random name (and the
    # daemon removes it again; this is belt and braces).
    return {f for f in files if not _RANDOM_DOCKERFILE.fullmatch(f)}


def computed_files(context: Path, dockerfile: Path, builder: Builder,
                   server_version: str | None = None) -> set[str]:
    """What cleanroom computes the probe build of ``context`` receives (the throwaway
    Dockerfile outside the context; ``dockerfile`` picks the BuildKit ignore file)."""

    model = model_of(builder.name, builder.client, server_version)
    return {f.path for f in plan_for(context, None, model, ignore_dockerfile=dockerfile).files()}


def compare(build: Build, builder: Builder, server_version: str | None = None) -> Diff:
    ign = ignore_file_for(build.context, build.dockerfile, buildkit=builder.name == "buildkit")
    ctx_ignore = build.context / ".dockerignore"
    df_ignore = ign if ign is not None and ign != ctx_ignore else None
    engine = engine_files(build.context, df_ignore, builder)
    computed = computed_files(build.context, build.dockerfile, builder, server_version)
    return Diff(builder.name, sorted(engine - computed), sorted(computed - engine))


def engine_findings(repo: Path, cfg: Config) -> list[Finding]:
    """verify's ``engine-context-diff`` rule: one finding per file the engine and the computed
    listing disagree on, at its repo-relative path."""
    env = require_engine()
    out: list[Finding] = []
    for build in discover_builds(repo, cfg):
        prefix = build.rel_context(repo) + "/" if build.rel_context(repo) else ""
        for builder in env.builders:
            d = compare(build, builder, env.server_version)
            for path in d.only_engine:
                out.append(Finding(
                    "engine-context-diff", prefix + path,
                    f"the engine ({d.builder}) received this file in the context of build "
                    f"'{build.name}', but cleanroom's matcher computed it as excluded",
                    "report this as a cleanroom matcher bug (include the ignore file)",
                ))
            for path in d.only_computed:
                out.append(Finding(
                    "engine-context-diff", prefix + path,
                    f"cleanroom's matcher computed this file as sent in build '{build.name}', "
                    f"but the engine ({d.builder}) did not receive it",
                    "report this as a cleanroom matcher bug (include the ignore file)",
                ))
    return out
