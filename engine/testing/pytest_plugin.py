"""agentrace's pytest plugin: turn recorded runs into tests.

Registered through the ``pytest11`` entry point ``agentrace`` (or ``-p engine.testing.pytest_plugin``).
Two fixtures::

    def test_pricing_still_prices_as_recorded(agentrace):
        (run,) = agentrace.load("incidents/2024-05-02.jsonl")   # an OTLP file
        agentrace.replay(run).raise_on_divergence()           # fails naming step and agent

- ``agentrace_store``: the :class:`tracer.Store` the test works in: a fresh one in the
  test's ``tmp_path``, or the store given with ``--agentrace-db PATH`` (shared by every
  test of the session, so its recorded runs can be replayed by id).
- ``agentrace``: an :class:`Agentrace` over that store: ``load`` OTLP files (and LangGraph
  dumps), find ``runs``, ``replay`` / ``fork`` / ``explore`` them, ``diff`` two runs, step
  through an imported ``trace``; and the facts to assert on: ``state`` at a version,
  ``findings`` (the detectors run on the spot), ``divergences``.

Replays and forks are recorded into the store, linked to the runs they replay, and
written to it together before the next read through the fixture (a transaction per
batch, not per run). In a fresh store their ids are seeded from the test's id, so a
failing test names the same runs on every try; in a shared store they are random (a
second session must not collide with the first's runs).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tracer import SeededIds, Store

from ._fixture import Agentrace


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("agentrace", "agentrace: recorded multi-agent runs")
    group.addoption(
        "--agentrace-db",
        dest="agentrace_db",
        default=None,
        metavar="PATH",
        help="a store of recorded runs shared by the session's tests (default: a fresh one per test)",
    )


@pytest.fixture(scope="session")
def _agentrace_shared_store(request: pytest.FixtureRequest) -> Iterator[Store | None]:
    path = request.config.getoption("agentrace_db", default=None)
    if not path:
        yield None
        return
    store = Store(path)
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def agentrace_store(_agentrace_shared_store: Store | None, tmp_path: Path) -> Iterator[Store]:
    """The store the test works in: ``--agentrace-db`` when given, else a fresh one."""
    if _agentrace_shared_store is not None:
        yield _agentrace_shared_store
        return
    store = Store(tmp_path / "agentrace.duckdb")
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def agentrace(
    agentrace_store: Store,
    _agentrace_shared_store: Store | None,
    request: pytest.FixtureRequest,
) -> Iterator[Agentrace]:
    """Recorded runs, replays, forks, diffs and the facts to assert on (see :class:`Agentrace`)."""
    ids = None
    if _agentrace_shared_store is None:
        seed = int.from_bytes(hashlib.sha256(request.node.nodeid.encode()).digest()[:8], "big")
        ids = SeededIds(seed)
    helper = Agentrace(agentrace_store, ids=ids)
    try:
        yield helper
    finally:
        helper.close()


__all__ = ["Agentrace", "agentrace", "agentrace_store", "pytest_addoption"]
