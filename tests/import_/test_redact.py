"""Secrets are replaced before anything is written; nothing else changes."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

import tracer as t
from tui.cli import cli

from .helpers import FOREIGN, FRAMEWORKS, span_rows

OPENAI_KEY = "sk-proj-" + "A1b2C3d4E5f6G7h8I9j0" * 2
GITHUB = "ghp_" + "x1Y2z3" * 7
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"


def _secret_request() -> dict[str, object]:
    def s(v: str) -> dict[str, str]:
        return {"stringValue": v}

    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [
                        {"key": "service.name", "value": s("svc")},
                        {"key": "deploy.token", "value": s(f"Bearer {GITHUB}")},
                    ]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "test"},
                        "spans": [
                            {
                                "traceId": "0af7651916cd43dd8448eb211c80319c",
                                "spanId": "b7ad6b7169203331",
                                "name": "call model",
                                "kind": 3,
                                "startTimeUnixNano": "1000",
                                "endTimeUnixNano": "2000",
                                "status": {
                                    "code": 2,
                                    "message": f"Incorrect API key provided: {OPENAI_KEY}",
                                },
                                "attributes": [
                                    {
                                        "key": "http.request.header.authorization",
                                        "value": {
                                            "arrayValue": {"values": [s("Basic dXNlcjpwYXNz")]}
                                        },
                                    },
                                    {
                                        "key": "input.value",
                                        "value": s(
                                            f'{{"api_key": "abc123", "question": "use {OPENAI_KEY} please"}}'
                                        ),
                                    },
                                    {
                                        "key": "headers",
                                        "value": {
                                            "kvlistValue": {
                                                "values": [
                                                    {
                                                        "key": "Cookie",
                                                        "value": s("session=abc; theme=dark"),
                                                    },
                                                    {"key": "Accept", "value": s("*/*")},
                                                ]
                                            }
                                        },
                                    },
                                    {"key": "llm.token_count.prompt", "value": {"intValue": "42"}},
                                    {
                                        "key": "note",
                                        "value": s("a basic understanding of the task-runner"),
                                    },
                                ],
                                "events": [
                                    {
                                        "timeUnixNano": "1500",
                                        "name": "exception",
                                        "attributes": [
                                            {
                                                "key": "exception.message",
                                                "value": s(f"401: token {JWT} expired"),
                                            }
                                        ],
                                    }
                                ],
                                "links": [
                                    {
                                        "traceId": "0af7651916cd43dd8448eb211c80319c",
                                        "spanId": "00f067aa0ba902b7",
                                        "attributes": [{"key": "password", "value": s("hunter2")}],
                                    }
                                ],
                            }
                        ],
                    }
                ],
            }
        ]
    }


def test_real_traces_are_stored_as_sent(tmp_path: Path) -> None:
    for name in FRAMEWORKS:
        on, off = t.Store(":memory:"), t.Store(":memory:")
        off.redactor = None
        t.import_file(on, FOREIGN / f"{name}.pb")
        t.import_file(off, FOREIGN / f"{name}.pb")
        assert span_rows(on) == span_rows(off), name


def test_secrets_are_replaced_everywhere_they_travel() -> None:
    store = t.Store(":memory:")
    store.ingest([_secret_request()])
    (sp,) = store.sql("SELECT trace_id FROM spans").fetchall()
    (span,) = store.spans(sp[0])
    a = span.attributes
    assert a["http.request.header.authorization"] == ["[REDACTED]"]
    assert a["input.value"] == '{"api_key": "[REDACTED]", "question": "use [REDACTED] please"}'
    assert a["headers"] == {"Cookie": "[REDACTED]", "Accept": "*/*"}
    assert a["llm.token_count.prompt"] == 42
    assert a["note"] == "a basic understanding of the task-runner"
    assert span.status_message == "Incorrect API key provided: [REDACTED]"
    # A key named token: the whole value goes, not only the credential in it.
    assert span.resource == {"service.name": "svc", "deploy.token": "[REDACTED]"}
    (ev,) = store.events(span.trace_id)
    assert ev.attributes["exception.message"] == "401: token [REDACTED] expired"
    (ln,) = store.links(span.trace_id)
    assert ln.attributes == {"password": "[REDACTED]"}
    dump = str(span_rows(store))
    for secret in (OPENAI_KEY, GITHUB, JWT, "hunter2", "dXNlcjpwYXNz", "session=abc", "abc123"):
        assert secret not in dump


def test_state_documents_keep_their_content_so_the_chain_verifies() -> None:
    store = t.Store(":memory:")
    sink = t.DuckDBSink(store)
    rec = t.Recorder(sink, clock=t.FakeClock(), ids=t.SeededIds(3))
    doc = {"config": {"api_key": OPENAI_KEY}}
    with rec.start_span(
        "invoke_agent a", attributes={"gen_ai.agent.name": "a", "prompt": f"key {OPENAI_KEY}"}
    ) as sp:
        sp.commit_state(version=1, snapshot=doc, hash=t.chain_hash("", doc), kind="initial")
    rec.close()
    (run,) = store.runs()
    assert store.state_at(run.run_id, 1) == doc
    assert store.verify(run.run_id)[0].ok
    (span,) = store.spans(run.run_id)
    assert span.attributes["prompt"] == "key [REDACTED]"


def test_custom_patterns_and_keys(tmp_path: Path) -> None:
    # A look-behind is beyond RE2: every row is then checked in Python, with the same result.
    red = t.Redactor(patterns=[r"(?<=order-)\d{6}", r"acct:(?P<secret>\w+)"], keys=["x-tenant"])
    assert red.text("order-123456 and acct:bob") == "order-[REDACTED] and acct:[REDACTED]"
    assert red.attributes({"X-Tenant": "acme", "other": "acme"}) == {
        "X-Tenant": "[REDACTED]",
        "other": "acme",
    }
    store = t.Store(":memory:")
    store.redactor = red
    req = _secret_request()
    span = req["resourceSpans"][0]["scopeSpans"][0]["spans"][0]  # type: ignore[index]
    span["attributes"].append({"key": "ref", "value": {"stringValue": "order-654321"}})
    store.ingest([req])
    (row,) = store.sql(
        "SELECT attributes->>'ref', attributes->>'input.value' FROM spans"
    ).fetchall()
    assert row[0] == "order-[REDACTED]"
    assert "abc123" not in row[1]  # the defaults still apply
    with pytest.raises(ValueError, match="not a valid regular expression"):
        t.Redactor(patterns=["(unclosed"])


def test_no_redact_stores_spans_as_sent(tmp_path: Path) -> None:
    path = tmp_path / "secret.json"
    path.write_bytes(orjson.dumps(_secret_request()))
    db = tmp_path / "s.duckdb"
    res = CliRunner().invoke(cli, ["import", str(path), "--db", str(db), "--no-redact"])
    assert res.exit_code == 0, res.output
    with t.Store(db, read_only=True) as store:
        assert OPENAI_KEY in store.sql("SELECT status_message FROM spans").fetchall()[0][0]
    res = CliRunner().invoke(
        cli,
        ["import", str(path), "--db", str(tmp_path / "x.duckdb"), "--no-redact", "--redact", "x"],
    )
    assert res.exit_code == 2 and "cannot be combined" in res.stderr
