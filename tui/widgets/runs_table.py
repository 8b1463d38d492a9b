"""The runs table: every run in the store, sortable, filterable and searchable.

Runs are few (one per workflow execution), so a ``DataTable`` suits them;
the waterfall, which may hold a million rows, uses its own line-API widget.
Every cell is a ``Text`` built from trace strings as they are: DataTable parses
markup in ``str`` cells, and a workflow named ``[red]x`` must show as written.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.widgets import DataTable

from tracer import Run

from .._text import clip, fmt_duration, fmt_when, plain, shown_findings


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    label: str
    sort: Callable[[Run], Any]
    width: int  # cells it takes, with its gap
    priority: int  # 1 is shown first; the highest numbers drop first when the table is narrow


# Widths are the cells a column takes with its padding (cells are clipped to fit them).
COLUMNS: tuple[Column, ...] = (
    Column("run", "run", lambda r: r.run_id, 12, 1),
    Column("workflow", "workflow", lambda r: (r.workflow or "").lower(), 24, 1),
    Column("scenario", "scenario", lambda r: (r.scenario or "").lower(), 18, 6),
    Column("pattern", "pattern", lambda r: r.pattern or "", 15, 9),
    Column("status", "status", lambda r: r.status or "", 17, 2),
    Column("started", "started", lambda r: r.start_ns, 13, 5),
    Column("duration", "duration", lambda r: r.duration_ns, 11, 3),
    Column("agents", "agents", lambda r: len(r.agents), 8, 10),
    Column("spans", "spans", lambda r: r.span_count, 8, 7),
    Column("versions", "versions", lambda r: r.version_count, 10, 8),
    Column("findings", "findings", lambda r: r.finding_count, 10, 2),
    Column("kinds", "finding kinds", lambda r: r.finding_count, 20, 4),
)
SORT_KEYS = tuple(c.key for c in COLUMNS)


def columns_for(width: int) -> tuple[Column, ...]:
    """The columns that fit ``width`` cells, dropping the least needed first, in table order."""
    kept = list(COLUMNS)
    while len(kept) > 2 and sum(c.width for c in kept) > width:
        kept.remove(max(kept, key=lambda c: (c.priority, COLUMNS.index(c))))
    return tuple(kept)


class RunsTable(DataTable[Text]):
    """Shows the runs it is given; the screen decides the order and the filter.

    Only the columns that fit are shown (:func:`columns_for`): at 80 cells the run,
    workflow, status, duration and findings; from 100 the findings' kinds; at 160 all.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select_cursor", "Open run", show=False),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.shown: list[Run] = []
        self.kinds: Mapping[str, tuple[str, ...]] = {}
        self.live: frozenset[str] = frozenset()
        self.visible_columns: tuple[Column, ...] = ()
        self._styles: dict[str, Any] = {}

    def on_resize(self) -> None:
        cols = columns_for(self.scrollable_content_region.width or self.size.width)
        if cols != self.visible_columns:
            self._fill(cols)

    def show_runs(
        self,
        runs: Sequence[Run],
        styles: dict[str, Any],
        kinds: Mapping[str, tuple[str, ...]] | None = None,
        *,
        live: frozenset[str] = frozenset(),
    ) -> None:
        """Replace the rows with ``runs``, keeping the cursor on the same run when it is still shown.

        ``kinds``: the finding kinds of each run; ``live``: runs receiving spans now. A run
        not analysed since it last changed shows "–" findings rather than 0.
        """
        self.shown = list(runs)
        self._styles = styles
        self.kinds = kinds or {}
        self.live = live
        self._fill(self.visible_columns or columns_for(self.scrollable_content_region.width or 120))

    def _fill(self, columns: tuple[Column, ...]) -> None:
        keep = (
            self.shown[self.cursor_row].run_id
            if self.shown and 0 <= self.cursor_row < len(self.shown) and self.row_count
            else None
        )
        if columns != self.visible_columns:
            self.clear(columns=True)
            for col in columns:
                # Fixed widths (cells are clipped to them): the layout never waits on the
                # table measuring its rows, which it does only when the app is idle.
                self.add_column(col.label, key=col.key, width=col.width - 2 * self.cell_padding)
            self.visible_columns = columns
        else:
            self.clear()
        for r in self.shown:
            self.add_row(*(self._cell(col.key, r) for col in columns), key=r.run_id)
        if keep is not None:
            for i, r in enumerate(self.shown):
                if r.run_id == keep:
                    self.move_cursor(row=i, animate=False)
                    break

    def _cell(self, key: str, r: Run) -> Text:
        styles = self._styles
        if key == "run":
            if r.run_id in self.live:
                return plain("● " + r.run_id[:8], styles.get("ok", ""))
            return plain(r.run_id[:10], styles.get("dim", ""))
        if key == "workflow":
            return plain(clip(r.workflow or "-", 22))
        if key == "scenario":
            return plain(clip(r.scenario or "-", 16), styles.get("dim", ""))
        if key == "pattern":
            return plain(r.pattern or "-")
        if key == "status":
            status = r.status or ""
            handled = f" ({r.handled_error_count} handled)" if r.handled_error_count else ""
            return plain(clip(status + handled, 15), styles.get(status, ""))
        if key == "started":
            return plain(fmt_when(r.start_ns)[5:16], styles.get("dim", ""))
        if key == "duration":
            return Text(fmt_duration(r.duration_ns), justify="right")
        if key == "agents":
            return Text(str(len(r.agents)), justify="right")
        if key == "spans":
            return Text(str(r.span_count), justify="right")
        if key == "versions":
            return Text(str(r.version_count), justify="right")
        if key == "findings":
            if shown_findings(r) is None:
                return Text("–", style=styles.get("dim", ""), justify="right")
            style = styles.get("error", "") if r.finding_count else ""
            return Text(str(r.finding_count), style=style, justify="right")
        kinds = self.kinds.get(r.run_id, ())
        if not kinds:
            return plain(
                "" if shown_findings(r) is not None else "not analysed", styles.get("dim", "")
            )
        return plain(clip(", ".join(kinds), 18), styles.get("warn", ""))

    @property
    def current_run(self) -> Run | None:
        if self.shown and 0 <= self.cursor_row < len(self.shown):
            return self.shown[self.cursor_row]
        return None
