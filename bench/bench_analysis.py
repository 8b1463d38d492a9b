"""The analysis: every detector over one recorded run of 100,000 spans and 10,000 state versions.

The run is a hybrid recorded through the Recorder into a store file (not timed): a
chain of agent steps with tool calls, state reads and commits (a few through a
stale cache, a few on an old base), a bus with publishes and deliveries (a few
processed twice, a few never), contract checks, a breaker, a saga rolled back at
the end, and a declared graph that part of the traffic goes around. Every kind of
finding but ``unused_edge`` occurs (that one looks at completed runs only, and this
run ends in a failed rollback), so every detector does its full work.

Timed: ``detect`` (all ten detectors, the coordination graph included, reading the
store cold each time) and, beside it, the graph alone and each detector alone.
Goal: all detectors <= 2 s on 2 cores.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import tracer
from bench import Measure, best_of
from tracer.analysis import DETECTORS, analyze, coordination_graph, detect
from tracer.analysis._context import RunContext
from tracer.testing import RunBuilder

SPANS = 100_000
VERSIONS = 10_000
AGENTS = [f"agent{i:02d}" for i in range(12)]
KEYS = [f"k{i:02d}" for i in range(40)]
TOPICS = ["orders", "payments", "shipments", "audit"]


def record(path: Path, seed: int = 1) -> tuple[str, int, int]:
    """Record the run into a store at ``path``; returns (run id, spans, versions)."""
    rng = random.Random(seed)
    declared = {
        "agents": AGENTS,
        "edges": [[AGENTS[i], AGENTS[i + 1]] for i in range(len(AGENTS) - 1)],
        "publishes": [[a, TOPICS[i % 3]] for i, a in enumerate(AGENTS)],
        "subscriptions": [[t, AGENTS[(i * 5 + 3) % len(AGENTS)]] for i, t in enumerate(TOPICS)],
    }
    with tracer.Store(path) as store:
        run = RunBuilder(
            store, pattern="hybrid", declared=declared, initial=dict.fromkeys(KEYS, 0), seed=seed,
            batch_size=5_000,
        )  # fmt: skip
        spans, n = 1, 0
        cache: dict[str, int] = {}  # key -> version the cache holds
        prev = AGENTS[0]
        while True:
            n += 1
            agent = AGENTS[n % len(AGENTS)]
            # A hundredth of the handoffs skip the declared chain.
            src = AGENTS[rng.randrange(len(AGENTS))] if rng.random() < 0.01 else prev
            s = run.step(agent, from_=[src])
            spans += 1
            with run.step(
                agent, parent=s, operation="execute_tool", name=f"execute_tool lookup{n % 7}"
            ):
                spans += 1
            if (n % 4 == 0 or n % 397 == 0) and run.ledger.head < VERSIONS:
                keys = rng.sample(KEYS, 2)
                head = run.ledger.head
                if rng.random() < 0.01 and keys[0] in cache:
                    s.read(keys[:1], version=cache[keys[0]], via="cache", cache="c")  # maybe stale
                else:
                    s.read(keys)
                    cache.update(dict.fromkeys(keys, head))
                base = (
                    max(1, head - 2) if rng.random() < 0.01 else None
                )  # an old base: lost updates
                s.commit({k: n for k in keys}, base=base)
            if n % 4 == 2:
                topic = TOPICS[n % len(TOPICS)]
                m = run.publish(agent, topic, parent=s)
                spans += 1
                if rng.random() < 0.01:
                    pass  # never delivered: a lost event
                else:
                    consumer = AGENTS[(TOPICS.index(topic) * 5 + 3) % len(AGENTS)]
                    run.process(m, agent=consumer).end()
                    spans += 1
                    if rng.random() < 0.01:
                        run.process(m, agent=consumer, attempt=2).end()  # processed twice
                        spans += 1
            if n % 997 == 0:
                s.contract(
                    "out",
                    target=AGENTS[(n + 1) % len(AGENTS)],
                    outcome="rejected",
                    payload={"n": n},
                    errors=["low"],
                )
            if n % 5_003 == 0:
                s.breaker(agent, from_="closed", to="open", reason="5 failures")
                s.outcome = "failed"
            s.end()
            prev = agent
            if spans >= SPANS - 10:
                break
        while spans < SPANS - 4:
            run.step(AGENTS[0], operation="execute_tool", name="execute_tool pad").end()
            spans += 1
        run.step(AGENTS[0], from_=[prev], outcome="failed").end()
        for agent in AGENTS[1:4]:
            run.compensate(agent, outcome="failed" if agent == AGENTS[2] else "ok").end()
        spans += 4
        run.status = "compensation_failed"
        run.finish()
        run.recorder.close()
        versions = run.ledger.head
    return run.run_id, spans, versions


def _cpu(fn: Callable[[], object]) -> float:
    """CPU seconds of one call of ``fn``, over every thread (DuckDB's included)."""
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def run() -> list[Measure]:
    tmp = Path(tempfile.mkdtemp())
    path = tmp / "bench.duckdb"
    t0 = time.perf_counter()
    run_id, _, _ = record(path)
    recorded = time.perf_counter() - t0
    with tracer.Store(path) as store:
        run = store.run(run_id)
        found = detect(store, run_id)
        kinds = {f.kind for f in found}
        note = f"{run.span_count:,} spans, {run.version_count:,} versions, {len(found):,} findings of {len(kinds)} kinds"
        # The machine may be shared: CPU seconds say what the analysis itself spent.
        cpu = min(_cpu(lambda: detect(store, run_id)) for _ in range(3))
        cases: list[tuple[str, float, str]] = [
            ("record the run (Recorder → DuckDB, not timed below)", recorded, note),
            ("all detectors (detect), goal <= 2 s", best_of(lambda: detect(store, run_id)), note),
            ("all detectors, CPU time over all threads", cpu, ""),
            ("analyze (detect + store the findings)", best_of(lambda: analyze(store, run_id)), ""),
            ("coordination graph alone", best_of(lambda: coordination_graph(store, run_id)), ""),
        ]
        for kind, d in DETECTORS.items():
            # Each detector on a fresh context: what it costs when it is the only one asked.
            secs = best_of(lambda d=d: d.run(RunContext(store, run_id)))
            cases.append((f"  {kind}", secs, f"{sum(f.kind == kind for f in found):,} findings"))
    return [Measure("analysis", case, value, "s", n) for case, value, n in cases]
