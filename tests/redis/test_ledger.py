"""The shared ledger: processes that commit to one run agree on every version and hash."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from engine.core._ledger import StateLedger
from engine.distributed._ledger import LedgerError, RedisLedger
from tracer import FakeClock


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


def ledger(client: redis.Redis, *, create: bool = False, **kw: object) -> RedisLedger:
    return RedisLedger(
        client,
        namespace="t",
        run_id="r1",
        clock=FakeClock(tick_ns=1000),
        create=create,
        **kw,  # type: ignore[arg-type]
    )


def test_a_run_is_created_once_and_joined_after(client: redis.Redis) -> None:
    with pytest.raises(LedgerError, match="never started"):
        ledger(client)
    a = ledger(client, create=True, initial={"n": 0})
    with pytest.raises(LedgerError, match="already"):
        ledger(client, create=True, initial={"n": 9})
    b = ledger(client)
    assert b.head.doc == a.head.doc == {"n": 0}
    assert b.hash(1) == a.hash(1)


def test_interleaved_commits_give_every_process_the_same_history(client: redis.Redis) -> None:
    a = ledger(client, create=True, initial={"n": 0})
    b = ledger(client)
    reference = StateLedger({"n": 0}, clock=FakeClock())
    # a reads v1, b commits on top, then a commits what it computed from v1: a lost update,
    # recorded as such (base 1, parent 2), the same way on both sides.
    base = a.head.version
    b.commit({"n": b.head.doc["n"] + 1}, base_version=b.head.version, agent="b")
    a.commit({"n": 1, "by": "a"}, base_version=base, agent="a")
    reference.commit({"n": 1}, base_version=1, agent="b")
    reference.commit({"n": 1, "by": "a"}, base_version=1, agent="a")
    b.commit({}, ["by"], base_version=b.head_version, agent="b")
    reference.commit({}, ["by"], base_version=3, agent="b")
    for mine in (a, b):
        got = [
            (v.version, v.parent_version, v.base_version, v.agent, v.doc) for v in mine.versions()
        ]
        want = [
            (v.version, v.parent_version, v.base_version, v.agent, v.doc)
            for v in reference.versions()
        ]
        assert got == want
        assert [mine.hash(n) for n in (1, 2, 3, 4)] == [reference.hash(n) for n in (1, 2, 3, 4)]
    assert a.last_write("by") == 4


def test_a_replayed_commit_keeps_its_commit_time_and_listeners_hear_it(client: redis.Redis) -> None:
    a = ledger(client, create=True, initial={})
    b = ledger(client)
    heard: list[int] = []
    b.subscribe(lambda v: heard.append(v.version))
    v = a.commit({"x": 1}, base_version=1, agent="a")
    assert b.head.committed_ns == v.committed_ns
    assert heard == [2]


def test_a_retried_commit_is_appended_once(
    client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = ledger(client, create=True, initial={})
    real_eval = client.eval
    calls = {"n": 0}

    def eval_losing_first_reply(*args: object) -> object:
        calls["n"] += 1
        out = real_eval(*args)  # type: ignore[arg-type]
        if calls["n"] == 1:
            raise redis.exceptions.ConnectionError("reply lost")
        return out

    monkeypatch.setattr(client, "eval", eval_losing_first_reply)
    v = a.commit({"x": 1}, base_version=1)
    assert v.version == 2 and calls["n"] == 2
    assert client.llen("t:ledger:r1") == 2
