"""Fixtures for the replay tests: the plugin's fixtures, every bundled sample trace in a
store, and a way to record small workflows of a test's own."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import engine as e
import tracer as t
from engine import scenarios
from engine.testing import recorded

# The plugin's fixtures, until the pytest11 entry point registers the plugin for every test
# run (the same functions then; these take precedence here and change nothing).
from engine.testing.pytest_plugin import (  # noqa: F401
    _agentrace_shared_store,
    agentrace,
    agentrace_store,
)


@dataclass
class Samples:
    """Every bundled scenario's sample trace, imported into one store: run ids per scenario."""

    store: t.Store
    runs: dict[str, list[str]]

    def first(self, scenario: str) -> str:
        return self.runs[scenario][0]


@pytest.fixture(scope="session")
def samples(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Samples]:
    store = t.Store(tmp_path_factory.mktemp("samples") / "samples.duckdb")
    for name in scenarios.names():
        t.import_file(store, scenarios.sample_path(name))
    runs: dict[str, list[str]] = {}
    for r in store.runs():
        if r.scenario is not None and r.parent_run_id is None:
            runs.setdefault(r.scenario, []).append(r.run_id)
    try:
        yield Samples(store, runs)
    finally:
        store.close()


def seed_of(request: pytest.FixtureRequest) -> int:
    """A seed of the test's own: tests sharing a store never draw the same run ids."""
    return int.from_bytes(hashlib.sha256(request.node.nodeid.encode()).digest()[:8], "big")


@pytest.fixture
def replayer(samples: Samples, request: pytest.FixtureRequest) -> e.Replayer:
    """A replayer over the samples, recording its runs into their store, with seeded ids."""
    return e.Replayer(samples.store, ids=t.SeededIds(seed_of(request)))


@dataclass
class Recorded:
    """Record runs of a test's own workflows into a store of their own, on virtual time."""

    tmp: Path
    seed: int = 5

    def __post_init__(self) -> None:
        self.store = t.Store(self.tmp / "own.duckdb")
        self._replayer: e.Replayer | None = None

    def orchestrate(self, wf: e.Workflow, value: Any = None, **kw: Any) -> e.RunResult:
        rec, sink, time = recorded(seed=self.seed)
        result = e.Orchestrator(rec, time=time, seed=self.seed).run_sync(wf, value, **kw)
        rec.flush()
        self.store.ingest(sink.requests)
        self.seed += 1
        return result

    def choreograph(
        self, flow: e.Choreography, value: Any = None, **kw: Any
    ) -> e.ChoreographyResult:
        rec, sink, time = recorded(seed=self.seed)
        faults = kw.pop("faults", None)
        result = e.Choreographer(rec, time=time, seed=self.seed, faults=faults).run_sync(
            flow, value, **kw
        )
        rec.flush()
        self.store.ingest(sink.requests)
        self.seed += 1
        return result

    def replayer(self) -> e.Replayer:
        """The test's replayer (one, so that its seeded ids never repeat)."""
        if self._replayer is None:
            self._replayer = e.Replayer(self.store, ids=t.SeededIds(7))
        return self._replayer


@pytest.fixture
def own(tmp_path: Path) -> Iterator[Recorded]:
    r = Recorded(tmp_path)
    try:
        yield r
    finally:
        r.store.close()
