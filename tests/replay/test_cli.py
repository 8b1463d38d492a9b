"""``agentrace replay`` and ``agentrace diff`` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import engine as e
import tracer as t
from engine.scenarios import credit, sample_path
from tui.cli import cli

FOREIGN = Path(__file__).parents[1] / "fixtures" / "foreign"


def pricing_plus_three(state: e.StateView, req: dict[str, Any]) -> e.Update:
    """A patched pricing agent (loaded by the command line as an override)."""
    apr = credit.BASE_APR[req["rating"]] + 3.0
    return e.Update({"pricing": {"apr": apr, "monthly_payment": 0.0}}, output={**req, "apr": apr})


def supervisor(state: Any, team: dict[str, Any]) -> dict[str, Any]:
    authors = {m["data"].get("name") for m in team["messages"] if m["type"] == "ai"}
    nxt = (
        "researcher"
        if "researcher" not in authors
        else "writer"
        if "writer" not in authors
        else "FINISH"
    )
    return {"next": nxt, "visited": ["supervisor"]}


def always_research(state: Any, team: dict[str, Any]) -> dict[str, Any]:
    return {"next": "researcher", "visited": ["supervisor"]}


def analysed_once(result: e.ChoreographyResult) -> None:
    n = len(result.state.get("analyses", []))
    assert n == 1, f"the request was analysed {n} times"


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = str(tmp_path / "cli.duckdb")
    with t.Store(path) as store:
        for f in (
            sample_path("credit"),
            sample_path("double-consume"),
            FOREIGN / "langgraph_openinference.jsonl",
        ):
            t.import_file(store, f)
    return path


def run_of(db: str, scenario: str | None, workflow: str | None = None) -> str:
    with t.Store(db, read_only=True) as store:
        return next(
            r.run_id
            for r in store.runs()
            if r.parent_run_id is None
            and (scenario is None or r.scenario == scenario)
            and (workflow is None or r.workflow == workflow)
        )


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_replay_prints_the_new_run_and_no_divergence(db: str) -> None:
    run = run_of(db, "credit")
    r = invoke("replay", run[:8], "--db", db)
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0].startswith(f"replayed run {run[:12]} (credit-decisioning): new run ")
    new = lines[0].rsplit(" ", 1)[1]
    assert "status: completed (recorded: completed); 5 steps, 6 versions" in r.output
    assert lines[-1] == "no divergence"
    with t.Store(db, read_only=True) as store:
        assert store.run(new).parent_run_id == run


def test_an_override_that_changes_behaviour_exits_3_and_says_where(db: str) -> None:
    run = run_of(db, "credit")
    r = invoke("replay", run, "--db", db, "--override", f"pricing={__name__}:pricing_plus_three")
    assert r.exit_code == 3, r.output
    assert f"override: pricing = {__name__}:pricing_plus_three" in r.output
    assert "DIVERGED at step 4 (pricing): output: /apr " in r.output
    assert "more divergence(s); --json lists them all" in r.output
    as_json = json.loads(
        invoke(
            "replay",
            run,
            "--db",
            db,
            "--json",
            "--override",
            f"pricing={__name__}:pricing_plus_three",
        ).output
    )
    assert as_json["diverged"] is True and as_json["overrides"] == ["pricing"]
    assert as_json["divergences"][0]["kind"] == "output" and as_json["divergences"][0]["step"] == 4


def test_from_version_forks_and_records_the_fork(db: str) -> None:
    run = run_of(db, "credit")
    r = invoke(
        "replay", run, "--db", db, "--from-version", "3",
        "--workflow", "engine.scenarios.credit:fixed_workflow",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert f"forked run {run[:12]} (credit-decisioning) at version 3: new run " in r.output
    assert "live from version 3 on; compared before it" in r.output
    new = r.output.splitlines()[0].rsplit(" ", 1)[1]
    with t.Store(db, read_only=True) as store:
        forked = store.run(new)
    assert forked.parent_run_id == run and forked.attributes["agentrace.run.fork_version"] == 3


def test_diff_prints_versions_and_spans(db: str) -> None:
    run = run_of(db, "credit")
    same = invoke("replay", run, "--db", db).output.splitlines()[0].rsplit(" ", 1)[1]
    r = invoke("diff", run, same, "--db", db)
    assert r.exit_code == 0 and r.output.splitlines()[-1].endswith("are the same")
    patched = invoke(
        "replay", run, "--db", db, "--override", f"pricing={__name__}:pricing_plus_three"
    )
    new = patched.output.splitlines()[0].rsplit(" ", 1)[1]
    r = invoke("diff", run[:10], new[:10], "--db", db)
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[0] == f"A {run} (credit-decisioning, completed)"
    assert "~ /pricing/apr: " in r.output and "changed  invoke_agent pricing #1: output" in r.output
    as_json = json.loads(invoke("diff", run, new, "--db", db, "--json").output)
    assert as_json["same"] is False and as_json["versions"][0]["version"] == 5


def test_an_imported_trace_is_listed_and_checked(db: str) -> None:
    run = run_of(db, None, "research_team")
    r = invoke("replay", run, "--db", db)
    assert r.exit_code == 0, r.output
    assert "records no workflow to re-execute; its 7 agent step(s):" in r.output
    assert r.output.count(" supervisor ") == 3
    good = invoke("replay", run, "--db", db, "--override", f"supervisor={__name__}:supervisor")
    assert (
        good.exit_code == 0
        and "supervisor: 3 recorded step(s), every output the same" in good.output
    )
    bad = invoke("replay", run, "--db", db, "--override", f"supervisor={__name__}:always_research")
    assert bad.exit_code == 3
    assert "supervisor: 2 of 3 recorded step(s) differ; first at step 5 (supervisor)" in bad.output


def test_explore_prints_the_breaking_schedule_and_its_seed(db: str) -> None:
    run = run_of(db, "double-consume")
    args = [
        "replay",
        run,
        "--db",
        db,
        "--explore",
        "30",
        "--invariant",
        f"{__name__}:analysed_once",
    ]
    r = invoke(*args, "--workflow", "engine.scenarios.choreography:research_pipeline")
    assert r.exit_code == 3, r.output
    assert "BROKEN after " in r.output and "the request was analysed 2 times" in r.output
    seed = r.output.splitlines()[-1].removeprefix("reproduce: --explore 1 --seed ")
    again = invoke("replay", run, "--db", db, "--explore", "1", "--seed", seed,
                   "--invariant", f"{__name__}:analysed_once")  # fmt: skip
    assert again.exit_code == 3 and f"(seed {seed})" in again.output


def test_bad_input_is_one_line_and_a_non_zero_exit(db: str, tmp_path: Path) -> None:
    r = CliRunner().invoke(cli, ["replay", "f" * 32, "--db", db])
    assert r.exit_code == 1 and "no run" in r.output
    r = CliRunner().invoke(
        cli, ["replay", run_of(db, "credit"), "--db", db, "--override", "pricing"]
    )
    assert r.exit_code == 2 and "AGENT=MODULE:FUNC" in r.output
    r = CliRunner().invoke(cli, ["replay", run_of(db, "credit"), "--db", db, "--from-version", "9"])
    assert r.exit_code == 1 and "has no state version 9" in r.output
    r = CliRunner().invoke(cli, ["replay", "abc", "--db", str(tmp_path / "missing.duckdb")])
    assert r.exit_code == 1 and "no such store" in r.output
    r = CliRunner().invoke(cli, ["replay", "--help"])
    assert r.exit_code == 0 and "status 3" in r.output
