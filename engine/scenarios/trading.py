"""``trading-saga``: research, analysis, execution; execution fails and the saga undoes the rest.

- ``research`` caches market data in the state (``research_cache``); its compensation
  clears that cache.
- ``analysis`` writes a draft recommendation (``draft_recommendation``); its
  compensation deletes the draft.
- ``execution`` sends the order; the exchange rejects it, twice (one retry), and the
  run fails.

The saga then compensates the completed steps in reverse order: analysis first
(the draft is deleted), then research (the cached data is cleared), each a
``compensate {agent}`` span committing a version of kind ``compensation``. The
run ends ``compensated``.
"""

from __future__ import annotations

from typing import Any

from tracer import Recorder

from ..core._agent import agent
from ..core._ledger import Update
from ..core._retry import RetryPolicy
from ..core._time import VirtualTime
from ..core._view import AgentContext, StateView
from ..core._workflows import workflow as registered
from ..orchestration._orchestrator import Orchestrator
from ..orchestration._workflow import Workflow, WorkflowBuilder
from ._registry import DEFAULT_SEED, Scenario, register


class OrderRejected(Exception):
    """The exchange refused an order."""


@registered("agentrace.trading-saga")
def workflow(seed: int = DEFAULT_SEED) -> Workflow:
    """research → analysis → execution, with compensations for research and analysis."""

    async def undo_research(state: StateView, output: dict[str, Any], ctx: AgentContext) -> Update:
        await ctx.sleep(0.01)
        return Update(delete=["research_cache"])

    @agent(compensate=undo_research)
    async def research(state: StateView, order: dict[str, Any], ctx: AgentContext) -> Update:
        await ctx.sleep(0.3)
        base = 182.4
        prices = [round(base + 0.35 * i - 0.2 * (i % 3), 2) for i in range(10)]
        cache = {"ticker": order["ticker"], "prices": prices, "source": "market-data-feed"}
        return Update(
            {"research_cache": cache},
            output={
                "ticker": order["ticker"],
                "last": prices[-1],
                "trend": "up",
                "budget": order["budget"],
            },
        )

    async def undo_analysis(state: StateView, output: dict[str, Any], ctx: AgentContext) -> Update:
        await ctx.sleep(0.01)
        return Update(delete=["draft_recommendation"])

    @agent(compensate=undo_analysis)
    async def analysis(state: StateView, research: dict[str, Any], ctx: AgentContext) -> Update:
        await ctx.sleep(0.2)
        qty = int(research["budget"] // research["last"])
        draft = {
            "ticker": research["ticker"],
            "action": "buy",
            "quantity": qty,
            "limit": research["last"],
        }
        return Update({"draft_recommendation": draft}, output=draft)

    @agent(retry=RetryPolicy(max_attempts=2, initial_delay=0.5))
    async def execution(state: StateView, order: dict[str, Any], ctx: AgentContext) -> Update:
        await ctx.sleep(0.15)
        raise OrderRejected(
            f"exchange rejected {order['action']} {order['quantity']} {order['ticker']}: insufficient margin"
        )

    return WorkflowBuilder("trading").chain(research, analysis, execution).build()


async def _record(recorder: Recorder, time: VirtualTime, seed: int) -> list[str]:
    orch = Orchestrator(recorder, time=time, seed=seed)
    result = await orch.run(
        workflow(seed),
        {"ticker": "ACME", "budget": 25_000},
        state={"account": "ACC-7731"},
        scenario="trading-saga",
    )
    recorder.flush()
    return [result.run_id]


register(
    Scenario(
        "trading-saga",
        "Research, analysis, execution; the exchange rejects the order and the saga deletes the "
        "draft recommendation, then clears the cached research, in that order.",
        _record,
    )
)
