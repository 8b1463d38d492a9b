"""The pytest plugin: its fixtures in a test, and in a user's own pytest run."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest

import engine as e
import tracer as t
from engine.scenarios import credit, sample_path

USER_TESTS = '''
from engine import Update
from engine.scenarios import credit, sample_path


def pricing_v2(state, req):
    """A refactored pricing agent that lost the surcharge for a high debt-to-income ratio."""
    apr = credit.BASE_APR[req["rating"]]
    app = state["application"]
    r = apr / 100 / 12
    payment = round(app["amount"] * r / (1 - (1 + r) ** -app["term_months"]), 2)
    return Update({"pricing": {"apr": apr, "monthly_payment": payment}}, output={**req, "apr": apr})


def test_the_recorded_agents_replay_as_recorded(agentrace):
    for run in agentrace.load(sample_path("credit")):
        agentrace.replay(run).raise_on_divergence()


def test_pricing_v2_behaves_as_recorded(agentrace):
    for run in agentrace.load(sample_path("credit")):
        agentrace.replay(run, overrides={"pricing": pricing_v2}).raise_on_divergence()
'''


def _pytest(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    registered = any(
        ep.value == "engine.testing.pytest_plugin" for ep in entry_points(group="pytest11")
    )
    plugin = [] if registered else ["-p", "engine.testing.pytest_plugin"]
    return subprocess.run(
        [sys.executable, "-m", "pytest", *plugin, "-p", "no:cacheprovider", "-q", *args],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.mark.slow
def test_a_test_fails_when_an_agent_changes_and_says_where(tmp_path: Path) -> None:
    (tmp_path / "test_pricing.py").write_text(USER_TESTS)
    out = _pytest(tmp_path, "test_pricing.py")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "1 failed, 1 passed" in out.stdout
    # The failure names the step, the agent, what differs and how.
    assert "engine.ReplayDivergence: replay of run " in out.stdout
    assert "diverged at step 4 (pricing): output: /apr " in out.stdout


@pytest.mark.slow
def test_a_shared_store_is_given_on_the_command_line(tmp_path: Path) -> None:
    db = tmp_path / "recorded.duckdb"
    with t.Store(db) as store:
        t.import_file(store, sample_path("flaky"))
    (tmp_path / "test_shared.py").write_text(
        textwrap.dedent(
            f"""
            def test_runs_come_from_the_shared_store(agentrace, agentrace_store):
                assert agentrace_store.path == {str(db)!r}
                (run,) = agentrace.runs(scenario="flaky")
                result = agentrace.replay(run.run_id)
                assert not result.diverged
                assert [r.run_id for r in agentrace.runs(parent=run)] == [result.run_id]
            """
        )
    )
    out = _pytest(tmp_path, "test_shared.py", "--agentrace-db", str(db))
    assert out.returncode == 0, out.stdout + out.stderr
    with t.Store(db, read_only=True) as store:  # the replay was recorded into it
        assert sum(1 for r in store.runs() if r.parent_run_id) == 1


def test_the_helper_loads_once_and_finds_runs(agentrace) -> None:
    runs = agentrace.load(sample_path("credit"))
    assert len(runs) == credit.APPLICATIONS and agentrace.load(sample_path("credit")) == runs
    assert [r.run_id for r in agentrace.runs(scenario="credit")] == runs
    assert agentrace.runs(workflow="nothing of the kind") == []
    stale = agentrace.findings(runs, kind="stale_read")
    assert len(stale) == round(credit.APPLICATIONS * credit.CHANGED_SHARE)
    assert {f.kind for f in agentrace.findings(runs[0])} <= set(t.analysis.DETECTORS)


def test_the_helper_gives_state_at_a_version(agentrace) -> None:
    (run,) = agentrace.load(sample_path("trading-saga"))
    assert agentrace.state(run, 1) == {"account": "ACC-7731"}
    last = agentrace.state(run)
    assert "draft_recommendation" not in last and "research_cache" not in last  # compensated
    replay = agentrace.replay(run)
    assert agentrace.state(replay) == last == replay.state
    assert agentrace.divergences(replay) == [] and agentrace.divergences([replay, replay]) == []


def test_the_helper_diffs_and_traces(agentrace) -> None:
    (run,) = agentrace.load(sample_path("low-confidence"))
    replay = agentrace.replay(run)
    assert agentrace.diff(run, replay).same
    assert [s.agent for s in agentrace.trace(replay)] == ["research"]
    assert agentrace.store.run(replay.run_id).parent_run_id == run


def test_the_plugin_module_exposes_its_fixtures() -> None:
    import engine.testing.pytest_plugin as plugin

    assert {"Agentrace", "agentrace", "agentrace_store", "pytest_addoption"} <= set(plugin.__all__)
    assert plugin.Agentrace.__module__ == "engine.testing._fixture"
    assert callable(e.Replayer)
