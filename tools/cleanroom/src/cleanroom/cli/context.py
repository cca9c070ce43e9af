"""``cleanroom context``: the listing, ``--why`` and ``--engine`` of each build's context, as text
or JSON (the model is :mod:`cleanroom.docker.context`; the engine's answer
:mod:`cleanroom.docker.engine_context`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cleanroom.core import settings
from cleanroom.core.errors import BadInput, ToolMissing
from cleanroom.core.report import human_size, utf8
from cleanroom.docker.builds import Build
from cleanroom.docker.context import (
    BUILDERS,
    CLI_SOURCE,
    BuilderModel,
    BuildListing,
    Sizes,
    _where,
    choose_builder,
    explain,
    listing,
    plan_for,
    rel,
    select_builds,
    sizes,
    to_context_path,
)
from cleanroom.docker.engine import require_engine
from cleanroom.docker.engine_context import compare
from cleanroom.dockerignore.matcher import (
    DockerignoreError,
)


@dataclass
class Options:
    build: str | None = None
    builder: str | None = None
    json: bool = False
    sizes: bool = False
    why: list[str] = field(default_factory=list)
    engine: bool = False
    top: int = 10


def _json(doc: object) -> str:
    """``doc`` as JSON that is valid UTF-8: a file name byte that is not UTF-8 (read with
    surrogateescape) is written as ``\\xNN`` text, as verify's JSON does."""
    import json


    def clean(x: object) -> object:
        if isinstance(x, str):
            return utf8(x)
        if isinstance(x, dict):
            return {clean(k): clean(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return [clean(v) for v in x]
        return x

    return json.dumps(clean(doc), indent=1, ensure_ascii=False) + "\n"


def _emit(text: str) -> None:
    import sys

    data = text.encode("utf-8", "surrogateescape")
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def run(repo: Path, builds: list[Build], opts: Options) -> int:
    """``cleanroom context``: print the listing (or --sizes, --why, --engine); the exit code."""

    chosen = select_builds(builds, opts.build)
    if opts.engine:
        return _run_engine(repo, chosen, opts)
    model = choose_builder(opts.builder)
    if opts.why:
        return _run_why(repo, chosen, model, opts)
    # A build whose ignore file Docker would refuse is reported (exit 2); the others are listed.
    listings: list[BuildListing | tuple[Build, DockerignoreError]] = []
    for b in chosen:
        try:
            listings.append(listing(b, model, with_sizes=opts.json or opts.sizes))
        except DockerignoreError as exc:
            listings.append((b, exc))
    rc = 0
    if opts.json:
        docs: list[dict[str, object]] = []
        for li in listings:
            if isinstance(li, tuple):
                rc = 2
                docs.append(_error_json(li[0], li[1], repo, model))
            else:
                docs.append(_build_json(li, repo, opts))
        _emit(_json({"builds": docs}))
        return rc
    out: list[str] = []
    for li in listings:
        if isinstance(li, tuple):
            rc = 2
            b, err = li
            out.append(f"# build '{b.name}': error: {err.message}" + (f" ({err.detail})" if err.detail else ""))
            continue
        out.append(li.header(repo))
        if opts.sizes:
            out.extend(_sizes_text(sizes(li.files, opts.top)))
        else:
            out.extend(f.path for f in li.files)
    _emit("\n".join(out) + "\n")
    return rc


def _error_json(b: Build, exc: DockerignoreError, repo: Path, model: BuilderModel) -> dict[str, object]:
    return {"name": b.name, "context": b.rel_context(repo) or ".", "dockerfile": rel(b.dockerfile, repo),
            "ignore_file": None, "builder": model.name, "matching": model.walk.name,
            "error": exc.message, "files": []}


def _build_json(li: BuildListing, repo: Path, opts: Options) -> dict[str, object]:
    b, p = li.build, li.plan
    d: dict[str, object] = {
        "name": b.name,
        "context": b.rel_context(repo) or ".",
        "dockerfile": rel(b.dockerfile, repo),
        "ignore_file": rel(p.ignore_path, repo) if p.ignore_path else None,
        "builder": p.model.name,
        "matching": p.model.walk.name,
        "files": [{"path": f.path, "size": f.size} for f in li.files],
    }
    if opts.sizes:
        s = sizes(li.files, opts.top)
        d["sizes"] = {
            "total": s.total,
            "count": s.count,
            "largest_folders": [{"path": f, "size": n, "files": c} for f, n, c in s.folders],
            "largest_files": [{"path": f.path, "size": f.size} for f in s.files],
        }
    return d


def _sizes_text(s: Sizes) -> list[str]:
    out = [f"total: {human_size(s.total)} in {s.count} files"]
    if s.folders:
        out.append("largest folders:")
        out += [f"  {human_size(n):>10}  {c:>7} files  {f}/" for f, n, c in s.folders]
    if s.files:
        out.append("largest files:")
        out += [f"  {human_size(f.size or 0):>10}  {f.path}" for f in s.files]
    return out


def _run_why(repo: Path, builds: list[Build], model: BuilderModel, opts: Options) -> int:

    rows: list[dict[str, object]] = []
    lines: list[str] = []
    for b in builds:
        plan = plan_for(b.context, b.dockerfile, model)
        for given in opts.why:
            inner = to_context_path(repo, b, given)
            if inner is None:
                rows.append({"build": b.name, "path": given, "sent": False, "source": None,
                             "line": None, "pattern": None,
                             "reason": "outside the build context"})
                lines.append(f"::\t{given}\tnot in the context of build '{b.name}' "
                             f"(context {b.rel_context(repo) or '.'})")
                continue
            w = explain(plan, inner, repo)
            src = _where(w.pattern, repo) if w.pattern else "::"
            pat = str(w.pattern) if w.pattern else ""
            lines.append(f"{src}{pat}\t{inner}\t{w.reason} (build '{b.name}', {model.name})")
            rows.append({
                "build": b.name, "path": inner, "sent": w.sent,
                "source": (rel(Path(w.pattern.source), repo) if w.pattern and w.pattern.source != CLI_SOURCE
                           else (CLI_SOURCE if w.pattern else None)),
                "line": w.pattern.line if w.pattern and w.pattern.source != CLI_SOURCE else None,
                "pattern": pat or None, "reason": w.reason,
            })
    if opts.json:
        _emit(_json({"why": rows}))
    else:
        _emit("\n".join(lines) + "\n")
    return 0


def _run_engine(repo: Path, builds: list[Build], opts: Options) -> int:


    env = require_engine()

    want = opts.builder or settings.get("CLEANROOM_BUILDER") or None
    if want is not None and want not in BUILDERS:
        raise BadInput(f"unknown builder {want!r}: expected buildkit or classic")
    builder = env.builder if want is None else next((b for b in env.builders if b.name == want), None)
    if builder is None:
        raise ToolMissing(f"the {want} builder is not available here; install Debian's docker.io "
                          "(its client builds with BuildKit) or the buildx plugin")
    docs: list[dict[str, object]] = []
    lines: list[str] = []
    differ = False
    for b in builds:
        d = compare(b, builder, env.server_version)
        differ = differ or bool(d.only_engine or d.only_computed)
        docs.append({"name": b.name, "builder": d.builder, "only_engine": d.only_engine,
                     "only_computed": d.only_computed})
        n = len(d.only_engine) + len(d.only_computed)
        lines.append(f"# build '{b.name}' ({d.builder}): "
                     + ("the engine and cleanroom agree" if n == 0 else f"{n} difference(s)"))
        lines += [f"only in the engine: {p}" for p in d.only_engine]
        lines += [f"only computed: {p}" for p in d.only_computed]
    if opts.json:
        _emit(_json({"builds": docs}))
    else:
        _emit("\n".join(lines) + "\n")
    return 1 if differ else 0
