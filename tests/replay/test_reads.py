"""The engine reads stores only through tracer's read API, and state at version k is built by
one function of tracer."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import engine
import tracer as t
from tracer import reads

from .conftest import Samples


def test_the_engine_runs_no_sql() -> None:
    root = Path(engine.__file__).parent
    offenders = [
        f"{p.relative_to(root)}:{n}"
        for p in sorted(root.rglob("*.py"))
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if re.search(r"\.sql\(|\.arrow\(|\bSELECT\b|import duckdb", line)
    ]
    assert offenders == []


def test_the_walk_gives_what_the_store_gives_at_every_version(samples: Samples) -> None:
    for scenario in ("credit", "choreo-saga", "trading-saga"):
        run_id = samples.first(scenario)
        rows = reads.state_versions(samples.store, [run_id])
        walked = [
            (version, t.canonical_json(doc))
            for version, doc in reads.states((r.version, r.snapshot, r.patch) for r in rows)
        ]
        assert [v for v, _ in walked] == list(range(1, len(rows) + 1))
        for version, text in walked:
            assert text == t.canonical_json(samples.store.state_at(run_id, version))


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([(1, None, "[]")], "version 1 has no snapshot"),
        ([(1, "{}", None), (3, None, "[]")], "version 2 is missing"),
        (
            [(1, "{}", None), (2, None, '[{"op": "remove", "path": "/x"}]')],
            "version 2 does not apply",
        ),
    ],
)
def test_the_walk_names_the_version_it_cannot_build(rows: list, message: str) -> None:
    with pytest.raises(t.StoreError, match=message):
        list(reads.states(rows, "r1"))
