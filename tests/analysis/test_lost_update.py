"""lost_update: two writers on the same base, overlapping keys, the second not merging the first."""

import tracer as t
from tracer.analysis import detect
from tracer.testing import RunBuilder


def lost(store: t.Store, run_id: str) -> list[t.Finding]:
    return detect(store, run_id, kinds=["lost_update"])


def test_second_writer_on_the_same_base_overwrites_the_first(store) -> None:
    with RunBuilder(store, initial={"balance": 100}) as run:
        a = run.step("deposit")
        b = run.step("withdraw")
        a.read(["balance"])  # both read v1
        b.read(["balance"])
        a.commit({"balance": 150})  # v2, base 1
        b.commit({"balance": 70})  # v3, base 1, parent 2: 150 is lost
        a.end()
        b.end()
    (f,) = lost(store, run.run_id)
    assert f.severity == "error"
    assert f.versions == (2, 3) and f.agents == ("deposit", "withdraw")
    assert f.span_ids == (a.span_id, b.span_id)
    ev = f.evidence
    assert ev["base_version"] == 1 and ev["lost_version"] == 2 and ev["overwriting_version"] == 3
    assert ev["keys"] == ["balance"]
    assert ev["values"] == {"balance": {"base": 100, "lost": 150, "written": 70}}
    assert (
        "withdraw committed v3 on base v1" in f.message and "deposit had changed in v2" in f.message
    )


def test_disjoint_keys_merge_by_construction(store) -> None:
    with RunBuilder(store, initial={"a": 0, "b": 0}) as run:
        x, y = run.step("x"), run.step("y")
        x.read(["a"])
        y.read(["b"])
        x.commit({"a": 1})
        y.commit({"b": 1})
        x.end()
        y.end()
    assert lost(store, run.run_id) == []


def test_a_writer_that_read_the_first_commit_merged_it(store) -> None:
    with RunBuilder(store, initial={"balance": 100}) as run:
        with run.step("deposit") as a:
            a.read(["balance"])
            a.commit({"balance": 150})
        with run.step("withdraw") as b:
            b.read(["balance"])  # v2
            b.commit({"balance": 70})
    assert lost(store, run.run_id) == []


def test_a_step_that_commits_twice_knows_its_own_first_write(store) -> None:
    with RunBuilder(store, initial={"n": 0}) as run, run.step("counter") as s:
        s.read(["n"])
        s.commit({"n": 1})
        s.commit({"n": 2}, base=1)
    assert lost(store, run.run_id) == []


def test_compensations_and_rollbacks_overwrite_on_purpose(store) -> None:
    with RunBuilder(store, initial={"funds": 100}) as run:
        a, undo = run.step("reserve"), run.compensate("reserve")
        a.read(["funds"])
        a.commit({"funds": 50})
        undo.commit({"funds": 100}, base=1, kind="compensation")
        a.end()
        undo.end()
    assert lost(store, run.run_id) == []


def test_every_skipped_writer_in_between_is_reported(store) -> None:
    # The last writer read v1; v2 and v3 both changed its key in between.
    with RunBuilder(store, initial={"k": 0}) as run:
        late = run.step("late")
        late.read(["k"])
        with run.step("w1") as w1:
            w1.commit({"k": 1})
        with run.step("w2") as w2:
            w2.commit({"k": 2})
        late.commit({"k": 9})
        late.end()
    found = lost(store, run.run_id)
    assert [f.versions for f in found] == [(2, 4), (3, 4)]
    assert {f.agents for f in found} == {("w1", "late"), ("w2", "late")}
    assert len({f.finding_id for f in found}) == 2


def test_an_unknown_base_is_no_evidence(store) -> None:
    with RunBuilder(store, initial={"k": 0}) as run:
        with run.step("w1") as w1:
            w1.commit({"k": 1})
        with run.step("w2") as w2:
            w2.commit({"k": 2}, base=0)  # a blind write: recorded with no base
    assert lost(store, run.run_id) == []
