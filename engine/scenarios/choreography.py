"""The choreography scenarios: agents on the in-process bus, with faults injected under the seed.

- ``research-pipeline``: research → analysis → report over the bus, clean. Each agent
  subscribes to the event before it and publishes its own; payloads are checked by
  topic contracts; every publish, delivery and ack is recorded.
- ``lost-event``: the analysis consumer crashes while it works on ``research.done``,
  before it commits, publishes ``analysis.done`` or acks; the bus has no ack timeout,
  so the event is never delivered again and the report never comes. The run ends
  ``failed`` with the ``research.done`` message in flight for good.
- ``double-consume``: analysis processes ``research.done`` and acks, the ack is lost,
  and after the 30 s ack timeout the bus delivers it again; analysis is not idempotent
  and applies its effect a second time (two state commits for one message id, and a
  second ``analysis.done`` that makes report run twice).
- ``double-consume-fixed``: the same, with the idempotent option on analysis: the
  redelivery is acked as a ``duplicate`` and nothing is applied twice.
- ``choreo-saga``: a hybrid. ``checkout`` (an orchestrated step) places the order;
  inventory and shipping react over the bus; payment is declined twice and the
  message is dead-lettered; compensation events then travel back over the bus:
  shipping cancels the courier, inventory releases the stock, checkout cancels the
  order, in reverse causal order. The run ends ``compensated``.

Each scenario's factory is a registered workflow (:func:`engine.workflow`), so its runs
record the name replay finds it by: ``agentrace.research-pipeline`` (the
``research-pipeline`` and ``lost-event`` scenarios, whose crash is a fault of the
bus, not of the choreography), ``agentrace.double-consume``,
``agentrace.double-consume-fixed`` and ``agentrace.choreo-saga``.
"""

from __future__ import annotations

from typing import Any

import pydantic

from tracer import Recorder

from ..choreography._bus import DeliveryPolicy
from ..choreography._choreographer import Choreographer, Choreography, ChoreographyResult
from ..choreography._faults import FaultRule, Faults
from ..core._agent import Agent, agent
from ..core._contracts import Contract
from ..core._errors import ScenarioError
from ..core._ledger import Update
from ..core._retry import RetryPolicy
from ..core._saga import SagaPolicy
from ..core._time import VirtualTime
from ..core._view import AgentContext, StateView
from ..core._workflows import workflow
from ._registry import DEFAULT_SEED, Scenario, register

REQUEST = {"request": "req-1042", "topic": "sea otters as a keystone species"}
ORDER: dict[str, Any] = {
    "order": "order-1042",
    "sku": "KAYAK-2P",
    "quantity": 2,
    "card": "4111-xxxx-1111",
}
ACK_TIMEOUT = 30.0  # seconds the bus waits for an ack before delivering again


class Notes(pydantic.BaseModel):
    request: str
    topic: str
    sources: list[str]


class Analysis(pydantic.BaseModel):
    request: str
    summary: str
    confidence: float


# -- research-pipeline and its faulty variants ---------------------------------------------------


def _pipeline_agents() -> tuple[Agent, Agent, Agent]:
    @agent
    async def research(state: StateView, request: dict[str, Any], ctx: AgentContext) -> Update:
        await ctx.sleep(1.2)
        sources = ["marine-ecology-review", "kelp-forest-survey-2023", "otter-census"]
        notes = {"request": request["request"], "topic": request["topic"], "sources": sources}
        return Update({"notes": notes}, output=notes)

    @agent
    async def analysis(state: StateView, notes: dict[str, Any], ctx: AgentContext) -> Update:
        await ctx.sleep(2.5)
        # Not idempotent: each run appends an analysis and spends tokens, so a redelivered
        # message leaves a second analysis and twice the spend.
        done = list(state.get("analyses", []))
        spent = state.get("tokens_spent", 0)
        result = {
            "request": notes["request"],
            "summary": f"{notes['topic']}: {len(notes['sources'])} sources agree on a trophic cascade",
            "confidence": 0.86,
        }
        return Update({"analyses": [*done, result], "tokens_spent": spent + 1800}, output=result)

    @agent
    async def report(state: StateView, result: dict[str, Any], ctx: AgentContext) -> Update:
        await ctx.sleep(0.8)
        reports = list(state.get("reports", []))
        text = f"Report {result['request']}: {result['summary']} (confidence {result['confidence']:.2f})"
        return Update({"reports": [*reports, text]})

    return research, analysis, report


@workflow("agentrace.research-pipeline")
def research_pipeline(
    *,
    ack_timeout: float | None = None,
    idempotent_analysis: bool = False,
    name: str = "research-pipeline",
) -> Choreography:
    """research → analysis → report over the bus (see the module docstring).

    Replay rebuilds it with the defaults, so a factory that changes an option is
    registered under a name of its own (as ``double_consume`` is).
    """
    research, analysis, report = _pipeline_agents()
    policy = DeliveryPolicy(max_attempts=3, ack_timeout=ack_timeout, redelivery_delay=1.0)
    return (
        Choreography(
            name,
            entry="research.requested",
            source="user",
            policy=policy,
            done_when=lambda state: bool(state.get("reports")),
        )
        .on("research.requested", research, emits="research.done")
        .on("research.done", analysis, emits="analysis.done", idempotent=idempotent_analysis)
        .on("analysis.done", report)
        .topic("research.done", contract=Contract("research-notes", Notes, ["sources != []"]))
        .topic(
            "analysis.done", contract=Contract("analysis-result", Analysis, ["confidence >= 0.7"])
        )
    )


@workflow("agentrace.double-consume")
def double_consume(seed: int = DEFAULT_SEED) -> Choreography:
    """``double-consume``: the pipeline with the ack timeout, analysis not idempotent.

    ``seed`` is taken as every scenario factory takes it and changes nothing here: the
    lost ack is a fault injected into the bus, not part of the choreography.
    """
    return research_pipeline(ack_timeout=ACK_TIMEOUT)


@workflow("agentrace.double-consume-fixed")
def double_consume_fixed(seed: int = DEFAULT_SEED) -> Choreography:
    """``double-consume-fixed``: the pipeline with the ack timeout and analysis idempotent."""
    return research_pipeline(
        ack_timeout=ACK_TIMEOUT,
        idempotent_analysis=True,
    )


# -- choreo-saga ----------------------------------------------------------------------------------


class CardDeclined(Exception):
    """The card issuer refused the charge."""


@workflow("agentrace.choreo-saga")
def checkout_saga() -> Choreography:
    """checkout (orchestrated) → inventory → shipping → payment (declined), with compensations."""

    async def cancel_order(state: StateView, order: dict[str, Any], ctx: AgentContext) -> Update:
        await ctx.sleep(0.1)
        return Update({"order_status": "cancelled"})

    @agent(compensate=cancel_order)
    async def checkout(state: StateView, order: dict[str, Any], ctx: AgentContext) -> Update:
        await ctx.sleep(0.3)
        placed = {**order, "total": 1299.0}
        return Update({"order_status": "placed", "order": placed}, output=placed)

    async def release_stock(
        state: StateView, reservation: dict[str, Any], ctx: AgentContext
    ) -> Update:
        await ctx.sleep(0.2)
        stock = dict(state["stock"])
        stock[reservation["sku"]] += reservation["quantity"]
        return Update({"stock": stock, "reservation": None})

    @agent(compensate=release_stock)
    async def inventory(state: StateView, order: dict[str, Any], ctx: AgentContext) -> Update:
        await ctx.sleep(0.5)
        stock = dict(state["stock"])
        stock[order["sku"]] -= order["quantity"]
        reservation = {"order": order["order"], "sku": order["sku"], "quantity": order["quantity"]}
        return Update({"stock": stock, "reservation": reservation}, output={**order, **reservation})

    async def cancel_courier(
        state: StateView, shipment: dict[str, Any], ctx: AgentContext
    ) -> Update:
        await ctx.sleep(0.4)
        return Update({"shipment": {**shipment, "status": "cancelled"}})

    @agent(compensate=cancel_courier)
    async def shipping(state: StateView, order: dict[str, Any], ctx: AgentContext) -> Update:
        await ctx.sleep(0.7)
        shipment = {"order": order["order"], "courier": "northwind-freight", "status": "booked"}
        return Update({"shipment": shipment}, output={**order, "shipment": shipment})

    @agent
    async def payment(state: StateView, order: dict[str, Any], ctx: AgentContext) -> Update:
        await ctx.sleep(0.6)
        raise CardDeclined(f"card {order['card']} declined by the issuer (insufficient funds)")

    return (
        Choreography(
            "checkout",
            policy=DeliveryPolicy(max_attempts=2, redelivery_delay=2.0),
            saga=SagaPolicy(retry=RetryPolicy(max_attempts=3, initial_delay=1.0)),
        )
        .start(checkout, emits="order.placed")
        .on("order.placed", inventory, emits="stock.reserved")
        .on("stock.reserved", shipping, emits="shipment.booked")
        .on("shipment.booked", payment, emits="payment.captured")
    )


# -- recording ------------------------------------------------------------------------------------


def _expect(name: str, result: ChoreographyResult, status: str) -> list[str]:
    if result.status != status:
        raise ScenarioError(
            f"scenario {name!r} ended {result.status}, not {status}: {result.error}"
        )
    return [result.run_id]


async def _research_pipeline(recorder: Recorder, time: VirtualTime, seed: int) -> list[str]:
    choreo = Choreographer(recorder, time=time, seed=seed)
    result = await choreo.run(
        research_pipeline(), REQUEST, key=REQUEST["request"], scenario="research-pipeline"
    )
    recorder.flush()
    return _expect("research-pipeline", result, "completed")


async def _lost_event(recorder: Recorder, time: VirtualTime, seed: int) -> list[str]:
    faults = Faults(
        [FaultRule.crash(during=True, topic="research.done", group="analysis", attempt=1)],
        seed=seed,
    )
    choreo = Choreographer(recorder, time=time, seed=seed, faults=faults)
    result = await choreo.run(
        research_pipeline(), REQUEST, key=REQUEST["request"], scenario="lost-event"
    )
    recorder.flush()
    if not result.unsettled:
        raise ScenarioError("scenario 'lost-event' left no message unsettled")
    return _expect("lost-event", result, "failed")


async def _double_consume(
    name: str, recorder: Recorder, time: VirtualTime, seed: int, fixed: bool
) -> list[str]:
    faults = Faults(
        [FaultRule.lose_ack(topic="research.done", group="analysis", attempt=1)], seed=seed
    )
    choreo = Choreographer(recorder, time=time, seed=seed, faults=faults)
    flow = double_consume_fixed(seed) if fixed else double_consume(seed)
    result = await choreo.run(flow, REQUEST, key=REQUEST["request"], scenario=name)
    recorder.flush()
    analyses = len(result.state.get("analyses", []))
    if analyses != (1 if fixed else 2):
        raise ScenarioError(f"scenario {name!r} applied the analysis {analyses} time(s)")
    return _expect(name, result, "completed")


async def _double(recorder: Recorder, time: VirtualTime, seed: int) -> list[str]:
    return await _double_consume("double-consume", recorder, time, seed, False)


async def _double_fixed(recorder: Recorder, time: VirtualTime, seed: int) -> list[str]:
    return await _double_consume("double-consume-fixed", recorder, time, seed, True)


async def _choreo_saga(recorder: Recorder, time: VirtualTime, seed: int) -> list[str]:
    choreo = Choreographer(recorder, time=time, seed=seed)
    state = {"stock": {"KAYAK-2P": 5}, "order_status": None}
    result = await choreo.run(
        checkout_saga(), ORDER, key=ORDER["order"], state=state, scenario="choreo-saga"
    )
    recorder.flush()
    return _expect("choreo-saga", result, "compensated")


for _scenario in (
    Scenario(
        "research-pipeline",
        "Choreography: research → analysis → report over the event bus, each agent reacting to "
        "the previous one's event; every publish, delivery and ack recorded.",
        _research_pipeline,
        "choreography",
    ),
    Scenario(
        "lost-event",
        "The analysis consumer crashes before acking and no ack timeout is configured: "
        "research.done is never redelivered and the report never comes.",
        _lost_event,
        "choreography",
    ),
    Scenario(
        "double-consume",
        "analysis's ack is lost; the redelivery after the ack timeout makes the non-idempotent "
        "consumer apply its effect twice.",
        _double,
        "choreography",
    ),
    Scenario(
        "double-consume-fixed",
        "The same lost ack, with the idempotent-consumer option: the redelivery is acked as a "
        "duplicate and applied once.",
        _double_fixed,
        "choreography",
    ),
    Scenario(
        "choreo-saga",
        "Hybrid saga: an orchestrated checkout, then inventory, shipping and payment over the bus; "
        "payment is declined and compensation events roll back shipping, inventory and checkout "
        "in reverse causal order.",
        _choreo_saga,
        "hybrid",
    ),
):
    register(_scenario)
