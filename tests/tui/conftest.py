from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tracer import Store

from .helpers import load_scenarios, stale_read_run


@pytest.fixture(scope="session")
def scenario_store(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Store, dict[str, list[str]]]]:
    """credit, trading-saga and double-consume in one store, analysed (built once per session)."""
    path = Path(tmp_path_factory.mktemp("scenarios")) / "scenarios.duckdb"
    store = Store(path)
    runs = load_scenarios(store)
    yield store, runs
    store.close()


@pytest.fixture
def small_store(tmp_path: Path) -> Iterator[tuple[Store, str]]:
    store = Store(tmp_path / "small.duckdb")
    run_id = stale_read_run(store)
    yield store, run_id
    store.close()
