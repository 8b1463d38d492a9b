"""The store's tables: a documented contract (docs/store.md), migrated forward.

Each migration is a list of statements applied in one transaction; the
version reached is kept in ``agentrace_meta``. A file written by a newer
agentrace is refused rather than guessed at.
"""

from __future__ import annotations

import duckdb

from .._errors import SchemaError

SCHEMA_VERSION = 3

_V1 = [
    """CREATE TABLE IF NOT EXISTS agentrace_meta (
        key VARCHAR PRIMARY KEY,
        value VARCHAR NOT NULL
    )""",
    """CREATE TABLE runs (
        run_id VARCHAR PRIMARY KEY,
        workflow VARCHAR,
        pattern VARCHAR,
        status VARCHAR,
        service_name VARCHAR,
        root_span_id VARCHAR,
        root_name VARCHAR,
        start_ns BIGINT,
        end_ns BIGINT,
        span_count BIGINT,
        error_count BIGINT,
        agents VARCHAR[],
        version_count BIGINT,
        parent_run_id VARCHAR,
        workflow_ref VARCHAR,
        scenario VARCHAR,
        attributes JSON
    )""",
    """CREATE TABLE spans (
        trace_id VARCHAR NOT NULL,
        span_id VARCHAR NOT NULL,
        parent_span_id VARCHAR NOT NULL,
        trace_state VARCHAR NOT NULL,
        flags UINTEGER NOT NULL,
        name VARCHAR NOT NULL,
        kind VARCHAR NOT NULL,
        start_ns BIGINT NOT NULL,
        end_ns BIGINT NOT NULL,
        status_code VARCHAR NOT NULL,
        status_message VARCHAR NOT NULL,
        attributes JSON NOT NULL,
        resource JSON NOT NULL,
        scope_name VARCHAR NOT NULL,
        scope_version VARCHAR NOT NULL,
        service_name VARCHAR,
        operation VARCHAR,
        agent VARCHAR,
        dropped_attributes_count UINTEGER NOT NULL,
        dropped_events_count UINTEGER NOT NULL,
        dropped_links_count UINTEGER NOT NULL
    )""",
    """CREATE TABLE span_events (
        trace_id VARCHAR NOT NULL,
        span_id VARCHAR NOT NULL,
        seq INTEGER NOT NULL,
        time_ns BIGINT NOT NULL,
        name VARCHAR NOT NULL,
        attributes JSON NOT NULL,
        dropped_attributes_count UINTEGER NOT NULL
    )""",
    """CREATE TABLE span_links (
        trace_id VARCHAR NOT NULL,
        span_id VARCHAR NOT NULL,
        seq INTEGER NOT NULL,
        linked_trace_id VARCHAR NOT NULL,
        linked_span_id VARCHAR NOT NULL,
        trace_state VARCHAR NOT NULL,
        flags UINTEGER NOT NULL,
        attributes JSON NOT NULL,
        dropped_attributes_count UINTEGER NOT NULL
    )""",
    """CREATE TABLE state_versions (
        run_id VARCHAR NOT NULL,
        version BIGINT NOT NULL,
        parent_version BIGINT,
        base_version BIGINT,
        kind VARCHAR NOT NULL,
        agent VARCHAR,
        span_id VARCHAR NOT NULL,
        committed_ns BIGINT NOT NULL,
        snapshot JSON,
        patch JSON,
        hash VARCHAR,
        keys VARCHAR[] NOT NULL,
        source VARCHAR
    )""",
    """CREATE TABLE state_reads (
        run_id VARCHAR NOT NULL,
        span_id VARCHAR NOT NULL,
        seq INTEGER NOT NULL,
        agent VARCHAR,
        version BIGINT NOT NULL,
        head_version BIGINT,
        keys VARCHAR[] NOT NULL,
        via VARCHAR NOT NULL,
        cache VARCHAR,
        read_ns BIGINT NOT NULL
    )""",
    """CREATE TABLE messages (
        run_id VARCHAR NOT NULL,
        span_id VARCHAR NOT NULL,
        seq INTEGER NOT NULL,
        event VARCHAR NOT NULL,
        message_id VARCHAR,
        topic VARCHAR,
        msg_key VARCHAR,
        consumer_group VARCHAR,
        consumer VARCHAR,
        agent VARCHAR,
        attempt INTEGER,
        outcome VARCHAR,
        fault VARCHAR,
        time_ns BIGINT NOT NULL
    )""",
    """CREATE TABLE findings (
        run_id VARCHAR NOT NULL,
        finding_id VARCHAR NOT NULL,
        kind VARCHAR NOT NULL,
        severity VARCHAR NOT NULL,
        message VARCHAR NOT NULL,
        agents VARCHAR[] NOT NULL,
        versions BIGINT[] NOT NULL,
        span_ids VARCHAR[] NOT NULL,
        evidence JSON NOT NULL,
        detected_ns BIGINT NOT NULL,
        PRIMARY KEY (run_id, finding_id)
    )""",
]

# v2: the store keeps everything OTLP carries (scope attributes, schema URLs, dropped
# counts, resource entity refs); rows derived from spans say which deriver made them and
# point at real spans; runs count handled errors apart and belong to a flow. Columns are
# appended (DuckDB adds them at the end), and the writer's column order follows.
_V2 = [
    "ALTER TABLE spans ADD COLUMN scope_attributes JSON DEFAULT '{}'",
    "ALTER TABLE spans ADD COLUMN scope_dropped_attributes_count UINTEGER DEFAULT 0",
    "ALTER TABLE spans ADD COLUMN scope_schema_url VARCHAR DEFAULT ''",
    "ALTER TABLE spans ADD COLUMN resource_dropped_attributes_count UINTEGER DEFAULT 0",
    "ALTER TABLE spans ADD COLUMN resource_schema_url VARCHAR DEFAULT ''",
    "ALTER TABLE spans ADD COLUMN resource_entity_refs JSON DEFAULT '[]'",
    "ALTER TABLE spans ADD COLUMN cycle BOOLEAN DEFAULT false",
    "ALTER TABLE state_versions ADD COLUMN derived VARCHAR",
    "ALTER TABLE state_versions ADD COLUMN step BIGINT",
    "ALTER TABLE state_reads ADD COLUMN derived VARCHAR",
    "ALTER TABLE messages ADD COLUMN derived VARCHAR",
    "ALTER TABLE runs ADD COLUMN handled_error_count BIGINT DEFAULT 0",
    "ALTER TABLE runs ADD COLUMN flow_id VARCHAR",
    """CREATE TABLE trace_links (
        trace_id VARCHAR NOT NULL,
        linked_trace_id VARCHAR NOT NULL,
        PRIMARY KEY (trace_id, linked_trace_id)
    )""",
    # Rows a v1 store derived from foreign spans: messages taken from PRODUCER/CONSUMER spans
    # themselves (seq -1), LangGraph state rebuilt from a trace.
    "UPDATE messages SET derived = 'messaging' WHERE seq = -1",
    "UPDATE state_versions SET derived = 'langgraph-trace' WHERE source = 'langgraph-trace'",
    # v1 invented a `commit_state` span under each LangGraph node span to carry its version:
    # the version now points at the node span itself, and the invented spans go.
    """UPDATE state_versions v SET span_id = s.parent_span_id FROM spans s
       WHERE v.derived = 'langgraph-trace' AND s.trace_id = v.run_id AND s.span_id = v.span_id
         AND s.scope_name = 'agentrace.langgraph' AND starts_with(s.name, 'commit_state ')""",
    """DELETE FROM span_events e USING spans s
       WHERE s.trace_id = e.trace_id AND s.span_id = e.span_id
         AND s.scope_name = 'agentrace.langgraph' AND starts_with(s.name, 'commit_state ')""",
    """DELETE FROM spans
       WHERE scope_name = 'agentrace.langgraph' AND starts_with(name, 'commit_state ')""",
    """UPDATE runs r SET span_count = (SELECT count(*) FROM spans s WHERE s.trace_id = r.run_id)""",
    "UPDATE runs SET flow_id = run_id",
]

# When analysis last stored a run's findings; NULL: not analysed since the run last changed.
# A run that already has findings was analysed, at a time not known (0).
_V3 = [
    "ALTER TABLE runs ADD COLUMN analysed_ns BIGINT",
    "UPDATE runs SET analysed_ns = 0 WHERE run_id IN (SELECT DISTINCT run_id FROM findings)",
]

# Index i holds the statements that take a store from version i to version i + 1.
MIGRATIONS: list[list[str]] = [_V1, _V2, _V3]
assert len(MIGRATIONS) == SCHEMA_VERSION


def current_version(con: duckdb.DuckDBPyConnection) -> int:
    (exists,) = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'agentrace_meta'"
    ).fetchall()[0]
    if not exists:
        return 0
    rows = con.execute("SELECT value FROM agentrace_meta WHERE key = 'schema_version'").fetchall()
    return int(rows[0][0]) if rows else 0


def migrate(con: duckdb.DuckDBPyConnection, path: str) -> int:
    """Bring the store up to SCHEMA_VERSION; returns the version it was at."""
    found = current_version(con)
    if found > SCHEMA_VERSION:
        raise SchemaError(
            f"{path}: schema version {found} is newer than this agentrace understands "
            f"({SCHEMA_VERSION}); upgrade agentrace"
        )
    for version in range(found, SCHEMA_VERSION):
        con.execute("BEGIN TRANSACTION")
        try:
            for stmt in MIGRATIONS[version]:
                con.execute(stmt)
            con.execute(
                "INSERT OR REPLACE INTO agentrace_meta VALUES ('schema_version', ?)",
                [str(version + 1)],
            )
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
    return found
