"""``lost-update`` and ``lost-update-fixed``: two parallel reviews of an insurance claim write
one reserve from the same base.

A claim for a car accident with an injury is opened (``intake``, which sets the
claim's ``reserve``, the money set aside for it, to the deductible). Two reviews
then run in parallel, each adding what it found to the reserve:

- ``medical_review`` (the injury: 4,200) reads the reserve, takes 1.2 s, writes it;
- ``vehicle_review`` (the car: 7,800) reads the same reserve, takes 2.0 s, writes it.

In ``lost-update`` each review writes ``reserve = reserve it read + its amount``.
Both read version 2 (500); the vehicle review commits last, on base 2, and
overwrites the medical review's 4,700 with 8,300: 4,200 of reserve is lost, and
``settle`` pays out against a reserve that no longer covers the injury. The
``lost_update`` detector names both commits; ``agentrace replay`` replays it in
the recorded order and finds it again.

In ``lost-update-fixed`` each review writes only its own note and hands its amount
on; ``settle``, the join, adds both amounts to the reserve once: no key is written
from a stale base, nothing is lost, and the reserve is 12,500.
"""

from __future__ import annotations

from typing import Any

from tracer import Recorder

from ..core._agent import Agent, agent
from ..core._ledger import Update
from ..core._time import VirtualTime
from ..core._view import AgentContext, StateView
from ..core._workflows import workflow as registered
from ..orchestration._orchestrator import Orchestrator
from ..orchestration._workflow import Workflow, WorkflowBuilder
from ._registry import DEFAULT_SEED, Scenario, register

CLAIM = {
    "claim_id": "CLM-2024-0413",
    "policy": "AUTO-88213",
    "loss": "rear-end collision with whiplash injury",
    "deductible": 500,
}
FINDINGS = {"medical_review": 4_200, "vehicle_review": 7_800}
DURATIONS = {"medical_review": 1.2, "vehicle_review": 2.0}


def _workflow(fixed: bool) -> Workflow:
    @agent
    async def intake(state: StateView, claim: dict[str, Any], ctx: AgentContext) -> Update:
        await ctx.sleep(0.1)
        return Update({"claim": claim, "reserve": claim["deductible"]}, output=claim)

    def review(name: str) -> Agent:
        amount = FINDINGS[name]

        async def run(state: StateView, claim: dict[str, Any], ctx: AgentContext) -> Update:
            seen = state["reserve"]  # the reserve as it was when the review started
            await ctx.sleep(DURATIONS[name])
            note = {"review": name, "amount": amount}
            if fixed:  # its own key only: the join adds the amounts to the reserve once
                return Update({f"review_{name}": note}, output=note)
            return Update({"reserve": seen + amount, f"review_{name}": note}, output=note)

        return Agent(name, run)

    @agent
    async def settle(state: StateView, notes: list[dict[str, Any]], ctx: AgentContext) -> Update:
        await ctx.sleep(0.1)
        if fixed:
            reserve = state["reserve"] + sum(n["amount"] for n in notes)
            return Update({"reserve": reserve, "settlement": {"reserve": reserve}})
        return Update({"settlement": {"reserve": state["reserve"]}})

    medical, vehicle = review("medical_review"), review("vehicle_review")
    return (
        WorkflowBuilder("insurance-claims")
        .fan_out(intake, [medical, vehicle])
        .fan_in([medical, vehicle], settle, merge=lambda inputs: list(inputs.values()))
        .build()
    )


@registered("agentrace.lost-update")
def workflow(seed: int = DEFAULT_SEED) -> Workflow:
    """``lost-update``: both reviews write ``reserve`` from the reserve they read."""
    return _workflow(fixed=False)


@registered("agentrace.lost-update-fixed")
def fixed_workflow(seed: int = DEFAULT_SEED) -> Workflow:
    """``lost-update-fixed``: each review hands its amount on; ``settle`` adds them up."""
    return _workflow(fixed=True)


def _recorder(fixed: bool, name: str) -> Any:
    async def run(recorder: Recorder, time: VirtualTime, seed: int) -> list[str]:
        wf = fixed_workflow(seed) if fixed else workflow(seed)
        result = await Orchestrator(recorder, time=time, seed=seed).run(wf, CLAIM, scenario=name)
        recorder.flush()
        return [result.run_id]

    return run


register(
    Scenario(
        "lost-update",
        "Two parallel claim reviews each add to the reserve from the same base: the later "
        "commit overwrites the earlier, and 4,200 of reserve is lost (lost_update).",
        _recorder(False, "lost-update"),
    )
)
register(
    Scenario(
        "lost-update-fixed",
        "The same claim, each review handing its amount to the join, which adds them to the "
        "reserve once: nothing is lost.",
        _recorder(True, "lost-update-fixed"),
    )
)
