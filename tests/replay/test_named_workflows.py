"""Workflows are named, not imported from traces: replay looks a run's workflow up by the
name it records, and nothing in a trace makes agentrace import a module or call a function."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import engine as e
import tracer as t
from engine.scenarios import sample_path
from tui.cli import cli

MARKER_MODULE = """
from pathlib import Path
Path(__file__).with_name("IMPORTED").write_text("the module was imported")

def factory(seed=None):
    Path(__file__).with_name("CALLED").write_text("the factory was called")
"""


def with_ref(sample: str, old: str, new: str, dest: Path) -> Path:
    """``sample``'s trace with every run naming ``new`` where it named ``old``."""
    text = sample_path(sample).read_text()
    needle = f'"agentrace.run.workflow_ref","value":{{"stringValue":"{old}"'
    assert needle in text
    dest.write_text(text.replace(needle, needle.replace(old, new)))
    return dest


@pytest.fixture
def hostile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    """A store holding a research-pipeline run whose trace names an importable module that
    leaves a file behind when imported; the module is on sys.path."""
    pkg = tmp_path / "mods"
    pkg.mkdir()
    (pkg / "agentrace_marker.py").write_text(MARKER_MODULE)
    monkeypatch.syspath_prepend(str(pkg))
    path = with_ref(
        "research-pipeline",
        "agentrace.research-pipeline",
        "agentrace_marker:factory",
        tmp_path / "hostile.jsonl",
    )
    db = str(tmp_path / "hostile.duckdb")
    with t.Store(db) as store:
        t.import_file(store, path)
    return db, pkg


def test_a_trace_naming_a_module_never_imports_it(hostile: tuple[str, Path]) -> None:
    db, pkg = hostile
    with t.Store(db) as store:
        (run,) = store.runs()
        assert run.workflow_ref == "agentrace_marker:factory"
        with pytest.raises(e.ReplayError, match="agentrace_marker:factory") as err:
            e.Replayer(store).replay(run.run_id)
        assert "register it" in str(err.value)
    r = CliRunner().invoke(cli, ["replay", run.run_id, "--db", db], catch_exceptions=False)
    assert r.exit_code == 1 and "agentrace_marker:factory" in r.output
    assert sorted(p.name for p in pkg.iterdir()) == ["agentrace_marker.py"]


def test_the_user_typed_factory_replays_it(hostile: tuple[str, Path]) -> None:
    db, _ = hostile
    with t.Store(db) as store:
        (run,) = store.runs()
        flow = "engine.scenarios.choreography:research_pipeline"  # typed, so imported
        result = e.Replayer(store).replay(run.run_id, workflow=flow)
        assert not result.diverged, result.first_divergence
        by_name = e.Replayer(store).replay(run.run_id, workflow="agentrace.research-pipeline")
        assert not by_name.diverged


@pytest.mark.parametrize(
    ("sample", "name", "legacy"),
    [
        ("credit", "agentrace.credit", "engine.scenarios.credit:workflow"),
        ("choreo-saga", "agentrace.choreo-saga", "engine._choreo_scenarios:checkout_saga"),
        (
            "double-consume",
            "agentrace.double-consume",
            "engine._choreo_scenarios:double_consume",
        ),
    ],
)
def test_runs_recorded_with_the_old_bundled_paths_still_replay(
    tmp_path: Path, sample: str, name: str, legacy: str
) -> None:
    path = with_ref(sample, name, legacy, tmp_path / "old.jsonl")
    with t.Store(tmp_path / "old.duckdb") as store:
        t.import_file(store, path)
        run = next(r for r in store.runs() if r.parent_run_id is None)
        assert run.workflow_ref == legacy
        result = e.Replayer(store).replay(run.run_id)
        assert not result.diverged, result.first_divergence


def test_the_version_a_run_records_picks_the_factory(own: object) -> None:
    from tests.replay.conftest import Recorded

    assert isinstance(own, Recorded)
    registry = e.WorkflowRegistry()

    def build(suffix: str) -> e.Workflow:
        return e.chain("w", e.agent(lambda state, v: e.Update({"v": f"{v}{suffix}"}), name="a"))

    v1 = registry.register("tests.versions", lambda: build(""), version="1")
    registry.register("tests.versions", lambda: build("!"), version="2")
    assert (v1().ref, v1().version) == ("tests.versions", "1")
    original = own.orchestrate(v1(), "x")
    replayer = e.Replayer(own.store, ids=t.SeededIds(3), registry=registry)
    assert not replayer.replay(original.run_id).diverged  # version 1, as recorded

    fresh = e.WorkflowRegistry()
    fresh.register("tests.versions", lambda: build("!"), version="2")
    with pytest.raises(e.ReplayError, match=r"version 1 is not registered \(have: 2\)"):
        e.Replayer(own.store, registry=fresh).replay(original.run_id)
    with pytest.raises(e.ReplayError, match="no workflow is registered under this name"):
        e.Replayer(own.store, registry=e.WorkflowRegistry()).replay(original.run_id)


def test_a_registry_refuses_paths_and_second_factories() -> None:
    registry = e.WorkflowRegistry()
    with pytest.raises(e.WorkflowError, match=r"not 'pkg\.mod:factory'"):
        registry.register("pkg.mod:factory", lambda: None)
    registry.register("a", lambda: None)
    with pytest.raises(e.WorkflowError, match="two factories"):
        registry.register("a", lambda: None)
    stamped = registry.factory("a")
    with pytest.raises(e.WorkflowError, match="gave NoneType, not a Workflow"):
        stamped()
