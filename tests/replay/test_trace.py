"""Imported traces: stepped through, their recorded outputs fed to a re-implementation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import engine as e
import tracer as t

FOREIGN = Path(__file__).parents[1] / "fixtures" / "foreign"


def supervisor(state: Any, team: dict[str, Any]) -> dict[str, Any]:
    """A re-implementation of the LangGraph supervisor: research first, then write, then stop."""
    authors = {m["data"].get("name") for m in team["messages"] if m["type"] == "ai"}
    nxt = (
        "researcher"
        if "researcher" not in authors
        else "writer"
        if "writer" not in authors
        else "FINISH"
    )
    return {"next": nxt, "visited": ["supervisor"]}


def hasty_supervisor(team: dict[str, Any]) -> dict[str, Any]:
    """A regression: sends everything back to research."""
    return {"next": "researcher", "visited": ["supervisor"]}


@pytest.fixture
def langgraph(agentrace) -> e.TraceReplay:
    first, _second = agentrace.load(FOREIGN / "langgraph_openinference.jsonl")
    return agentrace.trace(first)


def test_a_langgraph_trace_steps_through_agents_state_and_outputs(langgraph: e.TraceReplay) -> None:
    assert [s.agent for s in langgraph] == [
        "supervisor", "researcher", "tools", "researcher", "supervisor", "writer", "supervisor",
    ]  # fmt: skip
    assert langgraph.agents == ("supervisor", "researcher", "tools", "writer")
    assert {s.output_from for s in langgraph} == {"output.value"}
    # Each node's step committed the next reconstructed version, over the one before it.
    assert [(s.version_before, s.version_after) for s in langgraph] == [
        (v, v + 1) for v in range(1, 8)
    ]
    step = langgraph[4]
    before, after = langgraph.state_before(step), langgraph.state_after(step)
    assert after["next"] == step.output["next"] == "writer" and before["next"] == "researcher"
    assert {ch.path for ch in langgraph.diff(step.version_before, step.version_after)} >= {"/next"}


def test_a_recorded_agent_answers_with_its_outputs_in_order(langgraph: e.TraceReplay) -> None:
    play = langgraph.player("supervisor")
    answers = [play({"any": "input"}) for _ in range(3)]
    assert [a["next"] for a in answers] == ["researcher", "writer", "FINISH"]
    assert play.remaining == 0 and len(play.calls) == 3
    answers[0]["next"] = "changed by the caller"
    assert langgraph.outputs("supervisor")[0]["next"] == "researcher"  # handed out as copies
    with pytest.raises(e.ReplayGap, match="called 4 times; the trace has 3"):
        play()
    with pytest.raises(e.ReplayGap, match="no step of agent 'nobody'"):
        langgraph.player("nobody")


def test_a_re_implementation_is_checked_against_the_recording(langgraph: e.TraceReplay) -> None:
    good = langgraph.check("supervisor", supervisor)
    assert good.ok and len(good.checks) == 3 and good.raise_on_mismatch() is good
    bad = langgraph.check("supervisor", hasty_supervisor)
    assert [ch.same for ch in bad.checks] == [True, False, False]
    first = bad.divergences[0]
    assert (first.kind, first.step, first.agent) == ("output", 5, "supervisor")
    assert [(ch.path, ch.old, ch.new) for ch in first.changes] == [
        ("/next", "writer", "researcher")
    ]
    with pytest.raises(e.ReplayDivergence, match=r"step 5 \(supervisor\): output: /next writer"):
        bad.raise_on_mismatch()
    # An import path names the function as well; a compare function may be lenient.
    lenient = langgraph.check(
        "supervisor",
        "tests.replay.test_trace:hasty_supervisor",
        compare=lambda a, b: a.keys() == b.keys(),
    )
    assert lenient.ok


def test_a_re_implementation_that_raises_is_a_mismatch(langgraph: e.TraceReplay) -> None:
    def broken(state: Any, team: dict[str, Any]) -> Any:
        raise KeyError("next")

    check = langgraph.check("supervisor", broken)
    assert not check.ok and check.mismatches[0].error == "KeyError: 'next'"


def test_coroutine_re_implementations_need_acheck(langgraph: e.TraceReplay) -> None:
    async def later(state: Any, team: dict[str, Any]) -> dict[str, Any]:
        return supervisor(state, team)

    with pytest.raises(TypeError, match="acheck"):
        langgraph.check("supervisor", later)
    import asyncio

    assert asyncio.run(langgraph.acheck("supervisor", later)).ok


def test_agents_without_outputs_of_their_own_take_their_model_calls(agentrace) -> None:
    (run,) = agentrace.load(FOREIGN / "pydantic_ai.jsonl")
    trace = agentrace.trace(run)
    assert [s.agent for s in trace] == ["coordinator", "researcher"]
    coordinator = trace[0]
    assert coordinator.output_from is not None and coordinator.output_from.endswith(
        "gen_ai.output.messages"
    )
    # The coordinator's last model call gave the final answer; its first got the question.
    assert coordinator.output[0]["parts"][0]["content"].startswith("Summary for the user")
    assert coordinator.input[0]["parts"][0]["content"] == "Explain OpenTelemetry in one line."


def test_an_engine_run_is_a_trace_too(agentrace) -> None:
    from engine.scenarios import sample_path

    (run,) = agentrace.load(sample_path("trading-saga"))
    trace = agentrace.trace(run)
    assert [s.agent for s in trace] == ["research", "analysis", "execution", "execution"]
    assert trace[0].output_from == "agentrace.agent.output"
    assert trace[0].version_after == 2 and trace[0].version_before == 1
    assert isinstance(trace.run, t.Run)
