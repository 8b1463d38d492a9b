"""The in-process bus on its own: groups, acks, redelivery, dead letters, ordering, faults."""

from __future__ import annotations

import asyncio

import pytest

import engine as e

from .conftest import Consumer, msg

NS = 1_000_000_000


async def test_every_group_gets_every_message_and_acks_settle_them(time: e.VirtualTime) -> None:
    bus = e.InProcessBus(time)
    a, b = Consumer(bus), Consumer(bus)
    await bus.subscribe("t", "a", a)
    await bus.subscribe("t", "b", b)
    for n in range(3):
        await bus.publish(msg(n))
    await bus.run_until_idle()
    assert a.ids() == b.ids() == ["m0", "m1", "m2"]
    assert [ok for _, ok in a.acked] == [True, True, True]
    assert await bus.unsettled() == []
    assert (bus.stats.published, bus.stats.deliveries, bus.stats.acked) == (3, 6, 6)


async def test_a_group_gets_only_what_is_published_after_it_subscribes(time: e.VirtualTime) -> None:
    bus = e.InProcessBus(time)
    await bus.publish(msg(0))
    c = Consumer(bus)
    await bus.subscribe("t", "g", c)
    await bus.publish(msg(1))
    await bus.run_until_idle()
    assert c.ids() == ["m1"]
    assert bus.stats.unrouted == 1


async def test_a_second_ack_of_a_settled_message_says_so(time: e.VirtualTime) -> None:
    bus = e.InProcessBus(time)
    c = Consumer(bus)
    await bus.subscribe("t", "g", c)
    await bus.publish(msg(0))
    await bus.run_until_idle()
    assert await bus.ack(c.seen[0]) is False
    assert await bus.nack(c.seen[0]) == "settled"


async def test_nack_redelivers_after_the_policy_delay_then_dead_letters(
    time: e.VirtualTime,
) -> None:
    policy = e.DeliveryPolicy(max_attempts=3, redelivery_delay=2.0, backoff=3.0)
    bus = e.InProcessBus(time, policy=policy)
    c = Consumer(bus, decide=lambda d: "nack")
    dlq = Consumer(bus)
    await bus.subscribe("t", "g", c)
    await bus.subscribe(e.dead_letter_topic("t"), "ops", dlq)
    start = time.now_ns()
    await bus.publish(msg(0))
    await bus.run_until_idle()
    assert [d.attempt for d in c.seen] == [1, 2, 3]
    # Waits of 2 s after the first nack and 6 s after the second; none after the last.
    assert [d.delivered_ns - start for d in c.seen] == [0, 2 * NS, 8 * NS]
    assert [(x.message.id, x.group, x.attempts, x.reason) for x in bus.dead_letters] == [
        ("m0", "g", 3, "nacked")
    ]
    assert dlq.ids() == ["m0"]
    assert dlq.seen[0].message.headers["agentrace-dead-group"] == "g"
    assert await bus.unsettled() == []


async def test_nack_without_requeue_dead_letters_at_once(time: e.VirtualTime) -> None:
    bus = e.InProcessBus(time, policy=e.DeliveryPolicy(max_attempts=5, dead_letter=False))
    results: list[str] = []

    async def handler(d: e.Delivery) -> None:
        results.append(await bus.nack(d, requeue=False))

    await bus.subscribe("t", "g", handler)
    await bus.publish(msg(0))
    await bus.run_until_idle()
    assert results == ["dead_lettered"]
    assert bus.dead_letters[0].reason == "rejected"
    assert bus.stats.published == 1  # dead_letter=False: no copy was published


async def test_a_handler_that_raises_is_nacked(time: e.VirtualTime) -> None:
    bus = e.InProcessBus(time, policy=e.DeliveryPolicy(max_attempts=2))
    calls: list[int] = []

    async def handler(d: e.Delivery) -> None:
        calls.append(d.attempt)
        raise RuntimeError("boom")

    await bus.subscribe("t", "g", handler)
    await bus.publish(msg(0))
    await bus.run_until_idle()
    assert calls == [1, 2]
    assert bus.dead_letters[0].reason == "nacked"


async def test_ack_timeout_redelivers_and_finally_dead_letters_through_the_listener(
    time: e.VirtualTime,
) -> None:
    bus = e.InProcessBus(time, policy=e.DeliveryPolicy(max_attempts=2, ack_timeout=30.0))
    silent = Consumer(bus, decide=lambda d: "none")
    heard: list[e.DeadLetter] = []

    async def listener(dead: e.DeadLetter) -> None:
        heard.append(dead)

    await bus.subscribe("t", "g", silent, on_dead_letter=listener)
    start = time.now_ns()
    await bus.publish(msg(0))
    await bus.run_until_idle()
    assert [(d.attempt, d.delivered_ns - start) for d in silent.seen] == [(1, 0), (2, 30 * NS)]
    assert [(x.attempts, x.reason) for x in heard] == [(2, "ack_timeout")]
    assert time.now_ns() - start == 60 * NS
    assert bus.stats.ack_timeouts == 2


async def test_without_an_ack_timeout_an_unacked_message_stays_in_flight(
    time: e.VirtualTime,
) -> None:
    bus = e.InProcessBus(time)
    silent = Consumer(bus, decide=lambda d: "none")
    await bus.subscribe("t", "g", silent)
    start = time.now_ns()
    await bus.publish(msg(0))
    await bus.run_until_idle()
    assert len(silent.seen) == 1
    assert [(u.message.id, u.group, u.attempts, u.state) for u in await bus.unsettled()] == [
        ("m0", "g", 1, "in_flight")
    ]
    assert time.now_ns() == start  # nothing to wait for


async def test_a_late_ack_after_the_timeout_still_settles(time: e.VirtualTime) -> None:
    bus = e.InProcessBus(time, policy=e.DeliveryPolicy(max_attempts=5, ack_timeout=10.0))
    c = Consumer(bus, decide=lambda d: "none")
    await bus.subscribe("t", "g", c)
    await bus.publish(msg(0))
    await bus.run_until_idle()
    assert len(c.seen) == 5
    assert bus.dead_letters  # given up on
    assert await bus.ack(c.seen[0]) is False


async def test_keyed_messages_wait_for_their_predecessor_to_settle(time: e.VirtualTime) -> None:
    bus = e.InProcessBus(time, policy=e.DeliveryPolicy(max_attempts=3, redelivery_delay=1.0))
    first_try: set[str] = set()

    def decide(d: e.Delivery) -> str:
        if d.message.id == "m0" and d.attempt == 1:
            first_try.add(d.message.id)
            return "nack"
        return "ack"

    c = Consumer(bus, decide=decide)
    await bus.subscribe("t", "g", c)
    await bus.publish(msg(0, key="k"))
    await bus.publish(msg(1, key="k"))
    await bus.publish(msg(2))  # no key: not held up
    await bus.publish(msg(3, key="other"))
    await bus.run_until_idle()
    assert [(d.message.id, d.attempt) for d in c.seen] == [
        ("m0", 1),
        ("m2", 1),
        ("m3", 1),
        ("m0", 2),
        ("m1", 1),
    ]


async def test_idempotency_notes_are_per_group(time: e.VirtualTime) -> None:
    bus = e.InProcessBus(time)
    m = msg(1)
    assert await bus.seen("g", "m0") is None
    await bus.remember("g", "m0", [m])
    assert await bus.seen("g", "m0") == e.Processed((m,))
    assert await bus.seen("h", "m0") is None
    await bus.remember("g", "m0")
    assert await bus.seen("g", "m0") == e.Processed(())


async def test_subscribing_a_group_twice_is_refused(time: e.VirtualTime) -> None:
    bus = e.InProcessBus(time)
    await bus.subscribe("t", "g", Consumer(bus))
    with pytest.raises(e.BusError, match="already subscribed"):
        await bus.subscribe("t", "g", Consumer(bus))
    await bus.subscribe("u", "g", Consumer(bus))  # the same group name on another topic is fine


async def test_run_until_idle_is_not_reentrant(time: e.VirtualTime) -> None:
    bus = e.InProcessBus(time)
    errors: list[Exception] = []

    async def handler(d: e.Delivery) -> None:
        try:
            await bus.run_until_idle()
        except e.BusError as exc:
            errors.append(exc)
        await bus.ack(d)

    await bus.subscribe("t", "g", handler)
    await bus.publish(msg(0))
    await bus.run_until_idle()
    assert len(errors) == 1


async def test_with_concurrency_handlers_overlap_and_everything_settles(
    time: e.VirtualTime,
) -> None:
    bus = e.InProcessBus(time, concurrency=4)
    running = 0
    most = 0
    gate = asyncio.Event()

    async def handler(d: e.Delivery) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        if most >= 4:
            gate.set()
        await gate.wait()
        running -= 1
        await bus.ack(d)

    await bus.subscribe("t", "g", handler)
    for n in range(8):
        await bus.publish(msg(n))
    await bus.run_until_idle()
    assert most == 4
    assert bus.stats.acked == 8
    assert await bus.unsettled() == []


async def test_keyed_order_holds_with_concurrency(time: e.VirtualTime) -> None:
    bus = e.InProcessBus(time, concurrency=3)
    order: list[str] = []

    async def handler(d: e.Delivery) -> None:
        await time.sleep(0.5 if d.message.id == "m0" else 0.1)
        order.append(d.message.id)
        await bus.ack(d)

    await bus.subscribe("t", "g", handler)
    for n in range(4):
        await bus.publish(msg(n, key="same"))
    await bus.run_until_idle()
    assert order == ["m0", "m1", "m2", "m3"]


# -- faults ------------------------------------------------------------------------------------


async def test_delay_fault_holds_a_delivery_back_exactly(time: e.VirtualTime) -> None:
    faults = e.Faults([e.FaultRule.delay(5.0, nth=1)])
    bus = e.InProcessBus(time, faults=faults)
    c = Consumer(bus)
    await bus.subscribe("t", "g", c)
    start = time.now_ns()
    await bus.publish(msg(0))
    await bus.publish(msg(1))
    await bus.run_until_idle()
    assert [(d.message.id, d.fault, d.delivered_ns - start) for d in c.seen] == [
        ("m1", None, 0),
        ("m0", "delay", 5 * NS),
    ]


async def test_reorder_fault_lets_the_next_delivery_overtake(time: e.VirtualTime) -> None:
    bus = e.InProcessBus(time, faults=e.Faults([e.FaultRule.reorder(nth=1)]))
    c = Consumer(bus)
    await bus.subscribe("t", "g", c)
    for n in range(3):
        await bus.publish(msg(n))
    await bus.run_until_idle()
    assert [(d.message.id, d.fault) for d in c.seen] == [
        ("m1", None),
        ("m0", "reorder"),
        ("m2", None),
    ]


async def test_reorder_with_nothing_behind_is_not_applied(time: e.VirtualTime) -> None:
    bus = e.InProcessBus(time, faults=e.Faults([e.FaultRule.reorder()]))
    c = Consumer(bus)
    await bus.subscribe("t", "g", c)
    await bus.publish(msg(0))
    await bus.run_until_idle()
    assert [(d.message.id, d.fault) for d in c.seen] == [("m0", None)]


async def test_reorder_never_breaks_the_order_of_a_key(time: e.VirtualTime) -> None:
    bus = e.InProcessBus(time, faults=e.Faults([e.FaultRule.reorder(probability=0.9)], seed=5))
    c = Consumer(bus)
    await bus.subscribe("t", "g", c)
    for n in range(12):
        await bus.publish(msg(n, key="k" if n % 2 else None))
    await bus.run_until_idle()
    keyed = [d.message.id for d in c.seen if d.message.key == "k"]
    assert keyed == [f"m{n}" for n in range(1, 12, 2)]
    assert [d.message.id for d in c.seen] != [f"m{n}" for n in range(12)]  # something did overtake


async def test_duplicate_fault_delivers_twice_and_the_second_ack_is_a_no_op(
    time: e.VirtualTime,
) -> None:
    bus = e.InProcessBus(time, faults=e.Faults([e.FaultRule.duplicate(topic="t")]))
    c = Consumer(bus)
    await bus.subscribe("t", "g", c)
    await bus.publish(msg(0))
    await bus.run_until_idle()
    assert [(d.attempt, d.fault, ok) for d, ok in c.acked] == [
        (1, None, True),
        (2, "duplicate", False),
    ]


@pytest.mark.parametrize("kind", ["drop", "crash", "crash_during", "ack_lost"])
async def test_consumer_faults_are_handed_to_the_consumer(time: e.VirtualTime, kind: str) -> None:
    rule = e.FaultRule(kind, group="g", attempt=1)  # type: ignore[arg-type]
    bus = e.InProcessBus(time, faults=e.Faults([rule]))
    g, h = Consumer(bus, decide=lambda d: "none"), Consumer(bus, decide=lambda d: "none")
    await bus.subscribe("t", "g", g)
    await bus.subscribe("t", "h", h)
    await bus.publish(msg(0))
    await bus.run_until_idle()
    assert [d.fault for d in g.seen] == [kind]
    assert [d.fault for d in h.seen] == [None]


def test_fault_rules_match_count_and_limit() -> None:
    plan = e.Faults([e.FaultRule.drop(topic="t", nth=2), e.FaultRule.crash(group="g", limit=1)])
    inj = plan.injector()
    decisions = [inj.decide(msg(n), "g", 1) for n in range(4)]
    assert [d.kind if d else None for d in decisions] == ["crash", "drop", None, None]
    assert [(a.kind, a.message_id) for a in inj.applied] == [("crash", "m0"), ("drop", "m1")]
    again = plan.injector()  # a fresh run starts over
    assert again.decide(msg(0), "g", 1) == e.Fault("crash", 0.0, 1)


def test_coins_are_seeded() -> None:
    def kinds(seed: int) -> list[str | None]:
        inj = e.Faults.chaos(seed, drop=0.3, duplicate=0.3, delay=0.3, delay_seconds=2.0).injector()
        return [f.kind if (f := inj.decide(msg(n), "g", 1)) else None for n in range(40)]

    assert kinds(1) == kinds(1)
    assert kinds(1) != kinds(2)
    assert {"drop", "duplicate", "delay", None} == set(kinds(1))


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda: e.FaultRule("melt"), "unknown fault kind"),  # type: ignore[arg-type]
        (lambda: e.FaultRule.drop(probability=1.5), "within 0..1"),
        (lambda: e.FaultRule("delay"), "positive delay"),
        (lambda: e.FaultRule.drop(nth=0), "1-based"),
        (lambda: e.DeliveryPolicy(max_attempts=0), "at least 1"),
        (lambda: e.DeliveryPolicy(ack_timeout=0), "positive"),
        (lambda: e.InProcessBus(concurrency=0), "at least 1"),
    ],
)
def test_bad_settings_are_refused(make: object, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        make()  # type: ignore[operator]


def test_messages_serialise_and_refuse_what_is_not_json() -> None:
    m = e.Message.create(
        "m1", "t", {"a": [1, 2.5, None]}, key="k", publisher="p", headers={"traceparent": "x"}
    )
    assert e.Message.from_json(m.to_json()) == m
    with pytest.raises(e.BusError, match="not JSON"):
        e.Message.create("m2", "t", {"a": object()})
    with pytest.raises(e.BusError, match="not a message"):
        e.Message.from_json(b"[1]")
    with pytest.raises(e.BusError, match="headers"):
        e.Message.from_json(b'{"id": "m", "topic": "t", "headers": {"a": 1}}')
