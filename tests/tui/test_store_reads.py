"""The read methods the debugger added to the store: span_tree and span_index by ids."""

from __future__ import annotations

from pathlib import Path

from tracer import Store
from tracer.testing import RunBuilder


def _reference_order(store: Store, run_id: str) -> list[tuple[str, int, int]]:
    spans = store.spans(run_id)  # by start time, then id
    ids = {s.span_id for s in spans}
    children: dict[str, list[str]] = {}
    roots = []
    for s in spans:
        if s.parent_span_id and s.parent_span_id in ids:
            children.setdefault(s.parent_span_id, []).append(s.span_id)
        else:
            roots.append(s.span_id)
    out: list[tuple[str, int, int]] = []

    def walk(sid: str, depth: int) -> int:
        i = len(out)
        out.append((sid, depth, 0))
        n = sum(walk(c, depth + 1) for c in children.get(sid, []))
        out[i] = (sid, depth, n)
        return n + 1

    for r in roots:
        walk(r, 0)
    return out


def _nested_run(store: Store, *, seed: int) -> str:
    with RunBuilder(store, seed=seed, initial={"x": 0}) as run:
        for i in range(4):
            with run.step(f"agent{i}") as s:
                for j in range(i):
                    with run.step(f"tool{j}", parent=s, operation="execute_tool") as t:
                        if j == 1:
                            with run.step("inner", parent=t, operation="execute_tool"):
                                pass
            run.advance(ms=1)
    return run.run_id


def test_span_tree_is_depth_first_with_children_by_start(tmp_path: Path) -> None:
    with Store(tmp_path / "s.duckdb") as store:
        run_id = _nested_run(store, seed=3)
        other = _nested_run(store, seed=4)
        tree = store.span_tree(run_id)
        got = list(
            zip(
                *(tree.column(c).to_pylist() for c in ("span_id", "depth", "descendants")),
                strict=True,
            )
        )
        assert got == _reference_order(store, run_id)
        assert len(got) == store.span_count(run_id)
        assert not set(tree.column("span_id").to_pylist()) & {s.span_id for s in store.spans(other)}


def test_the_recursive_sql_tree_is_the_same_tree(tmp_path: Path) -> None:
    # The store builds the tree on arrays and falls back to SQL when an id is not hex.
    from tracer._store._store import _SPAN_TREE_SQL

    with Store(tmp_path / "s.duckdb") as store:
        run_id = _nested_run(store, seed=9)
        by_sql = store.arrow(_SPAN_TREE_SQL, {"run": run_id})
        assert store.span_tree(run_id).equals(by_sql)


def test_a_span_whose_parent_is_missing_is_a_root(tmp_path: Path) -> None:
    with Store(tmp_path / "s.duckdb") as store, Store(tmp_path / "half.duckdb") as half:
        run = RunBuilder(store, seed=5)
        with run.step("a") as a, run.step("b", parent=a):
            pass
        run.finish()
        # Half a trace: every span but the root, whose id the others still name as parent.
        req = store.export_request(run.run_id)
        spans = req.resource_spans[0].scope_spans[0].spans
        root = next(i for i, sp in enumerate(spans) if not sp.parent_span_id)
        del spans[root]
        half.ingest([req])
        tree = half.span_tree(run.run_id)
        names = {s.span_id: s.name for s in half.spans(run.run_id)}
        got = [
            (names[sid], d, n)
            for sid, d, n in zip(
                *(tree.column(c).to_pylist() for c in ("span_id", "depth", "descendants")),
                strict=True,
            )
        ]
        assert got == [("invoke_agent a", 0, 1), ("invoke_agent b", 1, 0)]


def test_span_index_returns_only_the_ids_asked_for(tmp_path: Path) -> None:
    with Store(tmp_path / "s.duckdb") as store:
        run_id = _nested_run(store, seed=6)
        ids = [s.span_id for s in store.spans(run_id)][2:5]
        page = store.span_index(run_id, [*ids, "0000000000000000"])
        assert sorted(page.column("span_id").to_pylist()) == sorted(ids)
        assert set(page.column_names) >= {"name", "start_ns", "end_ns", "status_code", "kind"}
        assert store.span_index(run_id, []).num_rows == 0
        assert store.span_index(run_id).num_rows == store.span_count(run_id)


def test_find_spans_by_text_and_by_errors(tmp_path: Path) -> None:
    with Store(tmp_path / "s.duckdb") as store:
        with RunBuilder(store, seed=8) as run:
            with (
                run.step("Scorer") as s,
                run.step("lookup", parent=s, operation="execute_tool") as t,
            ):
                t.fail("boom")
            with run.step("rater"):
                pass
        names = {sp.span_id: sp.name for sp in store.spans(run.run_id)}
        assert [names[i] for i in store.find_spans(run.run_id, text="scorer")] == [
            "invoke_agent Scorer"
        ]
        assert [names[i] for i in store.find_spans(run.run_id, text="TOOL")] == [
            "execute_tool lookup"
        ]
        assert [names[i] for i in store.find_spans(run.run_id, errors=True)] == [
            "execute_tool lookup"
        ]
        assert store.find_spans(run.run_id, text="rater", errors=True) == []
        assert len(store.find_spans(run.run_id)) == store.span_count(run.run_id)
