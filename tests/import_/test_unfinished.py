"""unfinished_consumer in a foreign messaging trace: a consumer span that did its work and ended
in error without the publish its group's other consumers make."""

from __future__ import annotations

from typing import Any

import tracer as t
from tracer.analysis import detect

from .test_messaging import CONSUMER, PRODUCER, request, span

CLIENT = 3
KAFKA = {"messaging.system": "kafka", "messaging.operation.type": "process"}
RUN = "01".rjust(32, "0")


def orders(mid: str) -> dict[str, Any]:
    return {**KAFKA, "messaging.destination.name": "orders", "messaging.message.id": mid,
            "messaging.consumer.group.name": "billing"}  # fmt: skip


def receipt(mid: str) -> dict[str, Any]:
    return {**KAFKA, "messaging.operation.type": "send",
            "messaging.destination.name": "receipts", "messaging.message.id": mid}  # fmt: skip


def flow(*, second: str) -> t.Store:
    """shop publishes o-1 and o-2; billing charges each and sends a receipt, which mail consumes.

    ``second``: how billing's handling of o-2 goes: ``ok`` (charged, receipt sent),
    ``died`` (charged, then failed before sending), ``idle`` (failed before doing anything),
    ``late`` (charged, sent, then failed: without acks nothing says it left anything undone).
    """
    send = {**KAFKA, "messaging.operation.type": "send", "messaging.destination.name": "orders"}
    mail = {**KAFKA, "messaging.destination.name": "receipts",
            "messaging.consumer.group.name": "mail"}  # fmt: skip
    billing = [
        span(2, 10, "process orders", CONSUMER, orders("o-1"), links=((1, 2),), start=100),
        span(2, 11, "INSERT charges", CLIENT, {"db.system": "postgresql"}, parent=10, start=110),
        span(2, 12, "send receipts", PRODUCER, receipt("r-1"), parent=10, start=120),
    ]
    failed = 2 if second != "ok" else 0
    billing.append(
        span(3, 20, "process orders", CONSUMER, orders("o-2"), links=((1, 3),), start=200,
             status=failed)
    )  # fmt: skip
    if second != "idle":
        billing.append(
            span(3, 21, "INSERT charges", CLIENT, {"db.system": "postgresql"}, parent=20, start=210)
        )
    if second in ("ok", "late"):
        billing.append(span(3, 22, "send receipts", PRODUCER, receipt("r-2"), parent=20, start=220))
    mails = [span(4, 30, "process receipts", CONSUMER, {**mail, "messaging.message.id": "r-1"},
                  links=((2, 12),), start=300)]  # fmt: skip
    if second in ("ok", "late"):
        mails.append(
            span(5, 31, "process receipts", CONSUMER, {**mail, "messaging.message.id": "r-2"},
                 links=((3, 22),), start=310)
        )  # fmt: skip
    store = t.Store(":memory:")
    store.ingest(
        [
            request(
                "shop",
                span(1, 1, "checkout", 1, {}),
                span(1, 2, "send orders", PRODUCER, {**send, "messaging.message.id": "o-1"},
                     parent=1, start=10),
                span(1, 3, "send orders", PRODUCER, {**send, "messaging.message.id": "o-2"},
                     parent=1, start=20),
            ),
            request("billing", *billing),
            request("mail", *mails),
        ]
    )  # fmt: skip
    return store


def test_a_consumer_that_charged_and_died_before_its_receipt_is_named() -> None:
    store = flow(second="died")
    (f,) = detect(store, RUN, kinds=["unfinished_consumer"])
    assert f.severity == "error" and f.agents == ("billing",)
    ev = f.evidence
    assert (ev["message_id"], ev["topic"], ev["group"]) == ("o-2", "orders", "billing")
    assert [s["name"] for s in ev["steps"]] == ["INSERT charges"]
    assert ev["never_published"] == ["receipts"] and ev["published"] == []
    assert ev["acked"] is None  # a foreign trace records no acks
    assert f.span_ids == (f"{20:016x}", f"{21:016x}")
    assert f.message == (
        "billing handled message o-2 on orders (ran INSERT charges), then died: "
        "it never published to receipts, and no later delivery finished it"
    )


def test_a_consumer_that_finished_or_did_nothing_is_not_named() -> None:
    assert detect(flow(second="ok"), RUN) == []
    assert detect(flow(second="idle"), RUN, kinds=["unfinished_consumer"]) == []
    assert detect(flow(second="late"), RUN, kinds=["unfinished_consumer"]) == []
