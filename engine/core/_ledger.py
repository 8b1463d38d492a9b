"""The state ledger: a run's state as immutable versions 1..N.

A version is never changed or removed. Each records its ``parent_version`` (the
head it was appended to), its ``base_version`` (what its writer read: a writer
that read an older version than the head it lands on may overwrite what it never
saw, which is how a lost update shows), its ``kind`` (initial, commit, rollback,
compensation, fork), the agent and span that wrote it, when, the top-level keys
it wrote, and the document itself. ``hash`` of version n is
``tracer.chain_hash(hash(n - 1), document(n))`` (the empty string before
version 1), computed on demand and kept.

Documents are JSON objects. Values are copied in on commit (so a writer that
keeps a reference cannot change history) and copied out by readers; the
top-level dict of a version is shared with later versions for the keys they did
not write (copy on write).

Thread rules: ``commit`` and ``rollback`` may be called from any thread (they
take a lock); listeners run on the committing thread, inside no lock, in the
order they subscribed. Reading versions needs no lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, NamedTuple

from tracer import Clock, chain_hash

JSON = Any
KINDS: Final = ("initial", "commit", "rollback", "compensation", "fork")


class _NotJSON(Exception):
    def __init__(self, detail: str) -> None:
        self.detail = detail
        self.path: list[str] = []  # innermost first


def json_copy(value: Any, where: str = "$") -> JSON:
    """A deep copy of ``value`` that is plain JSON, or ValueError naming the first bad path.

    dicts (string keys), lists and tuples (copied as lists), str, int, float (finite),
    bool and None are JSON; pydantic models are dumped in JSON mode first; subclasses
    of those types (str enums, OrderedDict...) become their base type.
    """
    try:
        return _copy(value)
    except _NotJSON as exc:
        raise ValueError(f"{where}{''.join(reversed(exc.path))}: {exc.detail}") from None


def _copy(value: Any) -> JSON:
    # The path of a bad value is built only when there is one: this runs on every step.
    t = type(value)
    if t is str or t is int or t is bool or value is None:
        return value
    if t is float:
        if value != value or value in (_INF, _NINF):
            raise _NotJSON(f"{value!r} is not a JSON number")
        return value
    if t is dict:
        out = {}
        for k, v in value.items():
            if type(k) is not str:
                raise _NotJSON(f"key {k!r} is not a string")
            try:
                out[k] = _copy(v)
            except _NotJSON as exc:
                exc.path.append(f".{k}")
                raise
        return out
    if t is list or t is tuple:
        items = []
        for i, v in enumerate(value):
            try:
                items.append(_copy(v))
            except _NotJSON as exc:
                exc.path.append(f"[{i}]")
                raise
        return items
    dump = getattr(value, "model_dump", None)
    if callable(dump):  # a pydantic model
        return _copy(dump(mode="json"))
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        return str.__str__(value)  # the characters, not an enum's "Color.RED"
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return _copy(float(value))
    if isinstance(value, dict):
        return _copy(dict(value))
    if isinstance(value, (list, tuple)):
        return _copy(list(value))
    raise _NotJSON(f"a {t.__name__} is not JSON")


_INF = float("inf")
_NINF = float("-inf")


def copy_out(value: JSON) -> JSON:
    """A copy of a JSON value that is already known to be JSON (cheap for scalars)."""
    t = type(value)
    if t is dict:
        return {k: copy_out(v) for k, v in value.items()}
    if t is list:
        return [copy_out(v) for v in value]
    return value


_MISSING: Any = object()


@dataclass(frozen=True, slots=True, init=False)
class Update:
    """What an agent returns to change the state (anything else it returns is just its output).

    ``changes`` sets top-level keys, ``delete`` removes them; ``output`` is what the
    agent hands to its successors (by default the ``changes`` themselves).
    """

    changes: Mapping[str, JSON]
    delete: tuple[str, ...]
    output: Any

    def __init__(
        self,
        changes: Mapping[str, JSON] | None = None,
        *,
        delete: Iterable[str] = (),
        output: Any = _MISSING,
    ) -> None:
        object.__setattr__(self, "changes", dict(changes) if changes else {})
        object.__setattr__(self, "delete", tuple(delete))
        object.__setattr__(self, "output", output)

    @property
    def has_output(self) -> bool:
        return self.output is not _MISSING

    def handoff(self) -> Any:
        """The output handed to successors."""
        return self.output if self.output is not _MISSING else dict(self.changes)

    @property
    def empty(self) -> bool:
        return not self.changes and not self.delete


class Version(NamedTuple):
    """One immutable version of a run's state.

    ``doc`` is the document itself, shared with the ledger: never change it (read it
    through ``state``, or take a copy with ``document()``). A NamedTuple rather than
    a frozen dataclass because one is made per step: it builds 4x faster.
    """

    version: int
    parent_version: int  # 0 for the first version
    base_version: int  # what the writer read; 0 for none
    kind: str
    agent: str | None
    span_id: str
    committed_ns: int
    keys: tuple[str, ...]  # top-level keys written (all of them for an initial or fork version)
    doc: dict[str, JSON]

    def __repr__(self) -> str:
        return (
            f"Version({self.version}, parent={self.parent_version}, base={self.base_version}, "
            f"kind={self.kind!r}, agent={self.agent!r}, keys={list(self.keys)})"
        )

    @property
    def state(self) -> Mapping[str, JSON]:
        """The document, read-only at the top level (copy values out with ``document()``)."""
        return MappingProxyType(self.doc)

    def document(self) -> dict[str, JSON]:
        """A copy of the document that the caller may change."""
        return copy_out(self.doc)


CommitListener = Callable[[Version], None]


class StateLedger:
    """The versions of one run's state. See the module docstring for the rules."""

    def __init__(
        self,
        initial: Mapping[str, JSON] | None = None,
        *,
        clock: Clock,
        agent: str | None = None,
        span_id: str = "",
        kind: str = "initial",
    ) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._listeners: list[CommitListener] = []
        doc = json_copy(dict(initial or {}), "initial state")
        v1 = Version(1, 0, 0, kind, agent, span_id, clock.now_ns(), tuple(sorted(doc)), doc)
        self._versions: list[Version] = [v1]
        self._hashes: list[str] = []
        self._last_write: dict[str, int] = dict.fromkeys(doc, 1)

    # -- reading -----------------------------------------------------------------------------

    @property
    def head(self) -> Version:
        return self._versions[-1]

    @property
    def head_version(self) -> int:
        return len(self._versions)

    def __len__(self) -> int:
        return len(self._versions)

    def version(self, n: int) -> Version:
        if not 1 <= n <= len(self._versions):
            raise KeyError(f"no version {n} (the ledger has 1..{len(self._versions)})")
        return self._versions[n - 1]

    def versions(self) -> tuple[Version, ...]:
        return tuple(self._versions)

    def document(self, n: int | None = None) -> dict[str, JSON]:
        """A copy of the document at version ``n`` (the head by default)."""
        return (self.head if n is None else self.version(n)).document()

    def last_write(self, key: str) -> int:
        """The latest version that wrote ``key`` (set or deleted it); 0 if none did."""
        return self._last_write.get(key, 0)

    def hash(self, n: int) -> str:
        """The chain hash of version ``n`` (computed for every version up to it, once)."""
        hashes = self._hashes
        if n > len(hashes):
            with self._lock:
                prev = hashes[-1] if hashes else ""
                for v in self._versions[len(hashes) : n]:
                    prev = chain_hash(prev, v.doc)
                    hashes.append(prev)
        return hashes[n - 1]

    # -- writing -----------------------------------------------------------------------------

    def subscribe(self, listener: CommitListener) -> Callable[[], None]:
        """Call ``listener(version)`` after every later commit; returns a function that stops it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

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
        """Append a version: the head with ``changes`` set and ``delete`` removed.

        ``copy=False`` skips copying ``changes`` (the caller already made them plain JSON
        that nobody else holds). Deleting a key that is not there is allowed (and recorded).
        """
        if kind not in KINDS:
            raise ValueError(f"unknown version kind {kind!r} (one of {', '.join(KINDS)})")
        if copy:
            changes = {k: json_copy(v, k) for k, v in changes.items()}
        with self._lock:
            parent = self._versions[-1]
            doc = dict(parent.doc)
            doc.update(changes)
            keys = list(changes)
            for k in delete:
                doc.pop(k, None)
                if k not in changes:
                    keys.append(k)
            n = len(self._versions) + 1
            v = Version(
                n, n - 1, base_version, kind, agent, span_id, self.clock.now_ns(), tuple(keys), doc
            )
            self._versions.append(v)
            last = self._last_write
            for k in keys:
                last[k] = n
        for listener in self._listeners:
            listener(v)
        return v

    def replace(
        self,
        doc: Mapping[str, JSON],
        *,
        base_version: int,
        kind: str,
        agent: str | None = None,
        span_id: str = "",
    ) -> Version:
        """Append a version whose document is ``doc`` (a rollback to an earlier document, or a fork)."""
        new = json_copy(dict(doc), "state")
        head = self.head.doc
        changes = {
            k: v
            for k, v in new.items()
            if k not in head or head[k] != v or type(head[k]) is not type(v)
        }
        removed = [k for k in head if k not in new]
        return self.commit(
            changes,
            removed,
            base_version=base_version,
            kind=kind,
            agent=agent,
            span_id=span_id,
            copy=False,
        )

    def rollback(self, to_version: int, *, agent: str | None = None, span_id: str = "") -> Version:
        """Append a version equal in content to ``to_version`` (history is not rewound)."""
        target = self.version(to_version)
        return self.replace(
            target.doc,
            base_version=self.head_version,
            kind="rollback",
            agent=agent,
            span_id=span_id,
        )
