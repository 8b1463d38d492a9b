"""The runs screen: every run in the store; sort, filter, search; Enter opens one."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

from rich.style import Style
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static

from tracer import Run, Store

from ..messages import OpenRun, RunsLoaded
from ..widgets.runs_table import COLUMNS, SORT_KEYS, RunsTable
from ..widgets.title_bar import TitleBar

PATTERNS = ("all", "orchestration", "choreography", "hybrid", "imported")


def matches(run: Run, query: str, kinds: Iterable[str] = ()) -> bool:
    """Does every word of ``query`` appear in the run's id, workflow, scenario, status, pattern,
    agents or finding kinds (``stale`` finds the runs with a ``stale_read``)?"""
    hay = " ".join(
        [
            run.run_id,
            run.workflow or "",
            run.scenario or "",
            run.status or "",
            run.pattern or "",
            *run.agents,
            *kinds,
        ]
    ).lower()
    return all(word in hay for word in query.lower().split())


class RunsScreen(Screen[None]):
    """Lists the store's runs. The list reloads when the store changes (live mode)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "search", "Search"),
        Binding("s", "sort", "Sort"),
        Binding("r", "reverse", "Reverse"),
        Binding("p", "pattern", "Pattern"),
        Binding("x", "with_findings", "With findings"),
        Binding("m", "mark", "Mark", show=False),
        Binding("C", "compare", "Compare", show=False),
        Binding("escape", "clear", "Clear", show=False),
    ]

    # repaint=False: the watchers refill the table; repainting the whole screen adds nothing.
    # Newest first: the run just recorded or received is the one a user looks for.
    sort_key: reactive[str] = reactive("started", repaint=False)
    sort_reverse: reactive[bool] = reactive(True, repaint=False)
    pattern: reactive[str] = reactive("all", repaint=False)
    only_findings: reactive[bool] = reactive(False, repaint=False)
    search: reactive[str] = reactive("", repaint=False)

    def __init__(self, store: Store) -> None:
        super().__init__()
        self.store = store
        self.runs: list[Run] = []
        self.kinds: dict[str, tuple[str, ...]] = {}
        self.loaded = False

    def compose(self) -> ComposeResult:
        yield Static(id="runs-title")
        search = Input(
            placeholder="search runs: workflow, scenario, agent, status, id…", id="runs-search"
        )
        search.display = False
        yield search
        yield RunsTable(id="runs-table")
        yield TitleBar(id="runs-detail")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(RunsTable).focus()
        self.reload()

    def reload(self) -> None:
        self._load()

    @work(thread=True, exclusive=True, group="runs", exit_on_error=False, description="runs")
    def _load(self) -> None:
        runs = self.store.runs()
        by_run: dict[str, Counter[str]] = {}
        for f in self.store.findings():
            by_run.setdefault(f.run_id, Counter())[f.kind] += 1
        # Most frequent kind first.
        kinds = {run: tuple(k for k, _ in c.most_common()) for run, c in by_run.items()}
        self.post_message(RunsLoaded(runs, kinds))

    def on_runs_loaded(self, message: RunsLoaded) -> None:
        self.runs = message.runs
        self.kinds = message.kinds
        self.loaded = True
        self._refresh_table()

    @property
    def shown(self) -> list[Run]:
        return self.query_one(RunsTable).shown

    def visible_runs(self) -> list[Run]:
        runs = [
            r
            for r in self.runs
            if self.pattern == "all" or (r.pattern or "imported") == self.pattern
        ]
        if self.only_findings:
            runs = [r for r in runs if r.finding_count]
        if self.search.strip():
            runs = [r for r in runs if matches(r, self.search, self.kinds.get(r.run_id, ()))]
        key = next(c.sort for c in COLUMNS if c.key == self.sort_key)
        ordered = sorted(runs, key=lambda r: (key(r), r.run_id), reverse=self.sort_reverse)
        live = self.live_runs
        if live:  # runs receiving spans stay on top, whatever the order
            ordered.sort(key=lambda r: r.run_id not in live)
        return ordered

    @property
    def live_runs(self) -> frozenset[str]:
        return frozenset(getattr(self.app, "live_runs", ()))

    def _styles(self) -> dict[str, Style]:
        v = self.app.get_css_variables()
        err = Style(color=v.get("text-error"), bold=True)
        ok = Style(color=v.get("text-success"))
        warn = Style(color=v.get("text-warning"))
        return {
            "error": err, "dim": Style(dim=True), "failed": err, "compensation_failed": err, "warn": warn,
            "compensated": warn, "completed": ok, "ok": ok,
        }  # fmt: skip

    def _refresh_table(self) -> None:
        if not self.is_mounted:
            return
        table = self.query_one(RunsTable)
        shown = self.visible_runs()
        table.show_runs(shown, self._styles(), self.kinds, live=self.live_runs)
        arrow = "▼" if self.sort_reverse else "▲"
        filters = []
        if self.pattern != "all":
            filters.append(f"pattern {self.pattern}")
        if self.only_findings:
            filters.append("with findings")
        if self.search.strip():
            filters.append(f"matching {self.search.strip()!r}")
        listen = getattr(self.app, "listen", None)
        hint = ""
        if self.runs and not any(r.finding_count for r in self.runs) and listen is None:
            hint = "  · no findings stored: `agentrace findings` analyses the runs"
        title = Text.assemble(
            (" agentrace ", "bold reverse"),
            f"  {len(shown)} of {len(self.runs)} runs in ",
            (Path(self.store.path).name, "bold"),
            (f"  · live on {getattr(self.app, 'host', '')}:{listen}", "bold") if listen else "",
            f"  · sorted by {self.sort_key} {arrow}",
            ("  · " + ", ".join(filters)) if filters else "",
            hint,
        )
        self.query_one("#runs-title", Static).update(title)

    def watch_sort_key(self) -> None:
        self._refresh_table()

    def watch_sort_reverse(self) -> None:
        self._refresh_table()

    def watch_pattern(self) -> None:
        self._refresh_table()

    def watch_only_findings(self) -> None:
        self._refresh_table()

    def watch_search(self) -> None:
        self._refresh_table()

    # -- actions ---------------------------------------------------------------------------

    def action_mark(self) -> None:
        run = self.query_one(RunsTable).current_run
        app: Any = self.app
        if run is not None and hasattr(app, "mark_run"):
            app.mark_run(run.run_id)

    def action_compare(self) -> None:
        run = self.query_one(RunsTable).current_run
        app: Any = self.app
        if run is not None and hasattr(app, "compare_with_marked"):
            app.compare_with_marked(run.run_id)

    def action_search(self) -> None:
        box = self.query_one("#runs-search", Input)
        box.display = True
        box.focus()

    def action_clear(self) -> None:
        box = self.query_one("#runs-search", Input)
        box.value = ""
        box.display = False
        self.search = ""
        self.query_one(RunsTable).focus()

    @on(Input.Changed, "#runs-search")
    def _search_changed(self, event: Input.Changed) -> None:
        self.search = event.value

    @on(Input.Submitted, "#runs-search")
    def _search_done(self, event: Input.Submitted) -> None:
        self.query_one(RunsTable).focus()
        if not event.value:
            event.input.display = False

    def action_sort(self) -> None:
        i = SORT_KEYS.index(self.sort_key)
        self.sort_key = SORT_KEYS[(i + 1) % len(SORT_KEYS)]

    def action_reverse(self) -> None:
        self.sort_reverse = not self.sort_reverse

    def action_pattern(self) -> None:
        self.pattern = PATTERNS[(PATTERNS.index(self.pattern) + 1) % len(PATTERNS)]

    def action_with_findings(self) -> None:
        self.only_findings = not self.only_findings

    @on(DataTable.HeaderSelected)
    def _header(self, event: DataTable.HeaderSelected) -> None:
        key = str(event.column_key.value)
        if key == self.sort_key:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_key = key

    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        run = self.query_one(RunsTable).current_run
        detail = self.query_one("#runs-detail", TitleBar)
        if run is None:
            detail.text = Text(" no runs" if not self.runs else " no run matches")
            return
        parts: list[str | tuple[str, str | Style]] = [
            (" " + run.run_id, "bold"),
            "  scenario ", (run.scenario or "-", "bold"),
            "  agents ", (", ".join(run.agents) or "-", "bold"),
        ]  # fmt: skip
        if run.parent_run_id:
            parts += ["  replay of ", (run.parent_run_id[:12], "bold")]
        if run.error_count:
            parts += ["  ", (f"{run.error_count} error span(s)", self._styles()["error"])]
        if run.handled_error_count:
            parts += ["  ", f"{run.handled_error_count} handled error(s)"]
        detail.text = Text.assemble(*parts)

    @on(DataTable.RowSelected)
    def _open(self, event: DataTable.RowSelected) -> None:
        run = self.query_one(RunsTable).current_run
        if run is not None:
            self.post_message(OpenRun(run.run_id))
