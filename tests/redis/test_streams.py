"""The Redis Streams scripts against a real redis-server: each atomic step of the bus."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from engine.distributed._streams import (
    F_ID,
    F_KEY,
    F_MESSAGE,
    NACK_MARK_MS,
    Entry,
    RedisStreams,
    lp,
)

MINUTE_MS = 60_000
ME, OTHER = "inst-a", "inst-b"


@pytest.fixture
async def s(redis_url: str) -> AsyncIterator[RedisStreams]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    streams = RedisStreams(client, namespace="t")
    await streams.heartbeat(ME, 60_000)
    await streams.heartbeat(OTHER, 60_000)
    try:
        yield streams
    finally:
        await client.aclose()


def msg(i: int, key: str | None = None) -> dict[str, str]:
    f = {F_ID: f"m{i}", F_MESSAGE: f'{{"n":{i}}}'}
    if key is not None:
        f[F_KEY] = key
    return f


async def take(
    s: RedisStreams,
    consumer: str = "c@a",
    instance: str = ME,
    *,
    count: int = 16,
    claim_idle_ms: int | None = None,
) -> list[Entry]:
    _, entries = await s.take(
        "t", "g", consumer, instance, max_attempts=3, count=count, claim_idle_ms=claim_idle_ms
    )
    return entries


def test_length_prefixes_keep_names_apart() -> None:
    assert lp("a:b") + ":" + lp("c") != lp("a") + ":" + lp("b:c")
    assert lp("é") == "2:é"  # bytes, as Lua counts them


async def test_publish_is_once_per_topic_run_and_id(s: RedisStreams) -> None:
    first = await s.publish("t", msg(1), run="r1")
    assert await s.publish("t", msg(1), run="r1") == first  # a retry after a lost reply
    assert await s.publish("t", msg(1), run="r2") != first  # the same id in another run
    await s.publish("u", msg(1), run="r1")  # or on another topic
    assert [f[F_ID] for _, f in await s.entries("t")] == ["m1", "m1"]
    assert [f[F_ID] for _, f in await s.entries("u")] == ["m1"]
    with pytest.raises(ValueError):
        await s.publish("t", {F_MESSAGE: "{}"})


async def test_groups_start_at_the_end_and_share_entries(s: RedisStreams) -> None:
    await s.publish("t", msg(0))
    assert await s.ensure_group("t", "g") is True
    assert await s.ensure_group("t", "g") is False
    for i in range(1, 4):
        await s.publish("t", msg(i))
    a = await take(s, "c@a", count=2)
    b = await take(s, "c@b", OTHER, count=5)
    assert [e.message_id for e in a] == ["m1", "m2"]
    assert [e.message_id for e in b] == ["m3"]
    assert all((e.status, e.attempts) == ("deliver", 1) for e in a + b)
    running = await s.client.hgetall(s.running_key)
    assert sorted(v.split()[0] for v in running.values()) == [ME, ME, OTHER]


async def test_settle_acks_once_and_the_mark_stays_until_unmarked(s: RedisStreams) -> None:
    await s.ensure_group("t", "g")
    await s.publish("t", msg(1))
    (e,) = await take(s)
    done = await s.settle("t", "g", "c@a", ME, e.entry_id, key=None, max_attempts=3)
    assert done.acked and done.next is None
    again = await s.settle("t", "g", "c@a", ME, e.entry_id, key=None, max_attempts=3)
    assert not again.acked
    assert await s.pending("t", "g") == []
    assert await s.attempts("t", "g", [e.entry_id]) == [0]
    # The handler may still be at work (publishing after its ack): marked until it returns.
    assert len(await s.client.hgetall(s.running_key)) == 1
    await s.unmark("t", "g", e.entry_id, ME, 1)
    assert await s.client.hgetall(s.running_key) == {}


async def test_a_key_delivers_its_head_only_and_the_settler_hands_on_the_next(
    s: RedisStreams,
) -> None:
    await s.ensure_group("t", "g")
    await s.publish("t", msg(1, key="k"))
    await s.publish("t", msg(2, key="k"))
    await s.publish("t", msg(3, key="other"))
    head = await take(s, "c@a", count=1)
    rest = await take(s, "c@b", OTHER, count=5)
    assert [(e.message_id, e.status) for e in head] == [("m1", "deliver")]
    assert [(e.message_id, e.status) for e in rest] == [("m2", "parked"), ("m3", "deliver")]
    settled = await s.settle("t", "g", "c@a", ME, head[0].entry_id, key="k", max_attempts=3)
    # m2 was read by c@b and parked there: the settler now holds it and delivers it.
    assert settled.next is not None
    assert (settled.next.message_id, settled.next.status, settled.next.attempts) == (
        "m2",
        "deliver",
        1,
    )
    owners = {p["message_id"]: p["consumer"] for p in await s.pending("t", "g")}
    assert owners[settled.next.entry_id] == "c@a"


async def test_a_key_head_settled_before_the_next_is_read(s: RedisStreams) -> None:
    await s.ensure_group("t", "g")
    await s.publish("t", msg(1, key="k"))
    await s.publish("t", msg(2, key="k"))
    (first,) = await take(s, count=1)
    settled = await s.settle("t", "g", "c@a", ME, first.entry_id, key="k", max_attempts=3)
    assert settled.next is None  # nobody read m2 yet: the next read delivers it
    (second,) = await take(s, "c@b", OTHER)
    assert (second.message_id, second.status) == ("m2", "deliver")


async def test_claims_take_idle_entries_and_report_a_dead_holder(s: RedisStreams) -> None:
    await s.ensure_group("t", "g")
    await s.publish("t", msg(1))
    (held,) = await take(s, "c@dead", "inst-dead")  # a process with no heartbeat: gone
    assert await take(s, "c@b", OTHER, claim_idle_ms=MINUTE_MS) == []  # not idle long enough
    (claimed,) = await take(s, "c@b", OTHER, claim_idle_ms=0)
    assert (claimed.entry_id, claimed.attempts) == (held.entry_id, 2)
    assert claimed.abandoned is not None and claimed.abandoned.split()[:2] == ["inst-dead", "1"]
    # Claimed from a live holder: not abandoned.
    (again,) = await take(s, "c@a", ME, claim_idle_ms=0)
    assert again.attempts == 3 and again.abandoned is None
    # Out of attempts: the claimant is told to dead-letter it.
    (last,) = await take(s, "c@b", OTHER, claim_idle_ms=0)
    assert (last.status, last.attempts) == ("exhausted", 3)


async def test_release_is_a_nack_claimable_after_its_delay(s: RedisStreams) -> None:
    await s.ensure_group("t", "g")
    await s.publish("t", msg(1))
    await s.publish("t", msg(2))
    first, second = await take(s, count=2)
    r1 = await s.release("t", "g", "c@a", first.entry_id, idle_ms=NACK_MARK_MS, max_attempts=3)
    r2 = await s.release(
        "t", "g", "c@a", second.entry_id, idle_ms=NACK_MARK_MS - MINUTE_MS, max_attempts=3
    )
    assert r1 == ("released", 1) and r2 == ("released", 1)
    claimed = await take(s, "c@b", OTHER, claim_idle_ms=NACK_MARK_MS - 1000)
    assert [(e.message_id, e.attempts) for e in claimed] == [("m1", 2)]
    assert await s.release("t", "g", "c@a", claimed[0].entry_id, idle_ms=0, max_attempts=3) == (
        "elsewhere",
        2,
    )
    assert await s.release("t", "g", "c@b", claimed[0].entry_id, idle_ms=0, max_attempts=2) == (
        "exhausted",
        2,
    )


async def test_dead_letter_copy_is_published_with_the_ack(s: RedisStreams) -> None:
    await s.ensure_group("t", "g")
    await s.ensure_group("t.dead", "ops")
    await s.publish("t", msg(1, key="k"))
    (e,) = await take(s)
    dead = {F_ID: "m1", F_MESSAGE: '{"dead":true}', F_KEY: "k"}
    out = await s.settle(
        "t",
        "g",
        "c@a",
        ME,
        e.entry_id,
        key="k",
        max_attempts=3,
        dead_topic="t.dead",
        dead_fields=dead,
    )
    assert out.acked
    assert [f[F_MESSAGE] for _, f in await s.entries("t.dead")] == ['{"dead":true}']
    # The copy joined the dead topic's key queue for its group, as a publish would.
    assert await s.client.lrange(f"t:keyq:{s.gp('t.dead', 'ops')}k", 0, -1) != []


async def test_unmark_only_removes_its_own_attempt(s: RedisStreams) -> None:
    await s.ensure_group("t", "g")
    await s.publish("t", msg(1))
    (e,) = await take(s)
    await s.unmark("t", "g", e.entry_id, ME, 2)  # a later attempt's: not this mark
    assert len(await s.client.hgetall(s.running_key)) == 1
    await s.unmark("t", "g", e.entry_id, ME, 1)
    assert await s.client.hgetall(s.running_key) == {}


async def test_live_says_whether_anything_can_still_happen(s: RedisStreams) -> None:
    async def live() -> int:
        return (await s.live())[0]

    async def take_from(group: str) -> Entry:
        _, (e,) = await s.take("t", group, "c@a", ME, max_attempts=3)
        return e

    assert await live() == 0
    await s.ensure_group("t", "g")  # no ack timeout
    await s.publish("t", msg(1))
    assert await live() == 1  # not yet delivered
    e = await take_from("g")
    assert await live() == 1  # its handler runs in a live process
    await s.unmark("t", "g", e.entry_id, ME, 1)
    assert await live() == 0  # returned without acking: in flight for good
    await s.release("t", "g", "c@a", e.entry_id, idle_ms=NACK_MARK_MS, max_attempts=3)
    assert await live() == 1  # nacked: it will be delivered again
    await s.settle("t", "g", "c@a", ME, e.entry_id, key=None, max_attempts=3)
    assert await live() == 0

    await s.ensure_group("t", "timed", ack_timeout_ms=MINUTE_MS)
    await s.publish("t", msg(2))
    e, f = await take_from("g"), await take_from("timed")
    await s.unmark("t", "g", e.entry_id, ME, 1)
    await s.unmark("t", "timed", f.entry_id, ME, 1)
    assert await live() == 1  # unacked where the ack timeout will deliver it again
    await s.settle("t", "timed", "c@a", ME, f.entry_id, key=None, max_attempts=3)
    assert await live() == 0  # what is left ("g"'s m2) is in flight for good

    await s.publish("t", msg(3))
    e, f = await take_from("g"), await take_from("timed")
    await s.settle("t", "timed", "c@a", ME, f.entry_id, key=None, max_attempts=3)
    await s.unmark("t", "timed", f.entry_id, ME, 1)
    await s.settle("t", "g", "c@a", ME, e.entry_id, key=None, max_attempts=3)
    assert await live() == 1  # acked, but its handler runs on (it may publish yet)
    await s.unmark("t", "g", e.entry_id, ME, 1)
    assert await live() == 0


async def test_live_ignores_marks_of_dead_processes_and_drops_settled_ones(
    s: RedisStreams,
) -> None:
    await s.ensure_group("t", "g")
    await s.publish("t", msg(1))
    await take(s, "c@x", "inst-x")
    await s.heartbeat("inst-x", 60_000)
    assert (await s.live())[0] == 1
    await s.gone("inst-x")  # kill -9: its handler will never settle it, nothing will redeliver
    assert await s.live() == (0, 1)  # a suspect: cut off for a moment, or dead
    (e,) = await take(s, "c@y", claim_idle_ms=0)
    await s.settle("t", "g", "c@y", ME, e.entry_id, key=None, max_attempts=3)
    await s.unmark("t", "g", e.entry_id, ME, 2)
    assert await s.live() == (0, 0)


async def test_remember_and_recall_per_group_and_run(s: RedisStreams) -> None:
    await s.remember("g", "r1", "m1", "[]")
    assert await s.recall("g", "r1", "m1") == "[]"
    assert await s.recall("g", "r2", "m1") is None
    assert await s.recall("h", "r1", "m1") is None
    assert 0 < await s.client.ttl(s.done_key("g", "r1", "m1")) <= s.ttl_s


def test_namespace_must_be_a_plain_name() -> None:
    with pytest.raises(ValueError):
        RedisStreams(aioredis.Redis(), namespace="a:b")
