"""``low-confidence``: a contract rejects a research report at the boundary to analysis.

The edge ``research → analysis`` carries the contract ``research_report``: a
pydantic model (ticker, summary, confidence within 0..1, at least one source)
and the rule ``confidence >= 0.7``. Research returns a report with confidence
0.4: the check is recorded with the payload and the errors, the handoff stops
there (analysis never runs), the research step ends ``rejected`` and the run
``failed``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from tracer import Recorder

from ..core._agent import agent
from ..core._contracts import Contract
from ..core._ledger import Update
from ..core._time import VirtualTime
from ..core._view import AgentContext, StateView
from ..core._workflows import workflow as registered
from ..orchestration._orchestrator import Orchestrator
from ..orchestration._workflow import Workflow, WorkflowBuilder
from ._registry import DEFAULT_SEED, Scenario, register


class ResearchReport(BaseModel):
    ticker: str
    summary: str
    confidence: float = Field(ge=0.0, le=1.0)
    sources: list[str] = Field(min_length=1)


RESEARCH_REPORT = Contract("research_report", ResearchReport, ["confidence >= 0.7"])


@registered("agentrace.low-confidence")
def workflow(seed: int = DEFAULT_SEED, confidence: float = 0.4) -> Workflow:
    """research → analysis → report, with the contract on research → analysis."""

    @agent
    async def research(state: StateView, ticker: str, ctx: AgentContext) -> Update:
        await ctx.sleep(0.25)
        report = {
            "ticker": ticker,
            "summary": f"{ticker}: mixed signals; two sources disagree on guidance",
            "confidence": confidence,
            "sources": ["10-Q filing", "analyst call transcript"],
        }
        return Update({"research_notes": report}, output=report)

    @agent
    async def analysis(state: StateView, report: dict[str, Any], ctx: AgentContext) -> Update:
        await ctx.sleep(0.1)
        view = {"ticker": report["ticker"], "stance": "overweight"}
        return Update({"analysis": view}, output=view)

    @agent
    async def report(state: StateView, view: dict[str, Any], ctx: AgentContext) -> Update:
        await ctx.sleep(0.05)
        return Update({"report": f"{view['ticker']}: {view['stance']}"})

    return (
        WorkflowBuilder("equity-research")
        .edge(research, analysis, contract=RESEARCH_REPORT)
        .edge(analysis, report)
        .build()
    )


async def _record(recorder: Recorder, time: VirtualTime, seed: int) -> list[str]:
    orch = Orchestrator(recorder, time=time, seed=seed)
    result = await orch.run(workflow(seed), "GLOBEX", scenario="low-confidence")
    recorder.flush()
    return [result.run_id]


register(
    Scenario(
        "low-confidence",
        "A research report with confidence 0.4 is rejected by the contract at the boundary to analysis.",
        _record,
    )
)
