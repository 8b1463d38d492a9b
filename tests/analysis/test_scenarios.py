"""Precision over the bundled scenarios: every injected bug found, pointing at the right
versions and agents; nothing found on the clean ones.

Each scenario's ``sample_traces/<name>.jsonl`` is imported into a fresh store and
analysed; the expectations come from what the engine recorded as the scenario's ground
truth (the credit decision carries ``rating_ok``), or from the spans themselves,
never from the detectors. A test skips when its sample file is missing
(``python -m engine.scenarios`` writes them); ``AGENTRACE_SAMPLE_TRACES`` points
elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

import tracer as t
from tracer import conventions as c
from tracer.analysis import analyze, coordination_graph
from tui.cli import cli

SAMPLES = Path(
    os.environ.get("AGENTRACE_SAMPLE_TRACES") or Path(__file__).parents[2] / "sample_traces"
)


@dataclass
class Analysed:
    store: t.Store
    runs: list[t.Run]
    findings: dict[str, list[t.Finding]]  # per run id

    @property
    def all(self) -> list[t.Finding]:
        return [f for fs in self.findings.values() for f in fs]

    def steps(self, run_id: str, agent: str) -> list[t.Span]:
        return [
            s
            for s in self.store.spans(run_id)
            if s.agent == agent and s.operation == c.OP_INVOKE_AGENT
        ]


def _load(name: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Analysed]:
    path = SAMPLES / f"{name}.jsonl"
    if not path.exists():
        pytest.skip(f"{path} is missing: the sample traces have not been generated yet")
    with t.Store(tmp_path_factory.mktemp(name) / "s.duckdb") as store:
        t.import_file(store, path)
        runs = store.runs()
        yield Analysed(store, runs, {r.run_id: analyze(store, r.run_id) for r in runs})


@pytest.fixture(scope="module")
def credit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Analysed]:
    yield from _load("credit", tmp_path_factory)


def _decision(a: Analysed, run_id: str) -> dict:
    (step,) = a.steps(run_id, "decision")
    out: dict = orjson.loads(step.attributes[c.AGENT_OUTPUT])
    return out


def test_credit_one_stale_read_per_wrongly_rated_application(credit: Analysed) -> None:
    wrong = {r.run_id for r in credit.runs if not _decision(credit, r.run_id)["rating_ok"]}
    assert len(credit.runs) == 50 and len(wrong) == 10  # the scenario's 20 %
    stale = [f for f in credit.all if f.kind == "stale_read"]
    assert sorted(f.run_id for f in stale) == sorted(wrong)  # one each, nowhere else
    assert [f.kind for f in credit.all] == ["stale_read"] * 10  # and nothing else


def test_credit_stale_reads_point_at_the_right_versions_and_agents(credit: Analysed) -> None:
    for f in (f for f in credit.all if f.kind == "stale_read"):
        store, run_id = credit.store, f.run_id
        (rater,) = credit.steps(run_id, "risk_assessment")
        (scorer,) = credit.steps(run_id, "credit_score")
        # The fresh score: the version the scorer's step committed with credit_score in it.
        (fresh,) = [
            v
            for v in store.state_versions(run_id)
            if v.span_id == scorer.span_id and "credit_score" in v.keys
        ]
        ev = f.evidence
        assert f.agents == ("risk_assessment", "credit_score")
        assert f.versions == (1, fresh.version) and f.span_ids == (rater.span_id, scorer.span_id)
        assert ev["read_version"] == 1 and ev["committed_version"] == fresh.version
        assert ev["via"] == "cache" and ev["cache"] == "bureau" and ev["keys"] == ["credit_score"]
        assert ev["committed_ns"] == fresh.committed_ns
        assert ev["committed_before_read_ns"] == ev["read_ns"] - fresh.committed_ns > 0
        # The values: what the rater used, and what the bureau had already said.
        final = store.state_at(run_id, store.run(run_id).version_count)
        assert ev["values"]["credit_score"] == {
            "read": final["risk"]["score_used"], "committed": final["bureau_report"]["score"],
        }  # fmt: skip
        assert ev["values"]["credit_score"]["read"] == store.state_at(run_id, 1)["credit_score"]


def test_credit_findings_on_the_command_line(credit: Analysed) -> None:
    r = CliRunner().invoke(cli, ["findings", "--db", credit.store.path])
    assert r.exit_code == 0, r.output
    rows = [line.split() for line in r.output.splitlines()[2:12]]
    assert len(rows) == 10 and all(row[1] == "risk_assessment" and row[2] == "v1" for row in rows)
    assert all(row[3:6] == ["cache", "bureau", "credit_score"] and row[8] == "ms" for row in rows)
    assert "10 finding(s) in 10 run(s): 10 error" in r.output


@pytest.mark.parametrize(
    "name",
    # Clean, and (choreo-saga, trading-saga) sagas whose every compensation succeeded.
    ["credit-fixed", "research-pipeline", "double-consume-fixed", "choreo-saga", "trading-saga"],
)
def test_clean_scenarios_have_no_findings(
    name: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    for a in _load(name, tmp_path_factory):
        assert a.all == []
        r = CliRunner().invoke(cli, ["findings", "--db", a.store.path, "--fail-on", "info"])
        assert r.exit_code == 0 and r.output == ""
        if name == "credit-fixed":
            assert all(_decision(a, run.run_id)["rating_ok"] for run in a.runs)


def test_double_consume_one_duplicate_delivery_applied_twice(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    for a in _load("double-consume", tmp_path_factory):
        (run,) = a.runs
        (f,) = a.all
        store = a.store
        analyses = [v.version for v in store.state_versions(run.run_id) if v.agent == "analysis"]
        processes = [
            m
            for m in store.messages(run.run_id)
            if m.event == "deliver" and m.consumer_group == "analysis"
        ]
        assert f.kind == "duplicate_delivery" and f.severity == "error"
        assert f.versions == tuple(analyses) and len(analyses) == 2
        assert f.agents == ("analysis",) and f.span_ids == tuple(m.span_id for m in processes)
        assert (
            f.evidence["message_id"] == processes[0].message_id
            and f.evidence["topic"] == "research.done"
        )
        assert f.evidence["effect_applied_twice"] is True


def test_lost_event_one_lost_event(tmp_path_factory: pytest.TempPathFactory) -> None:
    for a in _load("lost-event", tmp_path_factory):
        (run,) = a.runs
        (f,) = a.all
        (sent,) = [
            m
            for m in a.store.messages(run.run_id)
            if m.event == "publish" and m.topic == "research.done"
        ]
        assert run.status == "failed"
        assert f.kind == "lost_event" and f.evidence["message_id"] == sent.message_id
        assert f.agents == ("research", "analysis") and f.evidence["missing_subscribers"] == [
            "analysis"
        ]
        assert f.span_ids[0] == sent.span_id


def test_flaky_the_breaker_and_the_calls_it_refused(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    for a in _load("flaky", tmp_path_factory):
        (run,) = a.runs
        (f,) = a.all
        steps = a.steps(run.run_id, "fetch_quotes")
        refused = [s.span_id for s in steps if s.attributes.get(c.STEP_OUTCOME) == "breaker_open"]
        (opened,) = [
            e
            for e in a.store.events(run.run_id, name=c.EV_BREAKER_TRANSITION)
            if e.attributes[c.BREAKER_TO] == "open"
        ]
        assert f.kind == "breaker_open" and len(refused) >= 1
        assert [r["span_id"] for r in f.evidence["rejected"]] == refused
        assert f.span_ids == (opened.span_id, *refused) and f.agents == ("fetch_quotes",)


def test_low_confidence_the_contract_violation(tmp_path_factory: pytest.TempPathFactory) -> None:
    for a in _load("low-confidence", tmp_path_factory):
        (run,) = a.runs
        (f,) = a.all
        (check,) = a.store.events(run.run_id, name=c.EV_CONTRACT_CHECK)
        assert f.kind == "contract_violation" and f.span_ids == (check.span_id,)
        assert f.agents == ("research", "analysis")
        assert f.evidence["payload"] == orjson.loads(check.attributes[c.CONTRACT_PAYLOAD])
        assert f.evidence["payload"]["confidence"] < 0.7
        assert "confidence" in f.message


def test_trading_saga_shows_its_compensations_in_the_graph(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    for a in _load("trading-saga", tmp_path_factory):
        (run,) = a.runs
        g = coordination_graph(a.store, run.run_id)
        assert run.status == "compensated"
        compensated = {(u, v) for u, v, k in g.edges(keys=True) if k == "compensate"}
        assert compensated == {("execution", "analysis"), ("execution", "research")}
        assert all(g.edges[u, v, "compensate"]["outcomes"] == {"ok": 1} for u, v in compensated)
        assert g.edges["analysis", "execution", "handoff"]["outcomes"]["failed"] == 2  # a retry
