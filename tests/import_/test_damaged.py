"""The damaged-input corpus: each file refused cleanly by import and by the receiver."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest

import tracer as t

from .helpers import DAMAGED, FOREIGN, ThreadedReceiver, counts, post

PROTO = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}

# file -> what `import` says (after "<path>:")
IMPORT_ERRORS = {
    "truncated.pb": r":1: not a valid OTLP protobuf message",
    "truncated_record.lpb": r":2: record 2 is truncated: 100 of \d+ bytes",
    "base64_ids.jsonl": r":1: span 'invoke_agent coordinator': span id 'lykep3WTEUU=' looks like base64.*would be '97291ea775931145'",
    "end_before_start.jsonl": r":1: span 'execute_tool ask_researcher' \(09f809763a166210\): ends before it starts",
    "duplicate_conflict.jsonl": r":2: span 'a different span with the same id' \(97291ea775931145\): span id seen twice",
    "garbage_line.jsonl": r":2: not JSON",
    "bad_kind.jsonl": r":1: span 'invoke_agent coordinator' \(97291ea775931145\): unknown span kind 9",
    "short_span_id.jsonl": r":1: span 'chat scripted-coordinator': span id '2cfc49489ceeb3' has 14 hex digits, expected 16",
    "metrics.json": r":1: an OTLP request, but of metrics or logs, not traces",
    "not_json.json": r":1: not JSON",
    "not_otlp.txt": r": not an OTLP trace file",
    "bomb.gz": r":1: record 1 has a length prefix of 0",
}


def test_the_corpus_is_what_the_script_makes(tmp_path: Path) -> None:
    files = sorted(p.name for p in DAMAGED.iterdir() if p.suffix not in (".py", ".md"))
    assert files == sorted(IMPORT_ERRORS)


@pytest.mark.parametrize("name", sorted(IMPORT_ERRORS))
def test_import_refuses_each_damaged_file_and_stores_nothing(name: str, tmp_path: Path) -> None:
    store = t.Store(tmp_path / "s.duckdb")
    t.import_file(store, FOREIGN / "openai_agents.pb")  # something already there, untouched after
    before = counts(store)
    with pytest.raises(t.DecodeError) as err:
        t.import_file(store, DAMAGED / name)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(str(DAMAGED / name))
    assert re.search(IMPORT_ERRORS[name], message), message
    assert counts(store) == before


def _partial(body: bytes) -> tuple[int, str]:
    p = orjson.loads(body)["partialSuccess"]
    return int(p["rejectedSpans"]), p["errorMessage"]


def test_the_receiver_refuses_each_damaged_input_and_stays_up(tmp_path: Path) -> None:
    store = t.Store(tmp_path / "s.duckdb")
    d = {name: (DAMAGED / name).read_bytes() for name in IMPORT_ERRORS}
    with ThreadedReceiver(store) as rx:
        refused = [
            (d["truncated.pb"], PROTO, 400),
            (d["garbage_line.jsonl"].splitlines()[1], JSON, 400),
            (d["metrics.json"], JSON, 400),
            (d["not_json.json"], JSON, 400),
            (d["not_otlp.txt"], {"Content-Type": "text/plain"}, 415),
            (d["bomb.gz"], {**PROTO, "Content-Encoding": "gzip"}, 413),
            (b"\0" * (64 * 1024 * 1024 + 1), PROTO, 413),
            (d["truncated.pb"], {**PROTO, "Content-Encoding": "compress"}, 415),
        ]
        for body, headers, want in refused:
            assert post(rx.url, body, headers)[0] == want
        assert counts(store)["spans"] == 0
        # Span by span: the request is stored but for the spans named in partial_success.
        for name, rejected, stored, words in (
            ("base64_ids.jsonl", 8, 0, "looks like base64"),
            ("end_before_start.jsonl", 1, 7, "ends before it starts"),
            ("bad_kind.jsonl", 1, 7, "unknown span kind 9"),
            ("short_span_id.jsonl", 1, 7, "has 14 hex digits, expected 16"),
        ):
            fresh = t.Store(tmp_path / f"{name}.duckdb")
            with ThreadedReceiver(fresh) as one:
                status, _, body = post(one.url, d[name].strip(), JSON)
            assert status == 200
            n, message = _partial(body)
            assert n == rejected and words in message, message
            assert counts(fresh)["spans"] == stored
        first, second = d["duplicate_conflict.jsonl"].splitlines()
        assert post(rx.url, first, JSON)[0] == 200
        status, _, body = post(rx.url, second, JSON)
        assert status == 200 and _partial(body)[0] == 1
        assert counts(store)["spans"] == 8
        # Still answering good requests.
        assert post(rx.url, (FOREIGN / "openai_agents.pb").read_bytes(), PROTO)[0] == 200
    assert counts(store)["spans"] == 20
