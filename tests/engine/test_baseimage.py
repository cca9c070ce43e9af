"""The offline base image: its plan (pure), the host mirror lookup, and the tool checks."""

from __future__ import annotations

import io
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
from cleanroom.pipeline import baseimage
from cleanroom.pipeline.baseimage import (
    BASE_PACKAGES,
    base_image_plan,
    host_debian_mirror,
    image_changes,
)
from cleanroom.core.errors import StepFailed, ToolMissing
from cleanroom.core.actions import Action, Call, WriteFile, execute

MIRROR = "http://mirror.invalid/debian"


def _writes(plan: Sequence[Action]) -> dict[Path, str | bytes]:
    return {a.path: a.content for a in plan if isinstance(a, WriteFile)}


def _mm(plan: Sequence[Action]) -> tuple[str, ...]:
    call = next(a for a in plan if isinstance(a, Call))
    return tuple(call.fn.args[0])  # type: ignore[attr-defined]


def test_plan_mmdebstraps_minbase_with_packages_and_mirror(tmp_path: Path) -> None:
    argv = _mm(base_image_plan(tmp_path, mirror=MIRROR))
    assert argv[0] == "mmdebstrap" and "--variant=minbase" in argv and "--mode=auto" in argv
    assert argv[-3:] == ("bookworm", "-", MIRROR)  # a tarball to stdout
    include = next(a for a in argv if a.startswith("--include="))
    assert include.removeprefix("--include=").split(",") == list(BASE_PACKAGES)
    for pkg in ("python3.11", "python3.11-venv", "python3.11-dev", "build-essential", "git"):
        assert pkg in BASE_PACKAGES
    # no docs, no recommends: from the first package on
    assert "--dpkgopt=path-exclude=/usr/share/doc/*" in argv
    assert '--aptopt=APT::Install-Recommends "false"' in argv


def test_plan_trusts_host_cas_and_points_apt_at_the_mirror(tmp_path: Path) -> None:
    ca = tmp_path / "cas"
    plan = base_image_plan(tmp_path, mirror=MIRROR, ca_dir=ca)
    argv = _mm(plan)
    sync = argv.index(f"--customize-hook=sync-in {ca} /usr/local/share/ca-certificates")
    assert argv.index('--customize-hook=chroot "$1" update-ca-certificates') > sync
    sources = _writes(plan)[tmp_path / "debian.sources"]
    assert isinstance(sources, str)
    assert f"URIs: {MIRROR}\n" in sources
    assert "Suites: bookworm bookworm-updates\n" in sources
    assert f"--customize-hook=upload {tmp_path / 'debian.sources'} /etc/apt/sources.list.d/debian.sources" in argv
    assert '--customize-hook=rm -f "$1/etc/apt/sources.list"' in argv


def test_plan_without_mirror_or_cas_keeps_the_defaults(tmp_path: Path) -> None:
    plan = base_image_plan(tmp_path, ca_dir=None)
    argv = _mm(plan)
    assert argv[-2:] == ("bookworm", "-")
    assert not any("sync-in" in a or "upload" in a for a in argv)
    assert _writes(plan) == {}


def test_plan_streams_into_docker_import(tmp_path: Path) -> None:
    plan = base_image_plan(tmp_path, tag="x:y", mirror=MIRROR)
    assert isinstance(plan[-1], Call)
    assert "| docker import" in plan[-1].desc and plan[-1].desc.endswith("- x:y")
    assert '--customize-hook=: > "$1/etc/resolv.conf"; : > "$1/etc/hostname"' in _mm(plan)


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
    assert "[dry-run] step: mmdebstrap --mode=auto" in out.getvalue()
    assert list(tmp_path.iterdir()) == []


def test_a_failing_producer_names_its_log(tmp_path: Path) -> None:
    log = tmp_path / "base.log"
    with pytest.raises(StepFailed) as info:
        baseimage.import_stream(["sh", "-c", "echo 'E: no such package' >&2; exit 100"], "x:y", (), log)
    assert str(log) in info.value.message and "exit code 100" in info.value.message
    assert "E: no such package" in log.read_text()


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
