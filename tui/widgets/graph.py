"""The coordination graph pane: agents and topics in boxes, edges with counts and outcomes.

The layout is computed once per run in a thread worker (``tui._graph_draw``);
stepping a version only repaints it with another agent and edge highlighted,
which is a few thousand cell writes. A picture wider than the pane is drawn
narrow when that fits better (outcome marks without counts, unused edges
hidden: ``narrow_graph``); what is still larger scrolls, and the highlighted
agent is scrolled into view.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import ClassVar

from rich.segment import Segment
from textual.binding import Binding, BindingType
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from .._data import GraphData, narrow_graph
from .._graph_draw import Picture, paint
from ._lines import RoleStyles

LEGEND = (
    "✗ failed  ⊘ rejected  ↺ compensated  ϟ breaker open  ↯ lost  ≡ duplicate  ╌ declared, unused"
)


class CoordinationGraph(RoleStyles, ScrollView, can_focus=True):
    """Draws a :class:`GraphData`; ``highlight`` marks the current agent(s) and edge(s)."""

    data: GraphData | None
    selected: str | None
    focused_on: str | None
    topics_folded: bool | None  # decided on the first data (folded if that fits), then `t`
    _full: GraphData | None

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "scroll_up", "Up", show=False),
        Binding("down,j", "scroll_down", "Down", show=False),
        Binding("left,h", "scroll_left", "Left", show=False),
        Binding("right,l", "scroll_right", "Right", show=False),
        Binding("home", "scroll_home_x", "Left end", show=False),
        Binding("end", "scroll_end_x", "Right end", show=False),
        Binding("a", "select(1)", "Agent"),
        Binding("A", "select(-1)", "Prev agent", show=False),
        Binding("o", "focus_mode", "Focus"),
        Binding("t", "topics", "Topics", show=False),
        Binding("enter", "choose", "Spans"),
    ]

    class AgentChosen(Message):
        """The user picked an agent (Enter): the screen filters the waterfall to it."""

        def __init__(self, agent: str | None) -> None:
            super().__init__()
            self.agent = agent

    def action_scroll_home_x(self) -> None:
        self.scroll_to(x=0, animate=False)

    def action_scroll_end_x(self) -> None:
        self.scroll_to(x=self.max_scroll_x, animate=False)

    def _agents(self) -> list[str]:
        """The agents (not topics) in reading order: left to right, then top to bottom."""
        full = self._full
        if full is None or full.layout is None:
            return []
        boxes = [
            (b.x, b.y, name)
            for name, b in full.layout.boxes.items()
            if b.kind != "topic" and not b.dummy
        ]
        return [name for _, _, name in sorted(boxes)]

    def action_select(self, step: int) -> None:
        agents = self._agents()
        if not agents:
            self.app.bell()
            return
        i = agents.index(self.selected) + step if self.selected in agents else 0
        self.selected = agents[i % len(agents)]
        if self.focused_on is not None:
            self._set_focus(self.selected)
        self._repaint()
        self.call_after_refresh(self._scroll_to_highlight)
        self.border_subtitle = f"{self.selected}  enter: its spans · o: its edges only"

    def action_focus_mode(self) -> None:
        """Only the selected agent's edges (and the agents they reach), or the whole graph."""
        if self.focused_on is not None:
            self._set_focus(None)
        elif self.selected is not None:
            self._set_focus(self.selected)
        else:
            self.app.bell()
            return
        self._repaint()
        self._fit()

    def _set_focus(self, node: str | None) -> None:
        from .._data import focus_graph

        self.focused_on = node
        if self._full is None:
            return
        self.data = self._shown_graph() if node is None else focus_graph(self._full, node)
        self.scroll_to(0, 0, animate=False)

    def action_topics(self) -> None:
        """Topics drawn as boxes, or folded into agent-to-agent edges (when there are any)."""
        self.topics_folded = not self.topics_folded
        if self.focused_on is None and self._full is not None:
            self.data = self._shown_graph()
            self._repaint()
            self._fit()

    def _shown_graph(self) -> GraphData | None:
        full = self._full
        if full is not None and self.topics_folded and full.compact is not None:
            return full.compact
        return full

    def action_choose(self) -> None:
        self.post_message(self.AgentChosen(self.selected))

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.data = None
        self.picture: Picture | None = None
        self.nodes: frozenset[str] = frozenset()
        self.edges: frozenset[int] = frozenset()
        self.note = "loading the coordination graph…"
        self.first_paint: float | None = None  # perf_counter() when the graph was first drawn
        self._fill = False
        # The whole graph (``data`` may be a focus on one agent, or topics folded).
        self._full: GraphData | None = None
        self._narrow: dict[int, tuple[GraphData, GraphData]] = {}
        self.selected: str | None = None  # the agent picked with a / A
        self.focused_on: str | None = None
        self.topics_folded = None

    def set_data(self, data: GraphData) -> None:
        self._full = data
        self.note = data.note
        if self.topics_folded is None:
            # Topics folded when the whole picture is wider than the pane and the folded one
            # is narrower (the hybrid saga: 8 boxes in a row become 4); `t` switches.
            width = self.scrollable_content_region.width or self.size.width
            full_w = data.layout.width if data.layout else 0
            compact = data.compact.layout if data.compact and data.compact.layout else None
            self.topics_folded = bool(compact and full_w > width and compact.width < full_w)
        self.data = self._shown_graph()
        if self.focused_on is not None:
            self._set_focus(self.focused_on)
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
        if self.data is not self._full and self._full is not None and self._full.layout:
            # Indices are the whole graph's: find the same edges (by their spans) in the one
            # shown (a focus, or topics folded).
            spans = {s for e in self._full.layout.edges if e.index in edges for s in e.span_ids}
            lay = self.data.layout if self.data is not None else None
            edges = frozenset(e.index for e in lay.edges if e.span_ids & spans) if lay else edges
        if (nodes, edges) == (self.nodes, self.edges) and self.picture is not None:
            return
        self.nodes, self.edges = nodes, edges
        self._repaint()
        self.call_after_refresh(self._scroll_to_highlight)

    def _scroll_to_highlight(self) -> None:
        if self.picture is not None:
            wanted = [self.selected] if self.selected else self.nodes
            boxes = [self.picture.boxes[n] for n in wanted if n in self.picture.boxes]
            if boxes:
                x, y, w, h = min(boxes)
                self.scroll_to_region(Region(x, y, w, h), animate=False, immediate=True)

    def _fitted(self) -> GraphData | None:
        """What is drawn: ``data``, or its narrow drawing (``narrow_graph``) when ``data`` is
        wider than the pane and the narrow one is narrower."""
        view = self.data
        width = self.scrollable_content_region.width or self.size.width
        if view is None or view.layout is None or not width or view.layout.width <= width:
            return view
        key = id(view)
        if key not in self._narrow:
            self._narrow = {key: (view, narrow_graph(view))}  # kept alive with its key
        narrow = self._narrow[key][1]
        if narrow.layout is None or narrow.layout.width >= view.layout.width:
            return view
        return narrow

    def _repaint(self) -> None:
        shown = self._fitted()
        if shown is None or shown.layout is None:
            self.picture = None
            self.virtual_size = Size(0, 1)
        else:
            nodes = self.nodes | ({self.selected} if self.selected else set())
            edges = self.edges
            if shown is not self.data and self.data is not None and self.data.layout:
                # The narrow drawing has fewer edges: the same ones, found by their spans.
                spans = {s for e in self.data.layout.edges if e.index in edges for s in e.span_ids}
                edges = frozenset(e.index for e in shown.layout.edges if e.span_ids & spans)
            self.picture = paint(shown.layout, nodes=nodes, edges=edges)
            self.virtual_size = Size(self.picture.width, self.picture.height)
        self.refresh()

    def on_resize(self) -> None:
        # A narrower or wider pane may want the other drawing.
        if self.data is not None and self.data.layout is not None:
            before = self.picture.width if self.picture is not None else None
            self._repaint()
            if self.picture is not None and self.picture.width != before:
                self._fit()

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
