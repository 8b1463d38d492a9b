"""Redis Streams primitives against a real redis-server: publish once, groups, claims, dead letters."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from engine._redis_streams import F_DEAD_ATTEMPTS, F_DEAD_GROUP, F_DEAD_SOURCE, F_ID, RedisStreams

MINUTE_MS = 60_000


@pytest.fixture
async def streams(redis_url: str) -> AsyncIterator[RedisStreams]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        yield RedisStreams(client)
    finally:
        await client.aclose()


def msg(i: int, **extra: str) -> dict[str, str]:
    return {F_ID: f"m{i}", "payload": f'{{"n":{i}}}', **extra}


async def test_publish_is_once_per_message_id(streams: RedisStreams) -> None:
    first = await streams.publish("t", msg(1))
    again = await streams.publish("t", msg(1))  # a retry after a lost reply
    other = await streams.publish("t", msg(2))
    assert again == first != other
    assert [e.message_id for e in await streams.entries("t")] == ["m1", "m2"]
    with pytest.raises(ValueError):
        await streams.publish("t", {"payload": "{}"})


async def test_group_starts_at_the_end_unless_told(streams: RedisStreams) -> None:
    await streams.publish("t", msg(1))
    assert await streams.ensure_group("t", "late") is True
    assert await streams.ensure_group("t", "late") is False
    await streams.ensure_group("t", "all", start="0")
    await streams.publish("t", msg(2))
    late = await streams.read_new(["t"], "late", "c")
    every = await streams.read_new(["t"], "all", "c")
    assert [e.message_id for e in late] == ["m2"]
    assert [e.message_id for e in every] == ["m1", "m2"]
    assert {g["name"] for g in await streams.groups("t")} == {b"late", b"all"}
    assert await streams.groups("nothing") == []


async def test_consumers_of_a_group_share_groups_each_get_all(streams: RedisStreams) -> None:
    for g in ("a", "b"):
        await streams.ensure_group("t", g)
    for i in range(6):
        await streams.publish("t", msg(i))
    a1 = await streams.read_new(["t"], "a", "a1", count=4)
    a2 = await streams.read_new(["t"], "a", "a2", count=4)
    b1 = await streams.read_new(["t"], "b", "b1", count=10)
    assert len(a1) == 4 and len(a2) == 2
    assert {e.message_id for e in a1} | {e.message_id for e in a2} == {f"m{i}" for i in range(6)}
    assert [e.message_id for e in b1] == [f"m{i}" for i in range(6)]
    assert all(e.deliveries == 1 for e in a1 + a2 + b1)
    assert await streams.pending("t", "a") == 6
    assert await streams.pending("t", "nogroup") == 0


async def test_ack_settles_once(streams: RedisStreams) -> None:
    await streams.ensure_group("t", "g")
    await streams.publish("t", msg(1))
    (e,) = await streams.read_new(["t"], "g", "c")
    assert await streams.ack(e, "g") is True
    assert await streams.ack(e, "g") is False
    assert await streams.pending("t", "g") == 0


async def test_stuck_entries_are_claimed_with_their_delivery_count(streams: RedisStreams) -> None:
    await streams.ensure_group("t", "g")
    await streams.publish("t", msg(1))
    (held,) = await streams.read_new(["t"], "g", "dead-worker")
    # Fresh: not idle long enough for a one-minute ack timeout.
    assert await streams.claim_stuck("t", "g", "w2", min_idle_ms=MINUTE_MS) == []
    (claimed,) = await streams.claim_stuck("t", "g", "w2", min_idle_ms=0)
    assert (claimed.entry_id, claimed.deliveries) == (held.entry_id, 2)
    (again,) = await streams.claim_stuck("t", "g", "w3", min_idle_ms=0)
    assert again.deliveries == 3
    pel = await streams.pending_entries("t", "g")
    assert [(p["consumer"], p["times_delivered"]) for p in pel] == [("w3", 3)]


async def test_release_is_a_nack_claimable_after_its_delay(streams: RedisStreams) -> None:
    await streams.ensure_group("t", "g")
    await streams.publish("t", msg(1))
    await streams.publish("t", msg(2))
    first, second = await streams.read_new(["t"], "g", "c1")
    await streams.release(first, "g", "c1", ack_timeout_ms=MINUTE_MS)
    await streams.release(second, "g", "c1", ack_timeout_ms=MINUTE_MS, delay_ms=30_000)
    claimed = await streams.claim_stuck("t", "g", "c2", min_idle_ms=MINUTE_MS)
    # Only the one nacked without delay; the release kept its delivery count (claiming adds one).
    assert [(e.message_id, e.deliveries) for e in claimed] == [("m1", 2)]


async def test_own_pending_is_read_back_after_a_restart(streams: RedisStreams) -> None:
    await streams.ensure_group("t", "g")
    for i in range(3):
        await streams.publish("t", msg(i))
    got = await streams.read_new(["t"], "g", "w")
    await streams.ack(got[1], "g")
    back = await streams.read_own_pending("t", "g", "w")
    # Reading one's own history counts as a delivery (Redis increments the count).
    assert [(e.message_id, e.deliveries) for e in back] == [("m0", 2), ("m2", 2)]
    assert await streams.read_own_pending("t", "g", "other") == []


async def test_done_marks_are_per_group(streams: RedisStreams) -> None:
    for g in ("a", "b"):
        await streams.ensure_group("t", g)
    await streams.publish("t", msg(1))
    (e,) = await streams.read_new(["t"], "a", "c")
    assert not await streams.is_done("a", "m1")
    assert await streams.ack(e, "a", mark_done=True) is True
    assert await streams.is_done("a", "m1")
    assert not await streams.is_done("b", "m1")
    ttl = await streams.client.ttl(streams.done_key("a", "m1"))
    assert 0 < ttl <= streams.done_ttl_s


async def test_dead_letter_moves_and_acks(streams: RedisStreams) -> None:
    await streams.ensure_group("t", "g")
    await streams.publish("t", msg(1))
    (e,) = await streams.read_new(["t"], "g", "c")
    await streams.dead_letter(e, "g", attempts=3, reason="boom")
    assert await streams.pending("t", "g") == 0
    (dead,) = await streams.dead_letters("t")
    assert dead.message_id == "m1"
    assert dead.fields[F_DEAD_GROUP] == "g"
    assert dead.fields[F_DEAD_ATTEMPTS] == "3"
    assert dead.fields[F_DEAD_SOURCE] == e.entry_id
    assert dead.fields["payload"] == '{"n":1}'


def test_namespace_must_be_a_plain_name() -> None:
    client = aioredis.Redis()
    with pytest.raises(ValueError):
        RedisStreams(client, namespace="a:b")
