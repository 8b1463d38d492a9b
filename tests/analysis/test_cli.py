"""``agentrace findings`` as a user and a CI pipeline run it."""

import json

import pytest
from click.testing import CliRunner

import tracer as t
from tracer.testing import RunBuilder
from tui.cli import cli


def credit_like(store: t.Store, seed: int) -> str:
    """The scorer rewrites the score; the rater reads the old one through a cache 40 ms later."""
    with RunBuilder(store, initial={"credit_score": 612}, seed=seed, scenario="credit") as run:
        with run.step("credit_score") as s:
            s.commit({"credit_score": 745})
        run.advance(ms=40)
        with run.step("risk_assessment", from_=["credit_score"]) as r:
            r.read(["credit_score"], version=1, via="cache", cache="bureau")
            r.commit({"risk": {"rating": "C"}})
    return run.run_id


def clean(store: t.Store, seed: int) -> str:
    with RunBuilder(store, initial={"credit_score": 612}, seed=seed) as run:
        with run.step("credit_score") as s:
            s.commit({"credit_score": 745})
        with run.step("risk_assessment", from_=["credit_score"]) as r:
            r.read(["credit_score"], via="cache", cache="bureau")
    return run.run_id


@pytest.fixture
def db(tmp_path) -> str:
    return str(tmp_path / "s.duckdb")


def invoke(*args: str):
    return CliRunner().invoke(cli, ["findings", *args], catch_exceptions=False)


def test_stale_reads_are_listed_with_versions_agents_and_how_long_before(db) -> None:
    with t.Store(db) as s:
        run_id = credit_like(s, 1)
        clean(s, 2)
    r = invoke("--db", db)
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0].startswith("stale_read") and "1 × error" in lines[0]
    header = lines[1].split()
    for col in ("run", "reader", "read", "via", "writer", "committed", "keys"):
        assert col in header
    row = lines[2].split()
    assert row[:4] == [run_id[:12], "risk_assessment", "v1", "cache"]
    assert row[4:9] == ["bureau", "credit_score", "v2", "40.0", "ms"] and row[9] == "credit_score"
    assert "1 finding(s) in 1 run(s): 1 error" in r.output
    with t.Store(db, read_only=True) as s:  # analysing stored the findings
        assert [f.kind for f in s.findings()] == ["stale_read"]


def test_a_clean_store_prints_nothing_and_exits_0(db) -> None:
    with t.Store(db) as s:
        run_id = clean(s, 2)
    r = invoke("--db", db, "--fail-on", "info")
    assert r.exit_code == 0 and r.output == ""
    r = invoke(run_id[:8], "--db", db)
    assert r.exit_code == 0 and r.output == ""
    r = invoke("--db", db, "--json")
    assert r.exit_code == 0 and json.loads(r.output) == []


def test_json_for_scripts(db) -> None:
    with t.Store(db) as s:
        run_id = credit_like(s, 1)
        clean(s, 2)
    r = invoke(run_id, "--db", db, "--json")
    (f,) = json.loads(r.output)
    assert f["kind"] == "stale_read" and f["severity"] == "error" and f["run_id"] == run_id
    assert f["agents"] == ["risk_assessment", "credit_score"] and f["versions"] == [1, 2]
    assert f["evidence"]["committed_before_read_ns"] >= 40_000_000
    assert "risk_assessment read v1" in f["message"]


@pytest.mark.parametrize(
    ("threshold", "code"), [("warning", 3), ("error", 3), ("critical", 0), ("CRITICAL", 0)]
)
def test_fail_on_gives_ci_an_exit_code(db, threshold: str, code: int) -> None:
    with t.Store(db) as s:
        credit_like(s, 1)
    r = CliRunner().invoke(cli, ["findings", "--db", db, "--json", "--fail-on", threshold])
    assert r.exit_code == code
    assert json.loads(r.stdout)[0]["kind"] == "stale_read"  # stdout stays JSON
    if code:
        assert "1 finding(s) at or above" in r.stderr


def test_bad_input_is_one_line_and_a_non_zero_exit(tmp_path, db) -> None:
    missing = str(tmp_path / "nope.duckdb")
    r = CliRunner().invoke(cli, ["findings", "--db", missing])
    assert r.exit_code == 1 and "no such store" in r.output
    assert not (tmp_path / "nope.duckdb").exists()
    with t.Store(db) as s:
        clean(s, 2)
    r = CliRunner().invoke(cli, ["findings", "ffff", "--db", db])
    assert r.exit_code == 1 and "no run 'ffff'" in r.output
    r = CliRunner().invoke(cli, ["findings", "--db", db, "--fail-on", "fatal"])
    assert r.exit_code == 2


def test_other_kinds_get_the_generic_table(db) -> None:
    with t.Store(db) as s, RunBuilder(s) as run, run.step("research", outcome="rejected") as st:
        st.contract(
            "report", target="analysis", outcome="rejected", payload={"c": 0.4}, errors=["c < 0.7"]
        )
    r = invoke("--db", db)
    assert r.output.splitlines()[0].startswith("contract_violation") and "warning" in r.output
    assert "research, analysis" in r.output and "c < 0.7" in r.output
