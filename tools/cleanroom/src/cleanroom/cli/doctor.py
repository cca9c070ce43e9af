"""``doctor``: one table of what the workflow needs, each row OK or missing, with its fix.

Rows: the docker client, the engine (its version), Compose (v1 or v2), the builder (BuildKit or
classic), a GPU runtime, the base images (the default CUDA ones and the offline one), the config,
the variants, and (in the container) the generated protobuf code. Exit 0 when the main job
(``nox -s build-binary``: build, compose up, test) can run, 3 when it cannot.

Probing only reads: ``docker info``, ``docker image inspect``, ``docker compose version``; nothing
is started, pulled or built.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from cleanroom.core.errors import EXIT_OK, EXIT_TOOL_MISSING, BadInput, CleanroomError, ConfigError
from cleanroom.core.workspace import Workspace, in_container
from cleanroom.docker.engine import SETUP_HINT, location, probe
from cleanroom.pipeline.baseimage import DEFAULT_TAG, image_exists
from cleanroom.pipeline.baseimage import SETUP_HINT as BASE_HINT
from cleanroom.pipeline.stages import DEFAULT_BASES, container_state, find_container
from cleanroom.proto import generate as proto
from cleanroom.variants.drift import find_drift

# The Dockerfiles' default bases (binary: prebuilt CUDA 12.8 wheels; source: PyTorch built for
# old GPUs), and the offline one made from Debian packages (baseimage.py) where no registry answers.
BASES: tuple[tuple[str, str], ...] = tuple(DEFAULT_BASES.items())
OK, MISSING, NA = "OK", "missing", "n/a"


@dataclass(frozen=True)
class Row:
    check: str
    status: str  # OK, missing, n/a
    detail: str
    fix: str = ""
    needed: bool = True  # the main job cannot run while this is missing

    @property
    def blocks(self) -> bool:
        return self.needed and self.status == MISSING


@dataclass(frozen=True)
class Report:
    rows: list[Row]
    can_run: bool
    where: str  # "host" or "container"

    @property
    def blocking(self) -> list[Row]:
        return [r for r in self.rows if r.blocks]


def _mmdebstrap() -> str | None:
    return shutil.which("mmdebstrap")


def docker_rows(container: bool) -> tuple[list[Row], bool]:
    """The Docker rows and whether a base image is there or can be built."""

    env = probe()
    need = not container  # inside the app container the daily loop needs no Docker
    rows: list[Row] = []
    if env.client is None:
        rows.append(Row("docker client", MISSING, "no `docker` on PATH", SETUP_HINT, need))
    else:
        rows.append(Row("docker client", OK, env.client, needed=need))
    engine = env.server_version is not None
    if engine:
        rows.append(Row("engine", OK, f"Docker {env.server_version}", needed=need))
    else:
        why = "no docker client" if env.client is None else env.server_error
        rows.append(Row("engine", MISSING, f"does not answer ({why})",
                        f"start it: {SETUP_HINT}; or point DOCKER_HOST at a running one", need))
    if engine:
        where = location()
        if where.remote:
            rows.append(Row("engine location", OK, f"remote engine: {where.endpoint} ({where.why}); no bind "
                            "mounts, the daily loop copies changed sources into the container and test "
                            "logs back to .cleanroom/logs", needed=False))
        else:
            rows.append(Row("engine location", OK, f"local engine: {where.endpoint} ({where.why}); sources "
                            "are bind-mounted", needed=False))
    if env.compose:
        others = [f"{label} (`{' '.join(argv)}`, CLEANROOM_COMPOSE={label[:2]})"
                  for argv, label in env.composes[1:]]
        also = f"; also {', '.join(others)}" if others else ""
        rows.append(Row("compose", OK, f"{env.compose_label} (`{' '.join(env.compose)}`){also}", needed=need))
    else:
        rows.append(Row("compose", MISSING, "neither `docker compose` (v2) nor `docker-compose` (v1)",
                        SETUP_HINT, need))
    b = env.builder
    if b is None:
        rows.append(Row("builder", MISSING, "no docker client to build with", SETUP_HINT, need))
    else:
        label = "BuildKit" if b.name == "buildkit" else "classic"
        other = [x.name for x in env.builders if x is not b]
        extra = f"; also: {', '.join(other)} (CLEANROOM_BUILDER=...)" if other else ""
        rows.append(Row("builder", OK, f"{label} ({b.client}, "
                        + " ".join(f"{k}={v}" for k, v in b.env) + f"){extra}", needed=need))
    if not engine:
        rows.append(Row("GPU runtime", MISSING, "unknown: no engine to ask", "start the engine first", False))
    elif env.gpu:
        kind = "nvidia runtime" if "nvidia" in env.runtimes else "CDI nvidia.com/gpu"
        rows.append(Row("GPU runtime", OK, f"{kind}: the GPU overlay is added"))
    else:
        rows.append(Row("GPU runtime", MISSING,
                        f"none (runtimes: {', '.join(env.runtimes) or '-'}): containers run on the CPU",
                        "install the NVIDIA Container Toolkit and restart the engine (optional)", False))

    have_base = False
    if engine:
        for variant, tag in BASES:
            present = image_exists(tag)
            have_base = have_base or present
            rows.append(Row(f"base image ({variant})", OK if present else MISSING,
                            tag + ("" if present else " not in the engine"),
                            "" if present else f"docker pull {tag} (needs a registry), or use the offline base",
                            False))
        offline = image_exists(DEFAULT_TAG)
        deb = _mmdebstrap()
        if offline:
            rows.append(Row("base image (offline)", OK, DEFAULT_TAG, needed=False))
            have_base = True
        else:
            can = f"can be built ({deb})" if deb else "cannot be built here (no mmdebstrap)"
            rows.append(Row("base image (offline)", MISSING, f"{DEFAULT_TAG} not built; {can}",
                            "cleanroom base-image" if deb else BASE_HINT, False))
            have_base = have_base or deb is not None
    else:
        for variant, tag in (*BASES, ("offline", DEFAULT_TAG)):
            rows.append(Row(f"base image ({variant})", MISSING, f"{tag}: unknown, no engine to ask",
                            "start the engine first", False))
    if not have_base and engine:
        rows.append(Row("base image (any)", MISSING, "no base image present and none can be built",
                        f"docker pull {BASES[0][1]}, or {BASE_HINT}", need))
    elif not have_base:
        rows.append(Row("base image (any)", MISSING, "unknown: no engine to hold or build one",
                        "start the engine first", need))
    return rows, have_base


def workspace_rows(ws: Workspace | None, config_error: str, container: bool) -> list[Row]:
    rows: list[Row] = []
    if ws is None:
        rows.append(Row("config", MISSING, config_error, "fix cleanroom.toml as the message says"))
        rows.append(Row("variants", NA, "config not valid"))
        rows.append(Row("generated code", NA, "config not valid"))
        return rows
    src = str(ws.cfg.source.relative_to(ws.repo)) if ws.cfg.source and ws.cfg.source.is_relative_to(
        ws.repo) else str(ws.cfg.source or "defaults (no cleanroom.toml)")
    rows.append(Row("config", OK, f"{src} valid"))
    v = ws.cfg.variants
    if not ws.cfg.variants_on(ws.repo):
        # A repo that never had variants (adoption): nothing to restore. verify and the adoption
        # commands need none; the main job selects one, so it cannot run without them.
        present = (ws.repo / v.binary).is_file() or (ws.repo / v.source).is_file()
        why = ("off in cleanroom.toml ([variants] enabled = false)" if present
               else f"none in this repo (no {v.binary}, {v.source})")
        rows.append(Row("variants", MISSING, f"{why}: the main job selects one into {v.target}; "
                        "verify, context, migrate-proto and clean need none",
                        f"make {v.binary} and {v.source} from your {v.target} (README: adopting the workspace)"))
        drift = None
    else:
        try:
            drift = find_drift(ws.repo, ws.cfg)
        except CleanroomError as exc:
            rows.append(Row("variants", MISSING, exc.message, f"restore {v.binary} and {v.source}"))
            drift = None
    if drift is not None:
        if drift:
            keys = ", ".join(d.key for d in drift[:3]) + (" ..." if len(drift) > 3 else "")
            rows.append(Row("variants", MISSING, f"{len(drift)} shared key(s) differ: {keys}",
                            "cleanroom verify (variant-drift names each key and its fix)", False))
        else:
            rows.append(Row("variants", OK, f"{v.binary} and {v.source} in sync"))
    if not container:
        rows.append(Row("generated code", NA, "n/a on host (checked in the container)"))
        return rows

    out = ws.cfg.proto.out
    try:
        reasons = proto.check(ws, out)
    except CleanroomError as exc:
        rows.append(Row("generated code", MISSING, exc.message, "fix [proto] in cleanroom.toml", False))
    else:
        if reasons:
            rows.append(Row("generated code", MISSING, "; ".join(reasons[:3]),
                            f"cleanroom proto --out {out}", False))
        else:
            rows.append(Row("generated code", OK, f"{out.rstrip('/')}/{ws.cfg.proto.package} current"))
    return rows


def app_container_row(ws: Workspace, engine: bool) -> Row:
    """This checkout's container (compose project derived from its path): informative only."""

    project = ws.cfg.docker.project
    if not engine:
        return Row("app container", NA, f"project {project}: no engine to ask", needed=False)
    try:
        cid = find_container(ws)
    except CleanroomError as exc:
        return Row("app container", MISSING, exc.message, "invoke down in the other checkout", False)
    if cid is None:
        return Row("app container", NA, f"project {project}: none yet", "invoke up (or nox -s build-binary)", False)
    state = container_state(probe(), cid)
    return Row("app container", OK if state == "running" else NA, f"project {project}: {cid[:12]} {state}",
               "" if state == "running" else "invoke up", False)


def diagnose(repo: str | None = None, config: str | None = None) -> Report:
    """Every row; a bad config is a row (not an error)."""
    ws: Workspace | None = None
    error = ""
    try:
        ws = Workspace.load(repo, config)
    except ConfigError as exc:
        error = exc.message
    container = in_container()
    rows, _ = docker_rows(container)
    rows += workspace_rows(ws, error, container)
    if ws is not None and not container:
        rows.append(app_container_row(ws, engine=any(r.check == "engine" and r.status == OK for r in rows)))
    report = Report(rows, can_run=not any(r.blocks for r in rows),
                    where="container" if container else "host")
    return report


def render_text(r: Report) -> str:
    headers = ("check", "status", "detail", "fix")
    table = [headers, *((x.check, x.status, x.detail, x.fix if x.status != OK else "") for x in r.rows)]
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    lines = []
    for row in table:
        cells = [row[i].ljust(widths[i]) for i in range(3)]
        lines.append(("  ".join(cells) + ("  " + row[3] if row[3] else "")).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths) + "  ---")
    job = "the daily loop in the container" if r.where == "container" else "the main job (nox -s build-binary)"
    if r.can_run:
        optional = [x.check for x in r.rows if x.status == MISSING]
        note = f" (optional, missing: {', '.join(optional)})" if optional else ""
        lines.append(f"doctor: {job} can run{note}")
    else:
        lines.append(f"doctor: {job} cannot run: missing {', '.join(x.check for x in r.blocking)}")
    return "\n".join(lines)


def render_json(r: Report) -> str:
    return json.dumps({"rows": [{**asdict(x), "blocks": x.blocks} for x in r.rows],
                       "can_run": r.can_run, "where": r.where}, indent=2)


def run_doctor(repo: str | None = None, config: str | None = None, as_json: bool = False) -> int:
    """Print the table; 0 when the main job can run, 3 when it cannot (bad --repo: exit 2)."""
    if repo is not None and not Path(repo).expanduser().is_dir():
        raise BadInput(f"--repo {repo}: no such folder")
    report = diagnose(repo, config)
    print(render_json(report) if as_json else render_text(report))
    return EXIT_OK if report.can_run else EXIT_TOOL_MISSING

