"""The fingerprints that let a large import skip reading back the traces it is growing.

``SeenSpans.add`` must say "may have been seen" for every span added before: a miss
there would store a repeated span twice (tests/import_/test_parallel.py shows it
through an import). Saying it for a new span only costs time; these tests hold that
it does not happen for the ids exporters make, random or sequential.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from tracer._store._seen import SeenSpans, fingerprints


def _spans(pairs: list[tuple[str, str]]) -> pa.Table:
    return pa.table(
        {
            "trace_id": pa.array([p[0] for p in pairs], pa.string()),
            "span_id": pa.array([p[1] for p in pairs], pa.string()),
        }
    )


def _hex(trace: int, span: int) -> tuple[str, str]:
    return f"{trace:032x}", f"{span:016x}"


@given(
    st.lists(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 40)), max_size=30), max_size=12)
)
def test_add_answers_whether_a_chunk_repeats_an_earlier_one(
    chunks: list[list[tuple[int, int]]],
) -> None:
    seen, before = SeenSpans(), set()
    for chunk in chunks:
        ids = {_hex(*p) for p in chunk}
        assert seen.add(fingerprints(_spans(sorted(ids)))) == bool(ids & before)
        before |= ids
    assert len(seen) == sum(len({_hex(*p) for p in c}) for c in chunks)


def test_sequential_ids_in_sequential_traces_do_not_collide() -> None:
    # Some exporters number traces and spans 1, 2, 3...: a mix that let (t, s) and
    # (s, t) or (t + 1, s - 1) meet would make every chunk read the store back.
    pairs = [_hex(t, s) for t in range(1, 301) for s in range(1, 301)]
    keys = fingerprints(_spans(pairs))
    assert len(np.unique(keys)) == len(pairs)


def test_a_slice_of_a_table_is_read_from_its_own_rows() -> None:
    pairs = [_hex(t, 7) for t in range(10)]
    table = _spans(pairs)
    assert list(fingerprints(table.slice(4, 3))) == list(fingerprints(table)[4:7])


def test_ids_not_in_hex_form_are_fingerprinted_too() -> None:
    # Not 32 and 16 hex digits (an id from elsewhere): Python's hash, still per pair.
    pairs = [("run-1", "a"), ("run-1", "b"), ("run-2", "a"), _hex(1, 1), ("zz" * 16, "0" * 16)]
    keys = fingerprints(_spans(pairs))
    assert len(set(keys.tolist())) == len(pairs)
    seen = SeenSpans()
    assert not seen.add(keys)
    assert seen.add(fingerprints(_spans([("run-2", "a")])))
    assert not seen.add(fingerprints(_spans([("run-2", "c")])))


def test_the_arrays_kept_stay_few_as_spans_are_added() -> None:
    seen = SeenSpans()
    rng = np.random.default_rng(7)
    for _ in range(500):
        assert not seen.add(rng.integers(0, 2**63, size=100, dtype=np.int64).view(np.uint64) | 1)
    # Each kept array is more than twice the next: at most log2(50,000 / 100) + 1 of them.
    assert len(seen) == 50_000 and len(seen._levels) <= 10
    assert all(np.all(level[:-1] <= level[1:]) for level in seen._levels)
