"""A run's span tree in depth-first order, worked out on arrays.

``Store.span_tree`` answers the waterfall's first question: every span of the run
in the order of a fully expanded tree (children by start time, then span id), with
its depth and how many rows its subtree spans. In SQL that is a recursive CTE whose
rows carry their whole path and are sorted by it, rows × depth of work: seconds for
a million spans, ten for ten million. Here the spans stream out of DuckDB in start
order as 64-bit ids, and numpy does the rest in a few passes over n numbers:

* parents: by sorting the ids (an id that is not a run's span makes a root, as does
  a span flagged as its own ancestor);
* depth and preorder position: pointer doubling sums along each span's path, of 1
  per step for depth, and for position of 1 plus the subtrees of the siblings that
  start before it (siblings' subtree sizes come from a prefix sum per parent);
* subtree sizes: added level by level from the deepest up.

Spans the roots never reach (a cycle whose flags are missing) are left out, as the
SQL leaves them out. Ids not in lowercase hex: None, and the SQL answers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ._forest import far_ancestors, parents, path_sums

if TYPE_CHECKING:
    import duckdb


def span_tree(con: duckdb.DuckDBPyConnection, run_id: str) -> pa.Table | None:
    """``span_id``, ``depth``, ``descendants`` of the run's spans in tree order, or None
    when its ids are not all 16 lowercase hex digits."""
    t = (
        con.sql(
            """SELECT span_id, TRY_CAST('0x' || span_id AS UBIGINT) AS id,
                      CASE WHEN parent_span_id = '' OR cycle THEN NULL
                           ELSE TRY_CAST('0x' || parent_span_id AS UBIGINT) END AS pid,
                      parent_span_id <> '' AND NOT cycle AS has_parent,
                      length(span_id) = 16 AND span_id = lower(span_id)
                        AND length(parent_span_id) IN (0, 16)
                        AND parent_span_id = lower(parent_span_id) AS hex
               FROM spans WHERE trace_id = $run ORDER BY start_ns, span_id""",
            params={"run": run_id},
        )
        .to_arrow_reader()
        .read_all()
    )
    n = t.num_rows
    if n == 0:
        return _table(t.column("span_id"), np.zeros(0, np.int64), np.zeros(0, np.int64))
    pid_col = t.column("pid")
    if (
        not pc.all(t.column("hex")).as_py()
        or t.column("id").null_count
        or pid_col.null_count != n - pc.sum(t.column("has_parent")).as_py()
    ):
        return None
    pid = pc.fill_null(pid_col, 0).to_numpy()
    has = t.column("has_parent").to_numpy(zero_copy_only=False)
    parent = parents(t.column("id").to_numpy(), pid, has)
    if parent is None:
        return None
    del pid, has
    kept = far_ancestors(parent) < 0  # reached from a root
    names = t.column("span_id")
    if not kept.all():
        keep = np.flatnonzero(kept)
        renumber = np.full(n, -1)
        renumber[keep] = np.arange(len(keep))
        parent = np.where(parent[keep] >= 0, renumber[parent[keep]], -1)
        names = names.take(pa.array(keep))
        n = len(keep)
    del t, kept

    depth = path_sums(parent, (parent >= 0).astype(np.int64))
    size = np.ones(n, dtype=np.int64)
    by_depth = np.argsort(depth, kind="stable")
    starts = np.searchsorted(depth[by_depth], np.arange(int(depth.max(initial=0)) + 2))
    for level in range(len(starts) - 2, 0, -1):
        rows = by_depth[starts[level] : starts[level + 1]]
        np.add.at(size, parent[rows], size[rows])
    # Siblings (the roots among them) in start order: the sizes of those before each.
    siblings = np.argsort(parent, kind="stable")
    sums = np.cumsum(size[siblings])
    group_start = np.r_[True, parent[siblings][1:] != parent[siblings][:-1]]
    before = sums - size[siblings]
    before -= np.maximum.accumulate(np.where(group_start, before, 0))
    offset = np.empty(n, dtype=np.int64)
    offset[siblings] = before
    position = path_sums(parent, offset + (parent >= 0))
    rows_in_order = np.empty(n, dtype=np.int64)
    rows_in_order[position] = np.arange(n)
    return _table(
        names.take(pa.array(rows_in_order)), depth[rows_in_order], size[rows_in_order] - 1
    )


def _table(
    names: pa.ChunkedArray | pa.Array, depth: np.ndarray, descendants: np.ndarray
) -> pa.Table:
    return pa.table(
        {
            "span_id": names,
            "depth": pa.array(depth, pa.int32()),
            "descendants": pa.array(descendants, pa.int32()),
        }
    )
