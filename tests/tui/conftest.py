from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tracer import Store, import_file

from .helpers import claims_runs, load_scenarios, stale_read_run

FOREIGN = Path(__file__).parents[1] / "fixtures" / "foreign"


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


@pytest.fixture(scope="session")
def story_store(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Store, dict[str, str]]]:
    """One run of each story the screenshots tell: credit (a stale read), the hybrid saga,
    a LangGraph run (OpenInference) and a pydantic-ai run (GenAI); run id by story."""
    path = Path(tmp_path_factory.mktemp("stories")) / "stories.duckdb"
    store = Store(path)
    runs = load_scenarios(store, ["credit", "choreo-saga"])
    out = {
        "credit": next(r for r in runs["credit"] if store.findings(r)),
        "hybrid": runs["choreo-saga"][0],
    }
    for story, name in (("langgraph", "langgraph_openinference"), ("pydantic-ai", "pydantic_ai")):
        before = {r.run_id for r in store.runs()}
        import_file(store, FOREIGN / f"{name}.jsonl")
        out[story] = sorted(r.run_id for r in store.runs() if r.run_id not in before)[0]
    yield store, out
    store.close()


@pytest.fixture(scope="session")
def claims_store(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Store, dict[str, str]]]:
    """The claims graph, checkpointer and trace: one run per thread (claim-1, claim-2)."""
    store = Store(Path(tmp_path_factory.mktemp("claims")) / "claims.duckdb")
    runs = claims_runs(store)
    yield store, runs
    store.close()


@pytest.fixture
def small_store(tmp_path: Path) -> Iterator[tuple[Store, str]]:
    store = Store(tmp_path / "small.duckdb")
    run_id = stale_read_run(store)
    yield store, run_id
    store.close()
