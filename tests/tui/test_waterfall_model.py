"""Folding over a span tree, checked against a plain reference; row rendering."""

from __future__ import annotations

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.cells import cell_len

from tui._waterfall_model import RowSpan, TreeRows, render_row


def _tree(parents: list[int]) -> pa.Table:
    """A DFS-ordered tree table from ``parents[i]`` (the parent of node i+1, an index < i+1)."""
    children: dict[int, list[int]] = {}
    for child, parent in enumerate(parents, start=1):
        children.setdefault(parent, []).append(child)
    order: list[tuple[int, int]] = []

    def walk(n: int, d: int) -> int:
        order.append((n, d))
        return 1 + sum(walk(c, d + 1) for c in children.get(n, []))

    sizes: dict[int, int] = {}

    def size(n: int) -> int:
        sizes[n] = sum(size(c) + 1 for c in children.get(n, []))
        return sizes[n]

    walk(0, 0)
    size(0)
    return pa.table({
        "span_id": [f"s{n:04d}" for n, _ in order],
        "depth": pa.array([d for _, d in order], pa.int32()),
        "descendants": pa.array([sizes[n] for n, _ in order], pa.int32()),
    })  # fmt: skip


def _reference(tree: pa.Table, folded: set[int]) -> list[int]:
    """Visible positions by a plain walk: a folded node hides its descendants."""
    desc = tree.column("descendants").to_pylist()
    visible, skip_until = [], -1
    for p in range(len(desc)):
        if p < skip_until:
            continue
        visible.append(p)
        if p in folded:
            skip_until = p + 1 + desc[p]
    return visible


trees = st.lists(st.integers(min_value=0, max_value=10_000), min_size=0, max_size=60).map(
    lambda xs: [x % (i + 1) for i, x in enumerate(xs)]
)


@settings(max_examples=200, deadline=None)
@given(parents=trees, fold_picks=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
def test_rows_match_a_plain_walk_whatever_is_folded(
    parents: list[int], fold_picks: list[int]
) -> None:
    tree = _tree(parents)
    rows = TreeRows(tree)
    folded: set[int] = set()
    for pick in fold_picks:
        pos = pick % rows.total
        if rows.toggle(pos):
            folded.symmetric_difference_update({pos})
    assert folded == {p for p in range(rows.total) if rows.is_folded(p)}
    visible = _reference(tree, folded)
    assert rows.visible == len(visible)
    assert rows.positions(0, rows.visible) == visible
    for row, pos in enumerate(visible):
        assert rows.row_of_pos(pos) == row
    hidden = set(range(rows.total)) - set(visible)
    assert all(rows.row_of_pos(p) is None for p in hidden)


@settings(max_examples=100, deadline=None)
@given(parents=trees.filter(bool), pick=st.integers(min_value=0, max_value=10_000))
def test_reveal_unfolds_exactly_the_ancestors(parents: list[int], pick: int) -> None:
    rows = TreeRows(_tree(parents))
    rows.fold_depth(0)
    pos = pick % rows.total
    rows.reveal(pos)
    assert rows.row_of_pos(pos) is not None
    # Its ancestors are unfolded, and parent() walks up to the root.
    p, seen = rows.parent(pos), 0
    while p is not None:
        assert not rows.is_folded(p)
        assert rows.depth(p) < rows.depth(pos)
        p, seen = rows.parent(p), seen + 1
    assert seen == rows.depth(pos)


def test_fold_and_unfold_all() -> None:
    rows = TreeRows(_tree([0, 0, 1, 1, 2, 0]))
    assert rows.visible == 7
    rows.fold_depth(1)
    assert rows.visible == 4  # the root and its three children
    rows.unfold_all()
    assert rows.visible == 7
    assert not rows.fold(3)  # a leaf cannot fold
    assert rows.position_of("s0005") == rows.positions(0, 7).index(rows.position_of("s0005"))


def _span(
    start: int, end: int, status: str = "OK", kind: str = "INTERNAL", name: str = "step"
) -> RowSpan:
    return RowSpan("ab", name, kind, start, end, status, "agent")


def test_a_row_fills_its_width_and_places_its_bar_on_the_axis() -> None:
    for width in (30, 61, 120):
        runs = render_row(_span(500, 750), depth=2, has_children=True, folded=False, width=width,
                          tree_width=width // 2, t0=0, t1=1000)  # fmt: skip
        assert sum(cell_len(t) for t, _ in runs) == width
    runs = render_row(_span(500, 750), depth=0, has_children=False, folded=False, width=100,
                      tree_width=40, t0=0, t1=1000)  # fmt: skip
    line = "".join(t for t, _ in runs)
    bar_area = line[50:]  # tree 40 + duration 10
    first, last = bar_area.index("━"), bar_area.rindex("━")
    assert first == 25 and last == 37  # 500..750 of 1000 over 50 cells: cells 25..37


def test_errors_stand_out_and_marks_show() -> None:
    runs = render_row(_span(0, 10, status="ERROR", name="boom"), depth=1, has_children=False,
                      folded=False, width=80, tree_width=40, t0=0, t1=10, marks=["v3", "⚑"])  # fmt: skip
    roles = dict((t.strip(), r) for t, r in runs if t.strip())
    assert roles["boom"] == "name.error"
    assert any(r == "bar.error" for _, r in runs)
    assert roles["v3 ⚑"] == "mark"


def test_a_folded_node_shows_a_closed_marker_and_a_missing_span_a_placeholder() -> None:
    folded = "".join(t for t, _ in render_row(_span(0, 1), depth=0, has_children=True, folded=True,
                                               width=60, tree_width=30, t0=0, t1=1))  # fmt: skip
    assert folded.startswith("▸ ")
    pending = render_row(
        None, depth=1, has_children=False, folded=False, width=60, tree_width=30, t0=0, t1=1
    )
    assert sum(cell_len(t) for t, _ in pending) == 60 and "…" in "".join(t for t, _ in pending)


def test_long_and_markup_names_are_clipped_as_text() -> None:
    name = "[bold red]" + "x" * 100
    runs = render_row(_span(0, 1, name=name), depth=0, has_children=False, folded=False, width=60,
                      tree_width=30, t0=0, t1=1)  # fmt: skip
    text = "".join(t for t, _ in runs)
    assert "[bold red]" in text and "…" in text
