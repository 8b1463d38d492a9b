"""RedisBus keeps the bus's semantics on a real Redis, with consumers in several "processes"
(buses with their own instance names and connections, as separate processes would have)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from engine.choreography._bus import DeadLetter, Delivery, DeliveryPolicy, Message
from engine.choreography._faults import FaultRule, Faults
from engine.distributed._bus import Abandoned, RedisBus

Buses = Callable[..., RedisBus]


@pytest.fixture
async def buses(redis_url: str) -> AsyncIterator[Buses]:
    made: list[RedisBus] = []

    def make(**options: object) -> RedisBus:
        bus = RedisBus.from_url(redis_url, namespace="test", **options)  # type: ignore[arg-type]
        made.append(bus)
        return bus

    yield make
    for bus in made:
        await bus.close()


def m(i: int, topic: str = "orders", key: str | None = None) -> Message:
    return Message.create(f"m{i}", topic, {"n": i}, key=key, publisher="shop")


async def test_every_group_gets_every_message_and_consumers_of_a_group_share(buses: Buses) -> None:
    a, b, c = buses(), buses(), buses()
    got: dict[str, list[tuple[str, str]]] = {"a": [], "b": [], "c": []}

    def handler(name: str, bus: RedisBus):  # type: ignore[no-untyped-def]
        async def handle(d: Delivery) -> None:
            got[name].append((d.group, d.message.id))
            assert await bus.ack(d)

        return handle

    await a.subscribe("orders", "billing", handler("a", a))
    await b.subscribe("orders", "billing", handler("b", b))
    await c.subscribe("orders", "audit", handler("c", c))
    for i in range(20):
        await a.publish(m(i))
    await asyncio.gather(a.run_until_idle(), b.run_until_idle(), c.run_until_idle())
    billing = sorted(mid for _, mid in got["a"] + got["b"])
    assert billing == sorted(f"m{i}" for i in range(20))  # each once, split between a and b
    assert sorted(mid for _, mid in got["c"]) == billing
    assert await a.unsettled() == []


async def test_the_delivery_carries_the_message_whole(buses: Buses) -> None:
    bus = buses()
    seen: list[Delivery] = []

    async def handle(d: Delivery) -> None:
        seen.append(d)
        await bus.ack(d)

    await bus.subscribe("orders", "billing", handle, consumer="biller")
    sent = m(1, key="k").with_headers({"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"})
    await bus.publish(sent)
    await bus.publish(sent)  # the same message again (a retried publish): once on the stream
    await bus.run_until_idle()
    (d,) = seen
    assert d.message == sent
    assert (d.group, d.consumer, d.attempt, d.fault) == ("billing", "biller", 1, None)
    assert d.delivered_ns > 0


async def test_a_nack_redelivers_until_max_attempts_then_dead_letters(buses: Buses) -> None:
    bus = buses(policy=DeliveryPolicy(max_attempts=3))
    attempts: list[int] = []
    dispositions: list[str] = []
    dead: list[Delivery] = []

    async def handle(d: Delivery) -> None:
        attempts.append(d.attempt)
        dispositions.append(await bus.nack(d, reason="no"))

    async def on_dead(d: Delivery) -> None:
        dead.append(d)
        await bus.ack(d)

    await bus.subscribe("orders", "billing", handle)
    await bus.subscribe("orders.dead", "ops", on_dead)
    await bus.publish(m(1))
    await bus.run_until_idle()
    assert attempts == [1, 2, 3]
    assert dispositions == ["requeued", "requeued", "dead_lettered"]
    (copy,) = dead
    assert copy.message.id == "m1" and copy.message.topic == "orders.dead"
    assert copy.message.headers["agentrace-dead-reason"] == "nacked"
    assert copy.message.headers["agentrace-dead-attempts"] == "3"
    assert [(x.group, x.attempts, x.reason) for x in bus.dead_letters] == [("billing", 3, "nacked")]
    assert await bus.unsettled() == []


async def test_a_raising_handler_is_a_nack_and_requeue_false_rejects(buses: Buses) -> None:
    bus = buses(policy=DeliveryPolicy(max_attempts=5))
    attempts: list[int] = []

    async def handle(d: Delivery) -> None:
        attempts.append(d.attempt)
        if d.attempt == 1:
            raise RuntimeError("flaky")
        assert await bus.nack(d, requeue=False, reason="poison") == "dead_lettered"

    await bus.subscribe("orders", "billing", handle)
    await bus.publish(m(1))
    await bus.run_until_idle()
    assert attempts == [1, 2]
    assert [(x.attempts, x.reason) for x in bus.dead_letters] == [(2, "rejected")]


async def test_unacked_deliveries_come_back_after_the_ack_timeout(buses: Buses) -> None:
    policy = DeliveryPolicy(max_attempts=2, ack_timeout=0.2)
    bus = buses(policy=policy)
    attempts: list[int] = []
    heard: list[DeadLetter] = []

    async def handle(d: Delivery) -> None:
        attempts.append(d.attempt)  # never acks

    async def on_dead_letter(dl: DeadLetter) -> None:
        heard.append(dl)

    await bus.subscribe("orders", "billing", handle, on_dead_letter=on_dead_letter)
    await bus.publish(m(1))
    await bus.run_until_idle()
    assert attempts == [1, 2]
    assert [(x.attempts, x.reason) for x in heard] == [(2, "ack_timeout")]


async def test_without_ack_timeout_an_unacked_delivery_stays_in_flight(buses: Buses) -> None:
    bus = buses()

    async def handle(d: Delivery) -> None:
        pass  # a consumer that "died" after taking it

    await bus.subscribe("orders", "billing", handle)
    await bus.publish(m(1))
    await bus.run_until_idle()  # returns: nothing will ever deliver it again
    (u,) = await bus.unsettled()
    assert (u.message.id, u.group, u.attempts, u.state) == ("m1", "billing", 1, "in_flight")


async def test_ordering_per_key_across_consumers(buses: Buses) -> None:
    consumers = [buses(concurrency=4) for _ in range(3)]
    order: dict[str, list[int]] = {}
    busy: dict[str, int] = {}
    overlaps: list[str] = []

    def handler(bus: RedisBus):  # type: ignore[no-untyped-def]
        async def handle(d: Delivery) -> None:
            key = d.message.key or ""
            busy[key] = busy.get(key, 0) + 1
            if busy[key] > 1:
                overlaps.append(key)
            await asyncio.sleep(0)  # let the other consumers run meanwhile
            order.setdefault(key, []).append(d.message.payload["n"])
            busy[key] -= 1
            await bus.ack(d)

        return handle

    for bus in consumers:
        await bus.subscribe("orders", "billing", handler(bus))
    for i in range(30):
        await consumers[0].publish(m(i, key=f"k{i % 3}"))
    await asyncio.gather(*(b.run_until_idle() for b in consumers))
    assert overlaps == []
    for k in range(3):
        assert order[f"k{k}"] == list(range(k, 30, 3))


async def test_a_nacked_key_head_holds_its_key_back(buses: Buses) -> None:
    bus = buses(policy=DeliveryPolicy(max_attempts=3))
    log: list[tuple[int, int]] = []

    async def handle(d: Delivery) -> None:
        n = d.message.payload["n"]
        log.append((n, d.attempt))
        if n == 0 and d.attempt < 3:
            await bus.nack(d)
        else:
            await bus.ack(d)

    await bus.subscribe("orders", "billing", handle)
    await bus.publish(m(0, key="k"))
    await bus.publish(m(1, key="k"))
    await bus.run_until_idle()
    assert log == [(0, 1), (0, 2), (0, 3), (1, 1)]


async def test_idempotency_marks_are_shared_between_processes(buses: Buses) -> None:
    a, b = buses(), buses()
    outbox = (m(9, topic="shipping"),)
    await a.remember("billing", "m1", outbox)
    got = await b.seen("billing", "m1")
    assert got is not None and got.outbox == outbox
    assert await b.seen("audit", "m1") is None
    await b.remember("billing", "m1")
    got = await a.seen("billing", "m1")
    assert got is not None and got.outbox == ()


async def test_faults_duplicate_and_consumer_faults(buses: Buses) -> None:
    # Rules are tried in order: m1 is the duplicate rule's first match, m2 the drop rule's.
    plan = Faults([FaultRule("duplicate", nth=1), FaultRule("drop", nth=1)], seed=1)
    bus = buses(faults=plan)
    seen: list[tuple[str, int, str | None]] = []
    acks: list[bool] = []

    async def handle(d: Delivery) -> None:
        seen.append((d.message.id, d.attempt, d.fault))
        if d.fault != "drop":
            acks.append(await bus.ack(d))

    await bus.subscribe("orders", "billing", handle)
    await bus.publish(m(1))
    await bus.publish(m(2))
    await bus.run_until_idle()
    assert seen == [("m1", 1, None), ("m1", 2, "duplicate"), ("m2", 1, "drop")]
    assert acks == [True, False]  # the twin's ack finds it settled
    (u,) = await bus.unsettled()
    assert (u.message.id, u.state) == ("m2", "in_flight")


async def test_a_dead_processs_delivery_is_claimed_and_reported(buses: Buses) -> None:
    policy = DeliveryPolicy(ack_timeout=0.2)
    doomed = buses(policy=policy, heartbeat=0.05)
    taken = asyncio.Event()

    async def hang(d: Delivery) -> None:
        taken.set()
        await asyncio.Event().wait()  # never returns

    await doomed.subscribe("orders", "billing", hang)
    runner = asyncio.ensure_future(doomed.run_until_idle())
    await doomed.publish(m(1))
    await taken.wait()
    # "kill -9": its tasks stop where they are and its heartbeat lapses.
    runner.cancel()
    stopped = [*doomed._loops, *doomed._service, *doomed._tasks]
    for t in stopped:
        t.cancel()
    await asyncio.gather(runner, *stopped, return_exceptions=True)
    await doomed.streams.gone(doomed.instance)

    heir = buses(policy=policy)
    abandoned: list[Abandoned] = []
    handled: list[int] = []

    async def on_abandoned(a: Abandoned) -> None:
        abandoned.append(a)

    heir.on_abandoned = on_abandoned

    async def handle(d: Delivery) -> None:
        handled.append(d.attempt)
        await heir.ack(d)

    await heir.subscribe("orders", "billing", handle)
    await heir.run_until_idle()
    assert handled == [2]
    (a,) = abandoned
    assert (a.message.id, a.group, a.attempt, a.instance) == ("m1", "billing", 1, doomed.instance)
    assert a.delivered_ns > 0
    assert await heir.unsettled() == []


async def test_a_bus_rides_out_a_redis_restart_and_gives_up_after_its_timeout() -> None:
    from engine.distributed._bus import RedisBusError
    from engine.distributed._server import RedisServer

    from .conftest import require_redis_server

    with RedisServer(binary=require_redis_server(), durable=True) as server:
        bus = RedisBus.from_url(server.url, namespace="test", reconnect_timeout=30)
        got: list[str] = []

        async def handle(d: Delivery) -> None:
            got.append(d.message.id)
            await bus.ack(d)

        await bus.subscribe("orders", "billing", handle)
        await bus.publish(m(1))
        server.kill()  # down, as a crash leaves it
        # The publish meets no server, retries, and lands once the server is back.
        await asyncio.gather(bus.publish(m(2)), asyncio.to_thread(server.start))
        assert bus.stats.reconnects > 0
        await bus.run_until_idle()
        assert got == ["m1", "m2"]  # the first publish survived the crash (fsync always)
        server.kill()
        bus.reconnect_timeout = 0.2
        with pytest.raises(RedisBusError, match="publish m3 on orders"):
            await bus.publish(m(3))
        await bus.close()
