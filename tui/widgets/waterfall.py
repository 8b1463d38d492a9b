"""The waterfall: a run's spans as a foldable tree with bars on the run's time axis.

Only visible rows are rendered and only their spans are held: the widget keeps
the run's tree shape (``Store.span_tree``: id, depth, descendants per span) and an
LRU cache of the light columns of spans it has shown, fetched a screenful at a
time by a thread worker. A run of 1,000,000 spans costs the shape (about 30 MB
of Arrow) plus a few pages. Line 0 is the time axis; it stays put while the
rows scroll under it.
"""

from __future__ import annotations

import bisect
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, ClassVar

import pyarrow as pa
from rich.segment import Segment
from textual import events, work
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.worker import get_current_worker

from tracer import Store

from .._data import filter_spans, filtered_tree, find_position, positions_of, span_facts
from .._text import clip, fmt_duration
from .._waterfall_model import RowSpan, TreeRows, axis_ticks, extra_columns, render_row
from ..messages import SpanSelected
from ._lines import RoleStyles, overlay

_CACHE_SPANS = 20_000


class Waterfall(RoleStyles, ScrollView, can_focus=True):
    """A run's span tree on a time axis. ``select_span`` moves to a span, unfolding its ancestors."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "cursor(-1)", "Up", show=False),
        Binding("down,j", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "edge(0)", "First", show=False),
        Binding("end", "edge(1)", "Last", show=False),
        Binding("enter,space", "toggle_fold", "Fold", show=False),
        Binding("left,h", "fold_or_parent", "Fold/parent", show=False),
        Binding("right,l", "unfold_or_child", "Unfold/child", show=False),
        Binding("minus", "fold_level", "Fold agents", show=False),
        Binding("plus,equals_sign", "unfold_all", "Unfold all", show=False),
        Binding("e", "next_error", "Error"),
        Binding("c", "copy", "Copy id", show=False),
        Binding("slash", "ask_search", "Find"),
        Binding("x", "ask_filter", "Filter"),
        Binding("n", "next_match(1)", "Next match", show=False),
        Binding("N", "next_match(-1)", "Previous match", show=False),
    ]

    class SearchAsked(Message):
        """The user wants to search the spans (the screen shows the input)."""

    def action_ask_search(self) -> None:
        self.post_message(self.SearchAsked())

    def action_ask_filter(self) -> None:
        from ..screens.prompt import Prompt

        def done(value: str | None) -> None:
            if value is not None:
                self.set_filter(value)

        self.app.push_screen(
            Prompt(
                "Filter spans (empty: all): words, agent:NAME kind:llm|tool|agent|guardrail|message|undo"
                " status:error model:TEXT",
                placeholder=self.filter_text or "kind:llm",
            ),
            done,
        )

    def set_filter(self, query: str) -> None:
        """Show only the spans matching ``query`` (see ``tui._data.filter_spans``), with their
        ancestors for context; an empty query shows every span again."""
        self.filter_text = query.strip()
        if not self.filter_text:
            if self._full_tree is not None and self._tree is not self._full_tree:
                self._show_tree(self._full_tree)
            self.border_subtitle = ""
            return
        self._filter(self.filter_text, self._generation)

    @work(
        thread=True, exclusive=True, group="waterfall-filter", exit_on_error=False,
        description="filter",
    )  # fmt: skip
    def _filter(self, query: str, generation: int) -> None:
        ids = filter_spans(self.store, self.run_id, query)
        self.post_message(self.Filtered(query, ids, generation))

    class Filtered(Message):
        def __init__(self, query: str, ids: list[str], generation: int) -> None:
            super().__init__()
            self.query = query
            self.ids = ids
            self.generation = generation

    def on_waterfall_filtered(self, message: Filtered) -> None:
        message.stop()
        full = self._full_tree
        if full is None or message.query != self.filter_text:
            return
        keep = positions_of(full, message.ids)
        self._show_tree(filtered_tree(full, keep))
        self.border_subtitle = f"filter {clip(message.query, 30)}: {len(keep)} of {len(full)} spans"
        if not keep:
            self.app.bell()

    cursor: reactive[int] = reactive(0, init=False)

    class TreeLoaded(Message):
        def __init__(self, tree: pa.Table, t0: int, t1: int) -> None:
            super().__init__()
            self.tree = tree
            self.t0 = t0
            self.t1 = t1

    class Painted(Message):
        """The first rows with their spans are on screen."""

    class PageLoaded(Message):
        def __init__(
            self, rows: dict[str, RowSpan], generation: int, *, failed: bool = False
        ) -> None:
            super().__init__()
            self.rows = rows
            self.generation = generation
            self.failed = failed

    def __init__(self, store: Store, run_id: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.store = store
        self.run_id = run_id
        self.rows: TreeRows | None = None
        self._tree: pa.Table | None = None
        self._t0 = 0
        self._t1 = 1
        self._spans: OrderedDict[str, RowSpan] = OrderedDict()
        self._missing = False
        self._inflight = False
        self._generation = 0
        self._pending_select: str | None = None
        self._keep_folded: list[str] = []
        self.version_marks: Mapping[str, tuple[int, ...]] = {}
        self.finding_spans: frozenset[str] = frozenset()
        self.current_span: str | None = None
        self.pages_fetched = 0
        self._errors: list[int] | None = None  # tree positions of error spans, found on first use
        self.matches: list[int] = []
        self.query_text = ""
        self.filter_text = ""
        self._full_tree: pa.Table | None = None  # the run's whole tree (``_tree`` may be filtered)
        self.first_paint: float | None = None  # perf_counter() of the first row drawn with its span

    # -- loading ---------------------------------------------------------------------------

    def on_mount(self) -> None:
        self.load()

    def load(self) -> None:
        """(Re)read the run's tree shape; folds and the cursor's span survive a reload."""
        if self.rows is not None:
            self._keep_folded = [self.rows.span_id(p) for p in sorted(self.rows._folded)]
            if self._pending_select is None and self.rows.visible:
                self._pending_select = self.rows.span_id(self.rows.pos_of_row(self.cursor))
        self._load_tree()

    @work(
        thread=True, exclusive=True, group="waterfall-tree", exit_on_error=False, description="tree"
    )
    def _load_tree(self) -> None:
        tree = self.store.span_tree(self.run_id)
        run = self.store.run(self.run_id)
        if not get_current_worker().is_cancelled:
            self.post_message(
                self.TreeLoaded(tree, run.start_ns, max(run.end_ns, run.start_ns + 1))
            )

    def on_waterfall_tree_loaded(self, message: TreeLoaded) -> None:
        message.stop()
        self._full_tree = message.tree
        self._t0, self._t1 = message.t0, message.t1
        self._spans.clear()
        self._show_tree(message.tree)
        if self.filter_text:
            self._filter(self.filter_text, self._generation)

    def _show_tree(self, tree: pa.Table) -> None:
        """Show ``tree`` (the run's, or a filter's): folds and the cursor's span kept."""
        if self.rows is not None and self._tree is not None and self._tree is not tree:
            self._keep_folded = [self.rows.span_id(p) for p in sorted(self.rows._folded)]
            if self._pending_select is None and self.rows.visible:
                self._pending_select = self.rows.span_id(self.rows.pos_of_row(self.cursor))
        self._tree = tree
        self.rows = TreeRows(tree)
        self._errors = None
        self.matches = []
        self._generation += 1
        for sid in self._keep_folded:
            pos = find_position(tree, sid)
            if pos is not None:
                self.rows.fold(pos)
        self._keep_folded = []
        self._sync_size()
        if not self.rows.total and self.first_paint is None:
            self.first_paint = time.perf_counter()
            self.post_message(self.Painted())  # nothing to show is shown
        target = self._pending_select
        self._pending_select = None
        if target is not None and self.select_span(target):
            return
        self.cursor = min(self.cursor, max(0, self.rows.visible - 1))
        self._announce()
        self.refresh()

    def _sync_size(self) -> None:
        visible = self.rows.visible if self.rows else 0
        self.virtual_size = Size(self.scrollable_content_region.width, visible + 1)

    def _request_pages(self) -> None:
        if self._inflight or self.rows is None:
            return
        height = max(1, self.scrollable_content_region.height)
        first = max(0, int(self.scroll_offset.y) - height)
        positions = self.rows.positions(first, height * 3)
        ids = [self.rows.span_id(p) for p in positions]
        missing = [sid for sid in ids if sid not in self._spans]
        if not missing:
            self._missing = False
            return
        self._inflight = True
        self._fetch(missing, self._generation)

    @work(thread=True, group="waterfall-page", exit_on_error=False, description="page")
    def _fetch(self, ids: list[str], generation: int) -> None:
        try:
            rows = RowSpan.rows_of(self.store.span_index(self.run_id, ids))
            facts = span_facts(self.store, self.run_id, ids)
            rows = {
                sid: replace(r, label=f.kind, model=f.model, tokens=f.tokens, events=f.events)
                if (f := facts.get(sid)) is not None
                else r
                for sid, r in rows.items()
            }
        except Exception:
            # Answer anyway (the app reports the error) so the widget is not left waiting.
            self.post_message(self.PageLoaded({}, generation, failed=True))
            raise
        self.post_message(self.PageLoaded(rows, generation))

    def on_waterfall_page_loaded(self, message: PageLoaded) -> None:
        message.stop()
        self._inflight = False
        if message.failed:
            return  # _missing stays set: no retry until the view scrolls
        if message.generation != self._generation:
            self._request_pages()
            return
        self.pages_fetched += 1
        self._spans.update(message.rows)
        while len(self._spans) > _CACHE_SPANS:
            self._spans.popitem(last=False)
        self._missing = False
        self.refresh()

    # -- rendering -------------------------------------------------------------------------

    @property
    def tree_width(self) -> int:
        width = self.scrollable_content_region.width
        return max(20, min(72, width * 11 // 20))

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self.clear_role_styles()

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        base = self.rich_style
        if y == 0:
            return self._axis(width, base)
        rows = self.rows
        row = int(self.scroll_offset.y) + y - 1
        if rows is None or row >= rows.visible:
            if rows is None and y == 1:
                return Strip([Segment(" loading spans…".ljust(width), self.role_style("dim"))])
            return Strip.blank(width, base)
        pos = rows.pos_of_row(row)
        sid = rows.span_id(pos)
        span = self._spans.get(sid)
        if span is None and not self._missing:
            self._missing = True
            self.call_later(self._request_pages)
        marks = []
        versions = self.version_marks.get(sid)
        if versions:
            marks.append(
                f"v{versions[0]}" if len(versions) == 1 else f"v{versions[0]}…{versions[-1]}"
            )
        if sid in self.finding_spans:
            marks.append("⚑")
        runs = render_row(
            span,
            depth=rows.depth(pos),
            has_children=rows.descendants(pos) > 0,
            folded=rows.is_folded(pos),
            width=width,
            tree_width=self.tree_width,
            t0=self._t0,
            t1=self._t1,
            marks=marks,
            columns=extra_columns(width),
        )
        strip = Strip([Segment(text, self.role_style(role)) for text, role in runs])
        if span is not None and self.first_paint is None:
            self.first_paint = time.perf_counter()
            self.post_message(self.Painted())
        if sid == self.current_span:
            strip = overlay(strip, self.overlay_style("current"))
        if row == self.cursor:
            strip = overlay(strip, self.overlay_style("cursor" if self.has_focus else "hl"))
        return strip

    def _axis(self, width: int, base: object) -> Strip:
        from rich.style import Style

        assert isinstance(base, Style)
        tree_w = self.tree_width
        style = self.role_style("axis.label")
        if tree_w + 10 >= width:
            return Strip([Segment(clip(" span", width).ljust(width), style)])
        bar_w = width - tree_w - 10
        total = max(1, self._t1 - self._t0)
        cells = [" "] * bar_w
        # Round ticks (1, 2 or 5 times a power of ten), and the run's end at the right edge.
        end = fmt_duration(total) + "│"
        room = bar_w - len(end) - 1
        for x, label in axis_ticks(self._t0, self._t1, bar_w):
            text = "│" + label
            if x + len(text) <= room:
                cells[x : x + len(text)] = list(text)
        if len(end) < bar_w:
            cells[bar_w - len(end) :] = list(end)
        columns = extra_columns(width)
        head = " span".ljust(tree_w - sum(w for _, w in columns))
        for name, w in columns:
            head += (" " + name).ljust(w) if name != "tokens" else "in/out ".rjust(w)
        head += "duration".rjust(9) + " "
        return Strip([Segment(head, style), Segment("".join(cells), style)])

    def on_resize(self, event: events.Resize) -> None:
        self._sync_size()

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        if round(old) != round(new):
            self._missing = False

    # -- cursor and folding ----------------------------------------------------------------

    def _announce(self) -> None:
        if self.rows is not None and self.rows.visible:
            self.post_message(SpanSelected(self.rows.span_id(self.rows.pos_of_row(self.cursor))))

    def watch_cursor(self, old: int, new: int) -> None:
        self._scroll_to_row(new)
        self.refresh()
        self._announce()

    def _scroll_to_row(self, row: int) -> None:
        height = self.scrollable_content_region.height - 1  # the axis line
        top = int(self.scroll_offset.y)
        if row < top:
            self.scroll_to(y=row, animate=False, immediate=True)
        elif height > 0 and row >= top + height:
            self.scroll_to(y=row - height + 1, animate=False, immediate=True)

    @property
    def cursor_span(self) -> str | None:
        if self.rows is None or not self.rows.visible:
            return None
        return self.rows.span_id(self.rows.pos_of_row(self.cursor))

    def action_cursor(self, delta: int) -> None:
        if self.rows is not None and self.rows.visible:
            self.cursor = max(0, min(self.rows.visible - 1, self.cursor + delta))

    def action_page(self, delta: int) -> None:
        self.action_cursor(delta * max(1, self.scrollable_content_region.height - 2))

    def action_edge(self, end: int) -> None:
        if self.rows is not None and self.rows.visible:
            self.cursor = self.rows.visible - 1 if end else 0

    def _refold(self, pos_to_keep: int) -> None:
        assert self.rows is not None
        self._sync_size()
        row = self.rows.row_of_pos(pos_to_keep)
        if row is not None:
            if row == self.cursor:
                self._scroll_to_row(row)
                self.refresh()
            else:
                self.cursor = row
        self.refresh()

    def action_toggle_fold(self) -> None:
        if self.rows is None or not self.rows.visible:
            return
        pos = self.rows.pos_of_row(self.cursor)
        if self.rows.toggle(pos):
            self._refold(pos)

    def action_fold_or_parent(self) -> None:
        if self.rows is None or not self.rows.visible:
            return
        pos = self.rows.pos_of_row(self.cursor)
        if self.rows.descendants(pos) and not self.rows.is_folded(pos):
            self.rows.fold(pos)
            self._refold(pos)
            return
        parent = self.rows.parent(pos)
        if parent is not None:
            row = self.rows.row_of_pos(parent)
            if row is not None:
                self.cursor = row

    def action_unfold_or_child(self) -> None:
        if self.rows is None or not self.rows.visible:
            return
        pos = self.rows.pos_of_row(self.cursor)
        if self.rows.is_folded(pos):
            self.rows.unfold(pos)
            self._refold(pos)
        elif self.rows.descendants(pos):
            self.action_cursor(1)

    def action_fold_level(self) -> None:
        """Fold every span one level under the roots (the agent steps of a workflow)."""
        if self.rows is None or not self.rows.visible:
            return
        keep = self.rows.pos_of_row(self.cursor)
        self.rows.fold_depth(1)
        while self.rows.row_of_pos(keep) is None:
            parent = self.rows.parent(keep)
            if parent is None:
                break
            keep = parent
        self._refold(keep)

    def action_unfold_all(self) -> None:
        if self.rows is None or not self.rows.visible:
            return
        keep = self.rows.pos_of_row(self.cursor)
        self.rows.unfold_all()
        self._refold(keep)

    # -- finding spans: errors and searches, over the whole run ---------------------------

    def action_copy(self) -> None:
        sid = self.cursor_span
        if sid is not None:
            app: Any = self.app
            app.copy_text(sid, "the span id")

    def action_next_error(self) -> None:
        """Go to the next span with an error status after the cursor (wrapping), wherever it is."""
        if self._errors is None:
            self._find(None, errors=True)
        else:
            self._jump(self._errors, 1)

    def search(self, text: str) -> None:
        """Find spans whose name, agent or operation contains ``text``; go to the first match."""
        self.query_text = text.strip()
        if not self.query_text:
            self.matches = []
            self.border_subtitle = ""
            return
        self._find(self.query_text, errors=False)

    def action_next_match(self, step: int) -> None:
        if self.matches:
            self._jump(self.matches, step)
        elif self.query_text:
            self.app.bell()

    @work(
        thread=True, exclusive=True, group="waterfall-find", exit_on_error=False, description="find"
    )
    def _find(self, text: str | None, *, errors: bool) -> None:
        ids = self.store.find_spans(self.run_id, text=text, errors=errors)
        self.post_message(self.Found(text, errors, ids, self._generation))

    class Found(Message):
        def __init__(self, text: str | None, errors: bool, ids: list[str], generation: int) -> None:
            super().__init__()
            self.text = text
            self.errors = errors
            self.ids = ids
            self.generation = generation

    def on_waterfall_found(self, message: Found) -> None:
        message.stop()
        if self._tree is None or message.generation != self._generation:
            return
        positions = positions_of(self._tree, message.ids)
        if message.errors:
            self._errors = positions
        elif message.text == self.query_text:
            self.matches = positions
        else:
            return
        if not positions:
            self.border_subtitle = (
                "no errors" if message.errors else f"nothing matches {message.text!r}"
            )
            self.app.bell()
            return
        self._jump(positions, 1)

    def _jump(self, positions: list[int], step: int) -> None:
        if self.rows is None or not positions:
            return
        here = self.rows.pos_of_row(self.cursor) if self.rows.visible else -1
        if step > 0:
            i = bisect.bisect_right(positions, here)
            i = 0 if i >= len(positions) else i
        else:
            i = bisect.bisect_left(positions, here) - 1
            i = len(positions) - 1 if i < 0 else i
        self.select_span(self.rows.span_id(positions[i]))
        what = "error" if positions is self._errors else f"match for {self.query_text!r}"
        self.border_subtitle = f"{what} {i + 1} of {len(positions)}"

    def select_span(self, span_id: str) -> bool:
        """Put the cursor on ``span_id``, unfolding what hides it; False when it is not in the run."""
        if self.rows is None or self._tree is None:
            self._pending_select = span_id
            return False
        pos = find_position(self._tree, span_id)
        if pos is None:
            return False
        self.rows.reveal(pos)
        self._sync_size()
        row = self.rows.row_of_pos(pos)
        if row is None:
            return False
        height = max(1, self.scrollable_content_region.height - 1)
        self.scroll_to(y=max(0, row - height // 3), animate=False, immediate=True)
        if self.cursor == row:
            self._announce()
            self.refresh()
        else:
            self.cursor = row
        return True

    def set_marks(
        self,
        *,
        versions: Mapping[str, tuple[int, ...]] | None = None,
        findings: frozenset[str] | None = None,
        current: str | None = None,
    ) -> None:
        if versions is not None or findings is not None:
            if versions is not None:
                self.version_marks = versions
            if findings is not None:
                self.finding_spans = findings
            self.current_span = current
            self.refresh()
            return
        if current == self.current_span:
            return
        # Stepping a version moves the highlight: repaint the two rows concerned, not the pane.
        before, self.current_span = self.current_span, current
        for y, sid in self._visible_ids():
            if sid in (before, current):
                self.refresh_line(y)

    def _visible_ids(self) -> list[tuple[int, str]]:
        """(line, span id) of the rows on screen (line 0 is the axis)."""
        if self.rows is None:
            return []
        top = int(self.scroll_offset.y)
        height = self.scrollable_content_region.height - 1
        return [
            (i + 1, self.rows.span_id(pos))
            for i, pos in enumerate(self.rows.positions(top, height))
        ]

    def on_click(self, event: events.Click) -> None:
        if self.rows is None or event.y < 1:
            return
        row = int(self.scroll_offset.y) + event.y - 1
        if 0 <= row < self.rows.visible:
            pos = self.rows.pos_of_row(row)
            marker_x = 2 * min(self.rows.depth(pos), 12)
            self.cursor = row
            if marker_x <= event.x <= marker_x + 1 and self.rows.descendants(pos):
                self.action_toggle_fold()

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()
