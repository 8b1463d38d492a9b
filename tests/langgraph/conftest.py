"""The claims graph written by LangGraph's own checkpointers, and a real PostgreSQL.

:func:`claims_sqlite` runs the claims graph (tests/fixtures/foreign/langgraph_claims.py)
with SqliteSaver into a fresh file. :func:`postgres_url` is a PostgreSQL server started
by ``scripts/postgres.sh`` for the session (a throw-away cluster on a free port, asking
for a password over TCP). Without PostgreSQL's binaries the tests that need it skip with
the reason; under CI (``CI=true``) they fail instead: CI installs them (``.ci/run`` calls
``scripts/postgres.sh install``) and must run these tests.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOREIGN = ROOT / "tests" / "fixtures" / "foreign"
SCRIPT = ROOT / "scripts" / "postgres.sh"
NO_SERVER = "no PostgreSQL server binaries (scripts/postgres.sh install installs Debian's)"

if str(FOREIGN) not in sys.path:
    sys.path.insert(0, str(FOREIGN))

import langgraph_claims  # noqa: E402


def _has_server_binaries() -> bool:
    # Where scripts/postgres.sh looks: $AGENTRACE_PG_BINDIR, Debian's versioned dirs, PATH.
    dirs = [os.environ.get("AGENTRACE_PG_BINDIR", "")]
    dirs += [str(p) for p in Path("/usr/lib/postgresql").glob("*/bin")]
    if shutil.which("initdb"):
        dirs.append(str(Path(shutil.which("initdb") or "").parent))
    return any(
        d and (Path(d) / "initdb").is_file() and (Path(d) / "pg_ctl").is_file() for d in dirs
    )


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


@pytest.fixture
def claims() -> Any:
    return langgraph_claims


@pytest.fixture
def claims_sqlite(tmp_path: Path) -> Path:
    from langgraph.checkpoint.sqlite import SqliteSaver

    path = tmp_path / "claims.sqlite"
    con = sqlite3.connect(path, check_same_thread=False)
    try:
        langgraph_claims.run_threads(SqliteSaver(con))
    finally:
        con.close()
    return path


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    if not _has_server_binaries():
        if _in_ci():
            pytest.fail(f"CI=true and {NO_SERVER}: CI must run the Postgres tests", pytrace=False)
        pytest.skip(NO_SERVER)
    # The script makes its own temp dir: as root, the cluster belongs to `postgres`, who
    # cannot enter pytest's (private) temp dirs.
    started = subprocess.run([str(SCRIPT), "start"], capture_output=True, text=True)
    if started.returncode != 0:
        pytest.fail(f"scripts/postgres.sh start failed: {started.stderr.strip()}", pytrace=False)
    url, folder = started.stdout.split()
    try:
        yield url
    finally:
        subprocess.run([str(SCRIPT), "stop", folder], capture_output=True)


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """The session's server, its LangGraph tables dropped before each test."""
    import psycopg

    with psycopg.connect(postgres_server, autocommit=True) as con:
        for table in (
            "checkpoints",
            "checkpoint_blobs",
            "checkpoint_writes",
            "checkpoint_migrations",
            "other",
        ):
            con.execute(f"DROP TABLE IF EXISTS {table}")
    yield postgres_server
