"""docs/examples/credit_race.py end to end: plain asyncio code recorded with ``tracer.otel``,
sent by the OpenTelemetry SDK to ``agentrace serve``, and found by ``agentrace findings``."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import tracer as t

from ..services import AGENTRACE, WAIT, agentrace_serve

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "credit_race.py"


def _run_example(endpoint: str, *args: str) -> tuple[str, str]:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), "--endpoint", endpoint, *args],
        capture_output=True, text=True, timeout=WAIT, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    m = re.fullmatch(r"run ([0-9a-f]{32}): (.*)\n", done.stdout)
    assert m, done.stdout
    return m.group(1), m.group(2)


def test_the_credit_race_from_plain_asyncio_is_found_through_serve(tmp_path: Path) -> None:
    db = tmp_path / "credit.duckdb"
    with agentrace_serve(db, tmp_path / "serve.err") as endpoint:
        stale, stale_out = _run_example(endpoint)
        fresh, fresh_out = _run_example(endpoint, "--fixed")
        lost, lost_out = _run_example(endpoint, "--race", "lost-update")
        kept, kept_out = _run_example(endpoint, "--race", "lost-update", "--fixed")
    # What the code did: the stale score gave the wrong rating; the race lost a change.
    assert stale_out == "rating B (the fresh score gives C)"
    assert fresh_out == "rating C (the fresh score gives C)"
    assert lost_out == "credit limit 7000 (both changes give 6000)"
    assert kept_out == "credit limit 6000 (both changes give 6000)"

    done = subprocess.run(
        [str(AGENTRACE), "findings", "--json", "--db", str(db)],
        capture_output=True, text=True, timeout=WAIT, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert sorted((f["run_id"], f["kind"]) for f in found) == sorted(
        [(stale, "stale_read"), (lost, "lost_update")]
    )
    (stale_read,) = (f for f in found if f["kind"] == "stale_read")
    assert stale_read["message"].startswith(
        "risk_assessment read v1 of credit_score via cache 'bureau'; v2 by credit_score"
    )
    with t.Store(db, read_only=True) as store:
        assert all(v.ok for v in store.verify())
        invalidations = store.sql(
            "SELECT trace_id FROM span_events WHERE name = 'agentrace.cache.invalidate'"
        ).fetchall()
    assert invalidations == [(fresh,)]
    assert kept not in {f["run_id"] for f in found}
