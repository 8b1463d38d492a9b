"""The engine against LangGraph on the same work: µs per agent step.

Two workflows of five agents that do nothing but write one key each (ours return
``Update({name: 1})``, LangGraph's nodes return ``{name: 1}``): a chain
a0 → a1 → a2 → a3 → a4, and a fan-out a0 → (a1 | a2 | a3) → a4 with a join.
Each figure is 2,000 invocations (10,000 steps), one run per invocation.

(a) without recording: our orchestrator (async agents, no recorder) against
    LangGraph compiled without a checkpointer (sync ``invoke``, its faster path;
    ``ainvoke`` is measured too);
(b) recording every step: our orchestrator recording each step's span and state
    version through the tracer's Recorder into a DuckDB file (batches of 4,096
    spans, one transaction each, flushed before the clock stops), against
    LangGraph with InMemorySaver and with SqliteSaver on a file (sync ``invoke``).

Also shown, for (b): the tracer's own floor, the same spans and versions
recorded into the same kind of store by a loop that calls the Recorder directly,
without the engine. The engine's share of (b) is the difference.

Rounds alternate contenders so that a busy machine slows both alike; each
figure is the best of its rounds.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypedDict

from bench import Measure

N = 2_000
STEPS = 5
ROUNDS = 2
BATCH = 4_096
NAMES = [f"a{i}" for i in range(STEPS)]


# -- ours -------------------------------------------------------------------------------------


def _engine_workflows() -> dict[str, Any]:
    import engine as e

    def make(name: str) -> e.Agent:
        async def execute(state: e.StateView, value: Any) -> e.Update:
            return e.Update({name: 1})

        return e.Agent(name, execute)

    agents = [make(n) for n in NAMES]
    return {
        "chain": e.WorkflowBuilder("chain").chain(*agents).build(),
        "fan-out": e.WorkflowBuilder("fan-out")
        .fan_out(agents[0], agents[1:4])
        .fan_in(agents[1:4], agents[4], merge=dict)
        .build(),
    }


def _time_engine(wf: Any, recorder: Any = None) -> float:
    import engine as e

    async def go() -> float:
        orch = e.Orchestrator(recorder)
        t0 = time.perf_counter()
        for i in range(N):
            await orch.run(wf, i)
        if recorder is not None:
            recorder.flush()
        return time.perf_counter() - t0

    return _quiet(lambda: asyncio.run(go()))


def _time_engine_duckdb(wf: Any, tmp: Path) -> float:
    from tracer import DuckDBSink, Recorder, Store

    path = tmp / f"engine-{time.perf_counter_ns()}.duckdb"
    with Store(path) as store:
        return _time_engine(wf, Recorder(DuckDBSink(store), batch_size=BATCH))


def _time_floor(tmp: Path) -> float:
    """The Recorder alone: the spans and versions a chain run records, without the engine."""
    from tracer import DuckDBSink, Recorder, Store, canonical_json, chain_hash
    from tracer import conventions as c

    path = tmp / f"floor-{time.perf_counter_ns()}.duckdb"
    with Store(path) as store:
        rec = Recorder(DuckDBSink(store), batch_size=BATCH)

        def go() -> float:
            t0 = time.perf_counter()
            for i in range(N):
                root = rec.start_span(
                    "invoke_workflow chain",
                    attributes={c.GEN_AI_OPERATION_NAME: c.OP_INVOKE_WORKFLOW, c.GEN_AI_WORKFLOW_NAME: "chain",
                                c.GEN_AI_PROVIDER_NAME: c.PROVIDER, c.RUN_PATTERN: "orchestration"},
                )  # fmt: skip
                doc: dict[str, Any] = {}
                h = chain_hash("", doc)
                root.commit_state(version=1, snapshot=doc, hash=h, kind="initial", keys=[])
                value: Any = i
                for step, name in enumerate(NAMES, start=1):
                    span = rec.start_span(
                        f"invoke_agent {name}", parent=root,
                        attributes={c.GEN_AI_OPERATION_NAME: c.OP_INVOKE_AGENT, c.GEN_AI_PROVIDER_NAME: c.PROVIDER,
                                    c.GEN_AI_AGENT_NAME: name, c.GEN_AI_CONVERSATION_ID: root.trace_id,
                                    c.AGENT_STEP: step, c.AGENT_ATTEMPT: 1, c.AGENT_INPUT: canonical_json(value)},
                    )  # fmt: skip
                    new = {**doc, name: 1}
                    h2 = chain_hash(h, new)
                    span.commit_state(
                        version=step + 1, snapshot=new, parent_snapshot=doc, parent_version=step,
                        base_version=step, hash=h2, agent=name, keys=[name],
                    )  # fmt: skip
                    value = {name: 1}
                    span.set_attributes(
                        {c.AGENT_OUTPUT: canonical_json(value), c.STEP_OUTCOME: "ok"}
                    )
                    span.end()
                    doc, h = new, h2
                root.set_attribute(c.RUN_STATUS, "completed")
                root.end()
            rec.flush()
            return time.perf_counter() - t0

        return _quiet(go)


# -- LangGraph ----------------------------------------------------------------------------------


class _State(TypedDict, total=False):
    x: int
    a0: int
    a1: int
    a2: int
    a3: int
    a4: int


def _lg_graphs() -> dict[str, Any]:
    from langgraph.graph import END, START, StateGraph

    def make(name: str) -> Callable[[_State], dict[str, int]]:
        def node(state: _State) -> dict[str, int]:
            return {name: 1}

        return node

    chain = StateGraph(_State)
    for n in NAMES:
        chain.add_node(n, make(n))
    chain.add_edge(START, NAMES[0])
    for a, b in itertools.pairwise(NAMES):
        chain.add_edge(a, b)
    chain.add_edge(NAMES[-1], END)

    fan = StateGraph(_State)
    for n in NAMES:
        fan.add_node(n, make(n))
    fan.add_edge(START, "a0")
    for b in NAMES[1:4]:
        fan.add_edge("a0", b)
    fan.add_edge(NAMES[1:4], "a4")
    fan.add_edge("a4", END)
    return {"chain": chain, "fan-out": fan}


def _time_lg(graph: Any, checkpointer: Any = None, *, use_async: bool = False) -> float:
    app = graph.compile(checkpointer=checkpointer)

    def go() -> float:
        t0 = time.perf_counter()
        for i in range(N):
            app.invoke({"x": i}, {"configurable": {"thread_id": str(i)}})
        return time.perf_counter() - t0

    async def ago() -> float:
        t0 = time.perf_counter()
        for i in range(N):
            await app.ainvoke({"x": i}, {"configurable": {"thread_id": str(i)}})
        return time.perf_counter() - t0

    return _quiet((lambda: asyncio.run(ago())) if use_async else go)


def _time_lg_memory(graph: Any) -> float:
    from langgraph.checkpoint.memory import InMemorySaver

    return _time_lg(graph, InMemorySaver())


def _time_lg_sqlite(graph: Any, tmp: Path) -> float:
    from langgraph.checkpoint.sqlite import SqliteSaver

    con = sqlite3.connect(tmp / f"lg-{time.perf_counter_ns()}.sqlite", check_same_thread=False)
    try:
        return _time_lg(graph, SqliteSaver(con))
    finally:
        con.close()


# -- the run ------------------------------------------------------------------------------------


def _quiet(fn: Callable[[], float]) -> float:
    gc.collect()
    gc.disable()
    try:
        return fn()
    finally:
        gc.enable()


def _us_per_step(seconds: float) -> float:
    return seconds / (N * STEPS) * 1e6


def run() -> list[Measure]:
    ours = _engine_workflows()
    theirs = _lg_graphs()
    out: list[Measure] = []
    with tempfile.TemporaryDirectory(prefix="agentrace-bench-") as d:
        tmp = Path(d)
        for topo in ("chain", "fan-out"):
            wf, graph = ours[topo], theirs[topo]
            contenders: dict[str, Callable[[], float]] = {
                "a: ours, no recording": lambda wf=wf: _time_engine(wf),
                "a: LangGraph, no checkpointer (invoke)": lambda g=graph: _time_lg(g),
                "a: LangGraph, no checkpointer (ainvoke)": lambda g=graph: _time_lg(
                    g, use_async=True
                ),
                "b: ours, span + version per step into DuckDB": lambda wf=wf: _time_engine_duckdb(
                    wf, tmp
                ),
                "b: LangGraph, InMemorySaver": lambda g=graph: _time_lg_memory(g),
                "b: LangGraph, SqliteSaver (file)": lambda g=graph: _time_lg_sqlite(g, tmp),
            }
            if topo == "chain":
                contenders["b: tracer floor, same record without the engine"] = lambda: _time_floor(
                    tmp
                )
            best = {k: float("inf") for k in contenders}
            for _ in range(ROUNDS):
                for name, fn in contenders.items():
                    best[name] = min(best[name], fn())
            us = {k: _us_per_step(v) for k, v in best.items()}
            for name, value in us.items():
                out.append(Measure("engine", f"{topo} {name}", value, "µs/step"))
            lg_a = min(
                us["a: LangGraph, no checkpointer (invoke)"],
                us["a: LangGraph, no checkpointer (ainvoke)"],
            )
            ours_a = us["a: ours, no recording"]
            ours_b = us["b: ours, span + version per step into DuckDB"]
            out += [
                Measure("engine", f"{topo} a: LangGraph (faster of invoke/ainvoke) / ours", lg_a / ours_a, "x",
                        "goal: >= 10x, ours <= 10 µs/step"),
                Measure("engine", f"{topo} b: LangGraph InMemorySaver / ours", us["b: LangGraph, InMemorySaver"] / ours_b,
                        "x", "goal: >= 10x, ours <= 40 µs/step"),
                Measure("engine", f"{topo} b: LangGraph SqliteSaver / ours",
                        us["b: LangGraph, SqliteSaver (file)"] / ours_b, "x", "goal: >= 10x"),
            ]  # fmt: skip
            if topo == "chain":
                floor = us["b: tracer floor, same record without the engine"]
                out.append(
                    Measure(
                        "engine",
                        "chain b: engine's share over the tracer floor",
                        ours_b - floor,
                        "µs/step",
                    )
                )
    return out


__all__ = ["run"]
