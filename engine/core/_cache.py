"""A read-through cache in front of a run's state ledger.

Agents read some keys through a named cache (``state.cache("bureau")["credit_score"]``).
A miss reads the ledger's head and keeps the value with the version it came from;
a hit serves the kept value and version, whatever the head is now. When the
kept value is dropped is the cache's :class:`CachePolicy`:

- ``none``: never. A value rewritten after it was cached is still served: a stale
  read, the bug this component exists to show.
- ``on_commit``: a commit that writes a key drops that key.
- ``ttl``: an entry is served for ``ttl`` seconds of the ledger's clock after it was filled.

Every read returns a :class:`CacheRead` saying which version was served and what
the head was at that moment; the engine records it as an ``agentrace.state.read``
event with ``via=cache``.

Thread rules: ``get`` and ``invalidate`` take a lock and may be called from any thread.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Final, Literal

from ._ledger import JSON, StateLedger, Version, copy_out

Policy = Literal["none", "on_commit", "ttl"]
POLICIES: Final = ("none", "on_commit", "ttl")
_NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """How a cache named ``name`` drops entries (see the module docstring)."""

    name: str
    invalidation: Policy = "on_commit"
    ttl: float | None = None  # seconds, for invalidation="ttl"

    def __post_init__(self) -> None:
        if self.invalidation not in POLICIES:
            raise ValueError(
                f"cache {self.name!r}: unknown invalidation {self.invalidation!r} (one of {', '.join(POLICIES)})"
            )
        if self.invalidation == "ttl" and (self.ttl is None or self.ttl <= 0):
            raise ValueError(
                f"cache {self.name!r}: invalidation='ttl' needs a positive ttl (seconds)"
            )


@dataclass(frozen=True, slots=True)
class CacheRead:
    """One read through a cache."""

    key: str
    value: JSON
    version: int  # the version the value came from
    head_version: int  # the ledger's head when it was served
    hit: bool
    stale: bool  # ``key`` was written after the version served: a newer value existed


class Cache:
    """A cache bound to one ledger; build one per run from a :class:`CachePolicy`."""

    def __init__(self, policy: CachePolicy, ledger: StateLedger) -> None:
        self.policy = policy
        self.name = policy.name
        self.ledger = ledger
        self.hits = 0
        self.misses = 0
        self._entries: dict[str, tuple[JSON, int, int]] = {}  # key -> (value, version, filled_ns)
        self._lock = threading.Lock()
        self._unsubscribe = (
            ledger.subscribe(self._on_commit) if policy.invalidation == "on_commit" else None
        )

    def _on_commit(self, version: Version) -> None:
        with self._lock:
            for k in version.keys:
                self._entries.pop(k, None)

    def get(self, key: str) -> CacheRead:
        """Read ``key``; KeyError when the state has no such key (nothing is cached then)."""
        ledger = self.ledger
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and self.policy.invalidation == "ttl":
                assert self.policy.ttl is not None
                if ledger.clock.now_ns() - entry[2] >= int(self.policy.ttl * _NS):
                    del self._entries[key]
                    entry = None
            head = ledger.head
            if entry is not None:
                self.hits += 1
                value, version, _ = entry
                hit = True
            else:
                if key not in head.doc:
                    raise KeyError(key)
                value, version = head.doc[key], head.version
                self._entries[key] = (value, version, ledger.clock.now_ns())
                self.misses += 1
                hit = False
        stale = ledger.last_write(key) > version
        return CacheRead(key, copy_out(value), version, head.version, hit, stale)

    def invalidate(self, key: str | None = None) -> None:
        """Drop ``key`` (or everything)."""
        with self._lock:
            if key is None:
                self._entries.clear()
            else:
                self._entries.pop(key, None)

    def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def __repr__(self) -> str:
        return f"Cache({self.name!r}, {self.policy.invalidation}, {len(self._entries)} entries)"


def make_caches(policies: Any, ledger: StateLedger) -> dict[str, Cache]:
    return {p.name: Cache(p, ledger) for p in policies}
