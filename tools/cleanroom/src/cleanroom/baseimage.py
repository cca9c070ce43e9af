"""The offline base image: a Debian root filesystem built with debootstrap, imported into Docker.

No container registry is reachable from our machines, so no ``FROM debian`` can be pulled. The
base image is made from Debian packages instead (the package mirror *is* reachable): debootstrap
a ``minbase`` root filesystem with the system packages our Dockerfiles need (Python 3.11 with
venv and headers, a C toolchain, git, CA certificates), add the host's extra CA certificates
(outbound HTTPS passes a proxy whose CA only the host trusts), then ``tar | docker import`` it as
``cleanroom-base:offline``. Dockerfiles start ``FROM cleanroom-base:offline`` and need no network
for their system layer.

:func:`base_image_plan` is pure (a list of actions, see :mod:`cleanroom.plan`);
:func:`ensure_base_image` checks the tools, builds the image when it is missing and cleans up.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from . import plan as planmod
from .errors import BadInput, StepFailed, ToolMissing
from .plan import Action, Call, Remove, Run, WriteFile

DEFAULT_TAG = "cleanroom-base:offline"
DEFAULT_SUITE = "bookworm"
HOST_CA_DIR = Path("/usr/local/share/ca-certificates")
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SETUP_HINT = "run docker/setup-engine (as root) to install and start the engine and debootstrap"

# What the Dockerfiles' system layer needs, installed at debootstrap time. debootstrap's own
# resolver follows plain dependencies only: a dependency on a *virtual* package must be named
# here by the real package that provides it (python3.11-venv needs "python3.11-distutils",
# provided by python3-distutils), else debootstrap fails with "dependency problems".
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
# Debian's "slim" images: dpkg skips them in later installs, and the ones installed are deleted
# (files only: some maintainer scripts expect e.g. /usr/share/man/man1 to exist).
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
TRIM_SCRIPT = """\
set -e
cd "$1"
find usr/share/man usr/share/info usr/share/locale usr/share/groff usr/share/lintian \\
    -mindepth 1 ! -type d -delete 2>/dev/null || true
find usr/share/doc -mindepth 1 ! -type d ! -name copyright -delete
find usr/share/doc -mindepth 1 -type d -empty -delete
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


def tar_argv(rootfs: Path) -> tuple[str, ...]:
    """tar of the rootfs for ``docker import``: numeric owners, no device nodes or mounts."""
    return (
        "tar",
        "--numeric-owner",
        "--xattrs",
        "--exclude=./dev/*",
        "--exclude=./proc/*",
        "--exclude=./sys/*",
        "--exclude=./debootstrap",
        "-C",
        str(rootfs),
        "-c",
        ".",
    )


def import_argv(tag: str, changes: Sequence[str]) -> tuple[str, ...]:
    argv: list[str] = ["docker", "import"]
    for change in changes:
        argv += ["--change", change]
    argv += ["-", tag]
    return tuple(argv)


def import_rootfs(rootfs: Path, tag: str, changes: Sequence[str]) -> None:
    """``tar -C rootfs -c . | docker import --change ... - TAG``, failing if either side fails."""
    tar_cmd, imp_cmd = tar_argv(rootfs), import_argv(tag, changes)
    try:
        tar = subprocess.Popen(list(tar_cmd), stdout=subprocess.PIPE)
    except FileNotFoundError:
        raise ToolMissing("tar: command not found") from None
    assert tar.stdout is not None
    try:
        imp = subprocess.run(list(imp_cmd), stdin=tar.stdout, stdout=subprocess.PIPE, check=False)
    except FileNotFoundError:
        tar.kill()
        tar.wait()
        raise ToolMissing("docker: command not found", SETUP_HINT) from None
    finally:
        tar.stdout.close()
    tar_rc = tar.wait()
    if tar_rc != 0:
        raise StepFailed(
            f"tar of the base rootfs failed with exit code {tar_rc}: {shlex.join(tar_cmd)}"
        )
    if imp.returncode != 0:
        raise StepFailed(f"docker import failed with exit code {imp.returncode} (tag {tag})")
    image_id = imp.stdout.decode(errors="replace").strip()
    print(f"base-image: imported {tag} ({image_id[:19]})", flush=True)


def base_image_plan(
    workdir: Path,
    tag: str = DEFAULT_TAG,
    suite: str = DEFAULT_SUITE,
    mirror: str | None = None,
    *,
    packages: Sequence[str] = BASE_PACKAGES,
    ca_dir: Path | None = HOST_CA_DIR,
) -> list[Action]:
    """The actions that build ``tag`` from a debootstrapped rootfs in ``workdir / "rootfs"``.

    ``mirror`` None leaves the choice (and the image's ``sources.list``) to debootstrap's
    default. ``ca_dir`` (the host's extra CA certificates) is copied in when not None. The plan
    removes the rootfs at its end; :func:`ensure_base_image` also does on failure.
    """
    rootfs = workdir / "rootfs"
    debootstrap: list[str] = [
        "debootstrap",
        "--variant=minbase",
        "--components=main",
        "--include=" + ",".join(packages),
        suite,
        str(rootfs),
    ]
    if mirror:
        debootstrap.append(mirror)

    actions: list[Action] = [
        Remove(rootfs, desc="stale rootfs from an earlier run"),
        Run(
            tuple(debootstrap),
            env={"DEBIAN_FRONTEND": "noninteractive"},
            desc=f"debootstrap {suite} (minbase) with {len(packages)} extra packages",
        ),
    ]
    if ca_dir is not None:
        actions += [
            Run(
                (
                    "cp",
                    "-a",
                    "--no-preserve=ownership",
                    f"{ca_dir}/.",
                    str(rootfs / HOST_CA_DIR.relative_to("/")),
                ),
                desc="copy the host's extra CA certificates",
            ),
            Run(("chroot", str(rootfs), "update-ca-certificates"), desc="trust them in the image"),
        ]
    if mirror:
        actions += [
            WriteFile(
                rootfs / "etc/apt/sources.list.d/debian.sources",
                apt_sources(mirror, suite),
                desc="apt sources",
            ),
            Remove(rootfs / "etc/apt/sources.list", desc="debootstrap's one-line sources.list"),
        ]
    actions += [
        WriteFile(rootfs / "etc/apt/apt.conf.d/90cleanroom", APT_CONF, desc="apt: no recommends"),
        WriteFile(
            rootfs / "etc/dpkg/dpkg.cfg.d/90cleanroom-nodoc", DPKG_NODOC, desc="dpkg: no docs"
        ),
        Run(
            ("sh", "-c", TRIM_SCRIPT, "trim", str(rootfs)),
            desc="delete docs, man pages, translations",
        ),
        Run(("chroot", str(rootfs), "apt-get", "clean"), desc="drop downloaded .debs"),
        Remove(
            rootfs / "var/lib/apt/lists", desc="package lists (an `apt-get update` restores them)"
        ),
        Run(("mkdir", "-p", str(rootfs / "var/lib/apt/lists/partial")), desc="empty package lists"),
        # The host's resolver and name must not leak into the image (Docker mounts its own).
        WriteFile(rootfs / "etc/resolv.conf", "", desc="empty (Docker provides it at run time)"),
        WriteFile(rootfs / "etc/hostname", "", desc="empty (Docker provides it at run time)"),
    ]
    changes = image_changes(suite, mirror)
    actions += [
        Call(
            functools.partial(import_rootfs, rootfs, tag, changes),
            desc=f"{shlex.join(tar_argv(rootfs))} | {shlex.join(import_argv(tag, changes))}",
        ),
        Remove(rootfs, desc="the rootfs, now in the image"),
    ]
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
        proc = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except FileNotFoundError:
        return False, "docker: command not found"
    except subprocess.TimeoutExpired:
        return False, "docker info did not answer within 30 s"
    if proc.returncode != 0:
        err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return False, f"the Docker engine is not answering ({err})"
    return True, ""


def _image_id(tag: str) -> str:
    """The image id of ``tag``, or "" when the engine has no such image."""
    try:
        proc = subprocess.run(
            ["docker", "image", "inspect", "--format", "{{.Id}}", tag],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except FileNotFoundError:
        raise ToolMissing("docker: command not found", SETUP_HINT) from None
    return proc.stdout.strip() if proc.returncode == 0 else ""


def image_exists(tag: str) -> bool:
    """True when the local engine has an image ``tag``."""
    return bool(_image_id(tag))


def _image_summary(tag: str) -> str:
    proc = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}} {{.Size}}", tag],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    parts = proc.stdout.split()
    if proc.returncode != 0 or len(parts) != 2 or not parts[1].isdigit():
        return tag
    return f"{tag} ({parts[0][:19]}, {int(parts[1]) / 1e6:.0f} MB)"


def safe_remove_tree(path: Path) -> None:
    """Remove a rootfs tree, but never through a mount (a failed debootstrap can leave /proc,
    /sys or a bind-mounted /dev inside it, and deleting through those would hit the host)."""
    if not path.exists():
        return
    for point in planmod.mounts_under(path):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    left = planmod.mounts_under(path)
    if left:
        print(f"base-image: not removing {path}: still mounted: {', '.join(left)}", file=sys.stderr)
        return
    shutil.rmtree(path, ignore_errors=True)


def check_tools() -> None:
    """Raise :class:`ToolMissing` (or :class:`BadInput`) unless a build can run here."""
    ok, why = _docker_ok()
    if not ok:
        raise ToolMissing(why, SETUP_HINT)
    for tool in ("debootstrap", "chroot", "tar"):
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
            raise ToolMissing(f"{tool}: command not found", SETUP_HINT)
    if os.geteuid() != 0:
        raise BadInput(
            "building the base image needs root (debootstrap and chroot)",
            "run it as root, e.g. in CI",
        )


def ensure_base_image(
    tag: str = DEFAULT_TAG, rebuild: bool = False, *, suite: str = DEFAULT_SUITE
) -> None:
    """Build ``tag`` from Debian packages unless the engine already has it (or ``rebuild``)."""
    ok, why = _docker_ok()
    if not ok:
        raise ToolMissing(why, SETUP_HINT)
    if not rebuild and image_exists(tag):
        print(f"base-image: {_image_summary(tag)} already present", flush=True)
        return
    check_tools()
    mirror = host_debian_mirror(suite)
    ca_dir = HOST_CA_DIR if HOST_CA_DIR.is_dir() else None
    print(
        f"base-image: building {tag} from Debian {suite}"
        f" ({'mirror ' + mirror if mirror else 'debootstrap default mirror'})",
        flush=True,
    )
    old_id = _image_id(tag)
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="cleanroom-base-"))
    try:
        for action in base_image_plan(workdir, tag, suite, mirror, ca_dir=ca_dir):
            step = time.monotonic()
            print(f"base-image: {action.show()}", flush=True)
            planmod.execute([action])
            took = time.monotonic() - step
            if took >= 1:
                print(f"base-image:   ({took:.0f} s)", flush=True)
    except StepFailed as exc:
        # debootstrap's own log (the dpkg errors) lives in the rootfs, which is removed below.
        log = workdir / "rootfs/debootstrap/debootstrap.log"
        if log.is_file():
            kept = Path(tempfile.gettempdir()) / "cleanroom-debootstrap.log"
            shutil.copyfile(log, kept)
            tail = log.read_text(errors="replace").splitlines()[-15:]
            detail = f"debootstrap's log is kept in {kept}; its last lines:\n" + "\n".join(tail)
            raise StepFailed(exc.message, detail) from None
        raise
    finally:
        safe_remove_tree(workdir)
    print(
        f"base-image: built {_image_summary(tag)} in {time.monotonic() - started:.0f} s", flush=True
    )
    if old_id and old_id != _image_id(tag):
        # The replaced image is now untagged; drop it unless something still builds on it.
        subprocess.run(["docker", "image", "rm", old_id], capture_output=True, check=False)
