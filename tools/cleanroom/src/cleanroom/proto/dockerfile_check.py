"""migrate-proto's Dockerfile advice: does each image that runs Python generate the protobuf
package it needs (the engine's proto step, into ``[proto] out``)? If not, the exact lines to
add, after a complete instruction. Dockerfiles are never edited.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Sequence
from pathlib import Path

from cleanroom.artifacts.scan import RepoScan
from cleanroom.core.config import Config
from cleanroom.docker import dockerfiles
from cleanroom.docker.builds import Build
from cleanroom.docker.compose import interpolate
from cleanroom.proto.migration import DockerfileCheck


def _segments(run: str) -> list[list[str]]:
    """The simple commands of a RUN instruction (shell form), as argv lists."""
    out = []
    for seg in re.split(r"&&|\|\||;|\|", run):
        try:
            words = shlex.split(seg)
        except ValueError:
            words = seg.split()
        if words:
            out.append(words)
    return out


def _proto_step(argv: list[str]) -> tuple[bool, str | None] | None:
    """For ``cleanroom [--repo X] proto [--out DIR]`` (or ``python -m cleanroom ...``): whether it
    generates, and its ``--out`` (None: the default); None when it is not the proto step."""
    words = list(argv)
    while words and re.match(r"^[A-Za-z_]\w*=", words[0]):  # VAR=value cleanroom ...
        words.pop(0)
    if not words:
        return None
    exe = os.path.basename(words[0])
    if exe == "cleanroom":
        words = words[1:]
    elif re.match(r"^python(\d+(\.\d+)?)?$", exe) and words[1:3] == ["-m", "cleanroom"]:
        words = words[3:]
    else:
        return None
    while words and words[0].startswith("-") and words[0] != "proto":
        opt = words.pop(0)
        if "=" not in opt and words and opt in ("--repo", "--config"):
            words.pop(0)
    if not words or words[0] != "proto":
        return None
    out: str | None = None
    check = False
    rest = words[1:]
    for i, w in enumerate(rest):
        if w == "--out" and i + 1 < len(rest):
            out = rest[i + 1]
        elif w.startswith("--out="):
            out = w.split("=", 1)[1]
        elif w in ("--check", "--dry-run"):
            check = True
    return (not check), out


def check_dockerfile(repo: Path, cfg: Config, ctx: RepoScan, builds: Sequence[Build]) -> DockerfileCheck | None:
    """Does the image generate the code it needs (into ``[proto] out``)? None: its final stage
    runs no Python (a Go binary on ``distroless/static``): it needs none."""
    b = builds[0]
    rel = b.rel_dockerfile(repo)
    names = tuple(x.name for x in builds)
    out_dir, package = cfg.proto.out, cfg.proto.package
    run_line = f'RUN cleanroom proto --out {out_dir} --pth && python -c "import {package}"'
    src_rel = os.path.relpath(repo / cfg.proto.sources, b.context).replace(os.sep, "/")
    text = b.dockerfile_text()
    if text is None:
        return DockerfileCheck(rel, names, False, "cannot be read: its image cannot be checked")
    try:
        df = dockerfiles.parse(text, rel)
    except dockerfiles.DockerfileError as exc:
        return DockerfileCheck(rel, names, False, exc.message)
    final = df.final
    if final is None:
        return None
    if not dockerfiles.runs_python(df, final):
        return None
    env: dict[str, str] = {}
    wrong: list[tuple[dockerfiles.Instruction, str | None]] = []
    container = False
    anchor = engine = None
    last = None
    for ins in df.stage_instructions(final.index):
        last = ins
        if ins.keyword in ("ARG", "ENV"):
            for a in ins.args:
                k, sep, v = a.partition("=")
                if sep:
                    env[k] = interpolate(v.strip("\"'"), env)
            container = container or env.get("DOCKER_CONTAINER") == "1"
        elif ins.keyword in ("COPY", "ADD") and ins.flag("from") is None:
            if any(_covers(a, src_rel) for a in ins.args[:-1]):
                anchor = ins
        elif ins.keyword == "RUN":
            run = " ".join(ins.args)
            if "cleanroom" in run:
                engine = ins
            for argv in _segments(run):
                step = _proto_step(argv)
                if step is None or not step[0]:
                    continue
                out = step[1]
                if out is None:
                    if container:
                        return DockerfileCheck(rel, names, True, f"line {ins.line}: `cleanroom proto` "
                                               f"(DOCKER_CONTAINER=1: into {out_dir})")
                    wrong.append((ins, None))
                    continue
                if os.path.normpath(interpolate(out, env)) == os.path.normpath(out_dir):
                    return DockerfileCheck(rel, names, True, f"line {ins.line}: `cleanroom proto --out {out}`")
                wrong.append((ins, out))
    if wrong:
        ins, out = wrong[0]
        where = f"into {out}" if out else "without --out (on the host default [proto] host_out)"
        return DockerfileCheck(rel, names, False,
                               f"line {ins.line} runs `cleanroom proto` {where}, not into [proto] out "
                               f"({out_dir}): change it to:", (run_line,))
    excluded = ""
    for g in ctx.groups:
        if b in g.builds and not any(ctx.sent(ctx.matcher(bi), src_rel) or ctx.sent(ctx.matcher(bi), f"{src_rel}/x.proto")
                                     for bi in g.members):
            excluded = f" ({g.ignore_name} excludes {src_rel}: re-include it first, e.g. `!{src_rel}`)"
    after = max((i for i in (anchor, engine) if i is not None), key=lambda i: i.line, default=None)
    if after is not None:
        where = f"after line {after.end_line} (`{_short(after.original)}`)"
        add: tuple[str, ...] = (run_line,) if anchor is not None else (f"COPY {src_rel} {src_rel}", run_line)
    else:
        where = (f"after line {last.end_line} (`{_short(last.original)}`), the last of the final stage"
                 if last is not None else f"after line {final.line}")
        add = (f"COPY {src_rel} {src_rel}", run_line)
    needs = "" if engine is not None else "; nothing installs the engine yet: `pip install` it before"
    return DockerfileCheck(
        rel, names, False,
        f"its final stage (line {final.line}, `FROM {final.base}`) runs Python but does not generate "
        f"{package} into {out_dir}{needs}{excluded}; add {where}:", add)


def _short(text: str, n: int = 70) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def _covers(src: str, target: str) -> bool:
    src = src.strip().rstrip("/")
    src = src[2:] if src.startswith("./") else src
    return src in ("", ".") or target == src or target.startswith(src + "/")


def check_dockerfiles(repo: Path, cfg: Config, ctx: RepoScan) -> list[DockerfileCheck]:
    by_file: dict[tuple[Path, str | None], list[Build]] = {}
    for b in ctx.builds:
        by_file.setdefault((b.dockerfile, b.inline), []).append(b)
    out = [check_dockerfile(repo, cfg, ctx, bs) for bs in by_file.values()]
    return [c for c in out if c is not None]
