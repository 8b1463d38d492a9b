"""The read-through cache and its invalidation policies."""

from __future__ import annotations

import pytest

import engine as e
import tracer as t


def setup(policy: str, ttl: float | None = None) -> tuple[e.StateLedger, e.Cache, t.FakeClock]:
    clock = t.FakeClock()
    lg = e.StateLedger({"score": 700, "name": "x"}, clock=clock)
    return lg, e.Cache(e.CachePolicy("bureau", policy, ttl), lg), clock  # type: ignore[arg-type]


def test_none_serves_the_old_version_after_a_rewrite() -> None:
    lg, cache, _ = setup("none")
    first = cache.get("score")
    assert (first.value, first.version, first.hit, first.stale) == (700, 1, False, False)
    lg.commit({"score": 640}, base_version=1)
    again = cache.get("score")
    assert (again.value, again.version, again.head_version, again.hit, again.stale) == (
        700,
        1,
        2,
        True,
        True,
    )


def test_a_commit_of_other_keys_does_not_make_a_read_stale() -> None:
    lg, cache, _ = setup("none")
    cache.get("score")
    lg.commit({"name": "y"}, base_version=1)
    r = cache.get("score")
    assert (r.version, r.head_version, r.stale) == (1, 2, False)


def test_on_commit_drops_the_written_keys_only() -> None:
    lg, cache, _ = setup("on_commit")
    cache.get("score")
    cache.get("name")
    lg.commit({"score": 640}, base_version=1)
    r = cache.get("score")
    assert (r.value, r.version, r.hit, r.stale) == (640, 2, False, False)
    assert cache.get("name").hit
    assert (cache.hits, cache.misses) == (1, 3)


def test_ttl_expires_on_the_ledger_clock() -> None:
    lg, cache, clock = setup("ttl", ttl=5)
    cache.get("score")
    lg.commit({"score": 640}, base_version=1)
    clock.advance(4.999)
    assert cache.get("score").value == 700
    clock.advance(0.001)
    r = cache.get("score")
    assert (r.value, r.version, r.hit) == (640, 2, False)


def test_missing_key_is_a_key_error_and_caches_nothing() -> None:
    lg, cache, _ = setup("none")
    with pytest.raises(KeyError):
        cache.get("nope")
    lg.commit({"nope": 1}, base_version=1)
    assert cache.get("nope").value == 1


def test_invalidate_and_close() -> None:
    lg, cache, _ = setup("on_commit")
    cache.get("score")
    cache.invalidate("score")
    assert not cache.get("score").hit
    cache.invalidate()
    assert not cache.get("score").hit
    cache.close()
    lg.commit({"score": 1}, base_version=1)  # no longer listening: the entry stays
    assert cache.get("score").value == 700


@pytest.mark.parametrize(
    ("policy", "ttl", "message"),
    [
        ("sometimes", None, "unknown invalidation 'sometimes'"),
        ("ttl", None, "needs a positive ttl"),
    ],
)
def test_bad_policies_are_refused(policy: str, ttl: float | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        e.CachePolicy("c", policy, ttl)  # type: ignore[arg-type]


def test_values_served_are_copies() -> None:
    clock = t.FakeClock()
    lg = e.StateLedger({"doc": {"a": [1]}}, clock=clock)
    cache = e.Cache(e.CachePolicy("c", "none"), lg)
    cache.get("doc").value["a"].append(2)
    assert cache.get("doc").value == {"a": [1]}
    assert lg.document() == {"doc": {"a": [1]}}
