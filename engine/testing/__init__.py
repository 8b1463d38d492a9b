"""Helpers for testing code built on the engine: exact time, repeatable ids, an in-memory record.

    from engine.testing import recorded

    rec, sink, time = recorded(seed=7)
    orch = Orchestrator(rec, time=time, seed=7)
    result = await orch.run(workflow, input)
    rec.flush()
    spans = sink.spans()

Under :class:`VirtualTime` backoff waits, timeouts and breaker cooldowns happen
at once and exactly; with :class:`SeededIds` the same seed gives the same run
ids; so the same test records the same bytes every time.

Also here: :class:`Agentrace`, what the pytest plugin's ``agentrace`` fixture hands a
test (load recorded runs, replay, fork, diff, assert on state and findings), and
:class:`RedisServer`, a throwaway ``redis-server`` for tests of the distributed part.
"""

from __future__ import annotations

from tracer import FakeClock, InMemorySink, Recorder, SeededIds

from ..core._time import VirtualTime
from ..distributed._server import RedisServer, RedisServerError, find_redis_server
from ._fixture import Agentrace

# Where fake time starts (2023-11-14T22:13:20Z) and how far each reading moves it (1 µs):
# every span start, end and event gets a distinct, increasing time without any waiting.
START_NS = 1_700_000_000_000_000_000
TICK_NS = 1_000


def virtual_time(start_ns: int = START_NS, tick_ns: int = TICK_NS) -> VirtualTime:
    """Virtual time on a fresh :class:`FakeClock`."""
    return VirtualTime(FakeClock(start_ns, tick_ns))


def recorded(
    seed: int = 0, *, start_ns: int = START_NS, tick_ns: int = TICK_NS, batch_size: int = 1024
) -> tuple[Recorder, InMemorySink, VirtualTime]:
    """A recorder into memory on a fake clock with seeded ids, and virtual time on the same clock."""
    time = virtual_time(start_ns, tick_ns)
    sink = InMemorySink()
    rec = Recorder(sink, clock=time.clock, ids=SeededIds(seed), batch_size=batch_size)
    return rec, sink, time


__all__ = [
    "START_NS",
    "TICK_NS",
    "Agentrace",
    "FakeClock",
    "InMemorySink",
    "RedisServer",
    "RedisServerError",
    "SeededIds",
    "VirtualTime",
    "find_redis_server",
    "recorded",
    "virtual_time",
]
