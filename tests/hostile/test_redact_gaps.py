"""The secrets redaction used to miss, through the real ingest path (the column scan, then the walk)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

import tracer as t

SECRETS = {
    "key token": "tok-9f8e7d6c5b4a",
    "key secret": "shh-1a2b3c4d5e",
    "env password": "hunter2-db-pass",
    "env openai": "opaque-openai-value-77",
    "url password": "pa55w0rd-in-url",
    "aws secret": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "bytes": "bytes-held-credential-42",
    "argv": "argv-api-key-value-13",
    "argv string": "cmdline-token-value-31",
}


def s(v: str) -> dict[str, str]:
    return {"stringValue": v}


def _request() -> dict[str, object]:
    x = SECRETS
    raw = f"Authorization: Bearer {x['bytes']}9".encode()
    attrs = [
        {"key": "token", "value": s(x["key token"])},
        {"key": "app.secret", "value": s(x["key secret"])},
        {"key": "log.line", "value": s(f"boot with DATABASE_PASSWORD={x['env password']} ok")},
        {"key": "env", "value": s(f"OPENAI_API_KEY={x['env openai']}\nHOME=/root")},
        {"key": "db.connection_string", "value": s(f"postgresql://app:{x['url password']}@db:5432/x")},
        {"key": "aws", "value": s(f"aws_secret_access_key = {x['aws secret']}")},
        {"key": "payload", "value": {"bytesValue": base64.b64encode(raw).decode()}},
        {"key": "process.command_args", "value": {"arrayValue": {"values": [
            s("worker"), s("--api-key"), s(x["argv"]), s("--max-tokens"), s("512")]}}},
        {"key": "process.command_line", "value": s(f"worker --token {x['argv string']} -v")},
        # Not secrets: left as they are.
        {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "12"}},
        {"key": "gen_ai.request.max_tokens", "value": {"intValue": "512"}},
        {"key": "note", "value": s("the secret garden; max_tokens=100; https://example.com/a")},
    ]  # fmt: skip
    span = {
        "traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331",
        "name": f"connect postgres://u:{x['url password']}@h/db", "startTimeUnixNano": "1",
        "endTimeUnixNano": "2", "attributes": attrs,
        "status": {"code": 2, "message": f"AWS_SECRET_ACCESS_KEY={x['aws secret']} rejected"},
        "events": [{"timeUnixNano": "1", "name": "exception", "attributes": attrs}],
    }  # fmt: skip
    return {"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}


@pytest.fixture
def stored(tmp_path: Path) -> t.Store:
    store = t.Store(tmp_path / "a.duckdb")
    store.ingest([_request()])
    return store


def _everything(store: t.Store) -> str:
    rows = []
    for table in ("spans", "span_events"):
        rows += store.sql(f"SELECT * FROM {table}").fetchall()
    return repr(rows)


def test_no_secret_reaches_the_store(stored: t.Store) -> None:
    text = _everything(stored)
    for what, secret in SECRETS.items():
        assert secret not in text, what
    (span,) = stored.spans("0af7651916cd43dd8448eb211c80319c")
    a = span.attributes
    assert a["token"] == a["app.secret"] == "[REDACTED]"
    assert a["log.line"] == "boot with DATABASE_PASSWORD=[REDACTED] ok"
    assert a["db.connection_string"] == "postgresql://app:[REDACTED]@db:5432/x"
    assert a["process.command_args"] == ["worker", "--api-key", "[REDACTED]", "--max-tokens", "512"]
    assert a["process.command_line"] == "worker --token [REDACTED] -v"
    assert base64.b64decode(a["payload"]["bytesValue"]) == b"Authorization: [REDACTED]"
    assert span.name == "connect postgres://u:[REDACTED]@h/db"
    assert span.status_message == "AWS_SECRET_ACCESS_KEY=[REDACTED] rejected"
    # What is not a secret is stored as sent.
    assert a["gen_ai.usage.input_tokens"] == 12 and a["gen_ai.request.max_tokens"] == 512
    assert a["note"] == "the secret garden; max_tokens=100; https://example.com/a"
    stored.close()


def test_no_redact_keeps_them(tmp_path: Path) -> None:
    store = t.Store(tmp_path / "b.duckdb")
    store.redactor = None
    store.ingest([_request()])
    text = _everything(store)
    assert all(secret in text for w, secret in SECRETS.items() if w != "bytes")
    store.close()
