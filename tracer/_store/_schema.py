"""The store's tables: a documented contract (docs/store.md), migrated forward.

Each migration is a list of statements applied in one transaction; the
version reached is kept in ``agentrace_meta``. A file written by a newer
agentrace is refused rather than guessed at.
"""

from __future__ import annotations

import duckdb

from .._errors import SchemaError

SCHEMA_VERSION = 1

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

# Index i holds the statements that take a store from version i to version i + 1.
MIGRATIONS: list[list[str]] = [_V1]
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
