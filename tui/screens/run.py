"""The run screen: graph, waterfall, state, findings and span detail, stepping together.

The screen holds the shared state in reactives — ``version`` (the stepper),
``base`` (a pinned diff base, or None for "the version before") and ``finding``
(the finding being looked at) — and its ``watch_*`` methods push them down to
the panes. Panes speak up with messages (``VersionRequested``, ``SpanSelected``,
``FindingSelected``, ``FollowLink``). Every DuckDB read runs in a thread worker.
"""

from __future__ import annotations

import shlex
from dataclasses import replace
from typing import Any, ClassVar

from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.reactive import reactive
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, Input
from textual.worker import get_current_worker

from tracer import Finding, Run, Store
from tracer import conventions as c

from .._data import GraphData, RunMeta, edges_for, load_graph, load_head, load_meta
from .._prices import PriceError, Prices, load_prices
from .._text import clip, fmt_duration
from .._waterfall_model import fmt_tokens
from ..messages import (
    FindingsDetected,
    FindingSelected,
    FollowLink,
    GraphLoaded,
    MetaLoaded,
    OpenRun,
    SpanSelected,
    VersionRequested,
)
from ..widgets.findings import FindingsList
from ..widgets.graph import LEGEND, CoordinationGraph
from ..widgets.span_detail import SpanDetail
from ..widgets.state import StatePane
from ..widgets.title_bar import TitleBar
from ..widgets.waterfall import Waterfall
from .prompt import Prompt

PANES = ("graph", "waterfall", "state", "findings", "span")
# Below this width or height the panes become tabs (see RunScreen._arrange).
TABS_BELOW = (110, 34)
_VERSION = Binding.Group("version", compact=True)


class RunScreen(Screen[None]):
    """One run. ``version`` is the stepper; every pane follows it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Runs"),
        Binding("1", "pane('graph')", "Graph", show=False),
        Binding("2", "pane('waterfall')", "Waterfall", show=False),
        Binding("3", "pane('state')", "State", show=False),
        Binding("4", "pane('findings')", "Findings", show=False),
        Binding("5", "pane('span')", "Span", show=False),
        Binding("tab", "cycle(1)", "Next pane", show=False),
        Binding("shift+tab", "cycle(-1)", "Prev pane", show=False),
        Binding("left_square_bracket", "step(-1)", "Version", group=_VERSION),
        Binding("right_square_bracket", "step(1)", "Version", group=_VERSION),
        Binding("g", "goto", "Go to"),
        Binding("d", "diff", "Diff", show=False),
        Binding("f", "next_finding", "Finding"),
        Binding("z", "zoom", "Zoom"),
        Binding("backspace", "go_back", "Back", show=False),
        Binding("m", "mark", "Mark run", show=False),
        Binding("C", "compare", "Compare", show=False),
        # Not in the footer: at 80 columns it is full before ``z``.
        Binding("F", "fork", "Fork", show=False),
    ]

    # repaint=False: a screen's repaint redraws every pane; the watchers refresh what changed.
    version: reactive[int] = reactive(0, init=False, repaint=False)
    base: reactive[int | None] = reactive(None, init=False, repaint=False)
    finding: reactive[str | None] = reactive(None, init=False, repaint=False)

    def __init__(self, store: Store, run_id: str, *, span_id: str | None = None) -> None:
        super().__init__()
        self.store = store
        self.run_id = run_id
        self.meta: RunMeta | None = None
        self.graph_data: GraphData | None = None
        self._first_span = span_id
        self._pending_version: int | None = None
        self._pending_finding: Finding | None = None
        self._detected: tuple[Finding, ...] = ()
        self._shown: set[str] = set()
        self._after_paint = False
        self.tabbed = False
        self._price_cache: tuple[Prices | None] | None = None
        self.history: list[tuple[str | None, int]] = []  # (span, version) before each jump
        self.active = "waterfall"  # the pane shown when the panes are tabs

    def compose(self) -> ComposeResult:
        yield TitleBar(id="run-header")
        tabs = TitleBar(id="run-tabs")
        tabs.display = False
        yield tabs
        search = Input(
            placeholder="find spans: name, agent or operation (enter; then n / N)", id="span-search"
        )
        search.display = False
        yield search
        yield CoordinationGraph(id="graph")
        with Horizontal(id="run-middle"):
            yield Waterfall(self.store, self.run_id, id="waterfall")
            yield StatePane(self.store, self.run_id, id="state")
        with Horizontal(id="run-bottom"):
            yield FindingsList(id="findings")
            yield SpanDetail(self.store, self.run_id, id="span")
        yield Footer()

    def on_mount(self) -> None:
        titles = {
            "graph": "Graph",
            "waterfall": "Waterfall",
            "state": "State",
            "findings": "Findings",
            "span": "Span",
        }
        for i, pane in enumerate(PANES, 1):
            self.query_one(f"#{pane}").border_title = f"{i} {titles[pane]}"
        self.query_one(CoordinationGraph).border_subtitle = LEGEND
        self.query_one(Waterfall).focus()
        self._arrange()
        # First the run's head (the run, its findings, its last version): with the waterfall's
        # tree, that is all the first paint needs. What is slower (every version's metadata,
        # the coordination graph, findings for a run with none stored) waits for that paint:
        # in a thread it would still hold the interpreter and the store's cores.
        self._load_meta(full=False)

    # -- loading ---------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="meta", exit_on_error=False, description="meta")
    def _load_meta(self, full: bool = True) -> None:
        meta = load_meta(self.store, self.run_id) if full else load_head(self.store, self.run_id)
        if not get_current_worker().is_cancelled:
            self.post_message(MetaLoaded(meta))

    @work(thread=True, exclusive=True, group="graph", exit_on_error=False, description="graph")
    def _load_graph(self) -> None:
        data = load_graph(self.store, self.run_id)
        if not get_current_worker().is_cancelled:
            self.post_message(GraphLoaded(data))

    def on_meta_loaded(self, message: MetaLoaded) -> None:
        first = self.meta is None
        meta = message.meta
        if not meta.findings and self._detected:
            meta = replace(meta, findings=self._detected)
        self.meta = meta
        if first or not meta.findings:
            self._arrange()  # a run without versions (or findings) lends their room
        self.query_one(FindingsList).set_findings(meta.findings)
        self.query_one(SpanDetail).set_meta(meta)
        wf = self.query_one(Waterfall)
        wf.set_marks(
            versions=meta.spans_by_version,
            findings=frozenset(s for f in meta.findings for s in f.span_ids),
            current=wf.current_span,
        )
        if not meta.last_version:
            self._painted("state")  # no versions: no state to wait for
        target = self._pending_version or (meta.last_version if first else self.version)
        self._pending_version = None
        if self.version == target:
            self._apply_version()
        else:
            self.version = target
        if first and self._first_span:
            wf.select_span(self._first_span)
        if meta.complete and self._pending_finding is not None:
            finding, self._pending_finding = self._pending_finding, None
            self.select_finding(finding)
        self._update_header()

    def on_state_pane_shown(self, message: StatePane.Shown) -> None:
        self._painted("state")

    def on_waterfall_painted(self, message: Waterfall.Painted) -> None:
        self._painted("waterfall")

    def _painted(self, part: str) -> None:
        """Once the state and the waterfall are on screen, start the slower loads.

        A pane not shown (another tab is up) is not waited for: the graph must load
        whatever the terminal's size.
        """
        if self._after_paint:
            return
        self._shown.add(part)
        waited = {p for p in ("state", "waterfall") if self._pane_shown(p)}
        if waited <= self._shown:
            self._after_paint = True
            self._load_meta(full=True)
            self._load_graph()
            if self.meta is not None and not self.meta.findings:
                self._detect()

    @work(thread=True, exclusive=True, group="detect", exit_on_error=False, description="detect")
    def _detect(self) -> None:
        """Findings for a run the store has none for (never analysed?), computed, not stored."""
        try:
            from tracer.analysis import detect
        except ImportError:
            return
        found = detect(self.store, self.run_id)
        if found and not get_current_worker().is_cancelled:
            self.post_message(FindingsDetected(self.run_id, found))

    def on_findings_detected(self, message: FindingsDetected) -> None:
        meta = self.meta
        if meta is None or meta.findings or message.run_id != self.run_id:
            return
        self._detected = tuple(message.findings)
        self.meta = replace(meta, findings=self._detected)
        findings = self.query_one(FindingsList)
        findings.set_findings(self.meta.findings)
        findings.border_title = f"4 Findings ({len(self.meta.findings)}, found now, not stored)"
        self.query_one(Waterfall).set_marks(
            findings=frozenset(s for f in self.meta.findings for s in f.span_ids),
            current=self.query_one(Waterfall).current_span,
        )
        self._apply_version()

    def on_graph_loaded(self, message: GraphLoaded) -> None:
        self.graph_data = message.view
        self.query_one(CoordinationGraph).set_data(message.view)
        self._highlight()

    def store_changed(self, run_ids: frozenset[str], *, spans: bool = True) -> None:
        """Live mode: new spans (or only new findings) of this run; reload what depends on them."""
        if self.run_id not in run_ids:
            return
        self._load_meta(full=True)
        if spans:
            self._load_graph()
            self.query_one(Waterfall).load()

    # -- layout ----------------------------------------------------------------------------

    def on_resize(self) -> None:
        self._arrange()

    def _pane_shown(self, name: str) -> bool:
        if self.tabbed:
            return name == self.active
        no_state = self.meta is not None and not self.meta.last_version
        return not (name == "state" and no_state)

    def _arrange(self) -> None:
        """Lay the panes out for the terminal's size.

        At 120×40 and up every pane has room side by side: the graph as tall as its
        picture (up to 16 rows), the findings and span detail 11 rows, the waterfall
        and state the rest (10 rows or more). Below that (80×24 leaves the middle
        no row at all) the panes become tabs: one at a time, under a line naming
        them, switched with 1–5 or tab. A run with no state versions gives the
        state's room to the waterfall, and the span detail (an LLM's conversation)
        half the height.
        """
        width, height = self.size
        if not width or not height:
            return
        tabbed = width < TABS_BELOW[0] or height < TABS_BELOW[1]
        self.tabbed = tabbed
        self.set_class(tabbed, "-tabs")
        graph = self.query_one(CoordinationGraph)
        middle, bottom = self.query_one("#run-middle"), self.query_one("#run-bottom")
        no_state = self.meta is not None and not self.meta.last_version
        no_findings = self.meta is not None and not self.meta.findings
        if tabbed:
            if self.maximized is not None:
                self.minimize()
            self.query_one("#run-tabs").display = True
            for pane in PANES:
                self.query_one(f"#{pane}").display = pane == self.active
            middle.display = self.active in ("waterfall", "state")
            bottom.display = self.active in ("findings", "span")
            graph.fill = True
            bottom.styles.height = "1fr"
            self._update_tabs()
        else:
            self.query_one("#run-tabs").display = False
            for pane in PANES:
                self.query_one(f"#{pane}").display = True
            if no_state:
                self.query_one("#state").display = False
            if no_state and no_findings:
                self.query_one("#findings").display = False
            middle.display = bottom.display = True
            graph.fill = False
            bottom.styles.height = "1fr" if no_state else None
        self._painted("layout")

    def _update_tabs(self) -> None:
        if not self.tabbed:
            return
        titles = {"graph": "Graph", "waterfall": "Waterfall", "state": "State",
                  "findings": "Findings", "span": "Span"}  # fmt: skip
        parts: list[tuple[str, str] | str] = []
        for i, pane in enumerate(PANES, 1):
            label = f" {i} {titles[pane]} "
            parts.append((label, "bold reverse") if pane == self.active else label)
        # The footer has no room left for `?` at small sizes: the tabs line says it.
        parts.append(("  tab: next · ?: help", "dim"))
        self.query_one("#run-tabs", TitleBar).text = Text.assemble(*parts)

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        pane = event.widget.id
        if pane in PANES and pane != self.active:
            self.active = pane
            if self.tabbed:
                self._arrange()

    # -- the shared state ------------------------------------------------------------------

    def watch_version(self, old: int, new: int) -> None:
        self._apply_version()
        meta = self.meta
        vm = meta.version(new) if meta is not None and old else None
        if vm is not None and vm.span_id:
            # Stepping: the span detail follows to the span that committed the version.
            self.query_one(SpanDetail).show(vm.span_id, meta)

    def watch_base(self) -> None:
        self._apply_version()

    def watch_finding(self) -> None:
        self._highlight()
        findings = self.query_one(FindingsList)
        findings.mark_selected(self.finding)

    def _apply_version(self) -> None:
        meta = self.meta
        if meta is None:
            return
        self.query_one(StatePane).show(self.version, self.base, meta)
        vm = meta.version(self.version)
        self.query_one(Waterfall).set_marks(current=vm.span_id if vm else None)
        self._highlight()
        self._update_header()

    def _highlight(self) -> None:
        meta, data = self.meta, self.graph_data
        if meta is None or data is None:
            return
        nodes: set[str] = set()
        spans: list[str] = []
        vm = meta.version(self.version)
        if vm is not None:
            if vm.agent:
                nodes.add(vm.agent)
            spans.append(vm.span_id)
        finding = self.current_finding
        if finding is not None:
            nodes.update(finding.agents)
            # The finding's first span is where it happened (the stale reader, the duplicate
            # delivery): light the edge that carried it, not every edge its agents touched.
            spans.extend(finding.span_ids[:1])
        self.query_one(CoordinationGraph).highlight(nodes, edges_for(data, spans))

    @property
    def current_finding(self) -> Finding | None:
        if self.meta is None or self.finding is None:
            return None
        return next((f for f in self.meta.findings if f.finding_id == self.finding), None)

    def _prices(self) -> Prices | None:
        """The user's price file, read once per screen; a bad file is said once, not fatal."""
        if self._price_cache is None:
            try:
                self._price_cache = (load_prices(),)
            except PriceError as exc:
                self._price_cache = (None,)
                self.notify(str(exc), severity="warning", markup=False)
        return self._price_cache[0]

    def _update_header(self) -> None:
        meta = self.meta
        header = self.query_one("#run-header", TitleBar)
        if meta is None:
            header.text = Text(f" run {self.run_id[:12]}  loading…")
            return
        r = meta.run
        # Facts by priority (lower first kept): what drops when the terminal is narrow.
        facts: list[tuple[int, tuple[str, str] | str]] = [
            (5, r.pattern or "-"),
            (1, (r.status or "-", "bold")),
            (1, _lineage(r)),
            (2, f"{_n(r.error_count, 'error')}, {r.handled_error_count} handled")
            if r.error_count or r.handled_error_count
            else (9, ""),
            (2, fmt_duration(r.duration_ns)),
            (4, _n(len(r.agents), "agent")),
            (3, _n(r.span_count, "span")),
            (2, _n(r.finding_count, "finding")),
        ]
        if meta.tokens is not None:
            t = meta.tokens
            facts.append((3, (f"{fmt_tokens(t.input)} in/{fmt_tokens(t.output)} out tokens", "")))
            prices = self._prices()
            if prices is not None:
                usd, unpriced = prices.cost(t.by_model)
                facts.append(
                    (
                        3,
                        f"${usd:.4f}"
                        + (f" (+{fmt_tokens(unpriced)} unpriced)" if unpriced else ""),
                    )
                )
        tail: list[tuple[str, str] | str] = []
        if meta.last_version:
            tail.append((f" v{self.version}/{meta.last_version} ", "reverse"))
            if self.base is not None:
                tail.append(f" diff base v{self.base}")
        width = header.size.width or self.size.width or 120
        for cut in (9, 5, 4, 3, 2, 1):
            kept = [f for p, f in facts if p < cut and f]
            text = Text.assemble(
                (" run ", "bold reverse"),
                (f" {r.run_id[:12] if width >= 100 else r.run_id[:8]} ", "bold"),
                (clip(r.workflow or "-", 30 if width >= 100 else 20), "bold"),
                *[piece for f in kept for piece in (" · ", f)],
                "   ",
                *tail,
            )
            if text.cell_len <= width:
                break
        header.text = text

    # -- messages from panes ---------------------------------------------------------------

    @on(VersionRequested)
    def _version_requested(self, message: VersionRequested) -> None:
        if self.meta is None:
            self._pending_version = message.version
            return
        k = max(1, min(self.meta.last_version, message.version)) if self.meta.last_version else 0
        self._remember()
        self.finding = None
        if message.set_base:
            self.base = message.base
        self.version = k

    @on(SpanSelected)
    def _span_selected(self, message: SpanSelected) -> None:
        self.query_one(SpanDetail).show(message.span_id, self.meta)

    @on(FindingSelected)
    def _finding_selected(self, message: FindingSelected) -> None:
        self.select_finding(message.finding)

    def select_finding(self, f: Finding) -> None:
        """Jump every pane to ``f``: the version its span committed (or its last version),
        its first span in the waterfall and the detail, its agents and edges in the graph."""
        meta = self.meta
        if meta is not None and not meta.complete:
            # Which version a finding's span committed is in the full metadata, coming.
            self._pending_finding = f
            return
        self.finding = f.finding_id
        if meta is not None:
            target = None
            for sid in f.span_ids:
                committed = meta.spans_by_version.get(sid)
                if committed:
                    target = committed[0]
                    break
            if target is None and f.versions:
                target = max(f.versions)
            if target is not None:
                self.version = max(1, min(meta.last_version, target))
        if f.span_ids:
            self.query_one(Waterfall).select_span(f.span_ids[0])
        self._highlight()

    @on(CoordinationGraph.AgentChosen)
    def _agent_chosen(self, message: CoordinationGraph.AgentChosen) -> None:
        """An agent picked in the graph: the waterfall shows only its spans (and their parents)."""
        if message.agent is None:
            self.app.bell()
            return
        self.query_one(Waterfall).set_filter("agent:" + shlex.quote(message.agent))
        if self.tabbed:
            self._show_pane("waterfall")

    @on(Waterfall.SearchAsked)
    def _ask_search(self) -> None:
        box = self.query_one("#span-search", Input)
        box.display = True
        box.focus()

    @on(Input.Submitted, "#span-search")
    def _search(self, event: Input.Submitted) -> None:
        event.input.display = False
        waterfall = self.query_one(Waterfall)
        waterfall.focus()
        waterfall.search(event.value)

    def _remember(self) -> None:
        """Where the user is (the waterfall's span, the version), for the back key."""
        here = (self.query_one(Waterfall).cursor_span, self.version)
        if not self.history or self.history[-1] != here:
            self.history.append(here)
            del self.history[:-100]

    def action_mark(self) -> None:
        app: Any = self.app
        if hasattr(app, "mark_run"):
            app.mark_run(self.run_id)

    def action_compare(self) -> None:
        app: Any = self.app
        if hasattr(app, "compare_with_marked"):
            app.compare_with_marked(self.run_id)

    def action_fork(self) -> None:
        """Fork the run at the version the stepper is on (the app runs it, then opens it)."""
        app: Any = self.app
        if self.meta is None:
            self.notify("the run is still loading", severity="warning")
            return
        if hasattr(app, "fork_run"):
            app.fork_run(self.meta, self.version)

    def action_go_back(self) -> None:
        """Back to where the user was before following a link or a STALE line."""
        if not self.history:
            self.app.bell()
            return
        span_id, version = self.history.pop()
        if span_id is not None:
            self.query_one(Waterfall).select_span(span_id)
        if version and self.meta is not None and version != self.version:
            self.finding = None
            self.version = version

    @on(FollowLink)
    def _follow(self, message: FollowLink) -> None:
        self._remember()
        if message.trace_id == self.run_id:
            if not self.query_one(Waterfall).select_span(message.span_id):
                self.notify("that span is not in this run", severity="warning")
        else:
            self.post_message(OpenRun(message.trace_id, message.span_id))

    # -- actions ---------------------------------------------------------------------------

    def action_back(self) -> None:
        box = self.query_one("#span-search", Input)
        if box.display:
            box.display = False
            self.query_one(Waterfall).focus()
            return
        if self.maximized is not None:
            self._zoom(None)
            return
        from ..app import AgentraceApp

        if isinstance(self.app, AgentraceApp):
            self.app.action_show_runs()
        else:
            self.app.pop_screen()

    def action_pane(self, name: str) -> None:
        if self.maximized is not None:
            self._zoom(None)
        self._show_pane(name)

    def _show_pane(self, name: str) -> None:
        self.active = name
        self._arrange()
        self.query_one(f"#{name}", Widget).focus()

    def action_cycle(self, delta: int) -> None:
        focused = self.focused
        current = focused.id if focused is not None and focused.id in PANES else PANES[0]
        shown = [p for p in PANES if self.tabbed or self._pane_shown(p)]
        if current not in shown:
            current = shown[0]
        nxt = shown[(shown.index(current) + delta) % len(shown)]
        if self.maximized is not None:
            self._zoom(self.query_one(f"#{nxt}", Widget))
        self._show_pane(nxt)

    def action_step(self, delta: int) -> None:
        if self.meta is not None and self.meta.last_version:
            self.finding = None
            self.version = max(1, min(self.meta.last_version, self.version + delta))

    def action_goto(self) -> None:
        def done(value: str | None) -> None:
            if value and value.strip().lstrip("v").isdigit():
                self.post_message(VersionRequested(int(value.strip().lstrip("v"))))

        last = self.meta.last_version if self.meta else 0
        self.app.push_screen(
            Prompt(f"Go to version (1–{last})", placeholder=str(self.version)), done
        )

    def action_diff(self) -> None:
        def done(value: str | None) -> None:
            words = (value or "").replace("..", " ").replace(",", " ").split()
            nums = [int(w.lstrip("v")) for w in words if w.lstrip("v").isdigit()]
            if len(nums) == 2:
                self.post_message(VersionRequested(nums[1], nums[0], set_base=True))
            elif value:
                self.notify("type two versions, like 3 7", severity="warning")

        self.app.push_screen(
            Prompt("Diff two versions (A B: changes from A to B)", placeholder="3 7"), done
        )

    def action_next_finding(self) -> None:
        findings = self.query_one(FindingsList).findings
        if not findings:
            self.app.bell()
            return
        ids = [f.finding_id for f in findings]
        i = ids.index(self.finding) + 1 if self.finding in ids else 0
        self.select_finding(findings[i % len(findings)])

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # In tabs a pane already has the whole screen (and the footer needs the room).
        return not (action == "zoom" and self.tabbed)

    def action_zoom(self) -> None:
        if self.tabbed:
            return  # a tab already has the whole screen
        if self.maximized is not None:
            self._zoom(None)
            return
        focused = self.focused
        if focused is not None and focused.id in PANES:
            self._zoom(focused)

    def _zoom(self, pane: Widget | None) -> None:
        """Give ``pane`` the whole screen (None: back to every pane)."""
        graph = self.query_one(CoordinationGraph)
        graph.fill = pane is graph
        if pane is None:
            self.minimize()
        else:
            self.maximize(pane, container=False)


def _lineage(run: Run) -> str:
    """What run this one re-ran, and how: ``fork of … at v3``, ``replay of …`` ('' for none)."""
    parent = run.parent_run_id
    if not parent:
        return ""
    parent = clip(parent[:8], 8)
    k = run.attributes.get(c.RUN_FORK_VERSION)
    if k is not None:
        return f"fork of {parent} at v{clip(str(k), 12)}"
    if c.RUN_SCHEDULE_SEED in run.attributes:
        return f"schedule of {parent}"
    return f"replay of {parent}"


def _n(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"
