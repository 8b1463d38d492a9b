"""The bundled scenarios: byte-for-byte sample traces, determinism, and what each one shows."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import tracer as t
from engine import ScenarioError, scenarios
from engine.scenarios import credit

MINE = ("credit", "credit-fixed", "trading-saga", "flaky", "low-confidence")


@pytest.mark.parametrize("name", scenarios.names("all"))
def test_sample_traces_regenerate_byte_for_byte(name: str) -> None:
    path = scenarios.sample_path(name)
    assert path.exists(), f"{path} is missing: run `python -m engine.scenarios {name}`"
    assert scenarios.render(name) == path.read_bytes(), (
        f"{name} no longer records what {path} holds: if the change is intended, "
        f"run `python -m engine.scenarios {name}` and commit the file"
    )


@pytest.mark.parametrize("name", MINE)
def test_the_same_seed_gives_the_same_bytes_and_another_seed_others(name: str) -> None:
    assert scenarios.render(name, seed=11) == scenarios.render(name, seed=11)
    assert scenarios.render(name, seed=11) != scenarios.render(name, seed=12)


def test_registry_refuses_unknown_and_duplicate_names() -> None:
    with pytest.raises(ScenarioError, match="no scenario 'nope'"):
        scenarios.names("nope")
    s = scenarios.get("credit")
    with pytest.raises(ScenarioError, match="two scenarios are named 'credit'"):
        scenarios.register(scenarios.Scenario("credit", "again", scenarios.get("flaky").run))
    assert scenarios.register(s) is s  # the same one again is fine


def test_scenarios_never_share_run_ids() -> None:
    sink = t.InMemorySink()
    ids = scenarios.record(list(MINE), sink)
    flat = [r for rs in ids.values() for r in rs]
    assert len(flat) == len(set(flat)) == 103


def test_regenerate_writes_the_files(tmp_path: Any) -> None:
    (path,) = scenarios.regenerate("flaky", directory=tmp_path)
    assert path == tmp_path / "flaky.jsonl"
    assert path.read_bytes() == scenarios.sample_path("flaky").read_bytes()
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


# -- what each scenario shows, read back from a store --------------------------------------------


@pytest.fixture(scope="module")
def demo_store() -> Iterator[t.Store]:
    with t.Store(":memory:") as store:
        sink = t.InMemorySink()
        scenarios.record(list(MINE), sink)
        store.ingest(sink.requests)
        yield store


def runs_of(store: t.Store, scenario: str) -> list[t.Run]:
    return [r for r in store.runs() if r.scenario == scenario]


def stale_risk_reads(store: t.Store, run_id: str) -> list[t.StateRead]:
    """Risk-agent reads of credit_score served at a version older than a committed rewrite."""
    versions = store.state_versions(run_id)
    out = []
    for r in store.state_reads(run_id):
        if r.agent != "risk_assessment" or "credit_score" not in r.keys:
            continue
        assert r.head_version is not None
        if any(
            r.version < v.version <= r.head_version and "credit_score" in v.keys for v in versions
        ):
            out.append(r)
    return out


def decision(store: t.Store, run: t.Run) -> dict[str, Any]:
    doc = store.state_at(run.run_id, run.version_count)
    return doc["decision"]


@pytest.mark.parametrize("seed", [scenarios.DEFAULT_SEED, 11])
def test_credit_wrong_ratings_are_exactly_the_stale_reads(seed: int) -> None:
    with t.Store(":memory:") as store:
        sink = t.InMemorySink()
        scenarios.record("credit", sink, seed=seed)
        store.ingest(sink.requests)
        runs = runs_of(store, "credit")
        assert len(runs) == 50 and all(r.status == "completed" for r in runs)
        wrong = {r.run_id for r in runs if not decision(store, r)["rating_ok"]}
        stale = {r.run_id for r in runs if stale_risk_reads(store, r.run_id)}
        assert wrong == stale
        assert 0.1 <= len(wrong) / len(runs) <= 0.3  # "about 20 %"
        assert len(wrong) == round(50 * credit.CHANGED_SHARE)
        for r in runs:
            d = decision(store, r)
            (read,) = [x for x in store.state_reads(r.run_id) if x.agent == "risk_assessment"]
            assert (read.via, read.cache) == ("cache", "bureau")
            if r.run_id in wrong:
                assert (read.version, read.head_version) == (1, 3)  # served the score on file
                assert d["rating"] != d["audit_rating"]
                assert len(stale_risk_reads(store, r.run_id)) == 1


def test_credit_fixed_has_no_stale_read_and_no_wrong_rating(demo_store: t.Store) -> None:
    runs = runs_of(demo_store, "credit-fixed")
    assert len(runs) == 50
    assert all(decision(demo_store, r)["rating_ok"] for r in runs)
    assert not any(stale_risk_reads(demo_store, r.run_id) for r in runs)
    fresh = [
        r
        for r in runs
        if any(
            x.agent == "risk_assessment" and x.version == 3
            for x in demo_store.state_reads(r.run_id)
        )
    ]
    assert len(fresh) == round(50 * credit.CHANGED_SHARE)  # the rewritten scores were read fresh


def test_credit_and_credit_fixed_see_the_same_applications(demo_store: t.Store) -> None:
    def apps(scenario: str) -> list[str]:
        return sorted(
            decision(demo_store, r)["application_id"] for r in runs_of(demo_store, scenario)
        )

    assert apps("credit") == apps("credit-fixed") == [f"APP-{i:04d}" for i in range(1, 51)]


def test_trading_saga_undoes_analysis_then_research(demo_store: t.Store) -> None:
    (run,) = runs_of(demo_store, "trading-saga")
    assert run.status == "compensated"
    versions = demo_store.state_versions(run.run_id)
    comp = [(v.agent, v.keys) for v in versions if v.kind == "compensation"]
    assert comp == [("analysis", ("draft_recommendation",)), ("research", ("research_cache",))]
    final = demo_store.state_at(run.run_id, run.version_count)
    assert final == {"account": "ACC-7731"}
    events = demo_store.events(run.run_id, name="agentrace.saga.compensate")
    assert [
        (e.attributes["agentrace.saga.agent"], e.attributes["agentrace.saga.outcome"])
        for e in events
    ] == [
        ("analysis", "ok"),
        ("research", "ok"),
    ]
    outcomes = [
        s.attributes.get("agentrace.step.outcome")
        for s in demo_store.spans(run.run_id)
        if s.name == "invoke_agent execution"
    ]
    assert outcomes == ["failed", "failed"]


def test_flaky_opens_fails_fast_then_closes(demo_store: t.Store) -> None:
    (run,) = runs_of(demo_store, "flaky")
    assert run.status == "completed"
    steps = [s for s in demo_store.spans(run.run_id) if s.name == "invoke_agent fetch_quotes"]
    assert [s.attributes["agentrace.step.outcome"] for s in steps] == ["failed"] * 5 + [
        "breaker_open"
    ] * 2 + ["ok"]
    assert all(s.attributes.get("agentrace.breaker.rejected") for s in steps[5:7])
    moves = [
        (e.attributes["agentrace.breaker.from"], e.attributes["agentrace.breaker.to"], e.span_id)
        for e in demo_store.events(run.run_id, name="agentrace.breaker.transition")
    ]
    assert [(a, b) for a, b, _ in moves] == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]
    assert [sid for _, _, sid in moves] == [steps[4].span_id, steps[7].span_id, steps[7].span_id]
    opened = steps[4].end_ns
    assert (
        steps[6].start_ns - opened < 20 * 10**9 <= steps[7].start_ns - opened
    )  # refused within the cooldown


def test_low_confidence_is_rejected_at_the_boundary(demo_store: t.Store) -> None:
    (run,) = runs_of(demo_store, "low-confidence")
    assert run.status == "failed" and run.agents == ("research",)  # analysis never ran
    (check,) = demo_store.events(run.run_id, name="agentrace.contract.check")
    a = check.attributes
    assert (a["agentrace.contract.name"], a["agentrace.contract.outcome"]) == (
        "research_report",
        "rejected",
    )
    assert (a["agentrace.contract.source"], a["agentrace.contract.target"]) == (
        "research",
        "analysis",
    )
    assert '"confidence":0.4' in a["agentrace.contract.payload"]
    assert "confidence >= 0.7" in a["agentrace.contract.errors"]
