"""stale_read: minimal positive and negative runs, the evidence, and happens-before without a head."""

import pytest

import tracer as t
from tracer.analysis import detect
from tracer.testing import RunBuilder


def stale(store: t.Store, run_id: str) -> list[t.Finding]:
    return detect(store, run_id, kinds=["stale_read"])


def test_cache_serving_an_overwritten_value_is_a_stale_read(store) -> None:
    with RunBuilder(store, initial={"score": 600, "name": "ada"}) as run:
        with run.step("scorer") as s:
            s.commit({"score": 710})  # v2
        run.advance(ms=40)
        with run.step("rater", from_=["scorer"]) as r:
            r.read(["score"], version=1, via="cache", cache="bureau")
    (f,) = stale(store, run.run_id)
    assert f.severity == "error"
    assert f.agents == ("rater", "scorer")
    assert f.versions == (1, 2)
    assert f.span_ids == (r.span_id, s.span_id)
    ev = f.evidence
    assert ev["read_version"] == 1 and ev["committed_version"] == 2 and ev["head_version"] == 2
    assert ev["reader"] == "rater" and ev["writer"] == "scorer"
    assert ev["via"] == "cache" and ev["cache"] == "bureau"
    assert ev["keys"] == ["score"]
    # Committed at v2's event time, read 40 ms (plus clock ticks) later: the gap is measured, not assumed.
    assert ev["committed_before_read_ns"] == ev["read_ns"] - ev["committed_ns"]
    assert 40_000_000 <= ev["committed_before_read_ns"] < 41_000_000
    assert ev["values"] == {"score": {"read": 600, "committed": 710}}
    assert "rater read v1 of score via cache 'bureau'" in f.message and "v2 by scorer" in f.message
    assert f.detected_ns == ev["read_ns"]


def test_a_fresh_read_is_not_stale(store) -> None:
    with RunBuilder(store, initial={"score": 600}) as run:
        with run.step("scorer") as s:
            s.commit({"score": 710})
        with run.step("rater") as r:
            r.read(["score"])  # the head, v2
    assert stale(store, run.run_id) == []


def test_newer_versions_of_other_keys_do_not_make_a_read_stale(store) -> None:
    with RunBuilder(store, initial={"score": 600, "name": "ada"}) as run:
        with run.step("clerk") as s:
            s.commit({"name": "grace"})  # v2 changes name only
        with run.step("rater") as r:
            r.read(["score"], version=1, via="cache", cache="bureau")
    assert stale(store, run.run_id) == []


def test_a_read_of_the_whole_document_is_stale_on_any_change(store) -> None:
    with RunBuilder(store, initial={"score": 600, "name": "ada"}) as run:
        with run.step("clerk") as s:
            s.commit({"name": "grace"})
        with run.step("auditor") as r:
            r.read([], version=1)
    (f,) = stale(store, run.run_id)
    assert f.evidence["keys"] == ["name"] and f.versions == (1, 2)


def test_the_newest_overlapping_version_is_the_one_reported_and_the_first_is_kept(store) -> None:
    with RunBuilder(store, initial={"score": 600}) as run:
        with run.step("scorer") as s:
            s.commit({"score": 650})  # v2
            s.commit({"score": 700})  # v3
        with run.step("clerk") as k:
            k.commit({"note": "x"})  # v4: another key
        with run.step("rater") as r:
            r.read(["score"], version=1, via="cache", cache="bureau")
    (f,) = stale(store, run.run_id)
    assert f.versions == (1, 3)
    assert f.evidence["stale_since_version"] == 2 and f.evidence["newer_versions"] == [2, 3]
    assert f.evidence["head_version"] == 4
    assert f.evidence["values"]["score"] == {"read": 600, "committed": 700}


def test_a_version_past_the_recorded_head_does_not_count(store) -> None:
    # The read was served when the head was v1; v2 came later, even if its event was
    # stamped earlier than the read event (the engine records store reads at the step's end).
    with RunBuilder(store, initial={"score": 600}) as run:
        r = run.step("rater")
        w = run.step("scorer")
        w.commit({"score": 710})  # v2 at time t
        r.span.record_read(
            version=1, keys=["score"], head_version=1, agent="rater", time_ns=run.clock.now_ns()
        )
        w.end()
        r.end()
    assert stale(store, run.run_id) == []


@pytest.mark.parametrize(("delay", "expected"), [(0, 0), (1, 1)])
def test_without_a_head_time_decides_strictly(store, delay: int, expected: int) -> None:
    # Foreign traces record no head: a newer version counts only when committed strictly
    # before the read; the same instant is no proof of order.
    with RunBuilder(store, initial={"score": 600}, tick_ns=0) as run:
        w = run.step("scorer")
        w.commit({"score": 710})
        run.advance(ns=delay)
        r = run.step("rater")
        r.read(["score"], version=1, head=False)
        w.end()
        r.end()
    found = stale(store, run.run_id)
    assert len(found) == expected
    if found:
        assert found[0].evidence["happens_before"] == "commit times"
        assert found[0].evidence["head_version"] is None


def test_with_a_head_the_same_instant_counts(store) -> None:
    # Under virtual time a commit and a read share a timestamp; the recorded head orders them.
    with RunBuilder(store, initial={"score": 600}, tick_ns=0) as run:
        with run.step("scorer") as w:
            w.commit({"score": 710})
        with run.step("rater") as r:
            r.read(["score"], version=1, via="cache", cache="c")
    (f,) = stale(store, run.run_id)
    assert (
        f.evidence["committed_before_read_ns"] == 0
        and f.evidence["happens_before"] == "head_version"
    )


def test_one_finding_per_read(store) -> None:
    with RunBuilder(store, initial={"a": 0, "b": 0}) as run:
        with run.step("w") as w:
            w.commit({"a": 1, "b": 1})
        with run.step("r") as r:
            r.read(["a"], version=1, via="cache", cache="c")
            r.read(["b"], version=1, via="cache", cache="c")
            r.read(["a", "b"], version=2)
    found = stale(store, run.run_id)
    assert len(found) == 2
    assert sorted(tuple(f.evidence["keys"]) for f in found) == [("a",), ("b",)]
    assert len({f.finding_id for f in found}) == 2


def test_without_a_head_versions_sharing_a_commit_time_all_count(store) -> None:
    # v2 and v3 committed at one instant, the read a moment later: the newest is v3.
    with RunBuilder(store, initial={"score": 600}, tick_ns=0) as run:
        with run.step("scorer") as w:
            w.commit({"score": 650})
            w.commit({"score": 700})
        run.advance(ns=1)
        with run.step("rater") as r:
            r.read(["score"], version=1, head=False)
    (f,) = stale(store, run.run_id)
    assert f.versions == (1, 3) and f.evidence["newer_versions"] == [2, 3]
