"""Fixtures for the choreography tests: a bus on exact virtual time, and a recorded run's store."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

import engine as e
import tracer as t
from engine.testing import recorded, virtual_time

SEED = 11


@dataclass
class Consumer:
    """A test handler: notes every delivery, then acks (or does what ``decide`` says)."""

    bus: e.Bus
    decide: Callable[[e.Delivery], str] = lambda d: "ack"  # ack | nack | reject | none
    seen: list[e.Delivery] = field(default_factory=list)
    acked: list[tuple[e.Delivery, bool]] = field(default_factory=list)

    async def __call__(self, delivery: e.Delivery) -> None:
        self.seen.append(delivery)
        what = self.decide(delivery)
        if what == "ack":
            self.acked.append((delivery, await self.bus.ack(delivery)))
        elif what == "nack":
            await self.bus.nack(delivery)
        elif what == "reject":
            await self.bus.nack(delivery, requeue=False)

    def ids(self) -> list[str]:
        return [d.message.id for d in self.seen]


def msg(n: int, topic: str = "t", key: str | None = None, payload: Any = None) -> e.Message:
    return e.Message.create(f"m{n}", topic, payload if payload is not None else {"n": n}, key=key)


@pytest.fixture
def time() -> e.VirtualTime:
    """Virtual time whose clock moves only when someone sleeps: durations compare exactly."""
    return virtual_time(tick_ns=0)


@dataclass
class Env:
    rec: t.Recorder
    sink: t.InMemorySink
    time: e.VirtualTime

    def choreographer(self, **kw: Any) -> e.Choreographer:
        kw.setdefault("seed", SEED)
        return e.Choreographer(self.rec, time=self.time, **kw)

    def store(self) -> t.Store:
        self.rec.flush()
        store = t.Store(":memory:")
        store.ingest(self.sink.requests)
        return store

    def spans(self, prefix: str = "") -> list[Any]:
        self.rec.flush()
        return [s for s in self.sink.spans() if s.name.startswith(prefix)]


@pytest.fixture
def env() -> Env:
    rec, sink, time = recorded(SEED)
    return Env(rec, sink, time)


def attrs(span_or_event: Any) -> dict[str, Any]:
    from tracer._otlp import attrs_from_proto

    return attrs_from_proto(span_or_event.attributes)


def events(span: Any, name: str) -> list[dict[str, Any]]:
    return [attrs(ev) for ev in span.events if ev.name == name]
