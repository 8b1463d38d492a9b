"""Helpers for the debugger's tests: stores of the bundled scenarios, small hand-built runs,
and waiting on the app without sleeping."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterable
from html import unescape
from pathlib import Path
from typing import Any

from textual.app import App
from textual.pilot import Pilot
from textual.worker import WorkerCancelled

from tracer import DuckDBSink, Store, import_file
from tracer.analysis import analyze
from tracer.testing import RunBuilder

SCENARIOS = ("credit", "trading-saga", "double-consume")
FOREIGN = Path(__file__).parents[1] / "fixtures" / "foreign"


def load_scenarios(store: Store, names: Iterable[str] = SCENARIOS) -> dict[str, list[str]]:
    """Put the bundled scenarios in ``store`` (from sample_traces/ when the file is there,
    else recorded by the engine: the same bytes), analyse every run; run ids per scenario."""
    import engine.scenarios as sc

    out: dict[str, list[str]] = {}
    for name in names:
        before = {r.run_id for r in store.runs()}
        path = sc.sample_path(name)
        if path.is_file():
            import_file(store, path)
        else:
            sc.record(name, DuckDBSink(store))
        out[name] = sorted(r.run_id for r in store.runs() if r.run_id not in before)
        for run_id in out[name]:
            analyze(store, run_id)
    return out


def stale_read_run(store: Store, *, workflow: str = "credit-check", seed: int = 1) -> str:
    """A small credit-like run: the rater reads the score through a cache that serves v1 after
    the scorer committed v2 (a stale read), then commits its rating."""
    declared = {
        "agents": ["intake", "scorer", "rater", "decider"],
        "edges": [
            ["intake", "scorer"],
            ["scorer", "rater"],
            ["rater", "decider"],
            ["intake", "decider"],
        ],
    }
    with RunBuilder(store, workflow=workflow, scenario="unit", declared=declared, seed=seed,
                    initial={"score": 600, "applicant": {"name": "Ada"}}) as run:  # fmt: skip
        with run.step("intake") as s:
            s.read(["applicant"])
        with run.step("scorer", from_=["intake"]) as s:
            s.read(["score"])
            s.commit({"score": 710})
        with run.step("rater", from_=["scorer"]) as s:
            s.read(["score"], version=1, via="cache", cache="scores")
            s.commit({"rating": "C"})
            s.contract("rating", target="decider")
        with run.step("decider", from_=["rater"]) as s:
            s.read(["rating", "score"])
            s.commit({"decision": "decline", "applicant": {"name": "Ada", "checked": True}})
    return run.run_id


async def settle(
    app: App[object], pilot: Pilot[object], until: Callable[[], bool] | None = None
) -> None:
    """Let workers finish and their messages land (several rounds: a result may start more work)."""
    for _ in range(50):
        # an exclusive worker replaced by a newer one: wait for that one next round
        with contextlib.suppress(WorkerCancelled):
            await app.workers.wait_for_complete()
        await pilot.pause()
        if until is None:
            if not any(w.is_running for w in app.workers):
                await pilot.pause()
                if not any(w.is_running for w in app.workers):
                    return
        elif until():
            return
    if until is not None:
        raise AssertionError("the app never reached the expected state")


def screen_text(app: App[Any]) -> str:
    """What the terminal shows, as text (from the SVG screenshot)."""
    svg = app.export_screenshot()
    texts = re.findall(r"<text[^>]*>(.*?)</text>", svg, flags=re.S)
    return unescape("".join(texts)).replace("\xa0", " ")


def claims_runs(store: Store, *, trace: bool = True) -> dict[str, str]:
    """The LangGraph claims graph from its checkpointer (and its OpenInference trace), analysed:
    run id by thread."""
    import_file(store, FOREIGN / "langgraph_claims.sqlite")
    if trace:
        import_file(store, FOREIGN / "langgraph_claims_openinference.jsonl")
    runs = {
        str(r.attributes.get("session.id") or r.attributes.get("langgraph.thread_id")): r.run_id
        for r in store.runs()
        if r.parent_run_id is None
    }
    for run_id in runs.values():
        analyze(store, run_id)
    return runs
