"""Ordering per key under any interleaving of consumers: a hypothesis state machine drives the
Redis scripts (publish, take, settle, nack, claim) against a real server and checks, after
every step, that a key never has two messages out at once and goes out in publish order."""

from __future__ import annotations

import asyncio
from typing import Any

import redis
import redis.asyncio as aioredis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from engine.distributed._streams import (
    F_ID,
    F_KEY,
    F_MESSAGE,
    MAX_NACK_DELAY_MS,
    NACK_MARK_MS,
    Entry,
    RedisStreams,
)

CONSUMERS = ("c0", "c1", "c2")
KEYS = (None, "a", "b")


class KeyOrdering(RuleBasedStateMachine):
    url = ""

    def __init__(self) -> None:
        super().__init__()
        redis.Redis.from_url(self.url).flushall()
        self.loop = asyncio.new_event_loop()
        self.client = aioredis.Redis.from_url(self.url, decode_responses=True)
        self.s = RedisStreams(self.client, namespace="prop")
        self.run(self.s.ensure_group("t", "g"))
        for c in CONSUMERS:
            self.run(self.s.heartbeat(c, 600_000))
        self.published: list[tuple[str, str | None]] = []  # (entry id, key) in publish order
        self.settled: set[str] = set()
        self.held: dict[str, str] = {}  # entry id -> consumer whose handler has it
        self.released: set[str] = set()
        self.n = 0

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.run(self.client.aclose())
        self.loop.close()

    def key_of(self, entry_id: str) -> str | None:
        return next(k for e, k in self.published if e == entry_id)

    def check_deliverable(self, e: Entry) -> None:
        """A keyed entry goes out only once every earlier entry of its key is settled."""
        key = self.key_of(e.entry_id)
        if key is None:
            return
        pos = [x for x, _ in self.published].index(e.entry_id)
        assert all(x in self.settled for x, k in self.published[:pos] if k == key), e

    def took(self, consumer: str, entries: list[Entry]) -> None:
        for e in entries:
            if e.status == "deliver":
                self.check_deliverable(e)
                self.held[e.entry_id] = consumer
                self.released.discard(e.entry_id)
            elif e.status == "parked":
                key = self.key_of(e.entry_id)
                assert key is not None
                pos = [x for x, _ in self.published].index(e.entry_id)
                assert any(x not in self.settled for x, k in self.published[:pos] if k == key)

    @rule(key=st.sampled_from(KEYS))
    def publish(self, key: str | None) -> None:
        self.n += 1
        fields = {F_ID: f"m{self.n}", F_MESSAGE: "{}"}
        if key is not None:
            fields[F_KEY] = key
        self.published.append((self.run(self.s.publish("t", fields)), key))

    @rule(consumer=st.sampled_from(CONSUMERS))
    def take_new(self, consumer: str) -> None:
        _, entries = self.run(self.s.take("t", "g", consumer, consumer, max_attempts=99, count=2))
        self.took(consumer, entries)

    @precondition(lambda self: bool(self.released))
    @rule(consumer=st.sampled_from(CONSUMERS))
    def claim_nacked(self, consumer: str) -> None:
        _, entries = self.run(
            self.s.take(
                "t", "g", consumer, consumer, max_attempts=99, count=10,
                claim_idle_ms=NACK_MARK_MS - MAX_NACK_DELAY_MS,
            )
        )  # fmt: skip
        self.took(consumer, [e for e in entries if e.status != "parked"])

    @precondition(lambda self: bool(self.held))
    @rule(data=st.data())
    def settle(self, data: st.DataObject) -> None:
        entry_id = data.draw(st.sampled_from(sorted(self.held)))
        consumer = self.held.pop(entry_id)
        out = self.run(
            self.s.settle(
                "t", "g", consumer, consumer, entry_id, key=self.key_of(entry_id), max_attempts=99
            )
        )
        assert out.acked
        self.settled.add(entry_id)
        if out.next is not None:
            self.took(consumer, [out.next])

    @precondition(lambda self: bool(self.held))
    @rule(data=st.data())
    def nack(self, data: st.DataObject) -> None:
        entry_id = data.draw(st.sampled_from(sorted(self.held)))
        consumer = self.held.pop(entry_id)
        state, _ = self.run(
            self.s.release("t", "g", consumer, entry_id, idle_ms=NACK_MARK_MS, max_attempts=99)
        )
        assert state == "released"
        self.released.add(entry_id)

    @invariant()
    def one_out_per_key(self) -> None:
        out = [self.key_of(e) for e in [*self.held, *self.released]]
        keyed = [k for k in out if k is not None]
        assert len(keyed) == len(set(keyed)), (self.held, self.released)


def test_ordering_per_key_holds_for_any_interleaving(redis_url: str) -> None:
    KeyOrdering.url = redis_url
    run = KeyOrdering.TestCase
    run.settings = settings(
        max_examples=25, stateful_step_count=30, deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )  # fmt: skip
    run().runTest()
