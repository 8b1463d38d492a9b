"""Bulk reads of recorded runs: what replay, forks and run diffs need, one query per table.

``Store`` answers one run at a time with frozen models (``store.spans(run_id)``,
``store.state_at(run_id, k)``); replaying thousands of runs, or a run of ten
thousand steps, needs every row of several runs at once and fast. These functions
read them in one query per table, in the order the reader needs, as named tuples.
They are the only way the engine reads a store: it runs no SQL of its own.

:func:`states` is the one place a state document is built from its versions
(``Store.state_at`` uses it too): version 1 (or any version stored whole) is a
snapshot, every other version a JSON Patch against its parent.

Thread rules: as the store's (each call is one read on the store's connection).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson

from ._errors import StateChainError
from ._state import JSON, apply_patch

if TYPE_CHECKING:
    from ._store._store import Store


class VersionRow(NamedTuple):
    """One state version as stored (``snapshot`` or ``patch`` is JSON text)."""

    run_id: str
    version: int
    parent_version: int | None
    base_version: int | None
    kind: str
    agent: str | None
    span_id: str
    committed_ns: int
    hash: str | None
    keys: tuple[str, ...]
    snapshot: str | None
    patch: str | None


class ReadRow(NamedTuple):
    run_id: str
    span_id: str
    version: int
    head_version: int | None
    keys: tuple[str, ...]
    via: str
    cache: str | None


class SpanRow(NamedTuple):
    """A span's facts with its attributes as a dict (parsed once, here)."""

    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    start_ns: int
    end_ns: int
    status: str
    agent: str | None
    attributes: dict[str, Any]


class MessageRow(NamedTuple):
    run_id: str
    span_id: str
    event: str
    message_id: str | None
    topic: str | None
    key: str | None
    consumer_group: str | None
    consumer: str | None
    agent: str | None
    attempt: int | None
    outcome: str | None
    fault: str | None
    time_ns: int


def states(rows: Iterable[Sequence[Any]], run_id: str = "") -> Iterator[tuple[int, JSON]]:
    """``(version, document)`` for each row ``(version, snapshot, patch, ...)`` in version
    order: the document at that version. The same document object is patched in place as
    the walk moves on, so copy what you keep. :class:`StateChainError` (a StoreError)
    naming the version when a row has no snapshot to start from, a version is missing, or
    a patch does not apply."""
    doc: JSON = None
    expected: int | None = None
    for row in rows:
        version, snapshot, patch = row[0], row[1], row[2]
        if expected is not None and version != expected:
            # A patch applies to its parent only: with a version missing (not arrived yet, or
            # never sent) the document after it cannot be told.
            raise StateChainError(run_id, expected, "is missing")
        expected = version + 1
        try:
            if snapshot is not None:
                doc = orjson.loads(snapshot)
            elif doc is None:
                raise StateChainError(run_id, version, "has no snapshot to start from")
            else:
                doc = _patch(doc, orjson.loads(patch))
        except (
            orjson.JSONDecodeError,
            ValueError,
            KeyError,
            IndexError,
            TypeError,
            AttributeError,
        ) as exc:
            # A row edited by hand: say which version, as `verify` would.
            raise StateChainError(run_id, version, f"does not apply: {exc!r}") from None
        yield version, doc


def _patch(doc: Any, ops: list[dict[str, Any]]) -> Any:
    """``doc`` with ``ops`` applied in place. Most versions only set or remove top-level keys
    of an object: those are done here directly; anything else goes through ``apply_patch``."""
    if not isinstance(doc, dict):
        return apply_patch(doc, ops, in_place=True)
    for i, op in enumerate(ops):
        path = op.get("path", "")
        key = path[1:]
        if not path.startswith("/") or "/" in key or "~" in key:
            return apply_patch(doc, ops[i:], in_place=True)
        kind = op.get("op")
        if kind in ("add", "replace"):
            doc[key] = op["value"]  # fresh from orjson: nobody else holds it
        elif kind == "remove":
            del doc[key]
        else:
            return apply_patch(doc, ops[i:], in_place=True)
    return doc


def state_versions(store: Store, run_ids: Sequence[str]) -> list[VersionRow]:
    """Every state version of ``run_ids``, by run then version."""
    rows = store.sql(
        """SELECT run_id, version, parent_version, base_version, kind, agent, span_id,
                  committed_ns, hash, keys, snapshot, patch
           FROM state_versions WHERE list_contains(?, run_id) ORDER BY run_id, version""",
        [list(run_ids)],
    ).fetchall()
    return [
        VersionRow(
            r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], tuple(r[9] or ()), r[10], r[11]
        )
        for r in rows
    ]


def state_reads(store: Store, run_ids: Sequence[str]) -> list[ReadRow]:
    """Every recorded read of ``run_ids``, by run, span and order of reading."""
    rows = store.sql(
        "SELECT run_id, span_id, version, head_version, keys, via, cache FROM state_reads "
        "WHERE list_contains(?, run_id) ORDER BY run_id, span_id, seq",
        [list(run_ids)],
    ).fetchall()
    return [ReadRow(r[0], r[1], r[2], r[3], tuple(r[4] or ()), r[5], r[6]) for r in rows]


def spans(
    store: Store, run_ids: Sequence[str], *, name_prefixes: Sequence[str] = ()
) -> list[SpanRow]:
    """The spans of ``run_ids`` (those whose name starts with one of ``name_prefixes``, when
    given), by run, start time and span id."""
    where = "list_contains(?, trace_id)"
    params: list[Any] = [list(run_ids)]
    if name_prefixes:
        where += " AND (" + " OR ".join("starts_with(name, ?)" for _ in name_prefixes) + ")"
        params += list(name_prefixes)
    rows = store.sql(
        "SELECT trace_id, span_id, parent_span_id, name, start_ns, end_ns, status_code, agent, "
        f"attributes FROM spans WHERE {where} ORDER BY trace_id, start_ns, span_id",
        params,
    ).fetchall()
    return [
        SpanRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], orjson.loads(r[8]) if r[8] else {})
        for r in rows
    ]


def exceptions(store: Store, run_ids: Sequence[str]) -> dict[str, tuple[str | None, str | None]]:
    """The first ``exception`` event of each span of ``run_ids``: span id -> (type, message)."""
    out: dict[str, tuple[str | None, str | None]] = {}
    for span_id, attrs in store.sql(
        "SELECT span_id, attributes FROM span_events WHERE list_contains(?, trace_id) "
        "AND name = 'exception' ORDER BY trace_id, span_id, seq",
        [list(run_ids)],
    ).fetchall():
        a = orjson.loads(attrs)
        out.setdefault(span_id, (a.get("exception.type"), a.get("exception.message")))
    return out


def messages(store: Store, run_ids: Sequence[str]) -> list[MessageRow]:
    """The message facts (publish, deliver, ack, ...) of ``run_ids``, by run and time."""
    rows = store.sql(
        """SELECT run_id, span_id, event, message_id, topic, msg_key, consumer_group, consumer,
                  agent, attempt, outcome, fault, time_ns
           FROM messages WHERE list_contains(?, run_id) ORDER BY run_id, time_ns, span_id, seq""",
        [list(run_ids)],
    ).fetchall()
    return [MessageRow(*r) for r in rows]


__all__ = [
    "MessageRow",
    "ReadRow",
    "SpanRow",
    "VersionRow",
    "exceptions",
    "messages",
    "spans",
    "state_reads",
    "state_versions",
    "states",
]
