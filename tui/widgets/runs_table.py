"""The runs table: every run in the store, sortable, filterable and searchable.

Runs are few (one per workflow execution), so a ``DataTable`` suits them;
the waterfall, which may hold a million rows, uses its own line-API widget.
Every cell is a ``Text`` built from trace strings as they are: DataTable parses
markup in ``str`` cells, and a workflow named ``[red]x`` must show as written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.widgets import DataTable

from tracer import Run

from .._text import clip, fmt_duration, fmt_when, plain

COLUMNS: tuple[tuple[str, str, Callable[[Run], Any]], ...] = (
    ("run", "run", lambda r: r.run_id),
    ("workflow", "workflow", lambda r: (r.workflow or "").lower()),
    ("pattern", "pattern", lambda r: r.pattern or ""),
    ("status", "status", lambda r: r.status or ""),
    ("started", "started", lambda r: r.start_ns),
    ("duration", "duration", lambda r: r.duration_ns),
    ("agents", "agents", lambda r: len(r.agents)),
    ("spans", "spans", lambda r: r.span_count),
    ("versions", "versions", lambda r: r.version_count),
    ("findings", "findings", lambda r: r.finding_count),
)
SORT_KEYS = tuple(key for key, _, _ in COLUMNS)


class RunsTable(DataTable[Text]):
    """Shows the runs it is given; the screen decides the order and the filter."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select_cursor", "Open run", show=False),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.shown: list[Run] = []

    def on_mount(self) -> None:
        for key, label, _ in COLUMNS:
            self.add_column(label, key=key)

    def show_runs(self, runs: Sequence[Run], styles: dict[str, Any]) -> None:
        """Replace the rows with ``runs``, keeping the cursor on the same run when it is still shown."""
        keep = (
            self.shown[self.cursor_row].run_id
            if self.shown and 0 <= self.cursor_row < len(self.shown)
            else None
        )
        self.clear()
        self.shown = list(runs)
        for r in runs:
            status = r.status or ""
            findings = Text(str(r.finding_count), style=styles["error"] if r.finding_count else "")
            self.add_row(
                plain(r.run_id[:10], styles["dim"]),
                plain(clip(r.workflow or "-", 22)),
                plain(r.pattern or "-"),
                plain(
                    status
                    + (f" ({r.handled_error_count} handled)" if r.handled_error_count else ""),
                    styles.get(status, ""),
                ),
                plain(fmt_when(r.start_ns)[5:16], styles["dim"]),
                Text(fmt_duration(r.duration_ns), justify="right"),
                Text(str(len(r.agents)), justify="right"),
                Text(str(r.span_count), justify="right"),
                Text(str(r.version_count), justify="right"),
                findings,
                key=r.run_id,
            )
        if keep is not None:
            for i, r in enumerate(self.shown):
                if r.run_id == keep:
                    self.move_cursor(row=i, animate=False)
                    break

    @property
    def current_run(self) -> Run | None:
        if self.shown and 0 <= self.cursor_row < len(self.shown):
            return self.shown[self.cursor_row]
        return None
