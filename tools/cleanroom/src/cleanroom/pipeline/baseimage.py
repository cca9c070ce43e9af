"""The offline base image: a Debian root filesystem made by mmdebstrap, imported into Docker.

No container registry is reachable from our machines, so no ``FROM debian`` can be pulled. The
base image is made from Debian packages instead (the package mirror *is* reachable): mmdebstrap
makes a ``minbase`` root filesystem with the system packages our Dockerfiles need (Python 3.11 with
venv and headers, a C toolchain, git, CA certificates), its hooks add the host's extra CA
certificates (outbound HTTPS passes a proxy whose CA only the host trusts) and point apt at the
host's mirror, and it writes the filesystem as a tarball to stdout, piped into ``docker import``
as ``cleanroom-base:offline``. Dockerfiles start ``FROM cleanroom-base:offline`` and need no
network for their system layer.

mmdebstrap, not debootstrap: measured here, 37 s against 60 s for the same image (483 MB), no
rootfs on disk to clean up after (the tarball streams into the engine), and no root needed
(``--mode=auto``: unshare when not root). Its output goes to a log; the terminal shows each step
with its elapsed time, and on failure the log's last lines and its path.

:func:`base_image_plan` is pure (a list of actions, see :mod:`cleanroom.core.actions`);
:func:`ensure_base_image` checks the tools and builds the image when it is missing.
"""

from __future__ import annotations

import functools
import re
import shlex
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from cleanroom.core import actions as planmod
from cleanroom.core import runner
from cleanroom.core.actions import Action, Call, WriteFile
from cleanroom.core.cache import cache_dir
from cleanroom.core.errors import StepFailed, ToolMissing
from cleanroom.docker.engine import docker_client

DEFAULT_TAG = "cleanroom-base:offline"
DEFAULT_SUITE = "bookworm"
HOST_CA_DIR = Path("/usr/local/share/ca-certificates")
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SETUP_HINT = "run docker/setup-engine (as root) to install and start the engine and mmdebstrap"

# What the Dockerfiles' system layer needs, installed when the rootfs is made. (debootstrap's
# resolver followed plain dependencies only: a dependency on a *virtual* package had to be named
# here by the real package that provides it (python3.11-venv needs "python3.11-distutils",
# provided by python3-distutils), else it failed with "dependency problems"; kept, harmless.)
BASE_PACKAGES: tuple[str, ...] = (
    "python3.11",
    "python3.11-venv",
    "python3-distutils",
    "python3.11-dev",
    "build-essential",
    "git",
    "ca-certificates",
)

# Written into the image: no recommends (keeps later `apt-get install`s small and predictable).
APT_CONF = 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n'

# Docs, man pages and translations are ~90 MB of a ~570 MB rootfs and no build reads them. As in
# Debian's "slim" images, dpkg never unpacks them (mmdebstrap's --dpkgopt, from the first package
# on; the setting stays in the image for later installs).
DPKG_NODOC = """\
# Written by cleanroom's base image build.
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
"""


def image_changes(suite: str, mirror: str | None) -> tuple[str, ...]:
    """The Dockerfile instructions ``docker import --change`` applies to the imported rootfs."""
    label = f"LABEL org.cleanroom.base.suite={suite}"
    if mirror:
        label += f" org.cleanroom.base.mirror={mirror}"
    return (
        f"ENV PATH={IMAGE_PATH}",
        "ENV LANG=C.UTF-8",
        f"ENV REQUESTS_CA_BUNDLE={CA_BUNDLE}",
        f"ENV SSL_CERT_FILE={CA_BUNDLE}",
        f"ENV PIP_CERT={CA_BUNDLE}",
        label,
        "WORKDIR /",
        'CMD ["/bin/bash"]',
    )


def apt_sources(mirror: str, suite: str) -> str:
    """A deb822 sources file for the image, on the mirror the rootfs was built from."""
    return (
        "# Written by cleanroom's base image build (same mirror as the build host).\n"
        "Types: deb\n"
        f"URIs: {mirror}\n"
        f"Suites: {suite} {suite}-updates\n"
        "Components: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )


def import_argv(tag: str, changes: Sequence[str], client: str = "docker") -> tuple[str, ...]:
    argv: list[str] = [client, "import"]
    for change in changes:
        argv += ["--change", change]
    argv += ["-", tag]
    return tuple(argv)


def mmdebstrap_argv(
    workdir: Path,
    suite: str = DEFAULT_SUITE,
    mirror: str | None = None,
    *,
    packages: Sequence[str] = BASE_PACKAGES,
    ca_dir: Path | None = HOST_CA_DIR,
) -> tuple[str, ...]:
    """mmdebstrap writing the root filesystem as a tarball to stdout (``-``). ``workdir`` holds
    what its hooks upload (the apt sources file)."""
    argv = [
        "mmdebstrap", "--mode=auto", "--variant=minbase", "--components=main",
        "--include=" + ",".join(packages),
    ]
    for line in APT_CONF.splitlines():
        argv.append(f"--aptopt={line.rstrip(';')}")
    for line in DPKG_NODOC.splitlines():
        if line.startswith(("path-exclude", "path-include")):
            argv.append("--dpkgopt=" + line.replace(" ", "=", 1))
    if ca_dir is not None:
        argv += [f"--customize-hook=sync-in {ca_dir} {HOST_CA_DIR}",
                 '--customize-hook=chroot "$1" update-ca-certificates']
    if mirror:
        argv += [f"--customize-hook=upload {workdir / 'debian.sources'} /etc/apt/sources.list.d/debian.sources",
                 '--customize-hook=rm -f "$1/etc/apt/sources.list"']
    argv += [
        '--customize-hook=chroot "$1" apt-get clean',
        '--customize-hook=rm -rf "$1"/var/lib/apt/lists/* && mkdir -p "$1/var/lib/apt/lists/partial"',
        # the host's resolver and name must not leak into the image (Docker provides its own)
        '--customize-hook=: > "$1/etc/resolv.conf"; : > "$1/etc/hostname"',
        suite, "-",
    ]
    if mirror:
        argv.append(mirror)
    return tuple(argv)


def import_stream(argv: Sequence[str], tag: str, changes: Sequence[str], log: Path) -> None:
    """``ARGV | docker import --change ... - TAG``: the producer's messages go to ``log``;
    failing if either side fails (the message names the log)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    imp_cmd = import_argv(tag, changes, docker_client())
    with log.open("ab") as err:
        producer = runner.spawn(argv, stdout=runner.PIPE, stderr=err, hint=SETUP_HINT)
        assert producer.stdout is not None
        try:
            imp = runner.spawn(imp_cmd, stdin=producer.stdout, stdout=runner.PIPE, stderr=err, hint=SETUP_HINT)
            imp.communicate()
        except ToolMissing:
            producer.kill()
            producer.wait()
            raise
        finally:
            producer.stdout.close()
        rc = producer.wait()
    if rc != 0:
        raise StepFailed(f"{argv[0]} failed with exit code {rc}; its output is in {log}")
    if imp.returncode != 0:
        raise StepFailed(f"docker import failed with exit code {imp.returncode} (tag {tag}); see {log}")


def base_image_plan(
    workdir: Path,
    tag: str = DEFAULT_TAG,
    suite: str = DEFAULT_SUITE,
    mirror: str | None = None,
    *,
    packages: Sequence[str] = BASE_PACKAGES,
    ca_dir: Path | None = HOST_CA_DIR,
    log: Path | None = None,
) -> list[Action]:
    """The actions that build ``tag``: the files the hooks upload, then ``mmdebstrap ... - |
    docker import``. ``mirror`` None leaves the choice (and apt's sources) to mmdebstrap's
    default; ``ca_dir`` (the host's extra CA certificates) is copied in when not None."""
    argv = mmdebstrap_argv(workdir, suite, mirror, packages=packages, ca_dir=ca_dir)
    changes = image_changes(suite, mirror)
    actions: list[Action] = []
    if mirror:
        actions.append(WriteFile(workdir / "debian.sources", apt_sources(mirror, suite), desc="apt sources"))
    log = log or workdir / "mmdebstrap.log"
    actions.append(Call(
        functools.partial(import_stream, argv, tag, changes, log),
        desc=f"{shlex.join(argv)} | {shlex.join(import_argv(tag, changes))}",
    ))
    return actions


# --- the host --------------------------------------------------------------------------------

_DEB_LINE = re.compile(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)")


def _deb822_stanzas(text: str) -> list[dict[str, str]]:
    stanzas: list[dict[str, str]] = []
    cur: dict[str, str] = {}
    key = ""
    for raw in text.splitlines():
        line = raw.rstrip()
        if line.lstrip().startswith("#"):
            continue
        if not line.strip():
            if cur:
                stanzas.append(cur)
            cur, key = {}, ""
            continue
        if line[0] in " \t" and key:
            cur[key] += " " + line.strip()
            continue
        if ":" in line:
            key, _, value = line.partition(":")
            key = key.strip().lower()
            cur[key] = value.strip()
    if cur:
        stanzas.append(cur)
    return stanzas


def _sources(etc_apt: Path) -> list[tuple[str, list[str], str]]:
    """(uri, suites, signed-by) for each enabled ``deb`` source, in apt's reading order."""
    found: list[tuple[str, list[str], str]] = []
    lists = [etc_apt / "sources.list"]
    parts = etc_apt / "sources.list.d"
    if parts.is_dir():
        lists += sorted(parts.glob("*.list"))
    for path in lists:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            m = _DEB_LINE.match(line)
            if m:
                found.append((m.group(1), [m.group(2)], ""))
    if parts.is_dir():
        for path in sorted(parts.glob("*.sources")):
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            for st in _deb822_stanzas(text):
                if st.get("enabled", "yes").lower() == "no":
                    continue
                if "deb" not in st.get("types", "").split():
                    continue
                for uri in st.get("uris", "").split():
                    found.append((uri, st.get("suites", "").split(), st.get("signed-by", "")))
    return found


def host_debian_mirror(suite: str | None = None, *, etc_apt: Path = Path("/etc/apt")) -> str | None:
    """The Debian mirror the host's apt uses (its ``URIs:`` / ``deb`` line), or None.

    Security and non-HTTP sources are skipped. A source that lists ``suite`` (when given) wins;
    otherwise the first one that looks like a Debian archive (``.../debian`` or signed with the
    Debian archive keyring).
    """
    candidates: list[tuple[str, list[str]]] = []
    for uri, suites, signed_by in _sources(etc_apt):
        if not uri.startswith(("http://", "https://")):
            continue
        if "security" in uri or any(s.endswith("-security") or "/updates" in s for s in suites):
            continue
        uri = uri.rstrip("/")
        if suite and suite in suites:
            return uri
        if uri.endswith("/debian") or "debian-archive-keyring" in signed_by:
            candidates.append((uri, suites))
    return candidates[0][0] if candidates else None


def _docker_ok() -> tuple[bool, str]:
    """(True, "") when ``docker info`` answers, else (False, why)."""
    try:
        proc = runner.run([docker_client(), "info", "--format", "{{.ServerVersion}}"], timeout=30)
    except ToolMissing:
        return False, "docker: command not found"
    except StepFailed:
        return False, "docker info did not answer within 30 s"
    if proc.returncode != 0:
        err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return False, f"the Docker engine is not answering ({err})"
    return True, ""


def _image_id(tag: str) -> str:
    """The image id of ``tag``, or "" when the engine has no such image."""
    proc = runner.run([docker_client(), "image", "inspect", "--format", "{{.Id}}", tag], timeout=60,
                      hint=SETUP_HINT)
    return str(proc.stdout).strip() if proc.returncode == 0 else ""


def image_exists(tag: str) -> bool:
    """True when the local engine has an image ``tag``."""
    return bool(_image_id(tag))


def _image_summary(tag: str) -> str:
    proc = runner.run([docker_client(), "image", "inspect", "--format", "{{.Id}} {{.Size}}", tag], timeout=60)
    parts = str(proc.stdout).split()
    if proc.returncode != 0 or len(parts) != 2 or not parts[1].isdigit():
        return tag
    return f"{tag} ({parts[0][:19]}, {int(parts[1]) / 1e6:.0f} MB)"


def check_tools() -> None:
    """Raise :class:`ToolMissing` unless a build can run here."""
    ok, why = _docker_ok()
    if not ok:
        raise ToolMissing(why, SETUP_HINT)
    if shutil.which("mmdebstrap") is None:
        raise ToolMissing("mmdebstrap: command not found", SETUP_HINT)


def default_log() -> Path:
    return cache_dir() / "base-image.log"


def ensure_base_image(
    tag: str = DEFAULT_TAG, rebuild: bool = False, *, suite: str = DEFAULT_SUITE,
    log: Path | None = None,
) -> None:
    """Build ``tag`` from Debian packages unless the engine already has it (or ``rebuild``); its
    output goes to ``log`` (default: the engine's cache folder), the terminal gets one line per
    step with its time."""
    ok, why = _docker_ok()
    if not ok:
        raise ToolMissing(why, SETUP_HINT)
    if not rebuild and image_exists(tag):
        print(f"base-image: {_image_summary(tag)} already present", flush=True)
        return
    check_tools()
    log = log or default_log()
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    mirror = host_debian_mirror(suite)
    ca_dir = HOST_CA_DIR if HOST_CA_DIR.is_dir() else None
    print(f"base-image: building {tag} from Debian {suite} with mmdebstrap"
          f" ({'mirror ' + mirror if mirror else 'its default mirror'}); its output goes to {log}",
          flush=True)
    old_id = _image_id(tag)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cleanroom-base-") as tmp:
        for action in base_image_plan(Path(tmp), tag, suite, mirror, ca_dir=ca_dir, log=log):
            step = time.monotonic()
            name = "mmdebstrap | docker import" if isinstance(action, Call) else action.show()
            print(f"base-image: {name} ...", flush=True)
            try:
                planmod.execute([action])
            except StepFailed as exc:
                tail = log.read_text(errors="replace").splitlines()[-15:] if log.is_file() else []
                raise StepFailed(f"the base image could not be built: {exc.message}",
                                 f"the last lines of {log}:\n" + "\n".join(f"  {t}" for t in tail)) from None
            print(f"base-image:   done ({time.monotonic() - step:.0f} s)", flush=True)
    print(f"base-image: built {_image_summary(tag)} in {time.monotonic() - started:.0f} s", flush=True)
    if old_id and old_id != _image_id(tag):
        # The replaced image is now untagged; drop it unless something still builds on it.
        runner.run([docker_client(), "image", "rm", old_id])
