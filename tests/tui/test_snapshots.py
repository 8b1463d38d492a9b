"""SVG snapshots at 120x40: the runs screen, and every pane of a run (zoomed) on three scenarios;
at 80x24 and 160x48: four stories (credit, the hybrid saga, LangGraph, pydantic-ai).

Each run is first brought to its story: the first finding selected (``f``), which
moves the stepper, the graph and the waterfall. Update after a deliberate change
with ``pytest tests/tui/test_snapshots.py --snapshot-update`` and look at the SVGs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from textual.pilot import Pilot

from tracer import Store
from tui.app import AgentraceApp

from .helpers import settle

SIZE = (120, 40)
PANES = ("graph", "waterfall", "state", "findings", "span")
Scenarios = tuple[Store, dict[str, list[str]]]


def _run_of(store: Store, runs: dict[str, list[str]], scenario: str) -> str:
    ids = runs[scenario]
    with_findings = [r for r in ids if store.findings(r)]
    return (with_findings or ids)[0]


def _before(*keys: str) -> Callable[[Pilot[Any]], Any]:
    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot.app, pilot)
        for key in keys:
            await pilot.press(key)
            await settle(pilot.app, pilot)

    return run_before


def test_runs_screen(snap_compare: Any, scenario_store: Scenarios) -> None:
    store, _ = scenario_store
    assert snap_compare(
        AgentraceApp(store, theme="agentrace-dark"), terminal_size=SIZE, run_before=_before()
    )


@pytest.mark.parametrize("scenario", ["credit", "trading-saga", "double-consume"])
def test_run_screen(snap_compare: Any, scenario_store: Scenarios, scenario: str) -> None:
    store, runs = scenario_store
    app = AgentraceApp(store, run_id=_run_of(store, runs, scenario), theme="agentrace-dark")
    assert snap_compare(app, terminal_size=SIZE, run_before=_before("f"))


@pytest.mark.parametrize("pane", PANES)
@pytest.mark.parametrize("scenario", ["credit", "trading-saga", "double-consume"])
def test_pane(snap_compare: Any, scenario_store: Scenarios, scenario: str, pane: str) -> None:
    store, runs = scenario_store
    app = AgentraceApp(store, run_id=_run_of(store, runs, scenario), theme="agentrace-dark")
    key = str(PANES.index(pane) + 1)
    assert snap_compare(app, terminal_size=SIZE, run_before=_before("f", key, "z"))


def test_light_theme(snap_compare: Any, scenario_store: Scenarios) -> None:
    store, runs = scenario_store
    app = AgentraceApp(store, run_id=_run_of(store, runs, "credit"), theme="agentrace-light")
    assert snap_compare(app, terminal_size=SIZE, run_before=_before("f"))


STORY_SIZES = {"small": (80, 24), "large": (160, 48)}


def _story_before(story: str, small: bool) -> Callable[[Pilot[Any]], Any]:
    """Bring a story to what it is about: the finding, or an LLM call's conversation."""

    async def run_before(pilot: Pilot[Any]) -> None:
        from tui.widgets.waterfall import Waterfall

        await settle(pilot.app, pilot)
        if story in ("credit", "hybrid"):
            await pilot.press("f")
        else:
            pilot.app.screen.query_one(Waterfall).search(
                "chat" if story == "pydantic-ai" else "Fake"
            )
            await settle(pilot.app, pilot)
            if small:
                await pilot.press("5")
        await settle(pilot.app, pilot)

    return run_before


@pytest.mark.parametrize("size", ["small", "large"])
@pytest.mark.parametrize("story", ["credit", "hybrid", "langgraph", "pydantic-ai"])
def test_story(
    snap_compare: Any, story_store: tuple[Store, dict[str, str]], story: str, size: str
) -> None:
    store, runs = story_store
    app = AgentraceApp(store, run_id=runs[story], theme="agentrace-dark")
    assert snap_compare(
        app, terminal_size=STORY_SIZES[size], run_before=_story_before(story, size == "small")
    )


@pytest.mark.parametrize("size", ["small", "large"])
def test_langgraph_superstep(
    snap_compare: Any, claims_store: tuple[Store, dict[str, str]], size: str
) -> None:
    """The claims graph's parallel super-step: both nodes' writes side by side, the next node,
    the assessor's message as a conversation."""
    store, runs = claims_store
    app = AgentraceApp(store, run_id=runs["claim-1"], theme="agentrace-dark")
    assert snap_compare(
        app, terminal_size=STORY_SIZES[size], run_before=_before("3", "end", "left")
    )
