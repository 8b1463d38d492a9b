"""Every command that prints trace text, on a store full of escape sequences: the bytes it writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tui.cli import cli

from .helpers import EVIL, hostile_store, unsafe_bytes


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, str]:
    path = tmp_path_factory.mktemp("hostile") / "evil.duckdb"
    a, b = hostile_store(path)
    return str(path), a, b


def _commands(db: str, a: str, b: str, tmp: Path) -> list[list[str]]:
    bad = tmp / "bad.jsonl"
    span = {"traceId": EVIL, "spanId": "00" * 8, "name": EVIL}
    bad.write_text(json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}) + "\n")
    return [
        ["runs", "--db", db],
        ["findings", "--db", db],
        ["findings", a, "--db", db, "--fail-on", "info"],
        ["state", a, "--version", "2", "--db", db],
        ["state", a, "--version", "1", "--db", db],
        ["diff", a, b, "--db", db],
        ["verify", "--db", db],
        ["replay", a, "--db", db],
        ["state", EVIL, "--version", "1", "--db", db],
        ["import", str(bad), "--db", str(tmp / "other.duckdb")],
    ]


@pytest.mark.parametrize("styled", [False, True], ids=["piped", "terminal"])
def test_no_command_writes_a_control_sequence(store, tmp_path, styled) -> None:
    db, a, b = store
    env = {"FORCE_COLOR": "1", "TERM": "xterm-256color"} if styled else {"NO_COLOR": "1"}
    seen_escapes = 0
    for args in _commands(db, a, b, tmp_path):
        r = CliRunner(env=env).invoke(cli, args)
        assert r.exception is None or isinstance(r.exception, SystemExit), (args, r.exception)
        for name, data in (("stdout", r.stdout_bytes), ("stderr", r.stderr_bytes)):
            assert unsafe_bytes(data, styled=styled) == [], (args, name, data[:400])
        seen_escapes += (r.stdout + r.stderr).count("\\x1b]52")
    # The hostile text is shown, as escapes, not dropped.
    assert seen_escapes >= 8


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def test_json_output_is_valid_json_without_control_characters(store) -> None:
    db, a, _ = store
    for args in (["runs", "--json"], ["findings", "--json"], ["state", a, "-v", "2", "--json"]):
        r = CliRunner().invoke(cli, [*args, "--db", db])
        assert r.exit_code == 0, r.output
        assert unsafe_bytes(r.stdout_bytes) == [], (args, r.stdout_bytes[:300])
        value = json.loads(r.stdout)
        # The same values: only the way they are written changed.
        assert any(EVIL in text for text in _strings(value)), args
    state = json.loads(
        CliRunner().invoke(cli, ["state", a, "-v", "2", "--json", "--db", db]).stdout
    )
    assert state[f"k{EVIL}"] == f"v2{EVIL}"


def test_export_to_stdout_escapes_json_and_refuses_protobuf_on_a_terminal(store) -> None:
    db, a, _ = store
    r = CliRunner().invoke(cli, ["export", a, "--format", "otlp-json", "-o", "-", "--db", db])
    assert r.exit_code == 0 and not Path("-").exists()
    assert unsafe_bytes(r.stdout_bytes) == []
    assert any(EVIL in text for text in _strings(json.loads(r.stdout)))
    assert "to standard output" in r.stderr


def test_a_real_process_through_a_pipe(store) -> None:
    db, a, _ = store
    env = {**os.environ, "NO_COLOR": "1"}
    for args in (["runs"], ["findings"], ["state", a, "-v", "2"]):
        p = subprocess.run(
            [sys.executable, "-c", "from tui.cli import main; main()", *args, "--db", db],
            capture_output=True,
            env=env,
            timeout=120,
        )
        assert p.returncode == 0, p.stderr
        assert unsafe_bytes(p.stdout) == [] and unsafe_bytes(p.stderr) == [], args
        assert b"\\x1b]52" in p.stdout


def test_what_is_printed_of_a_huge_value_is_bounded(tmp_path) -> None:
    db = tmp_path / "big.duckdb"
    a, b = hostile_store(db, value_size=10_000_000 // 50)
    r = CliRunner().invoke(cli, ["state", a, "-v", "2", "--db", str(db)])
    assert r.exit_code == 0
    assert len(r.stdout) < 40_000, len(r.stdout)
    assert "more characters" in r.stdout and "more key(s)" in r.stdout
    for args in (["diff", a, b], ["findings"], ["replay", a], ["runs"]):
        r = CliRunner().invoke(cli, [*args, "--db", str(db)])
        assert len(r.stdout) + len(r.stderr) < 40_000, args
    whole = CliRunner().invoke(cli, ["state", a, "-v", "2", "--db", str(db), "--json"])
    assert len(json.loads(whole.stdout)["big"]) == 10_000_000 // 50
