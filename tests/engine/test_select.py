"""`cleanroom select` and variant drift: unit level and through the CLI."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import tomlkit
from cleanroom.core.config import Config
from cleanroom.variants.drift import find_drift
from cleanroom.core.errors import BadInput
from cleanroom.variants.select import render, select_plan, written_by_select
from helpers import cli, git, snapshot


def _parsed(path: Path) -> dict:
    return tomllib.loads(path.read_text())


@pytest.mark.parametrize("variant", ["binary", "source"])
def test_select_writes_stamped_copy_parsing_equal(repo: Path, variant: str) -> None:
    r = cli("select", variant, cwd=repo)
    assert r.rc == 0, r.text
    target = repo / "pyproject.toml"
    text = target.read_text()
    first = text.splitlines()[0]
    assert first.startswith("# GENERATED") and f"pyproject.{variant}.toml" in first
    assert "DO NOT EDIT" in first
    assert _parsed(target) == _parsed(repo / f"pyproject.{variant}.toml")
    # comments and order survive
    variant_lines = (repo / f"pyproject.{variant}.toml").read_text()
    assert text.endswith(variant_lines)
    assert git(repo, "check-ignore", "pyproject.toml").strip() == "pyproject.toml"


def test_select_binary_then_source_switches(repo: Path) -> None:
    assert cli("select", "binary", cwd=repo).rc == 0
    r = cli("select", "source", cwd=repo)
    assert r.rc == 0, r.text
    assert _parsed(repo / "pyproject.toml") == _parsed(repo / "pyproject.source.toml")


def test_hand_edit_refused_byte_identical_then_force(repo: Path) -> None:
    assert cli("select", "binary", cwd=repo).rc == 0
    target = repo / "pyproject.toml"
    edited = target.read_text().replace('"numpy>=1.26,<3"', '"numpy==2.0.0"')
    target.write_text(edited)
    before = snapshot(repo)
    r = cli("select", "source", cwd=repo)
    assert r.rc == 2
    assert "edited by hand" in r.err and "--force" in r.err
    assert '-    "numpy==2.0.0",' in r.err  # the difference is shown
    assert "Traceback" not in r.text
    assert snapshot(repo) == before
    r = cli("select", "source", "--force", cwd=repo)
    assert r.rc == 0, r.text
    assert _parsed(target) == _parsed(repo / "pyproject.source.toml")


def test_plain_copy_counts_as_hand_edit(repo: Path) -> None:
    (repo / "pyproject.toml").write_bytes((repo / "pyproject.binary.toml").read_bytes())
    r = cli("select", "binary", cwd=repo)
    assert r.rc == 2 and "edited by hand" in r.err


def test_without_gpu_drops_group_and_its_source(repo: Path) -> None:
    r = cli("select", "binary", "--without", "gpu", cwd=repo)
    assert r.rc == 0, r.text
    text = (repo / "pyproject.toml").read_text()
    data = tomllib.loads(text)
    assert "gpu" not in data["tool"]["poetry"].get("group", {})
    assert "dev" in data["tool"]["poetry"]["group"]
    assert "source" not in data["tool"]["poetry"]  # pytorch-cu128 was used only by gpu
    assert "without group(s): gpu" in text.splitlines()[0]
    assert "pytorch-cu128" in text.splitlines()[0]


def test_without_keeps_source_still_used(tmp_path: Path) -> None:
    (tmp_path / "pyproject.binary.toml").write_text(
        '[tool.poetry.dependencies]\nx = {version="1", source="s"}\n'
        '[tool.poetry.group.gpu]\noptional = true\n'
        '[tool.poetry.group.gpu.dependencies]\ny = {version="1", source="s"}\n'
        '[[tool.poetry.source]]\nname = "s"\nurl = "u"\n'
    )
    sel = render(tmp_path, Config(), "binary", ["gpu"])
    assert tomllib.loads(sel.content)["tool"]["poetry"]["source"][0]["name"] == "s"


def test_index_url_becomes_primary_source(repo: Path) -> None:
    r = cli("select", "source", "--without", "gpu", cwd=repo, env={"CLEANROOM_INDEX_URL": "https://mirror.example.invalid/simple"})
    assert r.rc == 0, r.text
    text = (repo / "pyproject.toml").read_text()
    src = tomllib.loads(text)["tool"]["poetry"]["source"]
    assert src[0] == {"name": "cleanroom-index", "url": "https://mirror.example.invalid/simple", "priority": "primary"}
    assert "CLEANROOM_INDEX_URL" in text.splitlines()[0]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["select", "gpu"], "unknown variant 'gpu'"),
        (["select", "binary", "--without", "nope"], "no dependency group 'nope'"),
        (["select", "binary", "--without", "dev"], "not optional"),
    ],
)
def test_bad_input_exit_2_nothing_changed(repo: Path, args: list[str], needle: str) -> None:
    before = snapshot(repo)
    r = cli(*args, cwd=repo)
    assert r.rc == 2, r.text
    assert needle in r.err
    assert len(r.err.strip().splitlines()) == 1 and "Traceback" not in r.text
    assert snapshot(repo) == before


def test_malformed_variant_names_file_and_line(repo: Path) -> None:
    p = repo / "pyproject.source.toml"
    p.write_text(p.read_text() + "\n[broken\nx = 1\n")
    before = snapshot(repo)
    r = cli("select", "source", cwd=repo)
    assert r.rc == 2
    n = len(p.read_text().splitlines()) - 1
    assert f"pyproject.source.toml:{n}:" in r.err, r.err
    assert snapshot(repo) == before


def test_missing_variant_file(repo: Path) -> None:
    (repo / "pyproject.binary.toml").unlink()
    r = cli("select", "binary", cwd=repo)
    assert r.rc == 2 and "pyproject.binary.toml: file not found" in r.err
    assert not (repo / "pyproject.toml").exists()


def test_written_by_select_detects_tamper(repo: Path) -> None:
    sel, _ = select_plan(repo, Config(), "binary")
    assert written_by_select(sel.content)
    assert not written_by_select(sel.content + "\n# more\n")


def test_select_refuses_non_file_target(repo: Path) -> None:
    (repo / "pyproject.toml").mkdir()
    with pytest.raises(BadInput, match="not a regular file"):
        select_plan(repo, Config(), "binary")


# --------------------------------------------------------------------------- drift


def test_clean_variants_have_no_drift(repo: Path) -> None:
    assert find_drift(repo, Config()) == []
    r = cli("verify", "--json", cwd=repo)
    assert r.rc == 0, r.text


def test_dependency_differences_are_allowed(repo: Path) -> None:
    # the real variants differ in torch/cupy and sources: none of that is drift
    b, s = _parsed(repo / "pyproject.binary.toml"), _parsed(repo / "pyproject.source.toml")
    assert b["tool"]["poetry"]["group"]["gpu"] != s["tool"]["poetry"]["group"]["gpu"]
    assert find_drift(repo, Config()) == []


def _edit(path: Path, fn) -> None:  # type: ignore[no-untyped-def]
    doc = tomlkit.parse(path.read_text())
    fn(doc)
    path.write_text(tomlkit.dumps(doc))


def test_pytest_option_in_one_variant_is_drift(repo: Path) -> None:
    import json

    _edit(repo / "pyproject.source.toml", lambda d: d["tool"]["pytest"]["ini_options"].__setitem__("timeout", 30))
    _edit(repo / "pyproject.binary.toml", lambda d: d["tool"]["pytest"]["ini_options"].__setitem__("xfail_strict", True))
    r = cli("verify", "--json", cwd=repo)
    assert r.rc == 1, r.text
    found = [f for f in json.loads(r.out)["findings"] if f["rule"] == "variant-drift"]
    keys = {f["message"].split("'")[1] for f in found}
    assert keys == {"tool.pytest.ini_options.timeout", "tool.pytest.ini_options.xfail_strict"}
    timeout = next(f for f in found if "timeout" in f["message"])
    assert "600" in timeout["message"] and "30" in timeout["message"]
    for f in found:
        assert set(f) >= {"rule", "severity", "path", "message", "fix"}


def test_drift_text_and_github_formats(repo: Path) -> None:
    _edit(repo / "pyproject.binary.toml", lambda d: d["project"].__setitem__("version", "9.9.9"))
    r = cli("verify", cwd=repo)
    assert r.rc == 1
    assert "variant-drift (1)" in r.out and "project.version" in r.out and "fix:" in r.out
    g = cli("verify", "--format", "github", cwd=repo)
    assert g.rc == 1 and g.out.startswith("::error file=pyproject.source.toml")
