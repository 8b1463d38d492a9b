"""Detectors over the state ledger: stale reads and lost updates.

Both are one range join in DuckDB over ``state_reads`` / ``state_versions`` (the
common case, a fresh read or a commit on the current head, gives an empty range),
then a little Python per finding. Keys are top-level keys, as the conventions
record them; a read of no keys reads the whole document.
"""

from __future__ import annotations

import collections
from typing import Any

import orjson

from .._state import apply_patch
from .._store._models import Finding
from ._context import RunContext
from ._model import Severity, clip, fmt_list, fmt_ns, make_finding


def _top_key(path: str) -> str | None:
    """The top-level key a JSON Pointer starts with (None for the whole document)."""
    if not path:
        return None
    token = path[1:].split("/", 1)[0]
    return token.replace("~1", "/").replace("~0", "~") if "~" in token else token


def values_at(ctx: RunContext, wants: dict[int, set[str]]) -> dict[int, dict[str, Any]]:
    """The values of some top-level keys at some versions, rebuilt in one pass over the ledger.

    ``wants`` maps a version to the keys wanted there. Only the wanted keys are rebuilt
    (an operation under one top-level key touches nothing else), so the walk costs
    what those keys' history costs. A version the store cannot rebuild (no snapshot
    before it, a patch that does not apply) is left out: the values are evidence for
    people, never the reason for a finding.
    """
    if not wants:
        return {}
    lo, hi = min(wants), max(wants)
    wanted = set().union(*wants.values())
    rows = ctx.store.sql(
        """SELECT version, snapshot, patch FROM state_versions
           WHERE run_id = $run AND version <= $hi AND version >= coalesce(
               (SELECT max(version) FROM state_versions
                WHERE run_id = $run AND version <= $lo AND snapshot IS NOT NULL), 1)
           ORDER BY version""",
        {"run": ctx.run_id, "lo": lo, "hi": hi},
    ).fetchall()
    out: dict[int, dict[str, Any]] = {}
    doc: dict[str, Any] | None = None
    for version, snapshot, patch in rows:
        try:
            if snapshot is not None:
                whole = orjson.loads(snapshot)
                doc = (
                    {k: whole[k] for k in wanted if k in whole} if isinstance(whole, dict) else None
                )
            elif doc is not None and patch is not None:
                for op in orjson.loads(patch):
                    key = _top_key(op["path"])
                    if key is None:  # the whole document replaced
                        value = op.get("value")
                        doc = (
                            {k: value[k] for k in wanted if k in value}
                            if isinstance(value, dict)
                            else None
                        )
                        if doc is None:
                            break
                    elif key in wanted:
                        doc = apply_patch(doc, [op], in_place=True)
            else:
                doc = None
        except (orjson.JSONDecodeError, ValueError, KeyError, IndexError, TypeError):
            doc = None
        keys = wants.get(version)
        if keys and doc is not None:
            # A copy: the document is patched in place as the walk goes on.
            out[version] = {k: clip(orjson.loads(orjson.dumps(doc.get(k)))) for k in sorted(keys)}
    return out


def detect_stale_reads(ctx: RunContext) -> list[Finding]:
    """``stale_read``: a read served at version k of keys K while a later version that
    changed a key of K was already committed.

    Happens-before comes from the ledger where the read recorded its head: a version
    in (k, head] committed (``committed_ns``) no later than the read. Without a head
    (foreign traces), from time alone: a version after k committed strictly before the
    read. One finding per read; ``committed_version`` is the newest such version (what
    a fresh read would have returned for those keys), ``stale_since_version`` the first.
    """
    if not ctx.present.reads or ctx.present.versions < 2:
        return []
    rows = ctx.store.sql(
        """WITH v AS (
               SELECT version, agent, span_id, committed_ns, keys FROM state_versions WHERE run_id = $run),
           -- Without a head, the newest version committed strictly before the read bounds
           -- it: one row per commit time (several versions may share one), so the as-of
           -- join cannot pick an arbitrary one of a tie.
           upto AS (
               SELECT committed_ns, max(max(version)) OVER (ORDER BY committed_ns) AS version
               FROM v GROUP BY committed_ns),
           r AS (
               SELECT r.span_id, r.seq, r.agent, r.version, r.head_version, r.keys, r.via, r.cache,
                      r.read_ns, coalesce(r.head_version, a.version) AS upto
               FROM state_reads r
               ASOF LEFT JOIN upto a ON r.read_ns > a.committed_ns
               WHERE r.run_id = $run),
           -- Only reads behind the head can be stale; filtering them first keeps the range
           -- join small (a piecewise merge join over every read costs seconds at 10k reads).
           behind AS (SELECT * FROM r WHERE upto > version)
           SELECT r.span_id, r.seq, r.agent, r.version, r.head_version, r.keys, r.via, r.cache, r.read_ns,
                  v.version, v.agent, v.span_id, v.committed_ns,
                  CASE WHEN len(r.keys) = 0 THEN v.keys ELSE list_intersect(v.keys, r.keys) END
           FROM behind r JOIN v ON v.version > r.version AND v.version <= r.upto
           WHERE (v.committed_ns < r.read_ns OR (r.head_version IS NOT NULL AND v.committed_ns = r.read_ns))
             AND len(v.keys) > 0 AND (len(r.keys) = 0 OR list_has_any(v.keys, r.keys))
           ORDER BY r.read_ns, r.span_id, r.seq, v.version""",
        {"run": ctx.run_id},
    ).fetchall()
    by_read: dict[tuple[str, int], list[tuple[Any, ...]]] = collections.defaultdict(list)
    for row in rows:
        by_read[(row[0], row[1])].append(row)
    if not by_read:
        return []
    wants: dict[int, set[str]] = collections.defaultdict(set)
    for hits in by_read.values():
        changed = {k for h in hits for k in h[13]}
        wants[hits[0][3]] |= changed
        wants[hits[-1][9]] |= changed
    values = values_at(ctx, wants)

    out = []
    for (span_id, seq), hits in by_read.items():
        _, _, reader, read_v, head_v, read_keys, via, cache, read_ns = hits[0][:9]
        first, last = hits[0], hits[-1]
        fresh_v, writer, writer_span, committed_ns = last[9], last[10], last[11], last[12]
        keys = sorted({k for h in hits for k in h[13]})
        before = read_ns - committed_ns
        through = f"cache {cache!r}" if via == "cache" and cache else via
        message = (
            f"{reader or 'an agent'} read v{read_v} of {fmt_list(keys)} via {through}; "
            f"v{fresh_v} by {writer or 'an unknown writer'} had been committed {fmt_ns(before)} before the read"
        )
        got, fresh = values.get(read_v, {}), values.get(fresh_v, {})
        evidence: dict[str, Any] = {
            "reader": reader,
            "writer": writer,
            "read_version": read_v,
            "head_version": head_v,
            "committed_version": fresh_v,
            "committed_ns": committed_ns,
            "read_ns": read_ns,
            "committed_before_read_ns": before,
            "stale_since_version": first[9],
            "stale_for_ns": read_ns - first[12],
            "newer_versions": [h[9] for h in hits],
            "keys": keys,
            "read_keys": list(read_keys),
            "via": via,
            "cache": cache,
            "reader_span_id": span_id,
            "writer_span_id": writer_span,
            "happens_before": "head_version" if head_v is not None else "commit times",
        }
        if got or fresh:
            evidence["values"] = {k: {"read": got.get(k), "committed": fresh.get(k)} for k in keys}
        out.append(
            make_finding(
                ctx,
                "stale_read",
                Severity.ERROR,
                message,
                identity=(span_id, seq),
                at_ns=read_ns,
                agents=(reader, writer),
                versions=(read_v, fresh_v),
                span_ids=(span_id, writer_span),
                evidence=evidence,
            )
        )
    return out


def detect_lost_updates(ctx: RunContext) -> list[Finding]:
    """``lost_update``: a commit B built on base b overwrote keys that a version A in
    (b, B) had changed, without having read A.

    B must be an ordinary ``commit`` whose base is known; A is any version in between
    that changed an overlapping key and was not committed by B's own span (a step that
    commits twice knows its own first write). One finding per (A, B).
    """
    if ctx.present.versions < 3:
        return []
    rows = ctx.store.sql(
        """WITH v AS (
               SELECT version, base_version, kind, agent, span_id, committed_ns, keys
               FROM state_versions WHERE run_id = $run),
           -- Only a commit whose base is older than its parent can have lost anything;
           -- filtering them first keeps the range join small.
           late AS (
               SELECT * FROM v
               WHERE kind = 'commit' AND base_version IS NOT NULL AND base_version < version - 1)
           SELECT b.version, b.base_version, b.agent, b.span_id, b.committed_ns,
                  a.version, a.agent, a.span_id, a.committed_ns, list_intersect(a.keys, b.keys)
           FROM late b JOIN v a ON a.version > b.base_version AND a.version < b.version
           WHERE a.span_id <> b.span_id AND list_has_any(a.keys, b.keys)
           ORDER BY b.version, a.version""",
        {"run": ctx.run_id},
    ).fetchall()
    if not rows:
        return []
    wants: dict[int, set[str]] = collections.defaultdict(set)
    for row in rows:
        for v in (row[1], row[5], row[0]):  # base, lost, overwriting
            wants[v] |= set(row[9])
    values = values_at(ctx, wants)
    out = []
    for b_v, base, b_agent, b_span, b_ns, a_v, a_agent, a_span, a_ns, keys in rows:
        keys = sorted(keys)
        message = (
            f"{b_agent or 'an agent'} committed v{b_v} on base v{base}, overwriting "
            f"{fmt_list(keys)} that {a_agent or 'an agent'} had changed in v{a_v}: that update is lost"
        )
        evidence: dict[str, Any] = {
            "base_version": base,
            "lost_version": a_v,
            "lost_by": a_agent,
            "lost_span_id": a_span,
            "lost_committed_ns": a_ns,
            "overwriting_version": b_v,
            "overwritten_by": b_agent,
            "overwriting_span_id": b_span,
            "overwriting_committed_ns": b_ns,
            "keys": keys,
        }
        at_base, at_a, at_b = values.get(base, {}), values.get(a_v, {}), values.get(b_v, {})
        if at_a or at_b:
            evidence["values"] = {
                k: {"base": at_base.get(k), "lost": at_a.get(k), "written": at_b.get(k)}
                for k in keys
            }
        out.append(
            make_finding(
                ctx,
                "lost_update",
                Severity.ERROR,
                message,
                identity=(a_v, b_v),
                at_ns=b_ns,
                agents=(a_agent, b_agent),
                versions=(a_v, b_v),
                span_ids=(a_span, b_span),
                evidence=evidence,
            )
        )
    return out
