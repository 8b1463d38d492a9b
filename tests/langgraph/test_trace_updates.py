"""Updates a LangGraph trace records in other shapes than a map: a one-key update as its
bare value, a `Command`'s update. Both are kept, in the rebuilt state and in the writes."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

import tracer as t

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "foreign"


@pytest.mark.parametrize("suffix", [".jsonl", ".pb"])
def test_bare_values_and_commands_are_kept(suffix: str, tmp_path: Path) -> None:
    with t.Store(tmp_path / "a.duckdb") as store:
        t.import_file(store, FIXTURES / f"langgraph_command_openinference{suffix}")
        (run,) = store.runs()
        root = store.span(run.run_id, run.root_span_id)
        # The trace recorded the input and the supervisor's routes as bare strings.
        assert root.attributes["input.value"] == "reducers"
        versions = store.state_versions(run.run_id)
        states = [store.state_at(run.run_id, v.version) for v in versions]
        assert states[0] == {"task": "reducers"}
        assert [s.get("next") for s in states] == [None, "researcher", "researcher", "FINISH"]
        assert states[-1] == orjson.loads(root.attributes["output.value"])
        assert [(v.agent, v.step) for v in versions[1:]] == [
            ("supervisor", 1),
            ("researcher", 2),
            ("supervisor", 3),
        ]
        writes = [(w.node, w.step, w.update) for w in t.langgraph_writes(store, run.run_id)]
        assert writes == [
            ("supervisor", 1, {"next": "researcher"}),
            ("researcher", 2, {"findings": ["notes on reducers"]}),  # the Command's update
            ("supervisor", 3, {"next": "FINISH"}),
        ]
        assert store.verify(run.run_id)[0].ok
