"""The waterfall's rows without the spans: folding over a run's span tree, and row rendering.

:class:`TreeRows` holds only what :meth:`tracer.Store.span_tree` returns (span id,
depth, descendants in depth-first order, as Arrow) and maps visible rows to tree
positions while subtrees are folded. It never holds names or times: the widget
fetches those a page at a time. Folding is kept as the sorted list of hidden
position ranges of the outermost folded nodes, with a prefix sum, so mapping a row
is a binary search whatever the size of the run.

:func:`render_row` turns one span into (text, role) runs for a given width: the
tree column, the duration and a bar on the run's time axis. Pure; tests call it
directly.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from rich.cells import cell_len

from ._text import clip, fmt_duration

__all__ = [
    "RowSpan",
    "TreeRows",
    "axis_ticks",
    "extra_columns",
    "fmt_tokens",
    "nice_step",
    "render_row",
]


class TreeRows:
    """Visible rows of a depth-first span tree with some subtrees folded.

    ``tree`` has columns ``span_id``, ``depth``, ``descendants`` (see
    ``Store.span_tree``). Positions index the fully expanded tree; rows index what
    is visible. Not thread-safe: the widget owns it on the UI thread.
    """

    def __init__(self, tree: pa.Table) -> None:
        self._ids = tree.column("span_id").combine_chunks()
        # Plain Python sequences over the Arrow buffers: one int per span, no objects.
        self._depth = _int_view(tree.column("depth"))
        self._desc = _int_view(tree.column("descendants"))
        self.total = len(self._depth)
        self._folded: set[int] = set()
        self._starts: list[int] = []  # first hidden position of each outermost folded node
        self._ends: list[int] = []  # one past its last hidden position
        self._keys: list[int] = []  # row at which each hidden range begins
        self._prefix: list[int] = [0]  # hidden positions before range i
        self._index: dict[str, int] | None = None

    # -- reading ---------------------------------------------------------------------------

    @property
    def visible(self) -> int:
        return self.total - self._prefix[-1]

    def span_id(self, pos: int) -> str:
        return str(self._ids[pos].as_py())

    def depth(self, pos: int) -> int:
        return self._depth[pos]

    def descendants(self, pos: int) -> int:
        return self._desc[pos]

    def is_folded(self, pos: int) -> bool:
        return pos in self._folded

    def position_of(self, span_id: str) -> int | None:
        """The tree position of ``span_id`` (an index built on first use: one pass over the ids)."""
        if self._index is None:
            self._index = {sid: i for i, sid in enumerate(self._ids.to_pylist())}
        return self._index.get(span_id)

    def pos_of_row(self, row: int) -> int:
        """The tree position shown at visible ``row``."""
        if not 0 <= row < self.visible:
            raise IndexError(row)
        i = bisect.bisect_right(self._keys, row)
        return row + self._prefix[i]

    def row_of_pos(self, pos: int) -> int | None:
        """The visible row of tree position ``pos``, or None while it is folded away."""
        i = bisect.bisect_right(self._starts, pos) - 1
        if i >= 0 and pos < self._ends[i]:
            return None
        return pos - self._prefix[i + 1]

    def parent(self, pos: int) -> int | None:
        """The position of ``pos``'s parent (None for a root)."""
        d = self._depth[pos]
        p = pos - 1
        while p >= 0:
            if self._depth[p] < d:
                return p
            p -= 1
        return None

    def positions(self, first_row: int, count: int) -> list[int]:
        """Positions of visible rows ``first_row .. first_row + count - 1`` (clipped)."""
        out = []
        last = min(self.visible, first_row + count)
        for row in range(max(0, first_row), last):
            out.append(self.pos_of_row(row))
        return out

    # -- folding ---------------------------------------------------------------------------

    def fold(self, pos: int) -> bool:
        """Fold the subtree under ``pos``; False when it has no children or is folded."""
        if self._desc[pos] == 0 or pos in self._folded:
            return False
        self._folded.add(pos)
        self._rebuild()
        return True

    def unfold(self, pos: int) -> bool:
        if pos not in self._folded:
            return False
        self._folded.discard(pos)
        self._rebuild()
        return True

    def toggle(self, pos: int) -> bool:
        return self.unfold(pos) or self.fold(pos)

    def reveal(self, pos: int) -> None:
        """Unfold every folded ancestor of ``pos`` so that it has a row."""
        changed = False
        for f in list(self._folded):
            if f < pos <= f + self._desc[f]:
                self._folded.discard(f)
                changed = True
        if changed:
            self._rebuild()

    def fold_depth(self, depth: int) -> None:
        """Fold every node at ``depth`` that has children (unfolding everything else)."""
        self._folded = {
            i for i in range(self.total) if self._depth[i] == depth and self._desc[i] > 0
        }
        self._rebuild()

    def unfold_all(self) -> None:
        self._folded.clear()
        self._rebuild()

    def _rebuild(self) -> None:
        starts: list[int] = []
        ends: list[int] = []
        for f in sorted(self._folded):
            if ends and f < ends[-1]:
                continue  # inside a range already hidden by an outer fold
            starts.append(f + 1)
            ends.append(f + 1 + self._desc[f])
        prefix = [0]
        keys = []
        for a, b in zip(starts, ends, strict=True):
            keys.append(a - prefix[-1])
            prefix.append(prefix[-1] + (b - a))
        self._starts, self._ends, self._keys, self._prefix = starts, ends, keys, prefix


def _int_view(column: pa.ChunkedArray | pa.Array) -> Any:
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    arr = arr.cast(pa.int32())
    if arr.null_count:
        arr = arr.fill_null(0)
    if len(arr) == 0:
        return memoryview(b"").cast("i")
    data = arr.buffers()[1]
    assert data is not None
    return memoryview(data).cast("i")[arr.offset : arr.offset + len(arr)]


@dataclass(frozen=True, slots=True)
class RowSpan:
    """The light columns of one span, as a waterfall row needs them."""

    span_id: str
    name: str
    kind: str
    start_ns: int
    end_ns: int
    status_code: str
    agent: str | None
    label: str | None = None  # agent, llm, tool, guardrail, message... (tui._llm.span_kind)
    model: str | None = None
    tokens: tuple[int, int] | None = None  # (input, output)
    events: tuple[int, ...] = ()  # event times: marks on the bar

    @classmethod
    def rows_of(cls, table: pa.Table) -> dict[str, RowSpan]:
        out = {}
        for r in table.to_pylist():
            out[r["span_id"]] = cls(
                r["span_id"],
                r["name"],
                r["kind"],
                r["start_ns"],
                r["end_ns"],
                r["status_code"],
                r["agent"],
            )
        return out


_NICE = (1, 2, 5)


def nice_step(total_ns: int, cells: int, *, every: int = 14) -> int:
    """A round tick step (1, 2 or 5 times a power of ten, in ns) putting a tick about every
    ``every`` cells on an axis ``cells`` wide for ``total_ns``."""
    want = max(1, total_ns * every // max(1, cells))
    power = 1
    while True:
        for m in _NICE:
            if m * power >= want:
                return m * power
        power *= 10


def axis_ticks(t0: int, t1: int, width: int, *, every: int = 14) -> list[tuple[int, str]]:
    """Tick positions and labels (round times since ``t0``) for a bar area ``width`` cells wide."""
    total = max(1, t1 - t0)
    step = nice_step(total, width, every=every)
    out = []
    t = 0
    while t < total:
        out.append((t * width // total, fmt_duration(t)))
        t += step
    return out


def fmt_tokens(n: int) -> str:
    """Tokens, short: ``950``, ``12.3k``, ``1.2M``."""
    if n < 1_000:
        return str(n)
    if n < 1_000_000:
        return f"{n / 1_000:.1f}k"
    return f"{n / 1_000_000:.1f}M"


# Kinds in the 6 cells of their column.
_SHORT_KINDS = {
    "workflow": "flow", "message": "msg", "guardrail": "guard", "retriever": "retr",
    "handoff": "hand",
}  # fmt: skip

# Columns beside the name, by width: (name, cells); the widget picks those that fit.
EXTRA_COLUMNS = (("kind", 7), ("model", 17), ("tokens", 11))


def extra_columns(width: int) -> tuple[tuple[str, int], ...]:
    """The columns a waterfall ``width`` cells wide shows: kind from 76, model from 110,
    tokens from 130 (the names keep 30 cells or more, the bars a third of the width)."""
    keep: tuple[tuple[str, int], ...] = ()
    for (name, w), at in zip(EXTRA_COLUMNS, (76, 110, 130), strict=True):
        if width >= at:
            keep += ((name, w),)
    return keep


BAR = "━"
EVENT = "◆"


def render_row(
    span: RowSpan | None,
    *,
    depth: int,
    has_children: bool,
    folded: bool,
    width: int,
    tree_width: int,
    t0: int,
    t1: int,
    marks: Iterable[str] = (),
    columns: tuple[tuple[str, int], ...] = (),
) -> list[tuple[str, str]]:
    """One waterfall row as (text, role) runs that fill ``width`` cells exactly.

    Roles: ``tree`` (guides and fold marker), ``name``, ``name.error``, ``mark``
    (version and finding badges), ``dur``, ``bar``, ``bar.error``, ``bar.producer``,
    ``bar.consumer``, ``axis`` (the empty part of the bar area), ``kind``, ``key``
    (model), ``num`` (tokens). ``columns`` (from :func:`extra_columns`) come out of the
    tree column's width. ``span`` None renders a placeholder while its page loads.
    """
    indent = "  " * min(depth, 12)
    marker = ("▸ " if folded else "▾ ") if has_children else "  "
    head = indent + marker
    badge = " ".join(marks)
    runs: list[tuple[str, str]] = [(head, "tree")]
    extra_w = sum(w for _, w in columns)
    name_room = max(0, tree_width - extra_w - cell_len(head))
    if span is None:
        runs.append((clip("…", name_room).ljust(name_room), "tree"))
    else:
        error = span.status_code == "ERROR"
        badge_text = f" {badge}" if badge else ""
        name = clip(span.name, max(1, name_room - cell_len(badge_text)))
        runs.append((name, "name.error" if error else "name"))
        if badge_text:
            runs.append((badge_text, "mark"))
        pad = name_room - cell_len(name) - cell_len(badge_text)
        if pad > 0:
            runs.append((" " * pad, "name"))
    for col, w in columns:
        text, role = "", "dim"
        if span is not None and col == "kind":
            text, role = _SHORT_KINDS.get(span.label or "", span.label or ""), "kind"
        elif span is not None and col == "model":
            text, role = span.model or "", "key"
        elif span is not None and col == "tokens" and span.tokens:
            text, role = f"{fmt_tokens(span.tokens[0])}/{fmt_tokens(span.tokens[1])}", "num"
        cell = clip(text, w - 1)
        runs.append(((" " + cell).ljust(w) if col != "tokens" else cell.rjust(w - 1) + " ", role))
    dur_w = 10
    rest = width - tree_width
    if rest <= 0:
        return _fit(runs, width)
    dur = fmt_duration(span.end_ns - span.start_ns) if span else ""
    runs.append((dur.rjust(dur_w - 1)[: dur_w - 1] + " ", "dur"))
    bar_w = rest - dur_w
    if bar_w > 0:
        if span is None:
            runs.append((" " * bar_w, "axis"))
        else:
            total = max(1, t1 - t0)
            a = (span.start_ns - t0) * bar_w / total
            b = (span.end_ns - t0) * bar_w / total
            x0 = min(bar_w - 1, max(0, int(a)))
            x1 = min(bar_w, max(x0 + 1, round(b)))
            role = (
                "bar.error"
                if span.status_code == "ERROR"
                else "bar.producer"
                if span.kind == "PRODUCER"
                else "bar.consumer"
                if span.kind == "CONSUMER"
                else "bar"
            )
            if x0:
                runs.append((" " * x0, "axis"))
            bar = BAR * (x1 - x0)
            if span.events:
                # Each event a mark on the bar, where it happened.
                cells = list(bar)
                for t in span.events:
                    x = min(x1 - 1, max(x0, int((t - t0) * bar_w / total)))
                    cells[x - x0] = EVENT
                bar = "".join(cells)
            runs.append((bar, role))
            if bar_w - x1:
                runs.append((" " * (bar_w - x1), "axis"))
    return _fit(runs, width)


def _fit(runs: list[tuple[str, str]], width: int) -> list[tuple[str, str]]:
    out = []
    used = 0
    for text, role in runs:
        if used >= width:
            break
        w = cell_len(text)
        if used + w > width:
            text = clip(text, width - used) if width - used > 1 else text[: width - used]
            w = cell_len(text)
        out.append((text, role))
        used += w
    if used < width:
        out.append((" " * (width - used), "axis"))
    return out
