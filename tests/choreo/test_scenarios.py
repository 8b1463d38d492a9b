"""The choreography scenarios: repeatable to the byte, and each leaves exactly the facts of what happened."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

import tracer as t
from engine import scenarios
from tracer.analysis import detect

NAMES = ["research-pipeline", "lost-event", "double-consume", "double-consume-fixed", "choreo-saga"]


@pytest.mark.parametrize("name", NAMES)
def test_sample_trace_regenerates_byte_for_byte(name: str) -> None:
    committed = scenarios.sample_path(name).read_bytes()
    assert scenarios.render(name) == committed, (
        f"regenerate with: python -m engine.scenarios {name}"
    )


@pytest.mark.parametrize("name", NAMES)
def test_registered_with_its_pattern(name: str) -> None:
    s = scenarios.get(name)
    assert s.pattern == ("hybrid" if name == "choreo-saga" else "choreography")


@pytest.fixture(scope="module")
def recorded() -> Iterator[tuple[t.Store, dict[str, str]]]:
    with t.Store(":memory:") as store:
        for name in NAMES:
            t.import_file(store, scenarios.sample_path(name))
        runs = {r.scenario: r.run_id for r in store.runs()}
        yield store, runs


def per_message(store: t.Store, run_id: str) -> list[tuple[Any, ...]]:
    return store.sql(
        """SELECT topic,
                  any_value(agent) FILTER (WHERE event = 'publish') AS publisher,
                  list(DISTINCT consumer_group) FILTER (WHERE event = 'deliver') AS groups,
                  count(*) FILTER (WHERE event = 'deliver') AS deliveries,
                  count(*) FILTER (WHERE event = 'ack' AND outcome = 'acked') AS acks,
                  list(outcome ORDER BY time_ns) FILTER (WHERE event = 'ack') AS outcomes,
                  list(fault) FILTER (WHERE fault IS NOT NULL) AS faults
           FROM messages WHERE run_id = ? GROUP BY topic, message_id ORDER BY min(time_ns)""",
        [run_id],
    ).fetchall()


def versions(store: t.Store, run_id: str) -> list[tuple[Any, ...]]:
    return store.sql(
        "SELECT version, kind, agent, keys FROM state_versions WHERE run_id = ? ORDER BY version",
        [run_id],
    ).fetchall()


def test_research_pipeline(recorded: tuple[t.Store, dict[str, str]]) -> None:
    store, runs = recorded
    run_id = runs["research-pipeline"]
    assert (store.run(run_id).pattern, store.run(run_id).status) == ("choreography", "completed")
    assert per_message(store, run_id) == [
        ("research.requested", "user", ["research"], 1, 1, ["acked"], None),
        ("research.done", "research", ["analysis"], 1, 1, ["acked"], None),
        ("analysis.done", "analysis", ["report"], 1, 1, ["acked"], None),
    ]
    assert [(v, k, a) for v, k, a, _ in versions(store, run_id)] == [
        (1, "initial", None),
        (2, "commit", "research"),
        (3, "commit", "analysis"),
        (4, "commit", "report"),
    ]
    assert detect(store, run_id) == []


def test_lost_event(recorded: tuple[t.Store, dict[str, str]]) -> None:
    store, runs = recorded
    run_id = runs["lost-event"]
    assert store.run(run_id).status == "failed"
    assert per_message(store, run_id) == [
        ("research.requested", "user", ["research"], 1, 1, ["acked"], None),
        # delivered once, the consumer crashed: never acked, never redelivered
        ("research.done", "research", ["analysis"], 1, 0, None, ["crash_during"]),
    ]
    assert [a for _, _, a, _ in versions(store, run_id)] == [
        None,
        "research",
    ]  # no analysis, no report
    findings = detect(store, run_id)
    assert [(f.kind, f.severity) for f in findings] == [("lost_event", "error")]
    assert findings[0].evidence["missing_subscribers"] == ["analysis"]
    assert findings[0].evidence["publisher"] == "research"


def test_double_consume(recorded: tuple[t.Store, dict[str, str]]) -> None:
    store, runs = recorded
    run_id = runs["double-consume"]
    assert store.run(run_id).status == "completed"
    rows = per_message(store, run_id)
    assert rows[1] == (
        "research.done",
        "research",
        ["analysis"],
        2,
        2,
        ["acked", "acked"],
        ["ack_lost"],
    )
    # analysis ran twice on the same message: two commits, and two analysis.done events
    assert [a for _, _, a, _ in versions(store, run_id)] == [
        None,
        "research",
        "analysis",
        "report",
        "analysis",
        "report",
    ]
    assert [r[0] for r in rows].count("analysis.done") == 2
    findings = detect(store, run_id)
    assert [(f.kind, f.severity) for f in findings] == [("duplicate_delivery", "error")]
    assert findings[0].versions == (3, 5)


def test_double_consume_fixed(recorded: tuple[t.Store, dict[str, str]]) -> None:
    store, runs = recorded
    run_id = runs["double-consume-fixed"]
    rows = per_message(store, run_id)
    assert rows[1] == (
        "research.done",
        "research",
        ["analysis"],
        2,
        1,
        ["acked", "duplicate"],
        ["ack_lost"],
    )
    assert [r[0] for r in rows].count("analysis.done") == 1
    assert [a for _, _, a, _ in versions(store, run_id)] == [None, "research", "analysis", "report"]
    assert detect(store, run_id) == []


def test_choreo_saga(recorded: tuple[t.Store, dict[str, str]]) -> None:
    store, runs = recorded
    run_id = runs["choreo-saga"]
    run = store.run(run_id)
    assert (run.pattern, run.status) == ("hybrid", "compensated")
    rows = per_message(store, run_id)
    assert rows[2] == (
        "shipment.booked",
        "shipping",
        ["payment"],
        2,
        0,
        ["nacked", "dead_lettered"],
        None,
    )
    assert [(r[0], r[1]) for r in rows[3:]] == [
        ("shipping.compensate", "payment"),
        ("inventory.compensate", "shipping"),
        ("checkout.compensate", "inventory"),
    ]
    assert [(v, k, a) for v, k, a, _ in versions(store, run_id)][4:] == [
        (5, "compensation", "shipping"),
        (6, "compensation", "inventory"),
        (7, "compensation", "checkout"),
    ]
    assert store.state_at(run_id, 7)["stock"] == store.state_at(run_id, 1)["stock"]
    assert detect(store, run_id) == []


def test_demo_records_a_choreography_scenario(tmp_path: Any) -> None:
    from tui.cli import cli

    db = tmp_path / "demo.duckdb"
    result = CliRunner().invoke(
        cli, ["demo", "--scenario", "double-consume", "--db", str(db), "--no-tui"]
    )
    assert result.exit_code == 0, result.output
    with t.Store(str(db)) as store:
        (run,) = store.runs()
        assert (run.scenario, run.pattern) == ("double-consume", "choreography")
