"""Fixtures for the engine tests: a recorder into memory on virtual time, and a store to read it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import engine as e
import tracer as t
from engine.testing import recorded

SEED = 3


@dataclass
class Env:
    """A recorder into memory on a fake clock (1 µs per reading), and virtual time on it."""

    rec: t.Recorder
    sink: t.InMemorySink
    time: e.VirtualTime

    def orch(self, **kw: Any) -> e.Orchestrator:
        kw.setdefault("seed", SEED)
        return e.Orchestrator(self.rec, time=self.time, **kw)

    def store(self) -> t.Store:
        """Everything recorded so far, ingested into a fresh in-memory store."""
        self.rec.flush()
        store = t.Store(":memory:")
        store.ingest(self.sink.requests)
        return store

    def spans(self, name_prefix: str = "") -> list[Any]:
        self.rec.flush()
        return [s for s in self.sink.spans() if s.name.startswith(name_prefix)]


@pytest.fixture
def env() -> Env:
    rec, sink, time = recorded(SEED)
    return Env(rec, sink, time)


@pytest.fixture
def exact_env() -> Env:
    """As ``env`` but the clock moves only when someone sleeps: times can be compared exactly."""
    rec, sink, time = recorded(SEED, tick_ns=0)
    return Env(rec, sink, time)


@pytest.fixture
def store() -> Iterator[t.Store]:
    with t.Store(":memory:") as s:
        yield s


def attrs(span: Any) -> dict[str, Any]:
    """A protobuf span's attributes as a dict."""
    from tracer._otlp import attrs_from_proto

    return attrs_from_proto(span.attributes)


def events(span: Any, name: str) -> list[dict[str, Any]]:
    from tracer._otlp import attrs_from_proto

    return [attrs_from_proto(ev.attributes) for ev in span.events if ev.name == name]
