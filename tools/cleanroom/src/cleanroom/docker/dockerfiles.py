"""Dockerfiles as BuildKit reads them: stages, and what each instruction takes from the context.

Parsing is BuildKit's own parser (the ``dockerfile`` package wraps moby/buildkit's Go parser):
line continuations, the ``escape`` directive, JSON and shell forms, flags and heredocs are all
its business, and every instruction keeps its line numbers. On top of it, this module knows:

* the stages (``FROM image AS name``), their base images and which is final;
* what a build reads from its context: every ``COPY``/``ADD`` source without ``--from`` (in every
  stage; a URL or git source of ``ADD`` and a heredoc are not from the context), and every
  ``RUN --mount=type=bind`` without ``from=`` (its ``source``, default the context root);
* ``ARG`` defaults substituted into those paths (``${X}``, ``$X``, ``${X:-d}``); a path that still
  holds a variable cannot be checked and is left out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from cleanroom.core.errors import BadInput


class DockerfileError(BadInput):
    """A Dockerfile BuildKit's parser refuses."""


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, COPY, ...
    line: int  # first line (1-based)
    end_line: int
    args: tuple[str, ...]
    flags: tuple[str, ...]
    original: str  # the instruction as one line (continuations joined)
    stage: int  # index of the stage it belongs to (-1: before the first FROM)

    def flag(self, name: str) -> str | None:
        """The value of ``--name=value`` (the last one), or None."""
        value = None
        for f in self.flags:
            k, sep, v = f.partition("=")
            if k == f"--{name}":
                value = v if sep else ""
        return value


@dataclass(frozen=True)
class Stage:
    index: int
    base: str  # the FROM image, ARGs substituted where known
    name: str  # the AS alias ("" when none)
    line: int


@dataclass(frozen=True)
class Source:
    """A path the build reads from its context."""

    path: str  # context-relative, '/'-separated, no leading './' or '/'
    written: str  # as the Dockerfile writes it
    instruction: Instruction
    glob: bool  # holds wildcards (Go's filepath.Match syntax)


@dataclass
class Dockerfile:
    instructions: list[Instruction] = field(default_factory=list)
    stages: list[Stage] = field(default_factory=list)

    @property
    def final(self) -> Stage | None:
        return self.stages[-1] if self.stages else None

    def stage_instructions(self, index: int) -> list[Instruction]:
        return [i for i in self.instructions if i.stage == index]


_VAR = re.compile(r"\$(?:\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::?-(?P<default>[^}]*))?\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")


def _subst(text: str, env: dict[str, str]) -> str | None:
    """``text`` with known ARG/ENV values substituted; None when a variable is unknown."""
    unknown = False

    def sub(m: re.Match[str]) -> str:
        nonlocal unknown
        name = m.group("name") or m.group("bare")
        if env.get(name):
            return env[name]
        if m.group("default") is not None:
            return m.group("default")
        unknown = True
        return ""

    out = _VAR.sub(sub, text)
    return None if unknown else out


def parse(text: str, where: str = "Dockerfile") -> Dockerfile:
    """Parse with BuildKit's parser; a refused file is a :class:`DockerfileError` naming it."""
    import dockerfile as bk  # BuildKit's parser (Go)

    try:
        cmds = bk.parse_string(text)
    except bk.GoParseError as exc:
        raise DockerfileError(f"{where}: BuildKit cannot parse it: {exc}") from None
    df = Dockerfile()
    global_args: dict[str, str] = {}
    stage = -1
    for c in cmds:
        kw = c.cmd.upper()
        args = tuple(c.value)
        if kw == "FROM":
            stage += 1
            base = _subst(args[0], global_args) if args else ""
            alias = args[2] if len(args) >= 3 and args[1].upper() == "AS" else ""
            df.stages.append(Stage(stage, base if base is not None else args[0], alias, c.start_line))
        elif kw == "ARG" and stage < 0:
            for a in args:
                k, sep, v = a.partition("=")
                global_args[k] = v.strip("\"'") if sep else global_args.get(k, "")
        df.instructions.append(Instruction(kw, c.start_line, c.end_line, args, tuple(c.flags),
                                           c.original.replace("\n", " "), stage))
    return df


def _normalise(path: str) -> str:
    """A source as a context-relative path: BuildKit resolves it against the context root
    (a leading '/' or '..' cannot leave it)."""
    p = path
    while p.startswith("./"):
        p = p[2:]
    p = p.lstrip("/")
    parts: list[str] = []
    for comp in p.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            if parts:
                parts.pop()
            continue
        parts.append(comp)
    return "/".join(parts)


_REMOTE = re.compile(r"^([a-z][a-z0-9+.-]*://|git@)", re.I)


def context_sources(df: Dockerfile) -> list[Source]:
    """Every path the build reads from its context, in Dockerfile order (see the module doc)."""
    out: list[Source] = []
    env: dict[str, str] = {}
    current = -2
    for ins in df.instructions:
        if ins.stage != current:
            current = ins.stage
            env = {}
        if ins.keyword in ("ARG", "ENV"):
            for a in ins.args:
                k, sep, v = a.partition("=")
                if sep:
                    env[k] = v.strip("\"'")
            continue
        written: list[str] = []
        if ins.keyword in ("COPY", "ADD") and ins.flag("from") is None and len(ins.args) >= 2:
            written = [a for a in ins.args[:-1] if not a.startswith("<<")]
            if ins.keyword == "ADD":
                written = [a for a in written if not _REMOTE.match(a)]
        elif ins.keyword == "RUN":
            for f in ins.flags:
                if not f.startswith("--mount="):
                    continue
                opts = dict(o.partition("=")[::2] for o in f[len("--mount="):].split(","))
                if opts.get("type") == "bind" and "from" not in opts:
                    written.append(opts.get("source") or opts.get("src") or ".")
        for w in written:
            value = _subst(w, env)
            if value is None:
                continue
            path = _normalise(value)
            if not path:
                continue  # the context root itself ("COPY . /app")
            out.append(Source(path, w, ins, any(ch in path for ch in "*?[")))
    return out


_PYTHON_BASE = re.compile(r"(^|[/:_.-])(python|pypy|cuda|pytorch|jupyter|conda|miniconda|mambaforge|"
                          r"micromamba|ubuntu|debian|cleanroom-base)", re.I)


def runs_python(df: Dockerfile, stage: Stage) -> bool:
    """Can the stage's image run Python? Its base is a Python (or general-purpose Linux) image,
    or one of its instructions installs or runs Python. A ``distroless/static`` or ``scratch``
    stage holding a Go binary cannot."""
    text = " ".join(i.original for i in df.stage_instructions(stage.index)).lower()
    if re.search(r"\b(python3?(\.\d+)?|pip3?|poetry|uv|pipenv|conda)\b", text):
        return True
    base = stage.base.lower()
    if base == "scratch" or "distroless" in base or base.startswith(("golang", "alpine")):
        return False
    # FROM an earlier stage: as that stage
    for s in df.stages[: stage.index]:
        if s.name and s.name.lower() == base:
            return runs_python(df, s)
    return bool(_PYTHON_BASE.search(base)) or "$" in base


def cache_mount_targets(ins: Instruction) -> list[str]:
    """The targets of a RUN's ``--mount=type=cache`` flags."""
    out = []
    for f in ins.flags:
        if f.startswith("--mount="):
            opts = dict(o.partition("=")[::2] for o in f[len("--mount="):].split(","))
            if opts.get("type") == "cache":
                out.append(opts.get("target") or opts.get("dst") or opts.get("destination") or "")
    return [t for t in out if t]


def for_classic(text: str, where: str = "Dockerfile") -> str:
    """The Dockerfile the classic builder can build: each RUN's ``--mount=type=cache`` flags
    dropped (the classic builder refuses them), and the cache folders emptied at the end of that
    RUN instead, so they do not stay in the layer. Line numbers are kept (an instruction that
    spanned several lines is joined on its first, blank lines after it), so errors point at the
    same lines."""
    df = parse(text, where)
    lines = text.split("\n")
    for ins in df.instructions:
        if ins.keyword != "RUN":
            continue
        targets = cache_mount_targets(ins)
        if not targets:
            continue
        flags = [f for f in ins.flags if not (f.startswith("--mount=") and "type=cache" in f)]
        if len(ins.args) == 1 and not ins.original.rstrip().endswith("]"):
            cmd = f"{{ {ins.args[0].strip()} ; }} && rm -rf {' '.join(t.rstrip('/') + '/*' for t in targets)}"
        else:  # exec form: nothing to append to
            cmd = ins.original.split(None, 1 + len(ins.flags))[-1]
        lines[ins.line - 1] = " ".join(["RUN", *flags, cmd])
        for k in range(ins.line, ins.end_line):
            lines[k] = ""
    return "\n".join(lines)
