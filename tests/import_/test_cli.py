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


def test_the_official_exporter_through_agentrace_serve(tmp_path: Path) -> None:
    import signal

    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from .helpers import span_rows
    from .test_receiver import _make_spans

    db = tmp_path / "served.duckdb"
    err = tmp_path / "serve.err"
    with open(err, "w") as err_file:
        proc = subprocess.Popen(
            [str(AGENTRACE), "serve", "--db", str(db), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=err_file,
            text=True,
        )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # serve prints this once listening, or exits (EOF)
        assert line.startswith("listening on "), err.read_text()
        memory = InMemorySpanExporter()
        provider = TracerProvider(resource=Resource.create({"service.name": "served"}))
        provider.add_span_processor(
            BatchSpanProcessor(
                OTLPSpanExporter(endpoint=line.split()[2], compression=Compression.Gzip)
            )
        )
        provider.add_span_processor(SimpleSpanProcessor(memory))
        for i in range(4):
            _make_spans(provider.get_tracer("served"), f"served-{i}")
        provider.shutdown()  # flushes: returns once the receiver answered
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        assert proc.stdout is not None
        proc.stdout.close()
    assert proc.returncode == 0, err.read_text()
    assert "stopped: " in err.read_text()
    reference = t.Store(":memory:")
    reference.ingest([encode_spans(memory.get_finished_spans())])
    with t.Store(db, read_only=True) as store:
        assert span_rows(store) == span_rows(reference)
        assert counts(store)["spans"] == 20
