"""What an agent sees: a read-only view of the state, caches to read through, and its context.

A :class:`StateView` is one version of the state (the head when the step
started: the step's ``base_version``). Reading a key notes it; after the step
the engine records the keys read, the version served and the head at the first
read as one ``agentrace.state.read`` event (``via=store``). Reads through
``view.cache(name)`` are recorded one by one as they happen (``via=cache``),
with the version the cache served.

Values come out as copies: an agent can change what it got without changing
history. The views are not thread-safe; each step gets its own.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from ._cache import Cache, CacheRead
from ._errors import EngineError
from ._ledger import JSON, StateLedger, Version, copy_out
from ._time import TimeSource

CacheListener = Callable[[str, CacheRead], None]


class StateView(Mapping[str, JSON]):
    """A read-only mapping over one version of the state (see the module docstring)."""

    __slots__ = ("_caches", "_doc", "_ledger", "_on_cache_read", "read_head", "reads", "version")

    def __init__(
        self,
        ledger: StateLedger,
        version: Version,
        caches: Mapping[str, Cache] | None = None,
        on_cache_read: CacheListener | None = None,
        *,
        doc: Mapping[str, JSON] | None = None,
    ) -> None:
        self._ledger = ledger
        # ``doc`` overrides the version's document: a router sees the step's changes before they commit.
        self._doc = version.doc if doc is None else doc
        self.version = version.version
        self._caches = caches or {}
        self._on_cache_read = on_cache_read
        self.reads: dict[str, None] = {}  # keys read, in first-read order
        self.read_head = 0  # the ledger's head at the first read

    def _note(self, key: str) -> None:
        reads = self.reads
        if key not in reads:
            if not reads:
                self.read_head = self._ledger.head_version
            reads[key] = None

    def __getitem__(self, key: str) -> JSON:
        self._note(key)
        return copy_out(self._doc[key])

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self._note(key)
        return key in self._doc

    def __iter__(self) -> Iterator[str]:
        return iter(self._doc)

    def __len__(self) -> int:
        return len(self._doc)

    def __repr__(self) -> str:
        return f"StateView(version={self.version}, keys={sorted(self._doc)})"

    @property
    def head_version(self) -> int:
        """The ledger's head now (later than ``version`` when another branch committed since)."""
        return self._ledger.head_version

    def to_dict(self) -> dict[str, JSON]:
        """A copy of the whole document (every key counts as read)."""
        for k in self._doc:
            self._note(k)
        return copy_out(self._doc)

    def cache(self, name: str) -> CacheView:
        """Read through the run's cache ``name`` (declared on the workflow)."""
        try:
            cache = self._caches[name]
        except KeyError:
            have = ", ".join(sorted(self._caches)) or "none"
            raise EngineError(f"no cache {name!r} in this workflow (declared: {have})") from None
        return CacheView(cache, self._on_cache_read)


class CacheView:
    """Reads through one cache; ``view[key]`` returns the cached value, ``read(key)`` the details."""

    __slots__ = ("_cache", "_listener")

    def __init__(self, cache: Cache, listener: CacheListener | None) -> None:
        self._cache = cache
        self._listener = listener

    def read(self, key: str) -> CacheRead:
        r = self._cache.get(key)
        if self._listener is not None:
            self._listener(self._cache.name, r)
        return r

    def __getitem__(self, key: str) -> JSON:
        return self.read(key).value

    def get(self, key: str, default: Any = None) -> JSON:
        try:
            return self.read(key).value
        except KeyError:
            return default


class AgentContext:
    """The step an agent is running: run id, names, step and attempt numbers, time and randomness.

    ``rng`` is seeded from the run's seed, the run id, the step and the attempt, so an
    agent that draws from it is as repeatable as the rest of the run. ``sleep`` goes
    through the engine's time source (instant under virtual time, and cut short by
    the step's timeout).
    """

    __slots__ = ("_rng", "_seed", "agent", "attempt", "run_id", "step", "time", "workflow")

    def __init__(
        self,
        run_id: str,
        workflow: str,
        agent: str,
        step: int,
        attempt: int,
        time: TimeSource,
        seed: int | None,
    ) -> None:
        self.run_id = run_id
        self.workflow = workflow
        self.agent = agent
        self.step = step
        self.attempt = attempt
        self.time = time
        self._seed = seed
        self._rng: random.Random | None = None

    @property
    def rng(self) -> random.Random:
        if self._rng is None:
            self._rng = random.Random(f"{self._seed}/{self.run_id}/{self.step}/{self.attempt}")
        return self._rng

    def now_ns(self) -> int:
        return self.time.now_ns()

    async def sleep(self, seconds: float) -> None:
        await self.time.sleep(seconds)

    def __repr__(self) -> str:
        return f"AgentContext({self.agent!r}, step={self.step}, attempt={self.attempt})"
