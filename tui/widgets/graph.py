"""The coordination graph pane: agents and topics in boxes, edges with counts and outcomes.

The layout is computed once per run in a thread worker (``tui._graph_draw``);
stepping a version only repaints it with another agent and edge highlighted,
which is a few thousand cell writes. The picture may be larger than the pane:
it scrolls, and the highlighted agent is scrolled into view.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import ClassVar

from rich.segment import Segment
from textual.binding import Binding, BindingType
from textual.geometry import Region, Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from .._data import GraphData
from .._graph_draw import Picture, paint
from ._lines import RoleStyles

LEGEND = (
    "✗ failed  ⊘ rejected  ↺ compensated  ϟ breaker open  ↯ lost  ≡ duplicate  ╌ declared, unused"
)


class CoordinationGraph(RoleStyles, ScrollView, can_focus=True):
    """Draws a :class:`GraphData`; ``highlight`` marks the current agent(s) and edge(s)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "scroll_up", "Up", show=False),
        Binding("down,j", "scroll_down", "Down", show=False),
        Binding("left,h", "scroll_left", "Left", show=False),
        Binding("right,l", "scroll_right", "Right", show=False),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.data: GraphData | None = None
        self.picture: Picture | None = None
        self.nodes: frozenset[str] = frozenset()
        self.edges: frozenset[int] = frozenset()
        self.note = "loading the coordination graph…"
        self.first_paint: float | None = None  # perf_counter() when the graph was first drawn
        self._fill = False

    def set_data(self, data: GraphData) -> None:
        self.data = data
        self.note = data.note
        self._repaint()
        self._fit()

    max_rows = 16

    @property
    def fill(self) -> bool:
        """Take the height given (zoomed, or a tab), not only the picture's."""
        return self._fill

    @fill.setter
    def fill(self, value: bool) -> None:
        if value != self._fill:
            self._fill = value
            self._fit()

    def _fit(self) -> None:
        # As tall as the picture (plus border and scrollbar), within reason: the rows it does
        # not need go to the waterfall and the state. Zoomed or a tab, it takes what it is given.
        if self._fill:
            self.styles.height = "1fr"
            return
        rows = self.picture.height if self.picture is not None else 1
        self.styles.height = max(5, min(self.max_rows, rows + 3))

    def highlight(self, nodes: Iterable[str] = (), edges: Iterable[int] = ()) -> None:
        nodes, edges = frozenset(nodes), frozenset(edges)
        if (nodes, edges) == (self.nodes, self.edges) and self.picture is not None:
            return
        self.nodes, self.edges = nodes, edges
        self._repaint()
        self.call_after_refresh(self._scroll_to_highlight)

    def _scroll_to_highlight(self) -> None:
        if self.picture is not None:
            boxes = [self.picture.boxes[n] for n in self.nodes if n in self.picture.boxes]
            if boxes:
                x, y, w, h = min(boxes)
                self.scroll_to_region(Region(x, y, w, h), animate=False, immediate=True)

    def _repaint(self) -> None:
        if self.data is None or self.data.layout is None:
            self.picture = None
            self.virtual_size = Size(0, 1)
        else:
            self.picture = paint(self.data.layout, nodes=self.nodes, edges=self.edges)
            self.virtual_size = Size(self.picture.width, self.picture.height)
        self.refresh()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self.clear_role_styles()

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.scrollable_content_region.width
        base = self.rich_style
        pic = self.picture
        if pic is None:
            if y == 0:
                return Strip([Segment(" " + self.note, self.role_style("dim"))]).crop_extend(
                    0, width, base
                )
            return Strip.blank(width, base)
        if self.first_paint is None:
            self.first_paint = time.perf_counter()
        row = scroll_y + y
        if row >= pic.height:
            return Strip.blank(width, base)
        segments = [
            Segment(text, self.role_style(role) if role else base) for text, role in pic.runs(row)
        ]
        return Strip(segments).crop_extend(scroll_x, scroll_x + width, base)
