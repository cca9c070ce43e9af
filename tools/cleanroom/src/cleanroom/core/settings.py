"""The engine's settings from the environment (``CLEANROOM_*``): one table, each validated.

Every command checks them all first (:func:`check`): a value that is not what the setting takes is
a one-line error and exit 2 before anything runs (``CLEANROOM_WITH_GPU=1`` is a yes, ``maybe`` is
refused; a newline in ``CLEANROOM_INDEX_URL`` would have become an invalid ``pyproject.toml``).
Code reads a setting through this module, never ``os.environ`` directly. A ``CLEANROOM_*`` name
that no setting has is most likely a typo: it is named on stderr (the workspace's scripts use a
few names of their own, listed in :data:`SCRIPT_NAMES`).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from cleanroom.core.errors import BadInput

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _bool(value: str) -> str | None:
    if value.strip() == "":
        return None  # empty: the default, as unset (Compose's ${CLEANROOM_WITH_GPU:-false} reads it so)
    if value.strip().lower() in _TRUE + _FALSE:
        return None
    return "expected one of true/false, 1/0, yes/no, on/off (any case)"


def _url(value: str) -> str | None:
    if value == "":
        return None  # empty: Poetry's default source
    if _CONTROL.search(value) or re.search(r"\s", value):
        return "expected a URL without whitespace"
    if not re.match(r"^(https?|file)://[^/\s]", value) and not value.startswith("file:///"):
        return "expected an http(s):// or file:// URL of a simple-API package index"
    return None


def _choice(*choices: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        if value == "" or value in choices:
            return None
        return "expected " + " or ".join(choices)

    return check


def _image(value: str) -> str | None:
    if value == "":
        return None
    if not re.match(r"^[a-z0-9][a-z0-9._/:@-]*$", value, re.I) or len(value) > 512:
        return "expected a Docker image reference (e.g. debian:bookworm-slim)"
    return None


def _path(value: str) -> str | None:
    if value == "":
        return None
    if _CONTROL.search(value):
        return "expected a file path without control characters"
    return None


def _requirements(value: str) -> str | None:
    if value.strip() == "":
        return None
    if _CONTROL.search(value.replace("\n", " ").replace("\t", " ")) or ";" in value:
        return "expected requirement specifiers separated by spaces (e.g. torch==2.4.1)"
    for word in value.split():
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9,._-]+\])?([<>=!~]=?[A-Za-z0-9.*+!_-]+)?$", word):
            return f"{word!r} is not a requirement specifier (e.g. torch==2.4.1)"
    return None


def _cache_spec(value: str) -> str | None:
    if value.strip() == "":
        return None
    if _CONTROL.search(value) or re.search(r"\s", value):
        return "expected one cache spec without whitespace (e.g. type=registry,ref=repo/app:cache)"
    return None


@dataclass(frozen=True)
class Setting:
    name: str
    check: Callable[[str], str | None]
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting("CLEANROOM_WITH_GPU", _bool, "put the optional gpu group into the image (default: whether "
            "a GPU runtime is detected)"),
    Setting("CLEANROOM_INDEX_URL", _url, "a simple-API package index for pip and Poetry (empty: "
            "Poetry's default source)"),
    Setting("CLEANROOM_BUILDER", _choice("buildkit", "classic"), "the builder to use or model"),
    Setting("CLEANROOM_COMPOSE", _choice("v2", "v1"), "the Compose to use (default: v2 when present)"),
    Setting("CLEANROOM_BASE_IMAGE", _image, "the base image of the builds"),
    Setting("CLEANROOM_NATIVE_FROM_SOURCE", _requirements, "packages the source build compiles from "
            "their sdists"),
    Setting("CLEANROOM_TEST_LOG", _path, "where test-all captures pytest's output (in the container)"),
    Setting("CLEANROOM_REMOTE", _bool, "the engine does not share this machine's files: no bind "
            "mounts, sources copied into the container (default: detected from DOCKER_HOST or the "
            "docker context)"),
    Setting("CLEANROOM_CACHE_FROM", _cache_spec, "docker build --cache-from (BuildKit cache import, e.g. "
            "type=registry,ref=REPO:cache; an image for the classic builder)"),
    Setting("CLEANROOM_CACHE_TO", _cache_spec, "docker build --cache-to (BuildKit cache export, e.g. "
            "type=registry,ref=REPO:cache,mode=max; needs the buildx plugin)"),
    Setting("CLEANROOM_TEST_WARM", _bool, "test-all forks each run from a warm interpreter holding the "
            "third-party modules already imported (in the container; default on)"),
)
BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
# Names the workspace's own scripts and the compose file read (not the engine).
SCRIPT_NAMES = frozenset({
    "CLEANROOM_IMAGE", "CLEANROOM_DOCKERFILE", "CLEANROOM_DOCKERD_LOG", "CLEANROOM_DOCKERD_WAIT",
    "CLEANROOM_STORAGE_DRIVER", "CLEANROOM_COMPOSE_V2", "CLEANROOM_CI_FRESH", "CLEANROOM_CI_START",
    "CLEANROOM_DIFF_EXAMPLES",
})


def check(environ: Mapping[str, str] | None = None, warn: bool = True) -> None:
    """Refuse (BadInput, exit 2) the first setting whose value is not what it takes."""
    env = os.environ if environ is None else environ
    for name, value in sorted(env.items()):
        if not name.startswith("CLEANROOM_"):
            continue
        s = BY_NAME.get(name)
        if s is None:
            if warn and name not in SCRIPT_NAMES:
                import difflib

                near = difflib.get_close_matches(name, BY_NAME, n=1)
                hint = f" (did you mean {near[0]}?)" if near else ""
                print(f"cleanroom: warning: {name} is not a setting the engine reads{hint}", file=sys.stderr)
            continue
        why = s.check(value)
        if why is not None:
            raise BadInput(f"{name}={value!r}: {why}")


def get(name: str) -> str | None:
    """A setting's value (None when unset), validated."""
    s = BY_NAME[name]
    value = os.environ.get(name)
    if value is None:
        return None
    why = s.check(value)
    if why is not None:
        raise BadInput(f"{name}={value!r}: {why}")
    return value


def flag(name: str) -> bool | None:
    """A yes/no setting: True, False, or None when unset or empty."""
    value = get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip().lower() in _TRUE
