"""Two runs side by side at their first divergence (``m`` marks a run, ``C`` compares).

The comparison is the engine's :func:`engine.diff_runs` (the same as ``agentrace
diff``): versions matched by number, spans by name and occurrence. The screen
opens on the first version where the documents differ: each run's document at
that version, the changed fields marked on both sides, and under them the spans
that differ. ``n``/``p`` move to the next/previous differing version; Enter on a
span opens it in its run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer

from tracer import NotFoundError, Store

from .._json_lines import json_lines, line_runs
from .._text import clip
from ..messages import OpenRun
from ..widgets._lines import Line, LineView
from ..widgets.title_bar import TitleBar


@dataclass(frozen=True, slots=True)
class Side:
    """One run's document at the version compared."""

    doc: Any
    agent: str | None


class CompareScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("n", "move(1)", "Next difference"),
        Binding("p", "move(-1)", "Previous"),
        Binding("tab", "app.focus_next", "Other side", show=False),
    ]

    class Loaded(Message):
        def __init__(self, diff: Any, version: int, a: Side, b: Side) -> None:
            super().__init__()
            self.diff = diff
            self.version = version
            self.a = a
            self.b = b

    def __init__(self, store: Store, run_a: str, run_b: str) -> None:
        super().__init__()
        self.store = store
        self.run_a = run_a
        self.run_b = run_b
        self.diff: Any = None
        self.version = 0

    def compose(self) -> ComposeResult:
        yield TitleBar(id="compare-title")
        with Horizontal(id="compare-sides"):
            yield LineView(id="compare-a")
            yield LineView(id="compare-b")
        yield LineView(id="compare-steps")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#compare-title", TitleBar).text = Text(
            f" comparing {self.run_a[:12]} with {self.run_b[:12]}…"
        )
        self._load(None)
        self.query_one("#compare-steps", LineView).focus()

    @work(thread=True, exclusive=True, group="compare", exit_on_error=False, description="compare")
    def _load(self, version: int | None) -> None:
        from engine import diff_runs

        diff = self.diff or diff_runs(self.store, self.run_a, self.run_b)
        if version is None:
            first = diff.first_changed_version
            version = (
                first.version if first else (diff.versions[-1].version if diff.versions else 0)
            )
        sides = []
        for run_id in (self.run_a, self.run_b):
            try:
                doc = self.store.state_at(run_id, version) if version else None
            except NotFoundError:
                doc = None
            sides.append(doc)
        vd = next((v for v in diff.versions if v.version == version), None)
        self.post_message(
            self.Loaded(
                diff,
                version,
                Side(sides[0], vd.agent_a if vd else None),
                Side(sides[1], vd.agent_b if vd else None),
            )
        )

    def on_compare_screen_loaded(self, message: Loaded) -> None:
        diff = self.diff = message.diff
        self.version = message.version
        vd = next((v for v in diff.versions if v.version == self.version), None)
        changes = {ch.path: "changed" for ch in (vd.changes if vd else ())}
        for side, run_id, wf, status, label in (
            (message.a, diff.run_a, diff.workflow_a, diff.status_a, "A"),
            (message.b, diff.run_b, diff.workflow_b, diff.status_b, "B"),
        ):
            view = self.query_one(f"#compare-{label.lower()}", LineView)
            view.border_title = f"{label} {run_id[:12]} {clip(wf or '-', 24)} · {status or '-'}"
            head = [
                Line.of(
                    (f" v{self.version}", "version"),
                    ("  by ", "dim"),
                    (clip(side.agent or "-", 30), "agent"),
                    (f"  ({vd.status.replace('_', ' ')})" if vd else "  (no such version)", "dim"),
                )
            ]
            if side.doc is None:
                body = [Line.of((" this run has no such version", "dim"))]
            else:
                body = [
                    Line(tuple(line_runs(ln, 200)), None)
                    for ln in json_lines(side.doc, changes=changes, limit=5_000)
                ]
            view.set_lines(head + body, keep_cursor=False)
        title = Text.assemble((" compare ", "bold reverse"), " ", diff.summary())
        self.query_one("#compare-title", TitleBar).text = title
        self._steps()

    def _steps(self) -> None:
        diff = self.diff
        lines = [Line.of((" spans that differ", "title"))]
        roles = {"added": "added", "missing": "removed", "changed": "changed"}
        for s in diff.steps:
            if s.status == "same":
                continue
            what = ", ".join(s.fields) if s.fields else ""
            outcome = (
                f"  {s.outcome_a or '-'} → {s.outcome_b or '-'}"
                if s.outcome_a != s.outcome_b
                else ""
            )
            target = (self.run_b, s.span_b) if s.span_b else (self.run_a, s.span_a)
            lines.append(
                Line.of(
                    (f"   {s.status:<8}", roles.get(s.status, "dim")),
                    (clip(s.key, 40), "name"),
                    (f"  {what}", "dim"),
                    (outcome, "warn"),
                    key=target if target[1] else None,
                )
            )
        if len(lines) == 1:
            lines.append(Line.of(("   none", "dim")))
        self.query_one("#compare-steps", LineView).set_lines(lines, keep_cursor=False)

    def action_move(self, step: int) -> None:
        if self.diff is None:
            return
        changed = [v.version for v in self.diff.changed_versions]
        if not changed:
            self.app.bell()
            return
        later = [v for v in changed if (v > self.version if step > 0 else v < self.version)]
        if not later:
            self.app.bell()
            return
        self._load(later[0] if step > 0 else later[-1])

    def on_line_view_activated(self, message: LineView.Activated) -> None:
        message.stop()
        run_id, span_id = message.key
        self.post_message(OpenRun(run_id, span_id))
