"""The DuckDB store: one file, the tables of docs/store.md, a write path and a read API.

Threading: a ``Store`` may be shared by threads; each thread gets its own DuckDB
cursor. Writes are serialised by DuckDB (one writer per file, and within the
process one transaction at a time per cursor). Every public write is one
transaction: it is stored whole or not at all.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import duckdb
import orjson
import pyarrow as pa

from .. import conventions as c
from .._clock import SystemClock
from .._errors import (
    DecodeError,
    DuplicateSpanError,
    NotFoundError,
    StateChainError,
    StoreLockedError,
)
from .._guard import give_back_memory
from .._otlp import (
    KIND_BY_NAME,
    STATUS_BY_NAME,
    PB2ExportTraceServiceRequest,
    fill_attrs,
)
from .._redact import Redactor
from .._state import JSON, FieldChange, chain_hash, field_changes
from ..reads import states
from ._derive import derive_flows, derive_langgraph, known_and_linked, rederive_stored
from ._ingest import Batch, Payload, add_payload
from ._models import (
    Finding,
    IngestResult,
    Message,
    Run,
    RunTokens,
    Span,
    SpanEvent,
    SpanLink,
    StateRead,
    StateVersion,
    VerifyResult,
)
from ._open import check_store_file, damaged, masked
from ._parallel import Decoded, decoded_from, merged
from ._runs import runs_table
from ._schema import migrate

DEFAULT_DB = "agentrace.duckdb"
_CHUNK_SPANS = 50_000
_LOCK_PID = re.compile(r"PID (\d+)")


def _holder_command(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    # The holder's arguments may carry a token: never repeat it.
    return masked(" ".join(p.decode(errors="replace") for p in raw.split(b"\0") if p))[:200] or None


def connect(path: str, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection, with a lock conflict turned into :class:`StoreLockedError`."""
    try:
        return duckdb.connect(path, read_only=read_only)
    except duckdb.IOException as exc:
        text = str(exc)
        if "lock" in text.lower():
            m = _LOCK_PID.search(text)
            pid = int(m.group(1)) if m else None
            raise StoreLockedError(path, pid, _holder_command(pid) if pid else None) from None
        raise damaged(path, exc, "opened") from None
    except duckdb.Error as exc:
        raise damaged(path, exc, "opened") from None


class Store:
    """An agentrace store in a DuckDB file (or in memory with ``":memory:"``)."""

    def __init__(self, path: str | Path = DEFAULT_DB, *, read_only: bool = False) -> None:
        self.path = str(path)
        check_store_file(self.path)
        if not read_only and self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._con = connect(self.path, read_only=read_only)
        self.read_only = read_only
        if not read_only:
            migrate(self._con, self.path)
        self._local = threading.local()
        self._write_lock = threading.RLock()
        self._state_cache: collections.OrderedDict[tuple[str, int], str] = collections.OrderedDict()
        self._cache_lock = threading.Lock()
        self._listeners: list[Callable[[IngestResult, frozenset[str]], None]] = []
        # Secrets are replaced on ingest (tracer._redact); None stores spans as sent.
        self.redactor: Redactor | None = Redactor.default()

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.close()
        if isinstance(exc, duckdb.Error):
            # A file that opened but fails to read: one line naming it, not DuckDB's traceback.
            raise damaged(self.path, exc) from exc

    def _cur(self) -> duckdb.DuckDBPyConnection:
        cur = getattr(self._local, "cur", None)
        if cur is None:
            cur = self._con.cursor()
            self._local.cur = cur
        return cur

    def on_ingest(self, listener: Callable[[IngestResult, frozenset[str]], None]) -> None:
        """Call ``listener(result, run_ids)`` after every committed ingest (on the writing thread)."""
        self._listeners.append(listener)

    # -- writing -----------------------------------------------------------------------------

    def ingest(
        self, payloads: Iterable[Payload], *, source: str = "<input>", skip_bad: bool = False
    ) -> IngestResult:
        """Store every span of ``payloads`` in one transaction.

        A payload is a protobuf request, a decoded OTLP/JSON request (dict) or a
        file :class:`Record`. Spans already in the store with the same content are
        skipped; any bad payload raises :class:`DecodeError` and stores nothing.
        With ``skip_bad``, a span that does not validate is left out and named in
        ``errors`` instead, and the rest is stored.
        """
        with self._write_lock:
            con = self._cur()
            con.execute("BEGIN TRANSACTION")
            try:
                result, runs = self._ingest_in(con, payloads, source, skip_bad)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        self._committed(result, runs)
        return result

    def _ingest_in(
        self, con: duckdb.DuckDBPyConnection, payloads: Iterable[Payload], source: str,
        skip_bad: bool = False,
    ) -> tuple[IngestResult, frozenset[str]]:  # fmt: skip
        batch = Batch(self.redactor, lenient=skip_bad)
        total = IngestResult()
        runs: set[str] = set()
        rejected: list[str] = []
        requests = 0
        for payload in payloads:
            requests += 1
            add_payload(batch, payload, source, requests)
            if len(batch) >= _CHUNK_SPANS:
                total += self._write(con, batch)
                runs |= batch.trace_ids
                rejected += batch.rejected
                batch = Batch(self.redactor, lenient=skip_bad)
        total += self._write(con, batch)
        runs |= batch.trace_ids
        rejected += batch.rejected
        runs = {r for r in runs if r in total.run_ids} if rejected else runs
        return IngestResult(
            runs=len(runs), spans=total.spans, skipped=total.skipped, versions=total.versions,
            requests=requests, errors=tuple(rejected), run_ids=frozenset(runs),
        ), frozenset(runs)  # fmt: skip

    def _write(self, con: duckdb.DuckDBPyConnection, batch: Batch) -> IngestResult:
        """Insert one batch and bring its runs' rows up to date (inside the caller's transaction).

        Every span of a trace the store has not seen is new, so the common case (a request
        of new traces) inserts without looking at the stored spans at all. Only traces that
        already have a ``runs`` row are compared with what is stored: the same span again
        is skipped, the same ids with other content refused. Cost therefore follows the
        batch, not the size of the store.
        """
        if not batch.spans:
            return IngestResult(skipped=batch.duplicates)
        known, linked = known_and_linked(con, batch.trace_ids)
        # New traces: every span of them is in the batch, so their agents are worked out
        # before the rows are written; traces seen before are re-derived from the store.
        batch.resolve(batch.trace_ids.difference(known))
        return self._write_decoded(con, decoded_from(batch), known, linked=linked)

    def _write_decoded(
        self,
        con: duckdb.DuckDBPyConnection,
        batch: Decoded,
        known: list[str],
        *,
        derive: bool = True,
        linked: set[tuple[str, str]] | None = None,
    ) -> IngestResult:
        """Insert one decoded batch (``known``: its traces the store already has; ``linked``,
        when read with them, the stored links that touch its traces). Without ``derive``, the
        derive phase is left to the caller (once, after its last batch)."""
        if not batch.spans:
            return IngestResult(skipped=batch.duplicates)
        tables = batch.tables
        spans = tables["spans"]
        n_existing = 0
        lg = batch.langgraph if derive else frozenset()
        # New traces are summed from the batch alone (in Python when it is small: see
        # tracer._store._runs); traces seen before, from the store.
        rows = (
            runs_table(spans, tables.get("state_versions"), batch.trace_ids)
            if derive and not known and not lg
            else None
        )
        # The statements below that read the batch read it as a temporary table, a copy:
        # DuckDB keeps a Python object that a statement of a transaction read alive until
        # the transaction ends, so a file's chunks would all stay in memory until its commit.
        # Plain inserts take the Arrow tables directly, which keeps nothing.
        staged = bool(known) or (derive and rows is None)
        if staged:
            _stage(con, "_in_spans", spans)
        try:
            if known:
                con.execute(
                    # Only the stored spans this batch names again: a trace that grows over
                    # many batches is not copied whole for each.
                    """CREATE OR REPLACE TEMP TABLE _old_spans AS
                       SELECT t.trace_id, t.span_id, t.parent_span_id, t.name, t.kind, t.start_ns,
                              t.end_ns, t.status_code, t.status_message,
                              t.attributes::VARCHAR AS attributes
                       FROM spans t SEMI JOIN _in_spans s
                         ON s.trace_id = t.trace_id AND s.span_id = t.span_id
                       WHERE t.trace_id IN (SELECT unnest($known))""",
                    {"known": known},
                )
                clash = _first(
                    con.execute(
                        """SELECT s.trace_id, s.span_id, s.name FROM _in_spans s
                           JOIN _old_spans t ON t.trace_id = s.trace_id AND t.span_id = s.span_id
                           WHERE s.name <> t.name OR s.start_ns <> t.start_ns OR s.end_ns <> t.end_ns
                              OR s.attributes <> t.attributes OR s.parent_span_id <> t.parent_span_id
                              OR s.kind <> t.kind OR s.status_code <> t.status_code
                              OR s.status_message <> t.status_message
                           LIMIT 1"""
                    ).fetchall()
                )
                if clash:
                    raise DuplicateSpanError(
                        f"span {clash[2]!r} ({clash[1]}): already stored in trace {clash[0]} "
                        "with different content"
                    )
                (n_existing,) = con.execute(
                    """SELECT count(*) FROM _in_spans s SEMI JOIN _old_spans t
                       ON t.trace_id = s.trace_id AND t.span_id = s.span_id"""
                ).fetchall()[0]
            if n_existing == 0:
                for name, table in tables.items():
                    con.from_arrow(table).insert_into(name)
            else:
                con.execute(
                    """CREATE OR REPLACE TEMP TABLE _new_spans AS
                       SELECT trace_id, span_id FROM _in_spans s ANTI JOIN _old_spans t
                       ON t.trace_id = s.trace_id AND t.span_id = s.span_id"""
                )
                con.execute(
                    """INSERT INTO spans SELECT s.* FROM _in_spans s SEMI JOIN _new_spans n
                       ON n.trace_id = s.trace_id AND n.span_id = s.span_id"""
                )
                for name, table in tables.items():
                    if name == "spans":
                        continue
                    key = "trace_id" if name in ("span_events", "span_links") else "run_id"
                    _stage(con, "_in_rows", table)
                    con.execute(
                        f"""INSERT INTO {name} SELECT r.* FROM _in_rows r SEMI JOIN _new_spans n
                            ON n.trace_id = r.{key} AND n.span_id = r.span_id"""
                    )
                    con.execute("DROP TABLE _in_rows")
            derived_versions = 0
            if derive:
                if known:
                    rederive_stored(con, sorted(known))
                derived_versions = derive_langgraph(con, sorted(lg)) if lg else 0
                if rows is None:
                    self._refresh_runs(
                        con, batch.trace_ids, "spans" if known else "_in_spans",
                        handled=bool(known) or batch.has_errors,
                    )  # fmt: skip
                else:
                    con.from_arrow(rows).insert_into("runs")
                derive_flows(con, batch.trace_ids, batch.cross_links, around=linked)
        finally:
            if staged:
                # After a failed statement the transaction is aborted, and the table goes
                # with its rollback: the error that aborted it is the one to see.
                with contextlib.suppress(duckdb.TransactionException):
                    con.execute("DROP TABLE IF EXISTS _in_spans")
        inserted = spans.num_rows - n_existing
        if "state_versions" not in tables:
            versions = 0
        elif n_existing == 0:
            versions = tables["state_versions"].num_rows
        else:
            versions = _count_new_versions(con, tables["state_versions"])
        versions += derived_versions
        return IngestResult(
            spans=inserted, skipped=n_existing + batch.duplicates, versions=versions,
            run_ids=frozenset(spans.column("trace_id").unique().to_pylist()),
        )  # fmt: skip

    def ingest_group(self, chunks: list[Decoded], *, source: str = "<input>") -> IngestResult:
        """Store whole requests decoded elsewhere (a receiver's group) in one transaction, as
        :meth:`ingest` would: written as one batch, with one set of statements, when no two
        share a trace; else as :meth:`ingest_decoded` writes a file's chunks."""
        one = merged(chunks)
        if one is None or not one.spans:
            return self.ingest_decoded(chunks, source=source)
        with self._transaction() as con:
            known, linked = known_and_linked(con, one.trace_ids)
            total = self._write_decoded(con, one, known, linked=linked)
        runs = total.run_ids
        result = dataclasses.replace(total, runs=len(runs), requests=one.requests)
        self._committed(result, runs)
        return result

    def ingest_decoded(
        self, chunks: Iterable[Decoded], *, source: str = "<input>", bounded: bool = True
    ) -> IngestResult:
        """Store batches decoded elsewhere (:mod:`tracer._store._parallel`) in one transaction,
        in order; as :meth:`ingest`, a bad chunk raises and stores nothing.

        Each chunk's agents were resolved over the chunk alone: its traces that an earlier
        chunk (or ingest) already stored are re-derived from the store, as any known trace is.
        ``bounded``: with DuckDB's memory limit lowered while the chunks are written and
        derived (see ``_bounded_memory``); when DuckDB cannot work within it,
        :class:`SpillLimitError` (nothing stored), and the caller may write the chunks again
        unbounded.
        """
        from ._seen import SeenSpans, fingerprints  # numpy: only for the files that need it

        with self._write_lock, self._bounded_memory(bounded) as bound:
            con = bound.con
            con.execute("BEGIN TRANSACTION")
            try:
                total = IngestResult()
                requests = 0
                # The derive phase runs once, after the last chunk, over every trace the
                # chunks touched: a trace cut across many chunks is derived once, not per chunk.
                written: set[str] = set()
                rederive: set[str] = set()
                langgraph: set[str] = set()
                links: set[tuple[str, str]] = set()
                # A trace an earlier chunk wrote is read back only when a span of this one
                # may repeat a span written before (see tracer._store._seen).
                seen = SeenSpans()
                before: set[str] = set()  # traces the store had before this transaction
                for chunk in chunks:
                    requests += chunk.requests
                    if not chunk.spans:
                        total += IngestResult(skipped=chunk.duplicates)
                        continue
                    # runs rows are written after the last chunk, so whether the store had a
                    # trace before this transaction is asked once, when a chunk first holds it.
                    if fresh := chunk.trace_ids - written:
                        before.update(_known(con, fresh))
                    stored = chunk.trace_ids & before
                    grown = chunk.trace_ids & written
                    if seen.add(fingerprints(chunk.tables["spans"])):
                        stored |= grown
                    try:
                        total += self._write_decoded(con, chunk, sorted(stored), derive=False)
                    except DecodeError as exc:
                        raise chunk.placed(exc, source) from None
                    written |= chunk.trace_ids
                    rederive |= stored | grown
                    langgraph |= chunk.langgraph
                    links |= chunk.cross_links
                if written:
                    if rederive:
                        rederive_stored(con, sorted(rederive), bulk=True)
                    if langgraph:
                        total += IngestResult(versions=derive_langgraph(con, sorted(langgraph)))
                    self._refresh_runs(con, written)
                    derive_flows(con, written, links)
                total += IngestResult(run_ids=frozenset(written))
                con.execute("COMMIT")
            except duckdb.OutOfMemoryException as exc:
                con.execute("ROLLBACK")
                if bound.lowered:
                    raise SpillLimitError(str(exc).split("\n", 1)[0]) from exc
                raise
            except BaseException:
                con.execute("ROLLBACK")
                raise
        runs = total.run_ids
        result = IngestResult(
            runs=len(runs), spans=total.spans, skipped=total.skipped, versions=total.versions,
            requests=requests, run_ids=runs,
        )  # fmt: skip
        self._committed(result, runs)
        return result

    @contextlib.contextmanager
    def _bounded_memory(self, bounded: bool = True) -> Iterator[_MemoryBound]:
        """The writer's connection with DuckDB's memory limit lowered to
        :data:`INGEST_MEMORY_LIMIT` (when it was higher) until the end.

        A file is imported in one transaction, and DuckDB holds a transaction's new rows
        in its buffers until the commit: about 1.2 KB a span, several times the file.
        Under the limit it writes them to its temporary files instead, so writing a
        file's chunks takes bounded memory whatever its size. The derive phase after them
        runs under it too: its joins and aggregates over the file's largest trace spill
        alike (a 2M-span trace: 0.4 GB at the peak instead of 1.2 GB, for 7% more time).
        The limit is the database's, so reads running meanwhile share it (and spill
        alike). A store in memory has nowhere to spill and keeps its limit.
        """
        bound = _MemoryBound(self._cur(), lower=bounded and self.path != ":memory:")
        try:
            yield bound
        finally:
            bound.restore()

    def _refresh_runs(
        self, con: duckdb.DuckDBPyConnection, run_ids: Iterable[str], source: str = "spans",
        *, handled: bool = True,
    ) -> None:  # fmt: skip
        """Recompute the ``runs`` rows of ``run_ids`` from ``source`` (``spans``, or the
        batch being written when it holds every span of those runs); ``handled=False``
        when ``source`` has no error span (nothing to tell handled errors from)."""
        con.execute(
            """INSERT OR REPLACE INTO runs
            -- Read again by each part below rather than held whole: a trace of millions of
            -- spans would otherwise be materialised, attributes and all.
            WITH s AS NOT MATERIALIZED (
                SELECT trace_id, span_id, parent_span_id, name, start_ns, end_ns, status_code,
                       attributes, cycle, agent, service_name
                FROM $source WHERE trace_id IN (SELECT unnest($ids))),
            -- Ties in start time go to a root, then to the lower span id: the row must not
            -- depend on the order spans arrived in (an export imported again gives the same).
            roots AS (
                SELECT trace_id, arg_min(span_id, (start_ns, span_id)) AS root_span_id,
                       arg_min(name, (start_ns, span_id)) AS root_name,
                       arg_min(attributes, (start_ns, span_id)) AS root_attrs,
                       arg_min(status_code, (start_ns, span_id)) AS root_status
                FROM s WHERE parent_span_id = '' OR cycle GROUP BY trace_id),
            -- An error is handled when its parent ended without one: something caught it
            -- (a retry, a fallback). Errors that reached the root, or whose parent has not
            -- arrived, are not.
            handled AS ($handled),
            agg AS (
                SELECT trace_id, min(start_ns) AS start_ns, max(end_ns) AS end_ns, count(*) AS n,
                       count(*) FILTER (WHERE status_code = 'ERROR') AS errors,
                       arg_min(status_code, (start_ns, parent_span_id <> '', span_id)) AS first_status,
                       list_sort(list(DISTINCT agent) FILTER (WHERE agent IS NOT NULL)) AS agents,
                       arg_min(span_id, (start_ns, parent_span_id <> '', span_id)) AS first_span,
                       arg_min(name, (start_ns, parent_span_id <> '', span_id)) AS first_name,
                       arg_min(service_name, (start_ns, parent_span_id <> '', span_id)) AS service_name
                FROM s GROUP BY trace_id),
            v AS (SELECT run_id, count(*) AS nv FROM state_versions
                  WHERE run_id IN (SELECT unnest($ids)) GROUP BY run_id)
            SELECT agg.trace_id,
                   coalesce(r.root_attrs->>'gen_ai.workflow.name', r.root_name, agg.first_name),
                   coalesce(r.root_attrs->>'agentrace.run.pattern', 'imported'),
                   coalesce(r.root_attrs->>'agentrace.run.status',
                            lower(coalesce(r.root_status, agg.first_status))),
                   agg.service_name,
                   coalesce(r.root_span_id, agg.first_span),
                   coalesce(r.root_name, agg.first_name),
                   agg.start_ns, agg.end_ns, agg.n, agg.errors - coalesce(h.n, 0),
                   coalesce(agg.agents, []), coalesce(v.nv, 0),
                   r.root_attrs->>'agentrace.run.parent',
                   r.root_attrs->>'agentrace.run.workflow_ref',
                   r.root_attrs->>'agentrace.run.scenario',
                   coalesce(r.root_attrs, '{}'), coalesce(h.n, 0), agg.trace_id,
                   NULL  -- analysed_ns: the run changed, its findings are due again
            FROM agg LEFT JOIN roots r USING (trace_id) LEFT JOIN v ON v.run_id = agg.trace_id
            LEFT JOIN handled h ON h.trace_id = agg.trace_id""".replace(
                "$handled", _HANDLED if handled else _NO_HANDLED
            ).replace("$source", source),
            {"ids": sorted(run_ids)},
        )

    def rederive(
        self, run_ids: Iterable[str] | None = None, *, langgraph: bool = False
    ) -> IngestResult:
        """Recompute the derived rows of ``run_ids`` (every run when None) from their stored
        spans, in one transaction: agents, cycles, runs, flows and (with ``langgraph``) the
        state rebuilt from LangGraph traces. Writes do this for the traces they touch; this
        is for a store written by an older agentrace. Returns the derived versions."""
        with self._transaction() as con:
            if run_ids is None:
                ids = [r[0] for r in con.execute("SELECT run_id FROM runs ORDER BY 1").fetchall()]
            else:
                ids = sorted(set(run_ids))
            if not ids:
                return IngestResult()
            rederive_stored(con, ids, full=True)
            versions = 0
            if langgraph:
                versions = derive_langgraph(con, ids)
            self._refresh_runs(con, ids)
            derive_flows(con, ids, ())
        self._invalidate(ids)
        return IngestResult(runs=len(ids), versions=versions, run_ids=frozenset(ids))

    def replace_findings(
        self, run_id: str, findings: Iterable[Finding], *, analysed_ns: int | None = None
    ) -> int:
        """Replace the stored findings of ``run_id`` with ``findings``, in one transaction, and
        mark the run analysed at ``analysed_ns`` (default: now) until spans change it."""
        when = SystemClock().now_ns() if analysed_ns is None else analysed_ns
        rows = [
            (f.run_id, f.finding_id, f.kind, f.severity, f.message, list(f.agents), list(f.versions),
             list(f.span_ids), orjson.dumps(f.evidence).decode(), f.detected_ns)
            for f in findings
        ]  # fmt: skip
        for row in rows:
            if row[0] != run_id:
                raise ValueError(f"finding {row[1]} belongs to run {row[0]}, not {run_id}")
        with self._write_lock:
            con = self._cur()
            con.execute("BEGIN TRANSACTION")
            try:
                con.execute("DELETE FROM findings WHERE run_id = ?", [run_id])
                if rows:
                    con.executemany(
                        "INSERT INTO findings VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
                    )
                con.execute("UPDATE runs SET analysed_ns = ? WHERE run_id = ?", [when, run_id])
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return len(rows)

    @contextmanager
    def _transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._write_lock:
            con = self._cur()
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def _committed(self, result: IngestResult, runs: frozenset[str]) -> None:
        """After an ingest's commit: forget cached state of its runs, tell the listeners."""
        self._invalidate(runs)
        for listener in self._listeners:
            listener(result, runs)

    def give_back_memory(self) -> None:
        """Hand the memory that writes left free back to the system.

        DuckDB's allocator keeps the pages a burst of writes freed (several hundred MB
        after a few hundred thousand spans, while the buffers it reports are a few MB)
        and flushes them only when its memory limit is set. The limit is set to what it
        is, under the write lock, so no import's lowered limit is taken for it; then
        Python's, Arrow's and the C library's free memory goes back too
        (:func:`tracer._guard.give_back_memory`).
        """
        with self._write_lock:
            con = self._cur()
            _set_memory_limit(con, _memory_limit(con))
        give_back_memory()

    def _invalidate(self, runs: Iterable[str]) -> None:
        runs = set(runs)
        with self._cache_lock:
            for key in [k for k in self._state_cache if k[0] in runs]:
                del self._state_cache[key]

    # -- reading: runs and spans -------------------------------------------------------------

    def sql(self, query: str, params: Any = None) -> duckdb.DuckDBPyConnection:
        """Run SQL on this thread's cursor (for analysis and tests; users may query the file)."""
        return self._cur().execute(query, params)

    def arrow(self, query: str, params: Any = None) -> pa.Table:
        # ``sql(...).to_arrow_table()``: DuckDB 2 dropped ``fetch_arrow_table`` and warns that
        # Arrow from an ``execute`` result makes an extra copy of the rows.
        return self._cur().sql(query, params=params).to_arrow_table()

    def runs(self) -> list[Run]:
        rows = self.sql(
            f"""SELECT {_RUN_COLS}, (SELECT count(*) FROM findings f WHERE f.run_id = r.run_id)
                FROM runs r ORDER BY start_ns, run_id"""
        ).fetchall()
        return [_run(row) for row in rows]

    def run_tokens(self, run_ids: Iterable[str] | None = None) -> dict[str, RunTokens]:
        """Per run (all, or ``run_ids``): the tokens of its model calls, in all, by agent and
        by model. Each call's own usage counts (GenAI or OpenInference spelling), an agent
        span's aggregate is not counted again; runs with no usage recorded get no entry."""
        first = "coalesce(" + ", ".join(f"attributes->>'{k}'" for k in c.MODEL_KEYS) + ")"

        def tokens(keys: tuple[str, ...]) -> str:
            return (
                "coalesce("
                + ", ".join(f"TRY_CAST(attributes->>'{k}' AS BIGINT)" for k in keys)
                + ")"
            )

        tin, tout = tokens(c.INPUT_TOKEN_KEYS), tokens(c.OUTPUT_TOKEN_KEYS)
        where, params = "", [list(c.MODEL_CALL_OPERATIONS)]
        if run_ids is not None:
            where, params = (
                "AND list_contains($2::VARCHAR[], trace_id)",
                [*params, sorted(set(run_ids))],
            )
        rows = self.sql(
            f"""SELECT trace_id, coalesce(agent, ''), coalesce({first}, ''),
                       sum(coalesce({tin}, 0)), sum(coalesce({tout}, 0))
                FROM spans
                WHERE list_contains($1::VARCHAR[], operation) {where}
                  AND ({tin} IS NOT NULL OR {tout} IS NOT NULL)
                GROUP BY ALL ORDER BY ALL""",
            params,
        ).fetchall()
        acc: dict[
            str, tuple[list[int], dict[str, tuple[int, int]], dict[str, tuple[int, int]]]
        ] = {}
        for run, agent, model, i, o in rows:
            total, agents, models = acc.setdefault(run, ([0, 0], {}, {}))
            total[0] += i
            total[1] += o
            for into, name in ((agents, agent), (models, model)):
                if name:
                    pi, po = into.get(name, (0, 0))
                    into[name] = (pi + i, po + o)
        return {r: RunTokens(t[0], t[1], a, m) for r, (t, a, m) in acc.items()}

    def run(self, run_id: str) -> Run:
        row = _first(
            self.sql(
                f"""SELECT {_RUN_COLS}, (SELECT count(*) FROM findings f WHERE f.run_id = r.run_id)
                FROM runs r WHERE run_id = ?""",
                [run_id],
            ).fetchall()
        )
        if row is None:
            raise NotFoundError(f"no run {run_id!r} in {self.path}")
        return _run(row)

    def resolve_run(self, prefix: str) -> str:
        """The run id that ``prefix`` starts (like git's short hashes); unique or an error."""
        rows = self.sql(
            "SELECT run_id FROM runs WHERE starts_with(run_id, ?) ORDER BY run_id LIMIT 2",
            [prefix.lower()],
        ).fetchall()
        if not rows:
            raise NotFoundError(f"no run {prefix!r} in {self.path}")
        if len(rows) > 1:
            raise NotFoundError(f"run id {prefix!r} is ambiguous in {self.path}; give more digits")
        return str(rows[0][0])

    def span_count(self, run_id: str) -> int:
        row = _first(self.sql("SELECT count(*) FROM spans WHERE trace_id = ?", [run_id]).fetchall())
        return int(row[0]) if row else 0

    def spans(self, run_id: str, *, offset: int = 0, limit: int | None = None) -> list[Span]:
        """Spans of a run ordered by start time (then span id), a page at a time."""
        q = f"SELECT {_SPAN_COLS} FROM spans WHERE trace_id = ? ORDER BY start_ns, span_id"
        params: list[Any] = [run_id]
        if limit is not None:
            q += " LIMIT ? OFFSET ?"
            params += [limit, offset]
        elif offset:
            q += " OFFSET ?"
            params.append(offset)
        return [_span(row) for row in self.sql(q, params).fetchall()]

    def span(self, run_id: str, span_id: str) -> Span:
        row = _first(
            self.sql(
                f"SELECT {_SPAN_COLS} FROM spans WHERE trace_id = ? AND span_id = ?",
                [run_id, span_id],
            ).fetchall()
        )
        if row is None:
            raise NotFoundError(f"no span {span_id} in run {run_id}")
        return _span(row)

    def span_index(self, run_id: str, span_ids: Iterable[str] | None = None) -> pa.Table:
        """The light columns of every span of a run (for trees and waterfalls), as Arrow.

        With ``span_ids``, only those spans (a page of a waterfall); ids not in the run are
        left out.
        """
        q = """SELECT span_id, parent_span_id, name, kind, start_ns, end_ns, status_code, agent, operation
               FROM spans WHERE trace_id = ?"""
        params: list[Any] = [run_id]
        if span_ids is not None:
            q += " AND list_contains(?::VARCHAR[], span_id)"
            params.append(list(span_ids))
        return self.arrow(q + " ORDER BY start_ns, span_id", params)

    def find_spans(
        self, run_id: str, *, text: str | None = None, errors: bool = False
    ) -> list[str]:
        """Ids of the run's spans whose name, agent or operation contains ``text`` (any case),
        and, with ``errors``, whose status is ERROR; by start time."""
        q = "SELECT span_id FROM spans WHERE trace_id = ?"
        params: list[Any] = [run_id]
        if text:
            q += """ AND (contains(lower(name), lower(?)) OR contains(lower(coalesce(agent, '')), lower(?))
                     OR contains(lower(coalesce(operation, '')), lower(?)))"""
            params += [text, text, text]
        if errors:
            q += " AND status_code = 'ERROR'"
        return [r[0] for r in self.sql(q + " ORDER BY start_ns, span_id", params).fetchall()]

    def span_tree(self, run_id: str) -> pa.Table:
        """The run's spans in tree order, as Arrow: ``span_id``, ``depth``, ``descendants``.

        Depth-first, children by start time (then span id): the row order of a fully
        expanded waterfall. A span whose parent is not in the run is a root. The
        ``descendants`` of row ``i`` are rows ``i + 1 .. i + descendants``, so a viewer can
        fold a subtree without holding the spans themselves (it pages them with
        :meth:`span_index`). A span that is its own ancestor (flagged ``cycle``) is a root
        too, so every span appears exactly once.
        """
        from ._tree import span_tree  # numpy: loaded by the first run opened

        tree = span_tree(self._cur(), run_id)
        # Ids not in lowercase hex (the arrays read ids as numbers): a recursive CTE.
        return tree if tree is not None else self.arrow(_SPAN_TREE_SQL, {"run": run_id})

    def events(
        self, run_id: str, span_id: str | None = None, *, name: str | None = None
    ) -> list[SpanEvent]:
        q = "SELECT trace_id, span_id, seq, time_ns, name, attributes, dropped_attributes_count FROM span_events WHERE trace_id = ?"
        params: list[Any] = [run_id]
        if span_id is not None:
            q += " AND span_id = ?"
            params.append(span_id)
        if name is not None:
            q += " AND name = ?"
            params.append(name)
        q += " ORDER BY time_ns, span_id, seq"
        return [
            SpanEvent(r[0], r[1], r[2], r[3], r[4], orjson.loads(r[5]), r[6])
            for r in self.sql(q, params).fetchall()
        ]

    def links(self, run_id: str, span_id: str | None = None) -> list[SpanLink]:
        q = """SELECT trace_id, span_id, seq, linked_trace_id, linked_span_id, trace_state, flags,
                      attributes, dropped_attributes_count FROM span_links WHERE trace_id = ?"""
        params: list[Any] = [run_id]
        if span_id is not None:
            q += " AND span_id = ?"
            params.append(span_id)
        q += " ORDER BY span_id, seq"
        return [
            SpanLink(r[0], r[1], r[2], r[3], r[4], r[5], r[6], orjson.loads(r[7]), r[8])
            for r in self.sql(q, params).fetchall()
        ]

    # -- reading: state ----------------------------------------------------------------------

    def state_versions(
        self, run_id: str, versions: Iterable[int] | None = None
    ) -> list[StateVersion]:
        """The run's versions (without documents), by number; only ``versions`` when given."""
        q = """SELECT run_id, version, parent_version, base_version, kind, agent, span_id, committed_ns,
                      hash, keys, source, derived, step FROM state_versions WHERE run_id = ?"""
        params: list[Any] = [run_id]
        if versions is not None:
            q += " AND list_contains(?::BIGINT[], version)"
            params.append(sorted(set(versions)))
        rows = self.sql(q + " ORDER BY version", params).fetchall()
        return [
            StateVersion(
                r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], tuple(r[9]), r[10], r[11], r[12]
            )
            for r in rows
        ]  # fmt: skip

    def state_reads(self, run_id: str) -> list[StateRead]:
        rows = self.sql(
            """SELECT run_id, span_id, seq, agent, version, head_version, keys, via, cache, read_ns,
                      derived
               FROM state_reads WHERE run_id = ? ORDER BY read_ns, span_id, seq""",
            [run_id],
        ).fetchall()
        return [
            StateRead(r[0], r[1], r[2], r[3], r[4], r[5], tuple(r[6]), r[7], r[8], r[9], r[10])
            for r in rows
        ]

    def messages(self, run_id: str) -> list[Message]:
        rows = self.sql(
            """SELECT run_id, span_id, seq, event, message_id, topic, msg_key, consumer_group, consumer,
                      agent, attempt, outcome, fault, time_ns, derived
               FROM messages WHERE run_id = ? ORDER BY time_ns, span_id, seq""",
            [run_id],
        ).fetchall()
        return [Message(*r) for r in rows]

    def state_at(self, run_id: str, version: int) -> JSON:
        """The state document at ``version``: the nearest stored snapshot plus the patches after it."""
        key = (run_id, version)
        with self._cache_lock:
            text = self._state_cache.get(key)
            if text is not None:
                self._state_cache.move_to_end(key)
                return orjson.loads(text)
        rows = self.sql(
            """SELECT version, snapshot, patch FROM state_versions
               WHERE run_id = $run AND version <= $v AND version >= coalesce(
                   (SELECT max(version) FROM state_versions
                    WHERE run_id = $run AND version <= $v AND snapshot IS NOT NULL), 1)
               ORDER BY version""",
            {"run": run_id, "v": version},
        ).fetchall()
        if not rows or rows[-1][0] != version:
            raise NotFoundError(f"run {run_id} has no state version {version}")
        doc = _rebuild(run_id, rows)
        with self._cache_lock:
            self._state_cache[key] = orjson.dumps(doc).decode()
            while len(self._state_cache) > 256:
                self._state_cache.popitem(last=False)
        return doc

    def diff(self, run_id: str, a: int, b: int) -> list[FieldChange]:
        """Leaf changes from version ``a`` to version ``b`` (``a`` = 0 means the empty document)."""
        old = self.state_at(run_id, a) if a else {}
        return field_changes(old, self.state_at(run_id, b))

    def verify(self, run_id: str | None = None) -> list[VerifyResult]:
        """Check the hash chain of every run's state versions (or of one run)."""
        if run_id is None:
            ids = [
                r[0]
                for r in self.sql(
                    "SELECT DISTINCT run_id FROM state_versions ORDER BY run_id"
                ).fetchall()
            ]
        else:
            ids = [run_id]
        return [self._verify_one(rid) for rid in ids]

    def _verify_one(self, run_id: str) -> VerifyResult:
        rows = self.sql(
            """SELECT version, snapshot, patch, parent_version, hash FROM state_versions
               WHERE run_id = ? ORDER BY version""",
            [run_id],
        ).fetchall()
        n = len(rows)
        if rows and rows[0][0] != 1:
            return VerifyResult(run_id, n, False, 1, "version 1 is missing")
        prev_hash = ""
        try:
            # The documents come from the one walk every reader uses (tracer.reads.states).
            for (version, doc), (_, _, _, parent, stored) in zip(
                states(rows, run_id), rows, strict=False
            ):
                if version > 1 and parent not in (None, version - 1):
                    detail = f"parent is {parent}, expected {version - 1}"
                    return VerifyResult(run_id, n, False, version, detail)
                if stored is None:
                    return VerifyResult(run_id, n, False, version, "no hash recorded")
                actual = chain_hash(prev_hash, doc)
                if actual != stored:
                    detail = f"hash is {stored[:12]}…, content gives {actual[:12]}…"
                    return VerifyResult(run_id, n, False, version, detail)
                prev_hash = stored
        except StateChainError as exc:
            return VerifyResult(
                run_id, n, False, exc.version, f"version {exc.version} {exc.reason}"
            )
        return VerifyResult(run_id, n, True)

    # -- findings ----------------------------------------------------------------------------

    def findings(self, run_id: str | None = None) -> list[Finding]:
        q = """SELECT run_id, finding_id, kind, severity, message, agents, versions, span_ids, evidence,
                      detected_ns FROM findings"""
        params: list[Any] = []
        if run_id is not None:
            q += " WHERE run_id = ?"
            params.append(run_id)
        q += " ORDER BY run_id, finding_id"
        return [
            Finding(
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                tuple(r[5]),
                tuple(r[6]),
                tuple(r[7]),
                orjson.loads(r[8]),
                r[9],
            )
            for r in self.sql(q, params).fetchall()
        ]

    # -- export ------------------------------------------------------------------------------

    def export_request(self, run_id: str) -> PB2ExportTraceServiceRequest:
        """The run as one OTLP request, spans grouped by resource and scope."""
        self.run(run_id)
        events: dict[str, list[SpanEvent]] = collections.defaultdict(list)
        for ev in self.events(run_id):
            events[ev.span_id].append(ev)
        links: dict[str, list[SpanLink]] = collections.defaultdict(list)
        for ln in self.links(run_id):
            links[ln.span_id].append(ln)
        req = PB2ExportTraceServiceRequest()
        groups: dict[tuple[str, str, str, str, int, str], Any] = {}
        resources: dict[str, Any] = {}
        for sp in self.spans(run_id):
            res_key = orjson.dumps(
                (sp.resource, sp.resource_dropped_attributes_count, sp.resource_schema_url,
                 sp.resource_entity_refs)
            ).decode()  # fmt: skip
            key = (
                res_key, sp.scope_name, sp.scope_version, orjson.dumps(sp.scope_attributes).decode(),
                sp.scope_dropped_attributes_count, sp.scope_schema_url,
            )  # fmt: skip
            ss = groups.get(key)
            if ss is None:
                rs = resources.get(res_key)
                if rs is None:
                    rs = req.resource_spans.add()
                    fill_attrs(rs.resource.attributes, sp.resource)
                    rs.resource.dropped_attributes_count = sp.resource_dropped_attributes_count
                    for ref in sp.resource_entity_refs:
                        e = rs.resource.entity_refs.add()
                        e.schema_url = ref.get("schema_url") or ""
                        e.type = ref.get("type") or ""
                        e.id_keys.extend(ref.get("id_keys") or ())
                        e.description_keys.extend(ref.get("description_keys") or ())
                    rs.schema_url = sp.resource_schema_url
                    resources[res_key] = rs
                ss = rs.scope_spans.add()
                ss.scope.name = sp.scope_name
                ss.scope.version = sp.scope_version
                fill_attrs(ss.scope.attributes, sp.scope_attributes)
                ss.scope.dropped_attributes_count = sp.scope_dropped_attributes_count
                ss.schema_url = sp.scope_schema_url
                groups[key] = ss
            out = ss.spans.add()
            out.trace_id = bytes.fromhex(sp.trace_id)
            out.span_id = bytes.fromhex(sp.span_id)
            if sp.parent_span_id:
                out.parent_span_id = bytes.fromhex(sp.parent_span_id)
            out.trace_state = sp.trace_state
            out.flags = sp.flags
            out.name = sp.name
            out.kind = KIND_BY_NAME[sp.kind]
            out.start_time_unix_nano = sp.start_ns
            out.end_time_unix_nano = sp.end_ns
            fill_attrs(out.attributes, sp.attributes)
            out.dropped_attributes_count = sp.dropped_attributes_count
            out.dropped_events_count = sp.dropped_events_count
            out.dropped_links_count = sp.dropped_links_count
            out.status.code = STATUS_BY_NAME[sp.status_code]
            out.status.message = sp.status_message
            for ev in events.get(sp.span_id, ()):
                e = out.events.add()
                e.time_unix_nano = ev.time_ns
                e.name = ev.name
                fill_attrs(e.attributes, ev.attributes)
                e.dropped_attributes_count = ev.dropped_attributes_count
            for ln in links.get(sp.span_id, ()):
                link = out.links.add()
                link.trace_id = bytes.fromhex(ln.linked_trace_id)
                link.span_id = bytes.fromhex(ln.linked_span_id)
                link.trace_state = ln.trace_state
                link.flags = ln.flags
                fill_attrs(link.attributes, ln.attributes)
                link.dropped_attributes_count = ln.dropped_attributes_count
        return req

    def export_parquet(self, run_id: str, directory: str | Path) -> list[Path]:
        """Every table's rows of ``run_id`` as Parquet files under ``directory``, one per table.

        Whole or not at all: the files are written into a fresh folder beside ``directory``
        and moved into place only when every one is written (a new ``directory`` appears in
        one rename; an existing one has each file replaced in one rename). On failure
        nothing is left behind and ``directory`` is as it was.
        """
        self.run(run_id)
        out_dir = Path(directory)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
        try:
            names = []
            for table, key in _RUN_TABLES:
                name = f"{table}.parquet"
                self._cur().execute(
                    f"COPY (SELECT * FROM {table} WHERE {key} = ?) TO '{_sql_str(str(staging / name))}' (FORMAT parquet)",
                    [run_id],
                )
                names.append(name)
            if out_dir.is_dir():
                for name in names:
                    os.replace(staging / name, out_dir / name)
                staging.rmdir()
            else:
                staging.rename(out_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return [out_dir / name for name in names]


# The error spans are counted per parent first, so the join's table is built from them
# (a few) and every span streams past it: built from the spans, a trace of 10M spans
# would not fit an import's memory limit.
_HANDLED = """
    SELECT p.trace_id, sum(e.n)::BIGINT AS n FROM s p
    JOIN (SELECT trace_id, parent_span_id, count(*) AS n FROM s
          WHERE status_code = 'ERROR' AND NOT cycle GROUP BY ALL) e
      ON p.trace_id = e.trace_id AND p.span_id = e.parent_span_id
    WHERE p.status_code <> 'ERROR'
    GROUP BY p.trace_id"""
_NO_HANDLED = "SELECT ''::VARCHAR AS trace_id, 0::BIGINT AS n WHERE false"

_RUN_TABLES = (
    ("runs", "run_id"), ("spans", "trace_id"), ("span_events", "trace_id"), ("span_links", "trace_id"),
    ("state_versions", "run_id"), ("state_reads", "run_id"), ("messages", "run_id"), ("findings", "run_id"),
)  # fmt: skip


# Each row carries its path (start ranks from the root down) and the rows sort by it:
# rows × depth of work, so only for runs whose ids the arrays cannot read (tracer._store._tree).
_SPAN_TREE_SQL = """WITH RECURSIVE s AS (
        SELECT span_id AS id,
               CASE WHEN parent_span_id = '' OR cycle THEN NULL ELSE parent_span_id END AS pid,
               row_number() OVER (ORDER BY start_ns, span_id)::INTEGER AS rn
        FROM spans WHERE trace_id = $run),
    t(id, depth, path) AS (
        SELECT id, 0, [rn] FROM s WHERE pid IS NULL OR pid NOT IN (SELECT id FROM s)
        UNION ALL
        SELECT c.id, t.depth + 1, list_append(t.path, c.rn)
        FROM s c JOIN t ON c.pid = t.id),
    sizes AS (SELECT unnest(path) AS rn, count(*) - 1 AS descendants FROM t GROUP BY 1)
    SELECT t.id AS span_id, t.depth::INTEGER AS depth, z.descendants::INTEGER AS descendants
    FROM t JOIN sizes z ON z.rn = t.path[-1]
    ORDER BY t.path"""


_RUN_COLS = """run_id, workflow, pattern, status, service_name, root_span_id, start_ns, end_ns,
    span_count, error_count, agents, version_count, parent_run_id, workflow_ref, scenario, attributes,
    handled_error_count, flow_id, analysed_ns"""

_SPAN_COLS = """trace_id, span_id, parent_span_id, name, kind, start_ns, end_ns, status_code,
    status_message, attributes, service_name, operation, agent, resource, scope_name, scope_version,
    trace_state, flags, dropped_attributes_count, dropped_events_count, dropped_links_count,
    scope_attributes, scope_dropped_attributes_count, scope_schema_url,
    resource_dropped_attributes_count, resource_schema_url, resource_entity_refs, cycle"""


def _first(rows: list[tuple[Any, ...]]) -> tuple[Any, ...] | None:
    return rows[0] if rows else None


def _sql_str(s: str) -> str:
    return s.replace("'", "''")


def _run(r: tuple[Any, ...]) -> Run:
    return Run(
        r[0], r[1], r[2], r[3], r[4], r[5], r[6] or 0, r[7] or 0, r[8] or 0, r[9] or 0, tuple(r[10] or ()),
        r[11] or 0, r[19], r[12], r[13], r[14], orjson.loads(r[15]) if r[15] else {}, r[16] or 0,
        r[17], r[18],
    )  # fmt: skip


def _span(r: tuple[Any, ...]) -> Span:
    return Span(
        r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], orjson.loads(r[9]), r[10], r[11], r[12],
        orjson.loads(r[13]), r[14], r[15], r[16], r[17], r[18], r[19], r[20],
        orjson.loads(r[21]) if r[21] else {}, r[22] or 0, r[23] or "", r[24] or 0, r[25] or "",
        tuple(orjson.loads(r[26])) if r[26] else (), bool(r[27]),
    )  # fmt: skip


def _rebuild(run_id: str, rows: list[tuple[Any, ...]]) -> JSON:
    *_, (_, doc) = states(rows, run_id)  # the one walk from snapshot through patches
    return doc


class SpillLimitError(Exception):
    """DuckDB could not write a file's chunks within the lowered memory limit (a trace of
    millions of spans, whose stored spans each chunk is checked against); nothing was
    stored. ``import_file`` then writes the file again under DuckDB's usual limit."""


# DuckDB's memory limit while a decoded file (or large request) is written: its new rows
# beyond this go to DuckDB's temporary files until the commit (see Store._bounded_memory).
INGEST_MEMORY_LIMIT: Final = 64 * 1024 * 1024

_SIZE_UNITS: Final = {
    "b": 1, "bytes": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2,
    "gb": 1000**3, "gib": 1024**3, "tb": 1000**4, "tib": 1024**4,
}  # fmt: skip


class _MemoryBound:
    """DuckDB's memory limit lowered to :data:`INGEST_MEMORY_LIMIT` until :meth:`restore`."""

    def __init__(self, con: duckdb.DuckDBPyConnection, *, lower: bool) -> None:
        self.con = con
        self.before = _memory_limit(con) if lower else ""
        self.lowered = lower and _parse_size(self.before) > INGEST_MEMORY_LIMIT
        if self.lowered:
            con.execute(f"SET memory_limit = '{INGEST_MEMORY_LIMIT}B'")

    def restore(self) -> None:
        if not self.lowered:
            return
        self.lowered = False
        _set_memory_limit(self.con, self.before)


def _memory_limit(con: duckdb.DuckDBPyConnection) -> str:
    return str(con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0])


def _set_memory_limit(con: duckdb.DuckDBPyConnection, limit: str) -> None:
    """DuckDB's memory limit set to ``limit`` as :func:`_memory_limit` printed it.

    The default comes back exactly when it was the default. Another limit was printed
    cut to one decimal (3 GB prints as 2.7 GiB), and setting what was printed would
    lower it a little each time; half a step more lies within the same printed value,
    so the limit prints as before however often it is set again.
    """
    con.execute("RESET memory_limit")
    if _memory_limit(con) != limit:
        m = _PRINTED_SIZE.fullmatch(limit)
        con.execute(f"SET memory_limit = '{f'{m[1]}5 {m[2]}' if m else limit}'")


_PRINTED_SIZE: Final = re.compile(r"(\d+\.\d) (\w+)")


def _parse_size(text: str) -> int:
    """DuckDB's printed size (``12.4 GiB``, ``64.0 MiB``) in bytes."""
    number, _, unit = text.strip().partition(" ")
    return int(float(number) * _SIZE_UNITS.get(unit.strip().lower() or "b", 1))


_ARROW_SQL: Final = {
    pa.string(): "VARCHAR", pa.large_string(): "VARCHAR", pa.int64(): "BIGINT",
    pa.int32(): "INTEGER", pa.uint32(): "UINTEGER", pa.uint64(): "UBIGINT", pa.bool_(): "BOOLEAN",
    pa.float64(): "DOUBLE", pa.list_(pa.string()): "VARCHAR[]",
}  # fmt: skip


def _stage(con: duckdb.DuckDBPyConnection, name: str, table: pa.Table) -> None:
    """``table`` copied into the temporary table ``name`` (replaced), its columns typed as
    Arrow types them (JSON text stays text, as it is compared with stored text)."""
    columns = ", ".join(f'"{f.name}" {_ARROW_SQL[f.type]}' for f in table.schema)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} ({columns})")
    con.from_arrow(table).insert_into(name)


def _known(con: duckdb.DuckDBPyConnection, trace_ids: Iterable[str]) -> list[str]:
    """The traces among ``trace_ids`` that the store already has."""
    return [
        r[0]
        for r in con.execute(
            "SELECT run_id FROM runs WHERE run_id IN (SELECT unnest($ids))",
            {"ids": sorted(trace_ids)},
        ).fetchall()
    ]


def _count_new_versions(con: duckdb.DuckDBPyConnection, versions: pa.Table) -> int:
    con.register("_in_rows", versions)
    try:
        row = _first(
            con.execute(
                "SELECT count(*) FROM _in_rows r SEMI JOIN _new_spans n ON n.trace_id = r.run_id AND n.span_id = r.span_id"
            ).fetchall()
        )
    finally:
        con.unregister("_in_rows")
    return int(row[0]) if row else 0
