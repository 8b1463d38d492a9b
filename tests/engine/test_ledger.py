"""The state ledger: immutable versions, the hash chain, copies in and out."""

from __future__ import annotations

import enum

import pytest

import engine as e
import tracer as t


def ledger(initial: dict | None = None) -> e.StateLedger:
    return e.StateLedger(initial, clock=t.FakeClock(tick_ns=10))


def test_first_version_is_the_initial_state() -> None:
    lg = ledger({"b": 1, "a": [1, 2]})
    v1 = lg.head
    assert (v1.version, v1.parent_version, v1.base_version, v1.kind) == (1, 0, 0, "initial")
    assert v1.keys == ("a", "b")
    assert lg.document() == {"a": [1, 2], "b": 1}


def test_commit_appends_a_version_on_the_head() -> None:
    lg = ledger({"n": 1})
    v2 = lg.commit({"n": 2, "m": "x"}, base_version=1, agent="w", span_id="s2")
    v3 = lg.commit({}, ["m"], base_version=1, agent="z")
    assert (v2.version, v2.parent_version, v2.base_version, v2.agent, v2.span_id) == (
        2,
        1,
        1,
        "w",
        "s2",
    )
    assert (v3.version, v3.parent_version, v3.base_version) == (3, 2, 1)
    assert v3.keys == ("m",)
    assert lg.document(1) == {"n": 1}
    assert lg.document(2) == {"n": 2, "m": "x"}
    assert lg.document(3) == {"n": 2}
    assert lg.last_write("m") == 3 and lg.last_write("n") == 2 and lg.last_write("nope") == 0
    assert v2.committed_ns < v3.committed_ns


def test_hash_chain_follows_the_tracer_rule() -> None:
    lg = ledger({"a": 1})
    lg.commit({"b": {"c": [1, 2.5, None, True]}}, base_version=1)
    lg.commit({}, ["a"], base_version=2)
    prev = ""
    for v in lg.versions():
        prev = t.chain_hash(prev, lg.document(v.version))
        assert lg.hash(v.version) == prev


def test_history_cannot_be_changed_through_what_goes_in_or_comes_out() -> None:
    lg = ledger()
    mine = {"items": [1, 2]}
    lg.commit({"doc": mine}, base_version=1)
    mine["items"].append(3)  # the writer keeps its reference
    out = lg.document(2)
    out["doc"]["items"].append(4)  # a reader changes its copy
    assert lg.document(2) == {"doc": {"items": [1, 2]}}
    with pytest.raises(TypeError):
        lg.head.state["doc"] = None  # type: ignore[index]


def test_rollback_appends_an_equal_version() -> None:
    lg = ledger({"a": 1})
    lg.commit({"a": 2, "b": 3}, base_version=1)
    v = lg.rollback(1, agent="ops")
    assert (v.version, v.kind, v.agent) == (3, "rollback", "ops")
    assert lg.document(3) == lg.document(1)
    assert set(v.keys) == {"a", "b"}
    assert len(lg) == 3  # nothing was removed


def test_listeners_hear_every_commit_and_can_stop() -> None:
    lg = ledger()
    heard: list[int] = []
    stop = lg.subscribe(lambda v: heard.append(v.version))
    lg.commit({"a": 1}, base_version=1)
    stop()
    lg.commit({"a": 2}, base_version=2)
    assert heard == [2]


def test_unknown_kind_and_missing_version_are_refused() -> None:
    lg = ledger()
    with pytest.raises(ValueError, match="unknown version kind 'merge'"):
        lg.commit({"a": 1}, base_version=1, kind="merge")
    with pytest.raises(KeyError, match="no version 5"):
        lg.version(5)


class Color(enum.StrEnum):
    RED = "red"


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({"a": {1: "x"}}, "$.a: key 1 is not a string"),
        ({"a": [0, {"b": {1, 2}}]}, "$.a[1].b: a set is not JSON"),
        ({"x": float("nan")}, "$.x: nan is not a JSON number"),
        (object(), "$: a object is not JSON"),
    ],
)
def test_json_copy_names_the_bad_path(value: object, path: str) -> None:
    with pytest.raises(ValueError) as exc:
        e.json_copy(value)
    assert str(exc.value) == path


def test_json_copy_converts_tuples_models_and_subclasses() -> None:
    from pydantic import BaseModel

    class M(BaseModel):
        x: int
        tags: tuple[str, ...]

    assert e.json_copy({"t": (1, 2), "m": M(x=1, tags=("a",)), "c": Color.RED}) == {
        "t": [1, 2],
        "m": {"x": 1, "tags": ["a"]},
        "c": "red",
    }
    assert type(e.json_copy(Color.RED)) is str
