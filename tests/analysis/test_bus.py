"""duplicate_delivery and lost_event: minimal choreographed runs, positive and negative."""

import tracer as t
from tracer.analysis import detect
from tracer.testing import RunBuilder

SUBS = {"agents": ["shop", "billing", "audit"], "edges": [],
        "publishes": [["shop", "orders"]], "subscriptions": [["orders", "billing"], ["orders", "audit"]]}  # fmt: skip


def found(store: t.Store, run_id: str, kind: str) -> list[t.Finding]:
    return detect(store, run_id, kinds=[kind])


# -- duplicate_delivery ----------------------------------------------------------------------


def test_a_message_processed_twice_with_its_effect_applied_twice(store) -> None:
    with RunBuilder(store, pattern="choreography", initial={"charged": 0}) as run:
        m = run.publish("shop", "orders", message_id="o-1")
        # The effect is committed in a child span of the process span.
        with run.process(m, agent="billing", attempt=1) as d1, run.step("billing", parent=d1) as s:
            s.commit({"charged": 10})
        with run.process(m, agent="billing", attempt=2) as d2:
            d2.commit({"charged": 20})
    (f,) = found(store, run.run_id, "duplicate_delivery")
    assert f.severity == "error"
    assert f.span_ids == (d1.span_id, d2.span_id)
    assert f.versions == (2, 3) and f.agents == ("billing",)
    ev = f.evidence
    assert ev["message_id"] == "o-1" and ev["group"] == "billing" and ev["times"] == 2
    assert ev["effect_applied_twice"] is True and ev["repeated_keys"] == ["charged"]
    assert [p["versions"] for p in ev["processings"]] == [[2], [3]]
    assert f.detected_ns == ev["processings"][1]["start_ns"]


def test_without_a_visible_effect_it_is_a_warning(store) -> None:
    with RunBuilder(store, pattern="choreography") as run:
        m = run.publish("shop", "orders")
        run.process(m, agent="mailer").end()
        run.process(m, agent="mailer", attempt=2).end()
    (f,) = found(store, run.run_id, "duplicate_delivery")
    assert f.severity == "warning" and f.evidence["effect_applied_twice"] is False
    assert f.versions == ()


def test_an_effect_applied_then_a_crash_before_the_ack_then_a_redelivery(store) -> None:
    # At-least-once delivery's classic: the first processing committed and died unacked.
    with RunBuilder(store, pattern="choreography", initial={"charged": 0}) as run:
        m = run.publish("shop", "orders")
        with run.process(m, agent="billing", ack=None) as d1:
            d1.commit({"charged": 10})
            d1.fail("worker killed")
        with run.process(m, agent="billing", attempt=2) as d2:
            d2.commit({"charged": 20})
    (f,) = found(store, run.run_id, "duplicate_delivery")
    assert f.severity == "error" and f.span_ids == (d1.span_id, d2.span_id)
    assert [p["ack"] for p in f.evidence["processings"]] == [None, "acked"]


def test_a_consumer_that_notices_the_duplicate_is_fine(store) -> None:
    with RunBuilder(store, pattern="choreography", initial={"charged": 0}) as run:
        m = run.publish("shop", "orders")
        with run.process(m, agent="billing") as d:
            d.commit({"charged": 10})
        run.process(m, agent="billing", attempt=2, ack="duplicate").end()
    assert found(store, run.run_id, "duplicate_delivery") == []


def test_a_redelivery_after_a_nack_is_a_retry_not_a_duplicate(store) -> None:
    with RunBuilder(store, pattern="choreography") as run:
        m = run.publish("shop", "orders")
        run.process(m, agent="billing", ack="nacked").end()
        run.process(m, agent="billing", attempt=2).end()
    assert found(store, run.run_id, "duplicate_delivery") == []


def test_each_group_processing_once_is_fan_out(store) -> None:
    with RunBuilder(store, pattern="choreography") as run:
        m = run.publish("shop", "orders")
        run.process(m, agent="billing").end()
        run.process(m, agent="audit").end()
        # Two consumers of one group share the work; one processing each message is right.
        m2 = run.publish("shop", "orders")
        run.process(m2, agent="billing", consumer="billing-2").end()
    assert found(store, run.run_id, "duplicate_delivery") == []


def test_two_consumers_of_one_group_processing_the_same_message(store) -> None:
    with RunBuilder(store, pattern="choreography") as run:
        m = run.publish("shop", "orders")
        run.process(m, agent="billing", consumer="billing-1").end()
        run.process(m, agent="billing", consumer="billing-2").end()
    (f,) = found(store, run.run_id, "duplicate_delivery")
    assert [p["consumer"] for p in f.evidence["processings"]] == ["billing-1", "billing-2"]


# -- lost_event ------------------------------------------------------------------------------


def test_a_message_no_subscriber_ever_got_is_lost(store) -> None:
    with RunBuilder(store, pattern="choreography", declared=SUBS) as run:
        m = run.publish("shop", "orders", message_id="o-9", key="cart-3")
    (f,) = found(store, run.run_id, "lost_event")
    assert f.severity == "error"
    assert f.agents == ("shop", "audit", "billing")
    assert f.span_ids == (m.span_id,)
    ev = f.evidence
    assert ev["message_id"] == "o-9" and ev["key"] == "cart-3" and ev["publisher"] == "shop"
    assert ev["missing_subscribers"] == ["audit", "billing"] and ev["deliveries"] == []
    assert "never handled by audit, billing (never delivered to them)" in f.message
    assert f.detected_ns == ev["run_end_ns"] == store.run(run.run_id).end_ns


def test_one_subscriber_missing_is_named_with_how_it_fared(store) -> None:
    with RunBuilder(store, pattern="choreography", declared=SUBS) as run:
        m = run.publish("shop", "orders")
        run.process(m, agent="billing").end()
        run.process(m, agent="audit", ack="nacked").end()
        run.process(m, agent="audit", attempt=2, ack=None).end()  # died before acking
    (f,) = found(store, run.run_id, "lost_event")
    assert f.evidence["missing_subscribers"] == ["audit"]
    assert len(f.evidence["deliveries"]) == 3 and len(f.evidence["deliveries_to_missing"]) == 2
    assert "(delivered 1× nacked, 1× unacked)" in f.message


def test_an_effect_applied_but_never_acked_was_processed(store) -> None:
    decl = {**SUBS, "subscriptions": [["orders", "billing"]]}
    with RunBuilder(store, pattern="choreography", declared=decl, initial={"charged": 0}) as run:
        m = run.publish("shop", "orders")
        with run.process(m, agent="billing", ack=None) as d:
            d.commit({"charged": 10})
    assert found(store, run.run_id, "lost_event") == []


def test_a_message_dropped_by_the_bus_is_lost(store) -> None:
    decl = {**SUBS, "subscriptions": [["orders", "billing"]]}
    with RunBuilder(store, pattern="choreography", declared=decl) as run:
        m = run.publish("shop", "orders")
        run.process(m, agent="billing", ack="dropped", fault="drop").end()
    (f,) = found(store, run.run_id, "lost_event")
    assert f.evidence["deliveries"][0]["fault"] == "drop"


def test_handled_messages_are_not_lost(store) -> None:
    with RunBuilder(store, pattern="choreography", declared=SUBS) as run:
        m = run.publish("shop", "orders")
        run.process(m, agent="billing", ack="nacked").end()
        run.process(m, agent="billing", attempt=2).end()  # redelivered and acked
        run.process(m, agent="audit", ack="dead_lettered").end()  # parked, on record
    assert found(store, run.run_id, "lost_event") == []


def test_without_declared_subscriptions_the_groups_seen_on_the_topic_subscribe(store) -> None:
    with RunBuilder(store, pattern="choreography") as run:
        m1 = run.publish("shop", "orders")
        run.process(m1, agent="billing").end()
        run.publish("shop", "orders")  # billing consumes orders, and never got this one
        run.publish("shop", "returns")  # nobody consumes returns: nothing to lose
    (f,) = found(store, run.run_id, "lost_event")
    assert f.evidence["message_id"] == "m2" and f.evidence["missing_subscribers"] == ["billing"]


def test_a_foreign_trace_loses_what_the_consumers_seen_on_its_topic_never_got(store) -> None:
    # Foreign traces declare no subscriptions: whoever consumed the topic in the flow must.
    with RunBuilder(store, imported=True) as run:
        m1 = run.publish("shop", "orders")
        run.process(m1, agent="billing").end()
        run.publish("shop", "orders")
    assert store.run(run.run_id).pattern == "imported"
    (f,) = found(store, run.run_id, "lost_event")
    assert f.evidence["message_id"] == "m2" and f.evidence["missing_subscribers"] == ["billing"]
