"""The coordination graph drawn with box-drawing characters: a pure layered layout.

:func:`layout` places a networkx graph (nodes with ``kind`` ``agent``/``topic``;
edges with ``kind``, ``count``, ``outcomes``, ``declared``, ``observed``,
``span_ids``) left to right, Sugiyama style:

1. break cycles (a DFS's back edges are drawn reversed, arrow pointing back),
2. layer by longest path, sources pulled next to their first successor,
3. a dummy node per layer an edge skips, so long edges route around boxes,
4. order each layer by barycenter sweeps, keeping the order with fewest crossings,
5. give every edge its own port row on each box side and its own track column in
   each gap, so no two edges share a line and every label sits on its edge's own
   segment.

:func:`paint` turns a :class:`Layout` into a :class:`Picture` (characters and a
role per cell) with some nodes and edges highlighted; layout runs once per graph,
paint once per version step. Lines are merged through a direction bitmask per
cell, which is what makes ``├ ┬ ┼`` junctions come out right. Roles are names
(``edge.failed``, ``node.hl``...) the widget maps to theme styles, so this module
knows no colours and no Textual, and tests read :meth:`Picture.text`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from rich.cells import cell_len

from ._text import clip

__all__ = ["EdgeInfo", "Layout", "Picture", "edge_role", "edges_of", "layout", "paint"]

MAX_NAME = 20
_N, _E, _S, _W = 1, 2, 4, 8
_LINES = {
    _E | _W: "─", _N | _S: "│", _E: "─", _W: "─", _N: "│", _S: "│",
    _E | _S: "┌", _W | _S: "┐", _N | _E: "└", _N | _W: "┘",
    _N | _S | _E: "├", _N | _S | _W: "┤", _E | _W | _S: "┬", _E | _W | _N: "┴",
    _N | _E | _S | _W: "┼",
}  # fmt: skip
_DASHED = {_E | _W: "╌", _E: "╌", _W: "╌", _N | _S: "┆", _N: "┆", _S: "┆"}

# Outcomes as one narrow symbol each, in edge labels; the widget's legend explains them.
OUTCOME_MARKS: dict[str, str] = {
    "failed": "✗",
    "timeout": "✗",
    "rejected": "⊘",
    "breaker_open": "ϟ",
    "compensated": "↺",
    "duplicate": "≡",
    "dropped": "↯",
    "lost": "↯",
    "dead_lettered": "↯",
    "nacked": "↩",
}
_FAIL = {"failed", "timeout", "dead_lettered", "dropped", "lost", "nacked"}
# When edges share a cell, the highest wins.
ROLE_PRIORITY = {
    "edge.unused": 0,
    "edge": 1,
    "edge.compensate": 2,
    "edge.rejected": 3,
    "edge.breaker": 4,
    "edge.failed": 5,
    "edge.hl": 9,
}


@dataclass(frozen=True, slots=True)
class EdgeInfo:
    """One edge of the coordination graph, whatever graph class it came from."""

    index: int
    source: str
    target: str
    kind: str
    count: int
    outcomes: Mapping[str, int]
    declared: bool
    observed: bool
    span_ids: frozenset[str]

    @property
    def terse_label(self) -> str:
        """The label in a narrow pane: what went wrong (or was undone), no counts."""
        marks = ["↺"] if self.kind == "compensate" else []
        for outcome, n in sorted(self.outcomes.items()):
            mark = OUTCOME_MARKS.get(outcome)
            if mark and n and mark not in marks:
                marks.append(mark)
        return "".join(marks)

    @property
    def label(self) -> str:
        parts = [f"×{self.count}"] if self.observed or self.count else ["unused"]
        if self.kind == "compensate":
            parts.insert(0, "↺")
        for outcome, n in sorted(self.outcomes.items()):
            mark = OUTCOME_MARKS.get(outcome)
            if mark and n and not (self.kind == "compensate" and outcome == "compensated"):
                parts.append(f"{mark}{n}")
        return " ".join(parts)


def _outcomes(value: Any) -> dict[str, int]:
    if isinstance(value, Mapping):
        return {str(k): int(v) for k, v in value.items() if isinstance(v, int | float)}
    if isinstance(value, Iterable) and not isinstance(value, str | bytes):
        out: dict[str, int] = {}
        for item in value:
            out[str(item)] = out.get(str(item), 0) + 1
        return out
    return {}


def edges_of(graph: Any) -> list[EdgeInfo]:
    """The edges of a networkx ``DiGraph`` or ``MultiDiGraph`` with their attributes read safely."""
    raw: Iterable[tuple[Any, Any, dict[str, Any]]]
    if graph.is_multigraph():
        raw = ((u, v, d) for u, v, _k, d in graph.edges(keys=True, data=True))
    else:
        raw = graph.edges(data=True)
    out = []
    for i, (u, v, d) in enumerate(raw):
        count = int(d.get("count", 0) or 0)
        observed = bool(d.get("observed", count > 0))
        spans = d.get("span_ids") or ()
        out.append(
            EdgeInfo(
                index=i,
                source=str(u),
                target=str(v),
                kind=str(d.get("kind", "handoff")),
                count=count,
                outcomes=_outcomes(d.get("outcomes")),
                declared=bool(d.get("declared", False)),
                observed=observed,
                span_ids=frozenset(str(s) for s in spans),
            )
        )
    return out


def edge_role(edge: EdgeInfo) -> str:
    """The style role of an edge: its worst outcome, or unused when only declared."""
    if not edge.observed and edge.declared:
        return "edge.unused"
    names = {k for k, n in edge.outcomes.items() if n}
    if names & _FAIL:
        return "edge.failed"
    if "breaker_open" in names:
        return "edge.breaker"
    if "rejected" in names:
        return "edge.rejected"
    if edge.kind == "compensate" or "compensated" in names:
        return "edge.compensate"
    return "edge"


@dataclass(slots=True)
class Box:
    """A node's box (or a dummy's pass-through, ``dummy=True``, one row high)."""

    name: str
    label: str
    kind: str
    layer: int
    x: int = 0
    y: int = 0
    w: int = 0
    h: int = 3
    dummy: bool = False
    role: str = "node"
    in_ports: list[int] = field(default_factory=list)  # segment ids, top to bottom
    out_ports: list[int] = field(default_factory=list)


@dataclass(slots=True)
class Segment:
    """An edge's piece between two adjacent layers (``src`` left, ``dst`` right)."""

    edge: int
    src: str
    dst: str
    first: bool  # leaves the edge's real left end (carries the label)
    last: bool  # reaches the edge's real right end
    reversed: bool  # the edge really points right to left
    points: list[tuple[int, int]] = field(default_factory=list)


@dataclass(slots=True)
class Layout:
    """Where everything goes; :func:`paint` draws it."""

    width: int
    height: int
    boxes: dict[str, Box]
    edges: list[EdgeInfo]
    segments: list[Segment]
    labels: list[tuple[int, int, str, int]]  # x, y, text, edge index
    arrows: list[tuple[int, int, str, int]]  # x, y, char, edge index
    loops: dict[str, int]  # node -> self-loop count


@dataclass(slots=True)
class Picture:
    width: int
    height: int
    chars: list[list[str]]
    roles: list[list[str]]
    boxes: dict[str, tuple[int, int, int, int]]

    def text(self) -> str:
        """The picture as plain text (for tests and for people reading logs)."""
        return "\n".join("".join(row).rstrip() for row in self.chars)

    def runs(self, y: int) -> list[tuple[str, str]]:
        """Row ``y`` as (text, role) runs of equal role."""
        out: list[tuple[str, str]] = []
        row, roles = self.chars[y], self.roles[y]
        start = 0
        for x in range(1, len(row) + 1):
            if x == len(row) or roles[x] != roles[start]:
                out.append(("".join(row[start:x]), roles[start]))
                start = x
        return out


# -- layout ----------------------------------------------------------------------------------


def layout(graph: Any, *, terse: bool = False) -> Layout:
    """Lay out ``graph`` left to right (see the module docstring); ``terse`` labels edges
    with their outcome marks alone (no counts, nothing on a plain edge), for a narrow pane."""
    names = [str(n) for n in graph.nodes]
    kinds = {str(n): str(d.get("kind", "agent")) for n, d in graph.nodes(data=True)}
    edges = edges_of(graph)
    loops: dict[str, int] = {}
    flow: list[EdgeInfo] = []
    for e in edges:
        if e.source == e.target:
            loops[e.source] = loops.get(e.source, 0) + max(e.count, 1)
        else:
            flow.append(e)
    reversed_edges = _back_edges(names, flow)
    oriented = [
        (e.target, e.source, e.index)
        if e.index in reversed_edges
        else (e.source, e.target, e.index)
        for e in flow
    ]
    layer = _layers(names, oriented)

    boxes: dict[str, Box] = {}
    node_data = {str(n): d for n, d in graph.nodes(data=True)}
    for n in names:
        label = clip(n, MAX_NAME)
        if n in loops:
            label += f" ↻{loops[n]}"
        outcomes = _outcomes(node_data.get(n, {}).get("outcomes"))
        badges = [
            f"{OUTCOME_MARKS[k]}{v}"
            for k, v in sorted(outcomes.items())
            if v and k in OUTCOME_MARKS
        ]
        if badges:
            label += " " + " ".join(badges)
        pad = 2 if terse else 4  # borders, and a space each side unless terse
        box = Box(n, label, kinds.get(n, "agent"), layer[n], w=cell_len(label) + pad)
        failed = any(outcomes.get(k) for k in ("failed", "timeout", "breaker_open"))
        box.role = "topic" if box.kind == "topic" else "node.error" if failed else "node"
        boxes[n] = box

    segments: list[Segment] = []
    for u, v, idx in oriented:
        chain = [u]
        for step in range(layer[u] + 1, layer[v]):
            d = f"\0{idx}:{step}"
            boxes[d] = Box(d, "", "dummy", step, w=1, h=1, dummy=True)
            chain.append(d)
        chain.append(v)
        for i in range(len(chain) - 1):
            segments.append(
                Segment(
                    idx, chain[i], chain[i + 1], first=i == 0, last=i == len(chain) - 2,
                    reversed=idx in reversed_edges,
                )
            )  # fmt: skip

    n_layers = max((b.layer for b in boxes.values()), default=-1) + 1
    layers: list[list[str]] = [[] for _ in range(n_layers)]
    for name in _discovery_order(names, oriented, boxes):
        layers[boxes[name].layer].append(name)
    _order_layers(layers, segments)

    pos = {name: i for lay in layers for i, name in enumerate(lay)}
    for seg_id, seg in enumerate(segments):
        boxes[seg.src].out_ports.append(seg_id)
        boxes[seg.dst].in_ports.append(seg_id)
    for b in boxes.values():
        b.out_ports.sort(key=lambda s: (pos[segments[s].dst], s))
        b.in_ports.sort(key=lambda s: (pos[segments[s].src], s))
        if not b.dummy:
            b.h = 2 + max(1, len(b.in_ports), len(b.out_ports))

    _place_rows(layers, boxes, segments)
    by_edge = {e.index: e for e in edges}
    width, labels, arrows = _route(layers, boxes, segments, by_edge, terse)
    height = max((b.y + b.h for b in boxes.values() if not b.dummy), default=0)
    height = max([height] + [b.y + 1 for b in boxes.values() if b.dummy])
    return Layout(width, height, boxes, edges, segments, labels, arrows, loops)


def _back_edges(names: list[str], flow: list[EdgeInfo]) -> set[int]:
    succ: dict[str, list[EdgeInfo]] = {n: [] for n in names}
    indeg = dict.fromkeys(names, 0)
    for e in flow:
        succ.setdefault(e.source, []).append(e)
        indeg[e.target] = indeg.get(e.target, 0) + 1
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    back: set[int] = set()
    roots = [n for n in names if indeg.get(n, 0) == 0] + names
    for root in roots:
        if root in state:
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        state[root] = 1
        while stack:
            node, i = stack[-1]
            out = succ.get(node, [])
            if i == len(out):
                state[node] = 2
                stack.pop()
                continue
            stack[-1] = (node, i + 1)
            e = out[i]
            s = state.get(e.target)
            if s == 1:
                back.add(e.index)
            elif s is None:
                state[e.target] = 1
                stack.append((e.target, 0))
    return back


def _layers(names: list[str], oriented: list[tuple[str, str, int]]) -> dict[str, int]:
    preds: dict[str, list[str]] = {n: [] for n in names}
    succs: dict[str, list[str]] = {n: [] for n in names}
    for u, v, _ in oriented:
        preds[v].append(u)
        succs[u].append(v)
    indeg = {n: len(preds[n]) for n in names}
    ready = [n for n in names if indeg[n] == 0]
    order: list[str] = []
    while ready:
        n = ready.pop(0)
        order.append(n)
        for m in succs[n]:
            indeg[m] -= 1
            if indeg[m] == 0:
                ready.append(m)
    layer = dict.fromkeys(names, 0)
    for n in order:
        for m in succs[n]:
            layer[m] = max(layer[m], layer[n] + 1)
    # A source feeding only late layers sits just before its nearest successor.
    for n in names:
        if not preds[n] and succs[n]:
            layer[n] = max(layer[n], min(layer[m] for m in succs[n]) - 1)
    return layer


def _discovery_order(
    names: list[str], oriented: list[tuple[str, str, int]], boxes: dict[str, Box]
) -> list[str]:
    succ: dict[str, list[str]] = {n: [] for n in boxes}
    for u, v, idx in oriented:
        dummies = sorted(
            (k for k in boxes if k.startswith(f"\0{idx}:")), key=lambda k: boxes[k].layer
        )
        for a, b in pairwise([u, *dummies, v]):
            succ[a].append(b)
    seen: dict[str, None] = {}
    for root in names:
        stack = [root]
        while stack:
            n = stack.pop()
            if n in seen:
                continue
            seen[n] = None
            stack.extend(reversed(succ[n]))
    for n in boxes:
        seen.setdefault(n, None)
    return list(seen)


def _crossings(layers: list[list[str]], segments: list[Segment]) -> int:
    pos = {name: i for lay in layers for i, name in enumerate(lay)}
    layer_of = {name: li for li, lay in enumerate(layers) for name in lay}
    by_gap: dict[int, list[tuple[int, int]]] = {}
    for s in segments:
        by_gap.setdefault(layer_of[s.src], []).append((pos[s.src], pos[s.dst]))
    total = 0
    for pairs in by_gap.values():
        for i, (a1, b1) in enumerate(pairs):
            for a2, b2 in pairs[i + 1 :]:
                if (a1 - a2) * (b1 - b2) < 0:
                    total += 1
    return total


def _order_layers(layers: list[list[str]], segments: list[Segment]) -> None:
    preds: dict[str, list[str]] = {}
    succs: dict[str, list[str]] = {}
    for s in segments:
        preds.setdefault(s.dst, []).append(s.src)
        succs.setdefault(s.src, []).append(s.dst)
    best = [list(lay) for lay in layers]
    best_score = _crossings(layers, segments)
    for sweep in range(8):
        down = sweep % 2 == 0
        order = range(1, len(layers)) if down else range(len(layers) - 2, -1, -1)
        for li in order:
            ref = layers[li - 1] if down else layers[li + 1]
            ref_pos = {n: i for i, n in enumerate(ref)}
            near = preds if down else succs
            current = {n: i for i, n in enumerate(layers[li])}

            def key(n: str, ref_pos: dict[str, int] = ref_pos, near: dict[str, list[str]] = near,
                    current: dict[str, int] = current) -> tuple[float, int]:  # fmt: skip
                ps = [ref_pos[p] for p in near.get(n, ()) if p in ref_pos]
                return (sum(ps) / len(ps) if ps else float(current[n]), current[n])

            layers[li].sort(key=key)
        score = _crossings(layers, segments)
        if score < best_score:
            best, best_score = [list(lay) for lay in layers], score
    layers[:] = best


def _port_row(box: Box, seg_id: int, side: str) -> int:
    if box.dummy:
        return box.y
    ports = box.in_ports if side == "in" else box.out_ports
    inner = box.h - 2
    i = ports.index(seg_id)
    # Spread the ports over the inner rows, centred when there are fewer ports than rows.
    offset = (inner - len(ports)) // 2
    return box.y + 1 + offset + i


def _place_rows(layers: list[list[str]], boxes: dict[str, Box], segments: list[Segment]) -> None:
    def stack(lay: list[str], desired: dict[str, float]) -> None:
        bottom = 0
        for name in lay:
            b = boxes[name]
            want = round(desired.get(name, bottom))
            b.y = max(bottom, want)
            bottom = b.y + b.h + 1  # one free row between neighbours

    # First pass: stack each layer; then pull every box towards the rows of its neighbours.
    for lay in layers:
        stack(lay, {})
    for _ in range(3):
        for lay in layers:
            desired: dict[str, float] = {}
            for name in lay:
                b = boxes[name]
                rows = []
                for sid in b.in_ports:
                    s = segments[sid]
                    src_row = _port_row(boxes[s.src], sid, "out")
                    rows.append(src_row - (_port_row(b, sid, "in") - b.y))
                if rows:
                    desired[name] = sum(rows) / len(rows)
            stack(lay, desired)
        for lay in reversed(layers):
            desired = {}
            for name in lay:
                b = boxes[name]
                if b.in_ports:
                    continue
                rows = []
                for sid in b.out_ports:
                    s = segments[sid]
                    dst_row = _port_row(boxes[s.dst], sid, "in")
                    rows.append(dst_row - (_port_row(b, sid, "out") - b.y))
                if rows:
                    desired[name] = sum(rows) / len(rows)
            if desired:
                stack(lay, {**{n: boxes[n].y for n in lay}, **desired})


def _route(
    layers: list[list[str]],
    boxes: dict[str, Box],
    segments: list[Segment],
    edges: dict[int, EdgeInfo],
    terse: bool = False,
) -> tuple[int, list[tuple[int, int, str, int]], list[tuple[int, int, str, int]]]:
    labels: list[tuple[int, int, str, int]] = []
    arrows: list[tuple[int, int, str, int]] = []
    layer_of = {name: li for li, lay in enumerate(layers) for name in lay}
    rows = {
        sid: (_port_row(boxes[s.src], sid, "out"), _port_row(boxes[s.dst], sid, "in"))
        for sid, s in enumerate(segments)
    }
    label_of = {
        sid: text
        for sid, s in enumerate(segments)
        if s.first and (text := edges[s.edge].terse_label if terse else edges[s.edge].label)
    }
    # Pass 1: each gap's label zone and track order, which fixes every column's x.
    gaps: list[tuple[int, list[int]]] = []
    for li in range(len(layers) - 1):
        gap = [sid for sid, s in enumerate(segments) if layer_of[s.src] == li]
        widest = max((cell_len(label_of[sid]) for sid in gap if sid in label_of), default=0)
        zone = widest + 3 if widest or not terse else 1  # terse: no room kept for no label
        turning = [sid for sid in gap if rows[sid][0] != rows[sid][1]]
        down = sorted((s for s in turning if rows[s][1] > rows[s][0]), key=lambda s: rows[s][0])
        up = sorted((s for s in turning if rows[s][1] < rows[s][0]), key=lambda s: -rows[s][0])
        # Index 0 is the rightmost track: down edges from the top, then up edges from the bottom.
        gaps.append((zone, _untangle(down + up, rows)))
    x = 1
    gap_x: list[int] = []
    for li, lay in enumerate(layers):
        colw = max((boxes[n].w for n in lay if not boxes[n].dummy), default=1)
        for n in lay:
            b = boxes[n]
            if b.dummy:
                b.x, b.w = x, colw
            else:
                b.x = x + (colw - b.w) // 2
        x += colw
        if li < len(gaps):
            gap_x.append(x)
            zone, tracks = gaps[li]
            x += zone + len(tracks) + (1 if terse else 2)
    # Pass 2: the points of every segment.
    for li, (zone, tracks) in enumerate(gaps):
        gx = gap_x[li]
        track_x = {sid: gx + zone + (len(tracks) - 1 - i) for i, sid in enumerate(tracks)}
        for sid in (sid for sid, s in enumerate(segments) if layer_of[s.src] == li):
            s = segments[sid]
            src, dst = boxes[s.src], boxes[s.dst]
            ys, yt = rows[sid]
            # From the source's right border (a dummy's line crosses its whole column) to the
            # cell before the target's left border (a dummy's first cell).
            x0 = src.x + src.w - 1 if not src.dummy else src.x
            end_x = dst.x - 1 if not dst.dummy else dst.x
            if sid in track_x:
                tx = track_x[sid]
                s.points = [(x0, ys), (tx, ys), (tx, yt), (end_x, yt)]
            else:
                s.points = [(x0, ys), (end_x, yt)]
            if s.last and not s.reversed and not dst.dummy:
                arrows.append((end_x, yt, "▶", s.edge))
            if s.first and s.reversed and not src.dummy:
                arrows.append((x0 + 1, ys, "◀", s.edge))
            if sid in label_of:
                labels.append((x0 + 2, ys, f" {label_of[sid]} ", s.edge))
    return x + 1, labels, arrows


def _untangle(tracks: list[int], rows: dict[int, tuple[int, int]]) -> list[int]:
    # A segment's last stretch (row yt, from its track rightwards) must not run along another's
    # first stretch (row ys, from the left up to its track): that needs the arriving segment's
    # track to the right of the leaving one's. A few passes of swaps settle small graphs.
    order = list(tracks)  # index 0 is the rightmost track
    for _ in range(len(order) * 2):
        moved = False
        for i, a in enumerate(order):
            for j in range(i + 1, len(order)):
                b = order[j]  # b's track is left of a's
                if rows[b][1] == rows[a][0]:
                    order[i], order[j] = b, a
                    moved = True
                    break
            if moved:
                break
        if not moved:
            break
    return order


# -- paint -----------------------------------------------------------------------------------


def paint(lay: Layout, *, nodes: Iterable[str] = (), edges: Iterable[int] = ()) -> Picture:
    """Draw ``lay``, with the ``nodes`` and the edges (by index) ``edges`` highlighted."""
    hl_nodes = set(nodes)
    hl_edges = set(edges)
    w, h = max(lay.width, 1), max(lay.height, 1)
    bits = [[0] * w for _ in range(h)]
    dashed = [[True] * w for _ in range(h)]
    roles = [[""] * w for _ in range(h)]
    chars: list[list[str]] = [[" "] * w for _ in range(h)]
    by_index = {e.index: e for e in lay.edges}

    def role_of(edge_index: int) -> str:
        return "edge.hl" if edge_index in hl_edges else edge_role(by_index[edge_index])

    def mark(x: int, y: int, d: int, role: str, dash: bool) -> None:
        if 0 <= x < w and 0 <= y < h:
            bits[y][x] |= d
            if not dash:
                dashed[y][x] = False
            if ROLE_PRIORITY.get(role, 1) >= ROLE_PRIORITY.get(roles[y][x], -1):
                roles[y][x] = role

    # Highlighted edges last, so their role wins the cells they share.
    order = sorted(
        lay.segments, key=lambda s: (s.edge in hl_edges, ROLE_PRIORITY.get(role_of(s.edge), 1))
    )
    for seg in order:
        role = role_of(seg.edge)
        dash = by_index[seg.edge].declared and not by_index[seg.edge].observed
        pts = seg.points
        for (xa, ya), (xb, yb) in pairwise(pts):
            if ya == yb:
                lo, hi = min(xa, xb), max(xa, xb)
                for xx in range(lo, hi + 1):
                    mark(xx, ya, (_E if xx < hi else 0) | (_W if xx > lo else 0), role, dash)
            else:
                lo, hi = min(ya, yb), max(ya, yb)
                for yy in range(lo, hi + 1):
                    mark(xa, yy, (_S if yy < hi else 0) | (_N if yy > lo else 0), role, dash)
    for b in lay.boxes.values():
        if b.dummy:
            continue
        role = "node.hl" if b.name in hl_nodes else b.role
        x0, y0, x1, y1 = b.x, b.y, b.x + b.w - 1, b.y + b.h - 1
        for xx in range(x0, x1 + 1):
            for yy in range(y0, y1 + 1):
                if 0 <= xx < w and 0 <= yy < h:
                    roles[yy][xx] = role
                    dashed[yy][xx] = False
        for xx in range(x0, x1 + 1):
            mark(xx, y0, (_E if xx < x1 else 0) | (_W if xx > x0 else 0), role, False)
            mark(xx, y1, (_E if xx < x1 else 0) | (_W if xx > x0 else 0), role, False)
        for yy in range(y0, y1 + 1):
            mark(x0, yy, (_S if yy < y1 else 0) | (_N if yy > y0 else 0), role, False)
            mark(x1, yy, (_S if yy < y1 else 0) | (_N if yy > y0 else 0), role, False)
            roles[yy][x0] = roles[yy][x1] = role
        for xx in range(x0, x1 + 1):
            roles[y0][xx] = roles[y1][xx] = role
    for y in range(h):
        for x in range(w):
            d = bits[y][x]
            if d:
                chars[y][x] = (_DASHED.get(d) if dashed[y][x] else None) or _LINES.get(d, "┼")
    for b in lay.boxes.values():
        if b.dummy:
            continue
        x0, y0, x1, y1 = b.x, b.y, b.x + b.w - 1, b.y + b.h - 1
        if b.kind == "topic":
            chars[y0][x0], chars[y0][x1], chars[y1][x0], chars[y1][x1] = "╭", "╮", "╰", "╯"
        for yy in range(y0 + 1, y1):
            for xx in range(x0 + 1, x1):
                chars[yy][xx] = " "
        label_row = y0 + (b.h - 1) // 2
        left = x0 + max(1, (b.w - cell_len(b.label)) // 2)
        for i, ch in enumerate(b.label):
            if left + i < x1:
                chars[label_row][left + i] = ch
    for x, y, ch, idx in lay.arrows:
        if 0 <= x < w and 0 <= y < h:
            chars[y][x] = ch
            roles[y][x] = role_of(idx)
    for x, y, text, idx in lay.labels:
        role = role_of(idx)
        for i, ch in enumerate(text):
            if 0 <= x + i < w and 0 <= y < h:
                chars[y][x + i] = ch
                roles[y][x + i] = role
    boxes = {b.name: (b.x, b.y, b.w, b.h) for b in lay.boxes.values() if not b.dummy}
    return Picture(w, h, chars, roles, boxes)
