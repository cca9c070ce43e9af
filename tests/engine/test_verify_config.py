"""`[verify]` in cleanroom.toml (select, ignore, per-path-ignores), and verify's one rule table:
every format, `checked`/`skipped` and the README's rule list read the same rules. Through the CLI,
as a user runs it."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import tomlkit
from cleanroom.verify.rules import RULE_DOCS, RULE_NAMES
from helpers import GENERATED_PB2, ROOT, cli, git, set_config, snapshot


def commit_all(repo: Path, message: str = "plant") -> None:
    git(repo, "add", "-A", "-f")
    git(repo, "commit", "-q", "-m", message)


def verify(repo: Path, *args: str) -> tuple[int, dict]:
    r = cli("verify", "--json", *args, cwd=repo)
    assert r.rc in (0, 1), r.text
    assert "Traceback" not in r.err, r.text
    return r.rc, json.loads(r.out)


def rules_of(doc: dict) -> list[str]:
    return [f["rule"] for f in doc["findings"]]


def plant_context_leak(repo: Path) -> None:
    """A build with its own context (`web`) sends `web/out/bundle.js`, an artifact by the repo's
    pattern `/web/out/` that web/.dockerignore does not exclude: a context-leak, and nothing else
    (the `!` line with a wildcard makes verify look at every artifact file of that context)."""
    (repo / "web" / "out").mkdir(parents=True)
    (repo / "web" / "out" / "bundle.js").write_text("x")
    (repo / "web" / "Dockerfile").write_text("FROM scratch\nCOPY . /web/\n")
    (repo / "web" / ".dockerignore").write_text("**/.hypothesis\n*.md\n!docs/*.md\n")
    set_config(repo, "artifacts", "extra", ["/.cleanroom/", ".hypothesis/", "/web/out/"])
    set_config(repo, "docker", "builds", [{"dockerfile": "web/Dockerfile", "context": "web"}])
    with (repo / ".gitignore").open("a") as fh:
        fh.write("/web/out/\n")
    with (repo / ".dockerignore").open("a") as fh:
        fh.write("/web/out\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "web build")


def plant_tracked(repo: Path, *paths: str) -> None:
    for p in paths:
        (repo / p).parent.mkdir(parents=True, exist_ok=True)
        (repo / p).write_text(GENERATED_PB2)
    git(repo, "add", "-f", "--", *paths)
    git(repo, "commit", "-q", "-m", "tracked artifacts")


def plant_drift(repo: Path) -> None:
    doc = tomlkit.parse((repo / "pyproject.binary.toml").read_text())
    doc["project"]["description"] = "drifted"
    (repo / "pyproject.binary.toml").write_text(tomlkit.dumps(doc))
    commit_all(repo, "drift")


# ------------------------------------------------------------------------- the acceptance case


def test_ignoring_context_leak_drops_its_finding_and_the_exit_code_follows(repo: Path) -> None:
    plant_context_leak(repo)
    rc, doc = verify(repo)
    assert rc == 1
    assert [(f["rule"], f["path"]) for f in doc["findings"]] == [("context-leak", "web/out/bundle.js")]

    set_config(repo, "verify", "ignore", ["context-leak"])
    rc, doc = verify(repo)
    assert (rc, doc["findings"]) == (0, [])
    assert "context-leak" not in doc["checked"]
    assert doc["skipped"]["context-leak"] == "ignored in cleanroom.toml [verify] ignore"
    # the text format says so too, and is clean
    r = cli("verify", cwd=repo)
    assert r.rc == 0, r.text
    assert "context-leak (ignored in cleanroom.toml [verify] ignore)" in r.out
    assert r.out.strip().splitlines()[-1].startswith("verify: clean")

    # another finding: the exit code reflects it, and only it
    plant_tracked(repo, "gen/x_pb2.py")
    rc, doc = verify(repo)
    assert rc == 1 and rules_of(doc) == ["tracked-artifact"]


# ------------------------------------------------------------------------------ select / ignore


def test_select_runs_only_the_selected_rules(repo: Path) -> None:
    plant_tracked(repo, "gen/x_pb2.py")
    plant_drift(repo)
    rc, doc = verify(repo)
    assert rc == 1 and set(rules_of(doc)) == {"tracked-artifact", "variant-drift"}

    set_config(repo, "verify", "select", ["variant-drift"])
    rc, doc = verify(repo)
    assert rc == 1 and rules_of(doc) == ["variant-drift"]
    assert doc["checked"] == ["variant-drift"]
    assert doc["skipped"]["tracked-artifact"] == "not selected in cleanroom.toml [verify] select"
    assert set(doc["skipped"]) == set(RULE_NAMES) - {"variant-drift"}

    # ignore wins over select
    set_config(repo, "verify", "ignore", ["variant-drift"])
    rc, doc = verify(repo)
    assert (rc, doc["findings"], doc["checked"]) == (0, [], [])
    assert doc["skipped"]["variant-drift"] == "ignored in cleanroom.toml [verify] ignore"


def test_select_empty_list_runs_nothing(repo: Path) -> None:
    plant_tracked(repo, "gen/x_pb2.py")
    set_config(repo, "verify", "select", [])
    rc, doc = verify(repo)
    assert (rc, doc["findings"], doc["checked"]) == (0, [], [])
    assert list(doc["skipped"]) == list(RULE_NAMES)


def test_a_rule_with_two_names_can_lose_one(repo: Path) -> None:
    """generated-missing and generated-stale are one check: ignoring one keeps the other."""
    shutil.copytree(ROOT / "proto", repo / "proto")
    commit_all(repo, "proto")
    set_config(repo, "verify", "ignore", ["generated-stale"])
    rc, doc = verify(repo, "--out", str(repo / "nowhere"))
    assert rc == 1 and rules_of(doc) == ["generated-missing"]
    assert "generated-missing" in doc["checked"] and "generated-stale" in doc["skipped"]
    set_config(repo, "verify", "ignore", ["generated-missing"])
    rc, doc = verify(repo, "--out", str(repo / "nowhere"))
    assert (rc, doc["findings"]) == (0, [])


# ------------------------------------------------------------------------------ per-path-ignores


def test_per_path_ignores_drop_matching_findings_with_a_note(repo: Path) -> None:
    plant_tracked(repo, "vendor/lib/a_pb2.py", "gen/b_pb2.py")
    rc, doc = verify(repo)
    assert sorted(f["path"] for f in doc["findings"]) == ["gen/b_pb2.py", "vendor/lib/a_pb2.py"]

    set_config(repo, "verify", "per-path-ignores", {"vendor/**": ["tracked-artifact"]})
    rc, doc = verify(repo)
    assert rc == 1 and [f["path"] for f in doc["findings"]] == ["gen/b_pb2.py"]
    assert "tracked-artifact" in doc["checked"]  # the rule ran
    note = "1 finding(s) ignored by [verify] per-path-ignores in cleanroom.toml (tracked-artifact 1)"
    assert note in doc["notes"]
    r = cli("verify", cwd=repo)  # every format carries the note
    assert f"note: {note}" in r.out
    r = cli("verify", "--format", "concise", cwd=repo)
    assert f"note: {note}" in r.out

    # a glob without "/" is matched against the last part, at any depth
    set_config(repo, "verify", "per-path-ignores", {"*_pb2.py": ["tracked-artifact"]})
    rc, doc = verify(repo)
    assert (rc, doc["findings"]) == (0, [])
    assert any(n.startswith("2 finding(s) ignored by [verify] per-path-ignores") for n in doc["notes"])


@pytest.mark.parametrize(("glob", "dropped"), [
    ("vendor/*", []),  # `*` stays within one part
    ("vendor/*/*", ["vendor/lib/a_pb2.py"]),
    ("vendor", []),  # a glob with no "/" is matched against the last part only
    ("vendor/**", ["vendor/lib/a_pb2.py"]),
    ("**/lib/*.py", ["vendor/lib/a_pb2.py"]),
    ("**", ["gen/b_pb2.py", "vendor/lib/a_pb2.py"]),
    ("gen/[ab]_pb2.py", ["gen/b_pb2.py"]),
    ("gen/[!ab]_pb2.py", []),
    ("gen/?_pb2.py", ["gen/b_pb2.py"]),
])
def test_per_path_glob_semantics(repo: Path, glob: str, dropped: list[str]) -> None:
    plant_tracked(repo, "vendor/lib/a_pb2.py", "gen/b_pb2.py")
    set_config(repo, "verify", "per-path-ignores", {glob: ["tracked-artifact"]})
    _, doc = verify(repo)
    kept = sorted(f["path"] for f in doc["findings"])
    assert kept == sorted({"gen/b_pb2.py", "vendor/lib/a_pb2.py"} - set(dropped))


def test_per_path_ignores_only_drop_the_named_rules(repo: Path) -> None:
    plant_tracked(repo, "gen/b_pb2.py")
    set_config(repo, "verify", "per-path-ignores", {"gen/**": ["variant-drift"]})
    rc, doc = verify(repo)
    assert rc == 1 and rules_of(doc) == ["tracked-artifact"]
    assert not any("per-path-ignores" in n for n in doc["notes"])


# ---------------------------------------------------------------------------------- bad names


@pytest.mark.parametrize(("key", "value", "needle"), [
    ("ignore", ["context-leek"], "verify.ignore[0]: unknown rule 'context-leek' (did you mean 'context-leak'?)"),
    ("select", ["tracked-artifact", "gitignore_gap"],
     "verify.select[1]: unknown rule 'gitignore_gap' (did you mean 'gitignore-gap'?)"),
    ("per-path-ignores", {"tests/**": ["tracked-artifacts"]},
     "verify.per-path-ignores.\"tests/**\"[0]: unknown rule 'tracked-artifacts' (did you mean 'tracked-artifact'?)"),
    ("ignore", ["E501"], "verify.ignore[0]: unknown rule 'E501' (the rules: tracked-artifact, "),
])
@pytest.mark.parametrize("args", [(), ("--fix",), ("--json",)], ids=["plain", "fix", "json"])
def test_unknown_rule_name_is_a_config_error(repo: Path, key: str, value: object, needle: str,
                                              args: tuple[str, ...]) -> None:
    gi = repo / ".gitignore"  # a gap --fix would otherwise fill
    gi.write_text("".join(ln for ln in gi.read_text().splitlines(keepends=True) if "_pb2" not in ln))
    set_config(repo, "verify", key, value)
    before = snapshot(repo)
    r = cli("verify", *args, cwd=repo)
    assert r.rc == 2, r.text
    assert "Traceback" not in r.text
    lines = r.err.splitlines()
    assert len(lines) == 1, r.text
    assert lines[0].startswith(f"cleanroom verify: error: {repo}/cleanroom.toml: "), r.text
    assert needle in lines[0]
    if args == ("--json",):
        assert json.loads(r.out)["exit_code"] == 2
    else:
        assert r.out == "", r.text
    assert snapshot(repo) == before


@pytest.mark.parametrize(("text", "needle"), [
    ('[verify]\nper-path-ignores = ["tests/**"]\n',
     'verify.per-path-ignores: expected a table of "glob" = ["rule", ...]'),
    ('[verify]\nper-path-ignores = { "tests/**" = "context-leak" }\n',
     'verify.per-path-ignores."tests/**": expected a list of a string'),
    ('[verify]\nignore = "context-leak"\n', "verify.ignore: expected a list of a string"),
    ("[verify]\nper_path_ignores = {}\n",
     "unknown key 'verify.per_path_ignores' (expected one of: select, ignore, per-path-ignores)"),
])
def test_malformed_verify_section(repo: Path, text: str, needle: str) -> None:
    (repo / "cleanroom.toml").write_text(text)
    before = snapshot(repo)
    r = cli("verify", cwd=repo)
    assert r.rc == 2 and len(r.err.splitlines()) == 1 and "Traceback" not in r.text, r.text
    assert needle in r.err
    assert snapshot(repo) == before


# -------------------------------------------------------------------------------------- --fix


def _drop_pb2_lines(path: Path) -> None:
    path.write_text("".join(ln for ln in path.read_text().splitlines(keepends=True) if "_pb2" not in ln))


def test_fix_adds_no_rule_for_an_ignored_rule(repo: Path) -> None:
    gi, di = repo / ".gitignore", repo / ".dockerignore"
    _drop_pb2_lines(gi)
    _drop_pb2_lines(di)
    set_config(repo, "verify", "ignore", ["gitignore-gap", "dockerignore-gap"])
    before = snapshot(repo)
    r = cli("verify", "--fix", cwd=repo)
    assert "verify --fix: .gitignore: left as it is: gitignore-gap is ignored in cleanroom.toml [verify] ignore" \
        in r.out, r.text
    assert "verify --fix: Docker ignore files: left as they are: dockerignore-gap is ignored" in r.out
    assert snapshot(repo) == before
    # the rules that do run are fixed as before
    set_config(repo, "verify", "ignore", ["gitignore-gap"])
    r = cli("verify", "--fix", cwd=repo)
    assert r.rc == 0, r.text
    assert "**/*_pb2.py" in di.read_text() and "_pb2" not in gi.read_text()


def test_fix_adds_no_rule_where_per_path_ignores_drop_the_gap(repo: Path) -> None:
    gi, di = repo / ".gitignore", repo / ".dockerignore"
    _drop_pb2_lines(gi)
    _drop_pb2_lines(di)
    set_config(repo, "verify", "per-path-ignores", {".gitignore": ["gitignore-gap"]})
    r = cli("verify", "--fix", cwd=repo)
    assert r.rc == 0, r.text
    assert "verify --fix: .gitignore: not adding 4 rule(s): its gitignore-gap findings are ignored by " \
           "[verify] per-path-ignores in cleanroom.toml" in r.out
    assert "_pb2" not in gi.read_text() and "**/*_pb2.py" in di.read_text()
    _, doc = verify(repo)
    assert doc["findings"] == []
    assert any("4 finding(s) ignored by [verify] per-path-ignores" in n for n in doc["notes"])


# ------------------------------------------------------------------------- one table, every reader


def test_sarif_and_json_list_the_rules_of_the_one_table(repo: Path) -> None:
    set_config(repo, "verify", "ignore", ["context-leak"])
    plant_tracked(repo, "gen/x_pb2.py")
    r = cli("verify", "--format", "sarif", cwd=repo)
    assert r.rc == 1, r.text
    run = json.loads(r.out)["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert [x["id"] for x in rules] == list(RULE_NAMES)  # an ignored rule is still a rule
    assert {x["id"]: x["shortDescription"]["text"] for x in rules} == RULE_DOCS
    for res in run["results"]:
        assert rules[res["ruleIndex"]]["id"] == res["ruleId"]

    _, doc = verify(repo)
    assert [*doc["checked"], *doc["skipped"]] == [n for n in RULE_NAMES if n in doc["checked"]] + [
        n for n in RULE_NAMES if n in doc["skipped"]]
    assert set(doc["checked"]) | set(doc["skipped"]) == set(RULE_NAMES)
    assert not set(doc["checked"]) & set(doc["skipped"])
    assert doc["skipped"]["engine-context-diff"] == "not asked for (--engine)"
    assert doc["skipped"]["context-leak"] == "ignored in cleanroom.toml [verify] ignore"


def test_findings_are_in_the_tables_order(repo: Path) -> None:
    plant_drift(repo)
    plant_tracked(repo, "gen/x_pb2.py")
    for fmt in ("json", "concise", "github"):
        r = cli("verify", "--format", fmt, cwd=repo)
        assert r.rc == 1, r.text
        assert r.out.index("tracked-artifact") < r.out.index("variant-drift"), fmt


def _readme_rule_table() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## What verify checks\n", 1)[1].split("\n## ", 1)[0]
    names: list[str] = []
    rows = [ln for ln in section.splitlines() if ln.startswith("| `")]
    assert rows, "no rule table in the README's 'What verify checks'"
    for row in rows:
        first = row.split(" | ", 1)[0]
        names += re.findall(r"`([^`]+)`", first)
    return names


def test_readme_rule_list_matches_the_registered_rules() -> None:
    listed = _readme_rule_table()
    assert sorted(set(listed) - set(RULE_NAMES)) == [], "the README lists rules that are not registered"
    assert sorted(set(RULE_NAMES) - set(listed)) == [], "registered rules missing from the README"
    assert listed == list(RULE_NAMES), "the README's rule list is not in report order"


@pytest.mark.parametrize("argv", [("build", "binary"), ("build", "binary", "--dry-run")])
def test_the_main_job_stops_on_an_unknown_rule_before_any_stage(repo: Path, argv: tuple[str, ...]) -> None:
    """The main job's last stage is verify: a misspelt rule in [verify] is exit 2 at once, not
    after the build (no engine needed to say so)."""
    set_config(repo, "verify", "ignore", ["context-leek"])
    before = snapshot(repo)
    r = cli(*argv, cwd=repo)
    assert r.rc == 2, r.text
    assert "==> [1/" not in r.out and "Traceback" not in r.text
    assert r.err.splitlines() == [f"cleanroom build: error: {repo}/cleanroom.toml: verify.ignore[0]: unknown rule "
                                  "'context-leek' (did you mean 'context-leak'?)"], r.text
    assert snapshot(repo) == before
