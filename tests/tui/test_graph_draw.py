"""The coordination graph layout, on hand-built graphs and on a recorded saga."""

from __future__ import annotations

from itertools import pairwise

import networkx as nx
import pytest

from tracer import Store
from tracer.analysis import coordination_graph
from tui._graph_draw import edge_role, edges_of, layout, paint


def _chain(*names: str, **edge: object) -> nx.DiGraph:
    g = nx.DiGraph()
    for n in names:
        g.add_node(n, kind="agent")
    for a, b in pairwise(names):
        g.add_edge(
            a, b, kind="handoff", count=1, outcomes={"ok": 1}, declared=True, observed=True, **edge
        )
    return g


def _row_of(pic_text: str, needle: str) -> tuple[int, int]:
    for y, line in enumerate(pic_text.splitlines()):
        x = line.find(needle)
        if x >= 0:
            return x, y
    raise AssertionError(f"{needle!r} not drawn:\n{pic_text}")


def test_a_chain_is_drawn_left_to_right_with_arrows_and_counts() -> None:
    g = _chain("intake", "scorer", "rater")
    g.edges["intake", "scorer"]["count"] = 3
    pic = paint(layout(g))
    text = pic.text()
    xs = [_row_of(text, name)[0] for name in ("intake", "scorer", "rater")]
    assert xs == sorted(xs) and len(set(xs)) == 3
    # One arrowhead per edge, each just left of a box's border, on the box's row.
    assert text.count("▶") == 2
    assert "×3" in text and "×1" in text
    for name in ("scorer", "rater"):
        x, y = pic.boxes[name][0], pic.boxes[name][1]
        rows = range(y, y + pic.boxes[name][3])
        assert any(pic.chars[r][x - 1] == "▶" for r in rows)


def test_boxes_never_overlap_and_lines_never_cross_a_box() -> None:
    g = _chain("a", "b", "c", "d")
    g.add_edge("a", "d", kind="handoff", count=2, outcomes={}, declared=True, observed=True)
    g.add_edge("a", "c", kind="handoff", count=1, outcomes={}, declared=True, observed=True)
    g.add_edge("b", "d", kind="handoff", count=1, outcomes={}, declared=True, observed=True)
    pic = paint(layout(g))
    cells: set[tuple[int, int]] = set()
    for x, y, w, h in pic.boxes.values():
        box = {(i, j) for i in range(x, x + w) for j in range(y, y + h)}
        assert not box & cells
        cells |= box
        # The inside of a box holds only its label and blanks: no line passes through it.
        for j in range(y + 1, y + h - 1):
            inside = "".join(pic.chars[j][x + 1 : x + w - 1])
            assert not set(inside) & set("─│┼┬┴├┤╌┆▶◀"), inside


def test_a_cycle_is_drawn_with_a_backwards_arrow() -> None:
    g = _chain("orchestrator", "worker")
    g.add_edge(
        "worker",
        "orchestrator",
        kind="compensate",
        count=1,
        outcomes={"ok": 1},
        declared=False,
        observed=True,
    )
    lay = layout(g)
    text = paint(lay).text()
    assert "▶" in text and "◀" in text
    assert "↺" in text  # compensate edges say so in their label
    back = next(e for e in lay.edges if e.kind == "compensate")
    assert edge_role(back) == "edge.compensate"


def test_roles_follow_outcomes_and_declarations() -> None:
    g = nx.MultiDiGraph()
    for n in "abcdef":
        g.add_node(n, kind="agent")
    g.add_edge(
        "a",
        "b",
        key="handoff",
        kind="handoff",
        count=2,
        outcomes={"ok": 1, "failed": 1},
        declared=True,
        observed=True,
    )
    g.add_edge(
        "a",
        "c",
        key="handoff",
        kind="handoff",
        count=1,
        outcomes={"rejected": 1},
        declared=True,
        observed=True,
    )
    g.add_edge(
        "a",
        "d",
        key="handoff",
        kind="handoff",
        count=1,
        outcomes={"breaker_open": 1},
        declared=True,
        observed=True,
    )
    g.add_edge(
        "a", "e", key="handoff", kind="handoff", count=0, outcomes={}, declared=True, observed=False
    )
    g.add_edge(
        "a",
        "f",
        key="handoff",
        kind="handoff",
        count=1,
        outcomes={"ok": 1},
        declared=False,
        observed=True,
    )
    roles = {e.target: edge_role(e) for e in edges_of(g)}
    assert roles == {
        "b": "edge.failed",
        "c": "edge.rejected",
        "d": "edge.breaker",
        "e": "edge.unused",
        "f": "edge",
    }
    lay = layout(g)
    pic = paint(lay)
    text = pic.text()
    assert "╌" in text  # the declared-but-unused edge is dashed
    assert "unused" in text
    # Every cell of the unused edge's label has the unused role; the failed one's the failed role.
    x, y = _row_of(text, "unused")
    assert pic.roles[y][x] == "edge.unused"
    x, y = _row_of(text, "✗1")
    assert pic.roles[y][x] == "edge.failed"


def test_highlight_marks_the_node_and_the_edge() -> None:
    g = _chain("intake", "scorer", "rater")
    lay = layout(g)
    edge = next(e.index for e in lay.edges if e.target == "rater")
    plain = paint(lay)
    lit = paint(lay, nodes=["scorer"], edges=[edge])
    x, y, _, _ = lit.boxes["scorer"]
    assert lit.roles[y][x] == "node.hl" and plain.roles[y][x] == "node"
    hl_cells = sum(r == "edge.hl" for row in lit.roles for r in row)
    assert hl_cells > 3 and all(r != "edge.hl" for row in plain.roles for r in row)
    assert lit.text() == plain.text()  # highlighting changes styles, never the drawing


def test_parallel_edges_of_a_multigraph_each_get_their_own_line() -> None:
    g = nx.MultiDiGraph()
    g.add_node("a", kind="agent")
    g.add_node("b", kind="agent")
    g.add_edge(
        "a", "b", key="handoff", kind="handoff", count=1, outcomes={}, declared=True, observed=True
    )
    g.add_edge(
        "a",
        "b",
        key="compensate",
        kind="compensate",
        count=4,
        outcomes={},
        declared=False,
        observed=True,
    )
    text = paint(layout(g)).text()
    assert text.count("▶") == 2
    assert "×1" in text and "×4" in text


def test_topics_have_rounded_boxes_and_self_loops_a_badge() -> None:
    g = nx.DiGraph()
    g.add_node("scorer", kind="agent", outcomes={"ok": 2, "failed": 1})
    g.add_node("scores", kind="topic")
    g.add_edge(
        "scorer", "scores", kind="publish", count=2, outcomes={}, declared=True, observed=True
    )
    g.add_edge(
        "scorer", "scorer", kind="handoff", count=2, outcomes={}, declared=False, observed=True
    )
    lay = layout(g)
    pic = paint(lay)
    x, y, w, h = pic.boxes["scores"]
    assert pic.chars[y][x] == "╭" and pic.chars[y + h - 1][x + w - 1] == "╯"
    assert "↻2" in pic.text() and "✗1" in pic.text()
    sx, sy, _, _ = pic.boxes["scorer"]
    assert pic.roles[sy][sx] == "node.error"


@pytest.mark.parametrize("name", ["[bold red]boom[/]", "[link=https://example.com]x[/link]"])
def test_names_are_drawn_as_written(name: str) -> None:
    g = _chain("a", name)
    assert name[:18] in paint(layout(g)).text()


def test_the_recorded_saga_draws_every_agent(
    scenario_store: tuple[Store, dict[str, list[str]]],
) -> None:
    store, runs = scenario_store
    (run_id,) = runs["trading-saga"]
    g = coordination_graph(store, run_id)
    pic = paint(layout(g))
    for node in g.nodes:
        assert node in pic.boxes
        assert str(node) in pic.text()
    assert "◀" in pic.text() or "↺" in pic.text()  # the compensations
