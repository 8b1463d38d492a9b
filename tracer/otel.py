"""Record state commits, reads and cache invalidations from any code, on the plain OpenTelemetry API.

agentrace's detectors for shared state (``stale_read``, ``lost_update``) read three span
events of its open convention (docs/conventions.md). Code that agentrace does not run
records them with these functions on the current span, through whatever
``TracerProvider`` and exporter it already has; ``agentrace serve`` (or ``import``) then
turns them into ``state_versions`` and ``state_reads`` rows like the engine's own::

    from opentelemetry import trace
    from tracer.otel import record_commit, record_read, record_invalidation

    with tracer.start_as_current_span("invoke_agent risk", attributes={"gen_ai.agent.name": "risk"}):
        record_read(version=cached.version, keys=["credit_score"], via="cache", cache="bureau")

The state of a run is one JSON document whose versions are numbered 1, 2, 3... in the
order they were committed; version 1 is the initial state. The caller keeps the version
numbers (and each version's hash, which ``record_commit`` returns) next to its data, as
any store keeps a row version.

This module needs only ``opentelemetry-api``: it uses no engine and no store. On a span
that is not recording nothing is recorded. Bad arguments raise ``TypeError`` or
``ValueError`` at once: the event they would make is refused at ingest, far from the
mistake.

Thread rules: as OpenTelemetry's. A span may be given events from any thread.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry import trace

from . import conventions as c
from ._state import canonical_json, chain_hash, changed_keys, diff

__all__ = ["record_commit", "record_invalidation", "record_read"]


def _span(span: trace.Span | None) -> trace.Span:
    return trace.get_current_span() if span is None else span


def _keys(keys: Iterable[str]) -> list[str]:
    if isinstance(keys, str):
        raise TypeError(f"keys must be a list of top-level keys, not the string {keys!r}")
    out = list(keys)
    for k in out:
        if not isinstance(k, str):
            raise TypeError(f"keys must be strings, got {k!r}")
    return out


def _version(name: str, value: int, lowest: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < lowest:
        raise ValueError(f"{name} must be an integer >= {lowest}, got {value!r}")
    return value


def record_commit(
    state: Mapping[str, Any],
    *,
    version: int,
    parent_hash: str = "",
    base_version: int | None = None,
    keys: Iterable[str] | None = None,
    parent_state: Mapping[str, Any] | None = None,
    agent: str | None = None,
    kind: str = "commit",
    span: trace.Span | None = None,
) -> str:
    """Record that ``state`` (the whole document) was committed as ``version``.

    ``parent_hash`` is the hash this function returned for ``version - 1`` ("" for
    version 1); the returned hash chains this version to it (``agentrace verify``
    checks the chain). ``base_version`` is the version the writer read before writing
    (default: ``version - 1``, the writer saw the head); an older base is how a lost
    update shows. ``keys`` are the top-level keys written; without them they are
    worked out from ``parent_state`` when given, else every key of ``state``. With
    ``parent_state`` the event carries a JSON Patch against it instead of the whole
    document. ``kind`` is ``initial`` for version 1 and ``commit`` otherwise unless
    told (``rollback``, ``compensation``, ``fork``).
    """
    _version("version", version, 1)
    if not isinstance(state, Mapping):
        raise TypeError(f"state must be a JSON object (a mapping), got {type(state).__name__}")
    if version == 1 and parent_state is not None:
        raise ValueError("version 1 has no parent: leave parent_state out")
    if kind not in c.STATE_KINDS:
        raise ValueError(f"kind must be one of {', '.join(c.STATE_KINDS)}, got {kind!r}")
    if version == 1 and kind == "commit":
        kind = "initial"
    base = version - 1 if base_version is None else _version("base_version", base_version, 0)
    if base >= version:
        raise ValueError(f"base_version {base} is not older than version {version}")
    doc = dict(state)
    digest = chain_hash(parent_hash, doc)
    attrs: dict[str, Any] = {
        c.STATE_VERSION: version,
        c.STATE_PARENT_VERSION: version - 1,
        c.STATE_BASE_VERSION: base,
        c.STATE_KIND: kind,
        c.STATE_HASH: digest,
    }
    if agent:
        attrs[c.STATE_AGENT] = agent
    if parent_state is None:
        attrs[c.STATE_SNAPSHOT] = canonical_json(doc)
        written = sorted(doc) if keys is None else _keys(keys)
    else:
        patch = diff(dict(parent_state), doc)
        attrs[c.STATE_PATCH] = canonical_json(patch)
        written = changed_keys(patch) if keys is None else _keys(keys)
    attrs[c.STATE_KEYS] = written
    _span(span).add_event(c.EV_STATE_COMMIT, attrs)
    return digest


def record_read(
    *,
    version: int,
    keys: Iterable[str] = (),
    via: str = "store",
    cache: str | None = None,
    head_version: int | None = None,
    agent: str | None = None,
    span: trace.Span | None = None,
) -> None:
    """Record that the current step read ``keys`` of the state as they were at ``version``.

    ``version`` is the version that was served, which for a cache or a message may be
    older than the head; ``via`` says through what (``store``, ``cache`` or ``message``)
    and ``cache`` names the cache. ``head_version``, when the reader knows it, is the
    newest committed version at the time of the read: with it a stale read is certain,
    without it agentrace compares commit and read times. No keys means the whole document.
    """
    _version("version", version, 1)
    if via not in c.READ_VIA:
        raise ValueError(f"via must be one of {', '.join(c.READ_VIA)}, got {via!r}")
    attrs: dict[str, Any] = {c.STATE_VERSION: version, c.STATE_KEYS: _keys(keys), c.STATE_VIA: via}
    if head_version is not None:
        attrs[c.STATE_HEAD_VERSION] = _version("head_version", head_version, version)
    if cache:
        attrs[c.STATE_CACHE] = cache
    if agent:
        attrs[c.STATE_AGENT] = agent
    _span(span).add_event(c.EV_STATE_READ, attrs)


def record_invalidation(
    cache: str,
    *,
    keys: Iterable[str] = (),
    version: int | None = None,
    agent: str | None = None,
    span: trace.Span | None = None,
) -> None:
    """Record that ``cache`` dropped ``keys`` (no keys: everything).

    ``version`` is the version whose commit made the entries old, when there is one. The
    event is evidence for a person reading the run (the fix of a stale read is often
    exactly this event, missing); detectors do not need it.
    """
    if not isinstance(cache, str) or not cache:
        raise ValueError(f"cache must be the cache's name, got {cache!r}")
    attrs: dict[str, Any] = {c.STATE_CACHE: cache, c.STATE_KEYS: _keys(keys)}
    if version is not None:
        attrs[c.STATE_VERSION] = _version("version", version, 1)
    if agent:
        attrs[c.STATE_AGENT] = agent
    _span(span).add_event(c.EV_CACHE_INVALIDATE, attrs)
