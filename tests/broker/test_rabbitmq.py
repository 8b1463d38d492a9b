"""A real broker end to end: RabbitMQ, pika services and their official instrumentation.

Three runs (``tests/broker/scenarios.py``) are recorded by separate producer and consumer
processes, each exporting through the OpenTelemetry SDK's OTLP/HTTP exporter to
``agentrace serve``. Then agentrace must find, from those spans alone, the duplicate
delivery (the work done twice after a lost ack) and the lost event (published to a
queue nobody consumes), and nothing in the control run.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import tracer as t

from . import scenarios

AGENTRACE = Path(sys.executable).parent / "agentrace"
WAIT = 60  # seconds for serve to start or stop: a bound against hangs, not a timing


@dataclass(frozen=True)
class Recorded:
    db: Path
    runs: dict[str, str]  # scenario -> run id
    deliveries: dict[str, list[dict[str, Any]]]  # scenario -> what its consumers handled


@pytest.fixture(scope="module")
def recorded(rabbitmq_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    tmp = tmp_path_factory.mktemp("broker-runs")
    db = tmp / "broker.duckdb"
    err = tmp / "serve.err"
    with open(err, "w") as err_file:
        serve = subprocess.Popen(
            [str(AGENTRACE), "serve", "--db", str(db), "--port", "0"],
            stdout=subprocess.PIPE, stderr=err_file, text=True,
        )  # fmt: skip
    deliveries: dict[str, list[dict[str, Any]]] = {}
    try:
        assert serve.stdout is not None
        line = serve.stdout.readline()  # printed once listening, or EOF if serve exited
        assert line.startswith("listening on "), err.read_text()
        endpoint = line.split()[2]
        for name in scenarios.SCENARIOS:
            deliveries[name] = scenarios.run(name, rabbitmq_url, endpoint)
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(WAIT)
        if serve.stdout is not None:
            serve.stdout.close()
    assert serve.returncode == 0, err.read_text()
    with t.Store(db, read_only=True) as store:
        roots = store.sql(
            "SELECT attributes->>'$.\"order.run\"', trace_id FROM spans WHERE name = 'place order'"
        ).fetchall()
    runs = {name: run_id for name, run_id in roots}
    assert sorted(runs) == sorted(scenarios.SCENARIOS), roots
    yield Recorded(db, runs, deliveries)


def _messaging_spans(db: Path, run_id: str) -> list[tuple[str, str, str, dict[str, Any]]]:
    with t.Store(db, read_only=True) as store:
        rows = store.sql(
            """SELECT span_id, parent_span_id, kind, attributes FROM spans
               WHERE trace_id = $run AND kind IN ('PRODUCER', 'CONSUMER') ORDER BY start_ns""",
            {"run": run_id},
        ).fetchall()
    return [(s, p, k, json.loads(a) if isinstance(a, str) else a) for s, p, k, a in rows]


def test_the_broker_really_redelivered_after_the_lost_ack(recorded: Recorded) -> None:
    assert recorded.deliveries["duplicate"] == [
        {"message_id": "inv-dup-1", "redelivered": False, "acked": False},
        {"message_id": "inv-dup-1", "redelivered": True, "acked": True},
    ]
    assert recorded.deliveries["lost"] == [
        {"message_id": "inv-lost-1", "redelivered": False, "acked": True}
    ]
    assert recorded.deliveries["control"] == [
        {"message_id": "inv-ok-1", "redelivered": False, "acked": True}
    ]


@pytest.mark.parametrize(
    ("scenario", "published", "consumed"),
    [
        ("duplicate", {"inv-dup-1": "invoices"}, ["inv-dup-1", "inv-dup-1"]),
        ("lost", {"inv-lost-1": "invoices", "audit-lost-1": "audit-log"}, ["inv-lost-1"]),
        ("control", {"inv-ok-1": "invoices"}, ["inv-ok-1"]),
    ],
)
def test_producer_and_consumer_spans_arrived_through_serve(
    recorded: Recorded, scenario: str, published: dict[str, str], consumed: list[str]
) -> None:
    spans = _messaging_spans(recorded.db, recorded.runs[scenario])
    producers = [s for s in spans if s[2] == "PRODUCER"]
    consumers = [s for s in spans if s[2] == "CONSUMER"]
    for _, _, _, attrs in spans:
        assert attrs["messaging.system"] == "rabbitmq"
    # Every publish is there with its message id and queue (the instrumentation opens two
    # nested PRODUCER spans per BlockingChannel publish: both carry them).
    assert {a["messaging.message.id"]: a["messaging.destination"] for *_, a in producers} == (
        published
    )
    assert [a["messaging.message.id"] for *_, a in consumers] == consumed
    # The consumer's context came from the message headers: its parent is a producer span
    # of the same message, in another process, in the same trace.
    by_id = {s[0]: s for s in producers}
    for _, parent, _, attrs in consumers:
        assert parent in by_id
        assert by_id[parent][3]["messaging.message.id"] == attrs["messaging.message.id"]
        # pika's instrumentation records no redelivered flag or delivery count: a
        # redelivery shows only as a second consumer span of the same message.
        assert not any("redeliver" in k or "delivery_count" in k for k in attrs)


def _findings(db: Path) -> dict[str, list[str]]:
    done = subprocess.run(
        [str(AGENTRACE), "findings", "--json", "--db", str(db)],
        capture_output=True, text=True, timeout=WAIT * 2, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    by_run: dict[str, list[str]] = {}
    for f in json.loads(done.stdout):
        by_run.setdefault(f["run_id"], []).append(f["kind"])
    return by_run


def test_findings_name_the_duplicate_and_the_lost_event_and_nothing_else(
    recorded: Recorded,
) -> None:
    by_run = _findings(recorded.db)
    duplicate = by_run.get(recorded.runs["duplicate"], [])
    lost = by_run.get(recorded.runs["lost"], [])
    assert duplicate.count("duplicate_delivery") == 1, duplicate
    assert "lost_event" not in duplicate, duplicate
    assert lost.count("lost_event") == 1, lost
    assert "duplicate_delivery" not in lost, lost
    assert by_run.get(recorded.runs["control"], []) == []
