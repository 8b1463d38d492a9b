"""A run's state ledger shared by processes: Redis decides the order of versions.

A choreographed run spread over processes still has one state: each process keeps a
:class:`RedisLedger`, a :class:`~engine.StateLedger` whose commits go through one Redis
list per run (``{ns}:ledger:{run_id}``). Entry 1 is the initial document; entry n is
the commit that made version n (changes, deleted keys, base version, kind, agent,
span, commit time). RPUSH numbers a commit atomically, so every process agrees on
the order; each replays the entries it has not seen into its own ledger, which
gives every process the same documents and the same hash chain. A commit retried
after a lost reply is appended once (its id is noted in ``{ns}:ledger:{run_id}:ids``).

The semantics are the in-process ledger's: a commit lands on whatever the head is
when it lands (its parent), whatever its writer read (its ``base_version``), so a
lost update between processes is recorded as one between coroutines would be.
Reading the head (``head``, ``head_version``), the versions or a key's last write
first catches up with Redis.

Thread and async rules: the methods are synchronous and block on Redis (a round trip
each, under a lock), because the engine commits and reads heads from synchronous
code; a lost connection is retried until ``reconnect_timeout``, blocking the caller.
"""

from __future__ import annotations

import contextlib
import threading
import time as _time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final

import orjson
import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tracer import Clock

from ..core._errors import EngineError
from ..core._ledger import JSON, StateLedger, Version, json_copy

_RETRYABLE: Final = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)

# Append a commit once: a commit retried after a lost reply finds its first position.
# KEYS: list, ids hash. ARGV: commit id, entry, ttl.
_APPEND = """
local n = redis.call('HGET', KEYS[2], ARGV[1])
if n then return tonumber(n) end
n = redis.call('RPUSH', KEYS[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], n)
redis.call('EXPIRE', KEYS[2], ARGV[3])
return n
"""

# Append entry 1 (the initial document) only to an empty list: a run is created once.
_CREATE = """
if redis.call('LLEN', KEYS[1]) > 0 then return 0 end
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""


class LedgerError(EngineError):
    """A shared ledger that could not be created, found or reached."""


class _PinnedClock:
    """A clock that tells a given time while a replayed commit is applied."""

    __slots__ = ("base", "pinned")

    def __init__(self, base: Clock) -> None:
        self.base = base
        self.pinned: int | None = None

    def now_ns(self) -> int:
        pinned = self.pinned
        return self.base.now_ns() if pinned is None else pinned

    @contextlib.contextmanager
    def at(self, ns: int) -> Iterator[None]:
        self.pinned = ns
        try:
            yield
        finally:
            self.pinned = None


def ledger_key(namespace: str, run_id: str) -> str:
    return f"{namespace}:ledger:{run_id}"


def call(fn: Any, what: str, reconnect_timeout: float) -> Any:
    """``fn()`` retried over lost connections (blocking) until ``reconnect_timeout``."""
    deadline = _time.monotonic() + reconnect_timeout
    wait = 0.02
    while True:
        try:
            return fn()
        except _RETRYABLE as exc:
            if _time.monotonic() + wait > deadline:
                raise LedgerError(f"{what}: {type(exc).__name__}: {exc}") from exc
            _time.sleep(wait)
            wait = min(wait * 2, 0.5)


class RedisLedger(StateLedger):
    """One run's ledger, ordered by Redis (see the module docstring).

    ``create=True`` starts the run's list with ``initial`` (LedgerError if it exists);
    otherwise the list must exist and ``initial`` is ignored. Entries expire ``ttl_s``
    after the run was created.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        namespace: str,
        run_id: str,
        clock: Clock,
        initial: Mapping[str, JSON] | None = None,
        create: bool = False,
        span_id: str = "",
        ttl_s: int = 7 * 86_400,
        reconnect_timeout: float = 30.0,
    ) -> None:
        self._client = client
        self._key = ledger_key(namespace, run_id)
        self._timeout = reconnect_timeout
        self._ttl_s = ttl_s
        self._sync_lock = threading.RLock()
        pinned = _PinnedClock(clock)
        if create:
            doc = json_copy(dict(initial or {}), "initial state")
            ns = clock.now_ns()
            entry = orjson.dumps({"doc": doc, "span": span_id, "t": ns})
            made = call(
                lambda: client.eval(_CREATE, 1, self._key, entry, ttl_s),
                f"create the ledger of run {run_id}",
                reconnect_timeout,
            )
            if not made:
                raise LedgerError(f"run {run_id} has a ledger already")
        else:
            raw = call(lambda: client.lindex(self._key, 0), f"read run {run_id}", reconnect_timeout)
            if raw is None:
                raise LedgerError(f"no ledger for run {run_id} (the run was never started here)")
            first = orjson.loads(raw)
            doc, ns, span_id = first["doc"], int(first["t"]), str(first.get("span") or "")
        with pinned.at(ns):
            super().__init__(doc, clock=pinned, span_id=span_id)
        self._pinned = pinned

    # -- catching up ---------------------------------------------------------------------------

    def sync(self, upto: int | None = None) -> None:
        """Replay the versions committed elsewhere (up to version ``upto``, default all)."""
        with self._sync_lock:
            have = len(self._versions)
            if upto is not None and upto <= have:
                return
            stop = -1 if upto is None else upto - 1
            raw = call(
                lambda: self._client.lrange(self._key, have, stop), "read versions", self._timeout
            )
            for item in raw:
                e = orjson.loads(item)
                with self._pinned.at(int(e["t"])):
                    StateLedger.commit(
                        self, e["c"], e["d"], base_version=int(e["b"]), kind=e["k"],
                        agent=e["a"], span_id=e["s"], copy=False,
                    )  # fmt: skip

    @property
    def head(self) -> Version:
        self.sync()
        return self._versions[-1]

    @property
    def head_version(self) -> int:
        self.sync()
        return len(self._versions)

    def version(self, n: int) -> Version:
        if n > len(self._versions):
            self.sync(upto=n)
        return super().version(n)

    def versions(self) -> tuple[Version, ...]:
        self.sync()
        return super().versions()

    def last_write(self, key: str) -> int:
        self.sync()
        return super().last_write(key)

    def hash(self, n: int) -> str:
        if n > len(self._versions):
            self.sync(upto=n)
        return super().hash(n)

    # -- writing -------------------------------------------------------------------------------

    def commit(
        self,
        changes: Mapping[str, JSON],
        delete: Iterable[str] = (),
        *,
        base_version: int,
        kind: str = "commit",
        agent: str | None = None,
        span_id: str = "",
        copy: bool = True,
    ) -> Version:
        """Append a version in Redis's order: the head at the moment it lands, with ``changes``."""
        if copy:
            changes = {k: json_copy(v, k) for k, v in changes.items()}
        deleted = list(delete)
        with self._sync_lock:
            ns = self._pinned.base.now_ns()
            entry = orjson.dumps(
                {"c": changes, "d": deleted, "b": base_version, "k": kind, "a": agent,
                 "s": span_id, "t": ns},
            )  # fmt: skip
            commit_id = uuid.uuid4().hex
            n = int(
                call(
                    lambda: self._client.eval(
                        _APPEND, 2, self._key, self._key + ":ids", commit_id, entry, self._ttl_s
                    ),
                    "commit",
                    self._timeout,
                )
            )
            self.sync(upto=n - 1)
            with self._pinned.at(ns):
                v = StateLedger.commit(
                    self, changes, deleted, base_version=base_version, kind=kind, agent=agent,
                    span_id=span_id, copy=False,
                )  # fmt: skip
            if v.version != n:  # pragma: no cover  # only if someone wrote the list by hand
                raise LedgerError(f"version {v.version} landed as entry {n} of {self._key}")
            return v
