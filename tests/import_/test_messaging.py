"""Messaging spans of any broker, as the official OpenTelemetry instrumentations emit them,
become messages, edges agent → topic → agent, and findings, also across linked traces."""

from __future__ import annotations

from typing import Any

import pytest

import tracer as t
from tracer.analysis import analyze, coordination_graph

from .helpers import FOREIGN

PRODUCER, CONSUMER = 4, 5


def span(
    trace: int, sid: int, name: str, kind: int, attrs: dict[str, Any], *, parent: int = 0,
    parent_trace: int | None = None, links: tuple[tuple[int, int], ...] = (), status: int = 0,
    start: int = 0,
) -> dict[str, Any]:  # fmt: skip
    """An OTLP/JSON span; ids are small numbers made hex (trace ``n`` is ``n`` in 32 digits)."""
    values = []
    for k, v in attrs.items():
        key = "intValue" if isinstance(v, int) else "stringValue"
        values.append({"key": k, "value": {key: str(v) if key == "intValue" else v}})
    sp: dict[str, Any] = {
        "traceId": f"{trace:032x}", "spanId": f"{sid:016x}", "name": name, "kind": kind,
        "startTimeUnixNano": str(1_000_000 + start), "endTimeUnixNano": str(1_000_500 + start),
        "attributes": values, "status": {"code": status} if status else {},
        "links": [{"traceId": f"{lt:032x}", "spanId": f"{ls:016x}"} for lt, ls in links],
    }  # fmt: skip
    if parent:
        sp["parentSpanId"] = f"{parent:016x}"
    return sp


def request(service: str, *spans: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": service}}]
                },
                "scopeSpans": [{"scope": {"name": "test"}, "spans": list(spans)}],
            }
        ]
    }


def kinds(store: t.Store, run_id: str) -> list[str]:
    return sorted(f.kind for f in analyze(store, run_id))


# -- the mapping -----------------------------------------------------------------------------


def test_current_conventions_kafka_with_the_consumer_in_its_own_trace_linked() -> None:
    store = t.Store(":memory:")
    kafka = {"messaging.system": "kafka", "messaging.destination.name": "orders"}
    store.ingest(
        [
            request(
                "shop",
                span(1, 1, "checkout", 1, {}),
                span(1, 2, "send orders", PRODUCER, {**kafka, "messaging.operation.type": "send",
                     "messaging.message.id": "o-1", "messaging.kafka.message.key": "cust-9"},
                     parent=1),
            ),
            request(
                "billing",
                span(2, 3, "process orders", CONSUMER, {**kafka, "messaging.operation.type": "process",
                     "messaging.consumer.group.name": "billing", "messaging.message.id": "o-1"},
                     links=((1, 2),), start=100),
            ),
        ]
    )  # fmt: skip
    (pub,) = store.messages("01".rjust(32, "0"))
    assert (pub.event, pub.message_id, pub.topic, pub.msg_key, pub.agent, pub.derived) == (
        "publish", "o-1", "orders", "cust-9", "shop", "messaging",
    )  # fmt: skip
    (dlv,) = store.messages("02".rjust(32, "0"))
    assert (dlv.event, dlv.consumer_group, dlv.agent) == ("deliver", "billing", "billing")
    # Two traces joined by a link are one flow, named by its first run.
    runs = {r.run_id: r for r in store.runs()}
    assert {r.flow_id for r in runs.values()} == {"01".rjust(32, "0")}
    g = coordination_graph(store, "01".rjust(32, "0"))
    assert {(u, v, d.get("kind")) for u, v, d in g.edges(data=True)} >= {
        ("shop", "orders", "publish"), ("orders", "billing", "deliver"),
    }  # fmt: skip
    assert kinds(store, "01".rjust(32, "0")) == [] and kinds(store, "02".rjust(32, "0")) == []


def test_older_spellings_pika_and_celery() -> None:
    store = t.Store(":memory:")
    pika = {"messaging.system": "rabbitmq", "messaging.destination": "invoices",
            "messaging.message_id": "inv-1", "messaging.operation": "receive"}  # fmt: skip
    celery = {"celery.action": "apply_async", "celery.task_name": "tasks.charge",
              "messaging.message_id": "9d3c"}  # fmt: skip
    store.ingest(
        [
            request(
                "svc",
                span(3, 1, "invoices receive", CONSUMER, pika),
                span(3, 2, "apply_async/tasks.charge", PRODUCER, celery, parent=1),
                span(3, 3, "run/tasks.charge", CONSUMER, {**celery, "celery.action": "run"},
                     parent=2, start=50),
            )
        ]
    )  # fmt: skip
    got = [(m.event, m.topic, m.message_id) for m in store.messages("03".rjust(32, "0"))]
    assert got == [
        ("deliver", "invoices", "inv-1"),
        ("publish", "tasks.charge", "9d3c"),
        ("deliver", "tasks.charge", "9d3c"),
    ]
    spans = {s.span_id[-1]: s.operation for s in store.spans("03".rjust(32, "0"))}
    assert spans == {"1": "process", "2": "send", "3": "process"}


def test_a_message_without_an_id_is_known_by_the_producer_span_it_carries() -> None:
    store = t.Store(":memory:")
    amqp = {"messaging.system": "rabbitmq", "messaging.destination.name": "jobs"}
    store.ingest(
        [
            request(
                "worker",
                span(4, 1, "enqueue", 1, {}),
                span(4, 2, "jobs publish", PRODUCER, amqp, parent=1),
                # the same message delivered twice: as parent, then (new trace) as a link
                span(4, 3, "jobs process", CONSUMER, amqp, parent=2, start=10),
            ),
            request("worker", span(5, 4, "jobs process", CONSUMER, amqp, links=((4, 2),), start=20)),
        ]
    )  # fmt: skip
    (f,) = analyze(store, "04".rjust(32, "0"))
    assert f.kind == "duplicate_delivery" and f.evidence["times"] == 2
    assert f.evidence["message_id"] == f"{2:016x}"  # the producer span's id
    assert sorted(f.span_ids) == [f"{3:016x}", f"{4:016x}"]
    # The flow's bus is analysed once, in its first run; every run of it shows the flow.
    assert analyze(store, "05".rjust(32, "0")) == []
    g = coordination_graph(store, "05".rjust(32, "0"))
    assert g.has_edge("worker", "jobs") and g.has_edge("jobs", "worker")


def test_a_failed_consumer_and_a_message_nobody_consumed_are_lost_events() -> None:
    store = t.Store(":memory:")
    q = {"messaging.system": "rabbitmq"}
    store.ingest(
        [
            request(
                "svc",
                span(6, 1, "root", 1, {}),
                span(6, 2, "send", PRODUCER, {**q, "messaging.destination.name": "a", "messaging.message.id": "m1"}, parent=1),
                span(6, 3, "send", PRODUCER, {**q, "messaging.destination.name": "a", "messaging.message.id": "m2"}, parent=1),
                span(6, 4, "recv", CONSUMER, {**q, "messaging.destination.name": "a", "messaging.message.id": "m1"}, parent=2, start=5),
                # m2's only delivery died (ERROR, never acked): the consumer never handled it
                span(6, 5, "recv", CONSUMER, {**q, "messaging.destination.name": "a", "messaging.message.id": "m2"}, parent=3, status=2, start=6),
                span(6, 6, "send", PRODUCER, {**q, "messaging.destination.name": "audit", "messaging.message.id": "m3"}, parent=1),
            )
        ]
    )  # fmt: skip
    lost = {f.evidence["message_id"]: f for f in analyze(store, "06".rjust(32, "0"))}
    assert sorted(lost) == ["m2", "m3"]
    assert "delivered 1× failed" in lost["m2"].message
    assert "never consumed" in lost["m3"].message


@pytest.mark.parametrize(
    ("name", "expected"),
    [("rabbitmq_duplicate", ["duplicate_delivery"]), ("rabbitmq_lost", ["lost_event"]),
     ("rabbitmq_control", [])],
)  # fmt: skip
def test_the_recorded_broker_runs(name: str, expected: list[str]) -> None:
    store = t.Store(":memory:")
    t.import_file(store, FOREIGN / f"{name}.jsonl")
    (run,) = store.runs()
    assert kinds(store, run.run_id) == expected
    # Plain services on a broker: each service is the agent of what it sends and handles.
    assert run.agents == ("billing-worker", "order-service")
    by_name = {(s.name, s.agent) for s in store.spans(run.run_id) if s.parent_span_id}
    assert ("charge invoice", "billing-worker") in by_name  # the consumer's work is its
    g = coordination_graph(store, run.run_id)
    assert g.has_edge("order-service", "invoices") and g.has_edge("invoices", "billing-worker")


@pytest.mark.parametrize("parent_first", [True, False], ids=["parent-first", "parent-late"])
def test_an_enclosing_agent_comes_before_the_service_in_any_order(parent_first: bool) -> None:
    """A producer span inside an agent belongs to the agent; a consumer with no agent above
    it belongs to its service, and so does the work under it, whichever batch comes first."""
    rabbit = {"messaging.system": "rabbitmq", "messaging.destination.name": "quotes"}
    agent = span(1, 1, "invoke_agent planner", 1, {"gen_ai.operation.name": "invoke_agent",
                 "gen_ai.agent.name": "planner"})  # fmt: skip
    send = span(1, 2, "quotes publish", PRODUCER, {**rabbit, "messaging.message.id": "q-1"},
                parent=1)  # fmt: skip
    handle = span(1, 3, "quotes process", CONSUMER, {**rabbit, "messaging.message.id": "q-1"},
                  parent=2, start=100)  # fmt: skip
    work = span(1, 4, "price quote", 1, {}, parent=3, start=110)
    lone = span(2, 5, "quotes process", CONSUMER, {**rabbit, "messaging.message.id": "q-2"})
    lone_work = span(2, 6, "price quote", 1, {}, parent=5, start=10)
    store = t.Store(":memory:")
    batches = [
        request("planner-svc", agent),
        request("planner-svc", send),
        request("pricing", handle, work, lone, lone_work),
    ]
    for batch in batches if parent_first else reversed(batches):
        store.ingest([batch])
    got = {s.span_id[-1]: s.agent for s in store.spans(f"{1:032x}") + store.spans(f"{2:032x}")}
    assert got == {
        "1": "planner", "2": "planner", "3": "planner", "4": "planner",  # the agent encloses all
        "5": "pricing", "6": "pricing",  # no agent above: the consumer's service
    }  # fmt: skip
