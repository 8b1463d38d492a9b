"""Agents: plain functions, decorated functions and objects; how they are called."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

import engine as e


def test_a_function_is_an_agent_named_after_it() -> None:
    def summarize(state: Any, value: Any) -> Any:
        return value

    a = e.as_agent(summarize)
    assert (a.name, a.compensate, a.retry.max_attempts, a.wants_ctx) == (
        "summarize",
        None,
        1,
        False,
    )


def test_decorator_options() -> None:
    def undo(state: Any, output: Any) -> None:
        return None

    @e.agent(name="fetch", retry=e.RetryPolicy(max_attempts=3), timeout=2.0, compensate=undo)
    async def _fetch(state: Any, value: Any, ctx: e.AgentContext) -> Any:
        return value

    assert (_fetch.name, _fetch.retry.max_attempts, _fetch.timeout, _fetch.compensate) == (
        "fetch",
        3,
        2.0,
        undo,
    )
    assert _fetch.wants_ctx


def test_an_object_with_execute_and_compensate() -> None:
    class RiskAssessment:
        timeout = 1.5

        async def execute(self, state: Any, value: Any) -> Any:
            return value

        def compensate(self, state: Any, output: Any) -> None:
            return None

    obj = RiskAssessment()
    a = e.as_agent(obj)
    assert (a.name, a.timeout) == ("risk_assessment", 1.5)
    assert a.compensate == obj.compensate


def one_argument(state: Any) -> Any:
    return state


@pytest.mark.parametrize(
    ("thing", "error", "message"),
    [
        (one_argument, TypeError, "'one_argument': execute must take \\(state, input\\)"),
        (42, TypeError, "not an agent"),
        (lambda state, value: value, ValueError, "cannot tell the name"),
    ],
)
def test_things_that_are_not_agents(thing: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        e.as_agent(thing)


def test_a_class_instead_of_an_instance_is_explained() -> None:
    class Writer:
        def execute(self, state: Any, value: Any) -> Any:
            return value

    with pytest.raises(TypeError, match="pass an instance"):
        e.as_agent(Writer)


@pytest.mark.parametrize("name", ["", "has space", "1st"])
def test_bad_names(name: str) -> None:
    with pytest.raises(ValueError, match="agent name"):
        e.Agent(name, lambda s, v: v)


def test_replace_keeps_the_rest() -> None:
    a = e.Agent("a", lambda s, v: v, timeout=3.0)
    b = a.replace(name="b", retry=e.RetryPolicy(max_attempts=2))
    assert (b.name, b.timeout, b.retry.max_attempts, a.name) == ("b", 3.0, 2, "a")
    with pytest.raises(TypeError, match="unknown setting"):
        a.replace(colour="red")


async def test_sync_agents_run_in_a_thread_unless_told_not_to() -> None:
    loop_thread = threading.get_ident()
    seen: dict[str, int] = {}

    def where(state: Any, value: Any, ctx: e.AgentContext) -> Any:
        seen[ctx.agent] = threading.get_ident()
        return value

    threaded = e.Agent("threaded", where)
    inline = e.Agent("inline", where, thread=False)
    wf = e.WorkflowBuilder("w").chain(threaded, inline).build()
    result = await e.Orchestrator().run(wf, 1)
    assert result.ok
    assert seen["threaded"] != loop_thread and seen["inline"] == loop_thread


async def test_an_async_callable_object_is_awaited() -> None:
    class Callable:
        async def __call__(self, state: Any, value: Any) -> Any:
            await asyncio.sleep(0)
            return value + 1

    wf = e.WorkflowBuilder("w").add(e.Agent("c", Callable())).build()
    assert (await e.Orchestrator().run(wf, 1)).output == 2
