"""The in-process bus: 100,000 events published to 3 consumer groups, each delivered and acked.

Events per second from the first publish to the last ack (so 300,000 deliveries per
pass), measured side by side with the anchor, a bare ``asyncio.Queue`` hop (one queue
per group, ``put_nowait`` then ``await get()`` + ``task_done()``):

- ``asyncio.Queue``: the floor, no semantics at all;
- ``bus``: the InProcessBus (ordering, acks, redelivery bookkeeping), nothing recorded;
- ``bus, recorded``: the same with every fact recorded by BusTracer, as a run records
  it (a ``send`` span per publish; a ``process`` span with its deliver and ack events
  per delivery), the spans batched and serialised to OTLP protobuf as a file or HTTP
  sink would, then dropped;
- ``choreography``: 10,000 events through the Choreographer, each delivery an agent
  step on the run's ledger (one state read per step), recorded the same way.
"""

from __future__ import annotations

import asyncio
from typing import Any

import engine as e
import tracer
from bench import Measure, best_of

EVENTS = 100_000
GROUPS = ("audit", "billing", "search")
CHOREO_EVENTS = 10_000


class SerialisingSink:
    """Serialises each batch to OTLP protobuf (the work a file or HTTP sink does) and drops it."""

    def __init__(self) -> None:
        self.spans = 0
        self.bytes = 0

    def export(self, request: Any) -> None:
        self.bytes += len(request.SerializeToString())
        for rs in request.resource_spans:
            for ss in rs.scope_spans:
                self.spans += len(ss.spans)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


async def queue_hop(n: int) -> int:
    queues: list[asyncio.Queue[dict[str, int]]] = [asyncio.Queue() for _ in GROUPS]
    done = 0

    async def consume(q: asyncio.Queue[dict[str, int]]) -> None:
        nonlocal done
        for _ in range(n):
            await q.get()
            q.task_done()
            done += 1

    workers = [asyncio.create_task(consume(q)) for q in queues]
    for i in range(n):
        payload = {"i": i}
        for q in queues:
            q.put_nowait(payload)
    await asyncio.gather(*workers)
    return done


async def through_bus(n: int, recorded: bool) -> tuple[int, int]:
    time = e.VirtualTime(tracer.FakeClock())
    bus = e.InProcessBus(time)
    sink = SerialisingSink()
    rec = tracer.Recorder(sink, clock=time.clock, ids=tracer.SeededIds(1)) if recorded else None
    root = rec.start_span("invoke_workflow bench") if rec is not None else None
    bt = e.BusTracer(rec, root=root.context if root is not None else None, ids=tracer.SeededIds(2))
    acked = 0

    def handler(group: str) -> Any:
        async def handle(d: e.Delivery) -> None:
            nonlocal acked
            span = bt.start_process(d, group)
            await bus.ack(d)
            bt.settle(span, d, "acked")
            span.end()
            acked += 1

        return handle

    for g in GROUPS:
        await bus.subscribe("orders", g, handler(g))
    for i in range(n):
        message = e.Message(bt.message_id(), "orders", {"i": i}, f"k{i % 64}", "shop")
        await bt.publish(bus, message)
    await bus.run_until_idle()
    if rec is not None and root is not None:
        root.end()
        rec.close()
    return acked, sink.spans


async def through_choreography(n: int) -> int:
    @e.agent
    async def fan(state: e.StateView, value: Any, ctx: e.EventContext) -> None:
        for i in range(n):
            ctx.publish("orders", {"i": i}, key=f"k{i % 64}")

    def worker(name: str) -> e.Agent:
        async def work(state: e.StateView, order: Any) -> dict[str, Any]:
            return {"seen": state["tenant"], "i": order["i"]}

        return e.Agent(name, work)

    flow = e.Choreography("bench", entry="go").on("go", fan, publishes=["orders"])
    for g in GROUPS:
        flow.on("orders", worker(g))
    time = e.VirtualTime(tracer.FakeClock())
    sink = SerialisingSink()
    rec = tracer.Recorder(sink, clock=time.clock, ids=tracer.SeededIds(1))
    result = await e.Choreographer(rec, time=time, seed=1).run(flow, {}, state={"tenant": "acme"})
    rec.close()
    assert result.status == "completed", result.error
    return len(result.steps)


def run() -> list[Measure]:
    def timed(make: Any, repeat: int) -> float:
        return best_of(lambda: asyncio.run(make()), repeat=repeat)

    results: dict[str, Any] = {}

    async def bus_plain() -> None:
        results["plain"] = await through_bus(EVENTS, recorded=False)

    async def bus_recorded() -> None:
        results["recorded"] = await through_bus(EVENTS, recorded=True)

    async def choreo() -> None:
        results["choreo"] = await through_choreography(CHOREO_EVENTS)

    t_queue = timed(lambda: queue_hop(EVENTS), 3)
    t_plain = timed(bus_plain, 3)
    t_recorded = timed(bus_recorded, 2)
    t_choreo = timed(choreo, 2)
    assert results["plain"][0] == results["recorded"][0] == EVENTS * len(GROUPS)
    spans = results["recorded"][1]
    assert spans == EVENTS * (1 + len(GROUPS)) + 1
    assert results["choreo"] == CHOREO_EVENTS * len(GROUPS) + 1
    note = f"{EVENTS:,} events x {len(GROUPS)} groups"
    return [
        Measure("bus", "asyncio.Queue hop (anchor), events/s", EVENTS / t_queue, "events/s", note),
        Measure(
            "bus", "in-process bus, not recorded, events/s", EVENTS / t_plain, "events/s", note
        ),
        Measure(
            "bus",
            "in-process bus, recorded, events/s",
            EVENTS / t_recorded,
            "events/s",
            f"{note}, {spans:,} spans",
        ),
        Measure("bus", "recorded bus vs asyncio.Queue (slowdown)", t_recorded / t_queue, "x", ""),
        Measure(
            "bus", "recording's share of the recorded bus", 1 - t_plain / t_recorded, "fraction", ""
        ),
        Measure(
            "bus",
            "choreography (agent steps, ledger), recorded, events/s",
            CHOREO_EVENTS / t_choreo,
            "events/s",
            f"{CHOREO_EVENTS:,} events x {len(GROUPS)} groups",
        ),
    ]
