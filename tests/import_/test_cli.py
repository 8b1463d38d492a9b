"""``agentrace serve`` and ``import`` at the command line; what ``import tracer`` loads."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

import tracer as t
from tui.cli import cli

from .helpers import FOREIGN, counts

AGENTRACE = Path(sys.executable).parent / "agentrace"


def test_serve_on_a_busy_port_says_so(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [str(AGENTRACE), "serve", "--db", str(tmp_path / "s.duckdb"), "--port", str(port)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert done.returncode == 1
    (line,) = [ln for ln in done.stderr.splitlines() if ln.startswith("agentrace:")]
    assert f"cannot listen on 127.0.0.1:{port}" in line


def test_serve_refuses_contradictory_redaction_options(tmp_path: Path) -> None:
    res = CliRunner().invoke(
        cli, ["serve", "--db", str(tmp_path / "s.duckdb"), "--no-redact", "--redact-key", "x"]
    )
    assert res.exit_code == 2 and "cannot be combined" in res.stderr


def test_import_with_a_forced_progress_bar_still_sums_up(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    res = CliRunner().invoke(
        cli, ["import", "--progress", str(FOREIGN / "openai_agents.jsonl"), "--db", str(db)]
    )
    assert res.exit_code == 0, res.output
    assert "imported 1 of 1 file(s): 1 run(s), 12 span(s), 0 state version(s)" in res.stdout
    with t.Store(db, read_only=True) as store:
        assert counts(store)["spans"] == 12


def test_import_tracer_leaves_the_receiver_and_the_extras_unloaded() -> None:
    code = (
        "import sys, tracer; "
        "print(sorted(m for m in ('aiohttp', 'grpc', 'opentelemetry.sdk', 'textual') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
