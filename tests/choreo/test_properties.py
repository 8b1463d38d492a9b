"""Delivery semantics under every fault kind, as properties.

The bus never silently drops a message: once it is idle, each (message, group) is
acked, dead-lettered, or still unsettled *and* the last delivery says why (a
consumer fault, or a consumer that chose not to ack) while no ack timeout could
bring it back. Messages of one key reach a group in publish order, the next only
after the previous is settled. And what the store records of a choreographed run
agrees with the bus.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections import defaultdict
from typing import Any

import hypothesis.strategies as st
from hypothesis import HealthCheck, given, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import engine as e
import tracer as t
from engine.testing import recorded, virtual_time

NO_ACK = {"drop", "crash", "crash_during", "ack_lost"}
GROUPS = ("g0", "g1", "g2")

odds = st.sampled_from([0.0, 0.0, 0.15, 0.35])


@st.composite
def fault_plans(draw: st.DrawFn) -> e.Faults:
    return e.Faults.chaos(
        draw(st.integers(0, 2**16)),
        drop=draw(odds),
        duplicate=draw(odds),
        delay=draw(odds),
        reorder=draw(odds),
        crash=draw(odds),
        crash_during=draw(odds),
        ack_lost=draw(odds),
        delay_seconds=draw(st.sampled_from([0.5, 3.0])),
    )


policies = st.builds(
    e.DeliveryPolicy,
    max_attempts=st.integers(1, 4),
    ack_timeout=st.sampled_from([None, 2.0, 7.0]),
    redelivery_delay=st.sampled_from([0.0, 1.0]),
)


class BusMachine(RuleBasedStateMachine):
    """Publishes keyed and unkeyed messages to groups whose consumer obeys the injected faults
    and otherwise acks, nacks, rejects or stays silent at random; checks the books when idle."""

    @initialize(
        faults=fault_plans(),
        policy=policies,
        groups=st.integers(1, 3),
        concurrency=st.sampled_from([1, 1, 2]),
        seed=st.integers(0, 2**16),
    )
    def setup(
        self, faults: e.Faults, policy: e.DeliveryPolicy, groups: int, concurrency: int, seed: int
    ) -> None:
        self.loop = asyncio.new_event_loop()
        self.policy = policy
        self.time = virtual_time(tick_ns=0)
        self.bus = e.InProcessBus(self.time, faults=faults, policy=policy, concurrency=concurrency)
        self.rng = random.Random(seed)
        self.groups = GROUPS[:groups]
        self.published: list[e.Message] = []
        self.clock = 0  # orders deliveries and settlements
        self.deliveries: dict[tuple[str, str], list[tuple[int, e.Delivery, str]]] = defaultdict(
            list
        )
        self.acked: dict[tuple[str, str], list[int]] = defaultdict(list)
        self.dead: dict[tuple[str, str], list[int]] = defaultdict(list)
        self.idle = True
        for g in self.groups:
            self.loop.run_until_complete(
                self.bus.subscribe("t", g, self._handler(), on_dead_letter=self._on_dead)
            )

    def teardown(self) -> None:
        loop = getattr(self, "loop", None)
        if loop is not None:
            loop.close()

    def _tick(self) -> int:
        self.clock += 1
        return self.clock

    def _handler(self) -> Any:
        async def handle(d: e.Delivery) -> None:
            k = (d.message.id, d.group)
            fault = d.fault
            if fault in NO_ACK:
                what = "none"
            else:
                what = self.rng.choice(["ack", "ack", "ack", "nack", "reject", "none"])
            self.deliveries[k].append((self._tick(), d, what))
            if what == "ack":
                if await self.bus.ack(d):
                    self.acked[k].append(self._tick())
            elif (
                what in ("nack", "reject")
                and await self.bus.nack(d, requeue=what == "nack") == "dead_lettered"
            ):
                self.dead[k].append(self._tick())

        return handle

    async def _on_dead(self, dead: e.DeadLetter) -> None:
        self.dead[(dead.message.id, dead.group)].append(self._tick())

    @rule(key=st.sampled_from([None, "a", "b"]))
    def publish(self, key: str | None) -> None:
        m = e.Message.create(f"m{len(self.published)}", "t", {"n": len(self.published)}, key=key)
        self.published.append(m)
        self.loop.run_until_complete(self.bus.publish(m))
        self.idle = False

    @rule()
    def run(self) -> None:
        self.loop.run_until_complete(self.bus.run_until_idle())
        self.idle = True

    @invariant()
    def books_balance_when_idle(self) -> None:
        if not self.idle:
            return
        unsettled = {
            (u.message.id, u.group): u for u in self.loop.run_until_complete(self.bus.unsettled())
        }
        for m in self.published:
            for g in self.groups:
                k = (m.id, g)
                fates = len(self.acked[k]) + len(self.dead[k]) + (k in unsettled)
                assert fates == 1, (
                    f"{k}: acked {self.acked[k]}, dead {self.dead[k]}, unsettled {k in unsettled}"
                )
                if k in unsettled and unsettled[k].state == "pending":
                    # Held back by its key: an earlier message of the key is stuck in flight.
                    earlier = [
                        p for p in self.published[: self.published.index(m)] if p.key == m.key
                    ]
                    assert m.key is not None and any(
                        unsettled.get((p.id, g)) is not None
                        and unsettled[(p.id, g)].state == "in_flight"
                        for p in earlier
                    ), f"{k} pending while the bus is idle"
                    assert not self.deliveries[k]
                elif k in unsettled:
                    # Visibly lost: delivered, and the last delivery explains the missing ack;
                    # only possible when no ack timeout would deliver it again.
                    assert self.policy.ack_timeout is None
                    assert self.deliveries[k], f"{k} unsettled but never delivered"
                    _, _, what = self.deliveries[k][-1]
                    assert what == "none", (
                        f"{k}: the last delivery sent {what}, yet it is unsettled"
                    )
                else:
                    assert self.deliveries[k], f"{k} settled without a delivery"

    @invariant()
    def keys_keep_their_order(self) -> None:
        if not self.idle:
            return
        for g in self.groups:
            for key in ("a", "b"):
                ms = [m for m in self.published if m.key == key]
                for before, after in itertools.pairwise(ms):
                    settled = self.acked[(before.id, g)] + self.dead[(before.id, g)]
                    later = self.deliveries[(after.id, g)]
                    if not later:
                        continue
                    assert settled, (
                        f"{after.id} delivered to {g} while {before.id} was never settled"
                    )
                    assert later[0][0] > settled[0], f"{after.id} overtook {before.id} in {g}"

    @invariant()
    def attempts_stay_within_the_policy(self) -> None:
        for (_, _), ds in self.deliveries.items():
            first_attempts = [d.attempt for _, d, _ in ds if d.fault != "duplicate"]
            assert first_attempts == sorted(first_attempts)
            # A duplicate adds one delivery on top of the policy's attempts.
            assert max(first_attempts or [0]) <= self.policy.max_attempts + 1


TestBusMachine = BusMachine.TestCase
TestBusMachine.settings = settings(
    max_examples=60,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


# -- the record agrees with the bus ------------------------------------------------------------


def fan_out(n: int, idempotent: frozenset[str], policy: e.DeliveryPolicy) -> e.Choreography:
    @e.agent
    async def source(state: e.StateView, value: Any, ctx: e.EventContext) -> None:
        for i in range(n):
            ctx.publish("work", {"i": i}, key=f"k{i % 2}" if i % 3 else None)

    def worker(name: str) -> e.Agent:
        async def work(state: e.StateView, item: Any) -> e.Update:
            return e.Update({f"{name}_{item['i']}": state.get(f"{name}_{item['i']}", 0) + 1})

        return e.Agent(name, work)

    # The source is idempotent, so each work item is published once (under one id) whatever
    # happens to its own delivery; a plain consumer of "go" would publish new items on a redelivery.
    flow = e.Choreography("fan", entry="go", policy=policy).on(
        "go", source, publishes=["work"], idempotent=True
    )
    for g in ("x", "y", "z"):
        flow.on("work", worker(g), idempotent=g in idempotent)
    return flow


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 6),
    faults=fault_plans(),
    policy=policies,
    idempotent=st.frozensets(st.sampled_from(["x", "y", "z"])),
)
def test_every_published_message_is_recorded_as_handled_or_visibly_lost(
    n: int, faults: e.Faults, policy: e.DeliveryPolicy, idempotent: frozenset[str]
) -> None:
    rec, sink, time = recorded(1)
    choreo = e.Choreographer(rec, time=time, seed=1, faults=faults)
    result = asyncio.run(choreo.run(fan_out(n, idempotent, policy), {}))
    rec.flush()
    with t.Store(":memory:") as store:
        store.ingest(sink.requests)
        rows = store.sql(
            """SELECT event, message_id, topic, consumer_group, attempt, outcome, fault, msg_key
               FROM messages WHERE run_id = ? ORDER BY time_ns, seq""",
            [result.run_id],
        ).fetchall()
    published = [(mid, topic, key) for ev, mid, topic, *_, key in rows if ev == "publish"]
    assert len(published) == result.published
    subscribers = {"go": ["source"], "work": ["x", "y", "z"]}
    unsettled = {(u.message.id, u.group): u.state for u in result.unsettled}
    for i, (mid, topic, key) in enumerate(published):
        for g in subscribers[topic]:
            mine = [r for r in rows if r[1] == mid and r[3] == g]
            delivered = [r for r in mine if r[0] == "deliver"]
            handled = [
                r for r in mine if r[0] == "ack" and r[5] in ("acked", "duplicate", "dead_lettered")
            ]
            state = unsettled.get((mid, g))
            if state == "pending":
                # Never delivered: held back by its key behind a message stuck in flight.
                assert not delivered and key is not None
                assert any(
                    unsettled.get((p, g)) == "in_flight" for p, _, k in published[:i] if k == key
                ), f"{mid} for {g}: pending with nothing ahead of it"
            elif state == "in_flight":
                # Visibly lost: delivered, and the record says which fault kept the ack away.
                assert delivered, f"{mid} for {g}: unsettled with no recorded delivery"
                assert delivered[-1][6] in NO_ACK, (
                    f"{mid} for {g}: unsettled, no fault recorded: {mine}"
                )
            else:
                assert handled, f"{mid} for {g}: neither handled nor visibly lost: {mine}"
    # Every delivery of the bus is one process span with its deliver event.
    assert sum(1 for r in rows if r[0] == "deliver") == sum(
        1
        for s in sink.spans()
        if s.name.startswith("process ")
        and any(ev.name == "agentrace.message.deliver" for ev in s.events)
    )
    # Idempotent groups never apply a message twice; the state says how often each was applied.
    for g in idempotent:
        for i in range(n):
            assert result.state.get(f"{g}_{i}", 0) <= 1
