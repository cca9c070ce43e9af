"""The offline base image: its plan (pure), the host mirror lookup, and the tool checks."""

from __future__ import annotations

import io
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
from cleanroom import baseimage
from cleanroom.baseimage import (
    BASE_PACKAGES,
    base_image_plan,
    host_debian_mirror,
    image_changes,
    safe_remove_tree,
)
from cleanroom.errors import ToolMissing
from cleanroom.plan import Action, Call, Remove, Run, WriteFile, execute

MIRROR = "http://mirror.invalid/debian"


def _runs(plan: Sequence[Action]) -> list[tuple[str, ...]]:
    return [a.argv for a in plan if isinstance(a, Run)]


def _writes(plan: Sequence[Action]) -> dict[Path, str | bytes]:
    return {a.path: a.content for a in plan if isinstance(a, WriteFile)}


def test_plan_debootstraps_minbase_with_packages_and_mirror(tmp_path: Path) -> None:
    plan = base_image_plan(tmp_path, mirror=MIRROR)
    rootfs = tmp_path / "rootfs"
    deb = next(argv for argv in _runs(plan) if argv[0] == "debootstrap")
    assert "--variant=minbase" in deb
    assert deb[-3:] == ("bookworm", str(rootfs), MIRROR)
    include = next(a for a in deb if a.startswith("--include="))
    assert include.removeprefix("--include=").split(",") == list(BASE_PACKAGES)
    for pkg in ("python3.11", "python3.11-venv", "python3.11-dev", "build-essential", "git"):
        assert pkg in BASE_PACKAGES
    # The venv package's virtual dependency must be named by its real provider.
    assert "python3-distutils" in BASE_PACKAGES


def test_plan_trusts_host_cas_and_points_apt_at_the_mirror(tmp_path: Path) -> None:
    ca = tmp_path / "cas"
    plan = base_image_plan(tmp_path, mirror=MIRROR, ca_dir=ca)
    rootfs = tmp_path / "rootfs"
    runs = _runs(plan)
    cp = next(argv for argv in runs if argv[0] == "cp")
    assert cp[-2:] == (f"{ca}/.", str(rootfs / "usr/local/share/ca-certificates"))
    assert ("chroot", str(rootfs), "update-ca-certificates") in runs
    assert runs.index(cp) < runs.index(("chroot", str(rootfs), "update-ca-certificates"))
    sources = _writes(plan)[rootfs / "etc/apt/sources.list.d/debian.sources"]
    assert isinstance(sources, str)
    assert f"URIs: {MIRROR}\n" in sources
    assert "Suites: bookworm bookworm-updates\n" in sources
    assert (
        Remove(rootfs / "etc/apt/sources.list", desc="debootstrap's one-line sources.list") in plan
    )


def test_plan_without_mirror_or_cas_keeps_debootstrap_defaults(tmp_path: Path) -> None:
    plan = base_image_plan(tmp_path, ca_dir=None)
    rootfs = tmp_path / "rootfs"
    deb = next(argv for argv in _runs(plan) if argv[0] == "debootstrap")
    assert deb[-1] == str(rootfs)
    assert not any(argv[0] == "cp" for argv in _runs(plan))
    assert rootfs / "etc/apt/sources.list.d/debian.sources" not in _writes(plan)
    assert not any(isinstance(a, Remove) and a.path.name == "sources.list" for a in plan)


def test_plan_imports_then_removes_the_rootfs(tmp_path: Path) -> None:
    plan = base_image_plan(tmp_path, tag="x:y", mirror=MIRROR)
    rootfs = tmp_path / "rootfs"
    assert plan[0] == Remove(rootfs, desc="stale rootfs from an earlier run")
    assert isinstance(plan[-2], Call)
    assert "| docker import" in plan[-2].desc and plan[-2].desc.endswith("- x:y")
    assert isinstance(plan[-1], Remove) and plan[-1].path == rootfs
    writes = _writes(plan)
    assert writes[rootfs / "etc/resolv.conf"] == ""


def test_image_changes() -> None:
    changes = image_changes("bookworm", MIRROR)
    assert 'CMD ["/bin/bash"]' in changes
    assert "ENV REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt" in changes
    assert "ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" in changes
    assert any(c.startswith("ENV PATH=/usr/local/sbin:") for c in changes)
    argv = baseimage.import_argv("t:1", changes)
    assert argv[:2] == ("docker", "import") and argv[-2:] == ("-", "t:1")
    assert argv.count("--change") == len(changes)


def test_dry_run_touches_nothing(tmp_path: Path) -> None:
    out = io.StringIO()
    execute(base_image_plan(tmp_path, mirror=MIRROR), dry_run=True, out=out)
    assert "[dry-run] run: DEBIAN_FRONTEND=noninteractive debootstrap" in out.getvalue()
    assert list(tmp_path.iterdir()) == []


def _apt(tmp_path: Path, files: dict[str, str]) -> Path:
    etc = tmp_path / "apt"
    (etc / "sources.list.d").mkdir(parents=True)
    for name, text in files.items():
        (etc / name).write_text(text)
    return etc


def test_host_mirror_from_deb822(tmp_path: Path) -> None:
    etc = _apt(
        tmp_path,
        {
            "sources.list.d/debian.sources": (
                "Types: deb\n"
                "# a comment\n"
                "URIs: http://mirror.invalid/debian/\n"
                "Suites: bookworm bookworm-updates\n"
                "Components: main\n"
                "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
                "\n"
                "Types: deb\n"
                "URIs: http://mirror.invalid/debian-security\n"
                "Suites: bookworm-security\n"
                "Components: main\n"
            )
        },
    )
    assert host_debian_mirror(etc_apt=etc) == "http://mirror.invalid/debian"
    assert host_debian_mirror("bookworm", etc_apt=etc) == "http://mirror.invalid/debian"


def test_host_mirror_from_one_line_sources(tmp_path: Path) -> None:
    etc = _apt(
        tmp_path,
        {
            "sources.list": (
                "# deb http://commented.invalid/debian bookworm main\n"
                "deb http://security.invalid/debian-security bookworm-security main\n"
                "deb [arch=amd64] https://other.invalid/debian bookworm main\n"
            )
        },
    )
    assert host_debian_mirror("bookworm", etc_apt=etc) == "https://other.invalid/debian"


def test_host_mirror_skips_disabled_and_non_http(tmp_path: Path) -> None:
    etc = _apt(
        tmp_path,
        {
            "sources.list.d/a.sources": (
                "Types: deb\nURIs: http://off.invalid/debian\nSuites: bookworm\nEnabled: no\n\n"
                "Types: deb-src\nURIs: http://src.invalid/debian\nSuites: bookworm\n\n"
                "Types: deb\nURIs: file:/srv/repo\nSuites: bookworm\n"
            )
        },
    )
    assert host_debian_mirror("bookworm", etc_apt=etc) is None
    assert host_debian_mirror(etc_apt=tmp_path / "missing") is None


def test_safe_remove_tree(tmp_path: Path) -> None:
    tree = tmp_path / "rootfs"
    (tree / "a/b").mkdir(parents=True)
    (tree / "a/b/f").write_text("x")
    safe_remove_tree(tree)
    assert not tree.exists()
    safe_remove_tree(tree)  # missing is fine


def test_missing_docker_names_setup_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolMissing) as info:
        baseimage.ensure_base_image()
    assert "docker" in info.value.message
    assert "docker/setup-engine" in info.value.detail


def _engine_answers() -> bool:
    try:
        return baseimage._docker_ok()[0]
    except ToolMissing:
        return False


@pytest.mark.skipif(not _engine_answers(), reason="no Docker engine answers (run docker/setup-engine)")
@pytest.mark.skipif(os.geteuid() != 0, reason="debootstrap needs root")
def test_built_image_has_python_ssl_and_the_hosts_cas() -> None:
    baseimage.ensure_base_image(baseimage.DEFAULT_TAG)  # built here when missing (about a minute)
    proc = subprocess.run(
        ["docker", "run", "--rm", "--network=none", baseimage.DEFAULT_TAG, "sh", "-c",
         "python3.11 -c \"import ssl, venv, sysconfig; print(sysconfig.get_config_var('INCLUDEPY'))\""
         " && echo $REQUESTS_CA_BUNDLE && cat /etc/ssl/certs/ca-certificates.crt"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "/usr/include/python3.11"
    assert lines[1] == "/etc/ssl/certs/ca-certificates.crt"
    bundle = "\n".join(lines[2:])
    for extra in Path("/usr/local/share/ca-certificates").glob("*.crt"):
        body = "".join(extra.read_text().split("-----")[2].split())
        assert body[:64] in bundle.replace("\n", ""), f"{extra.name} is not trusted in the image"
