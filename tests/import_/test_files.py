"""Every file layout the collector's file exporter (and our sinks) write imports to the same rows."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest
import zstandard
from click.testing import CliRunner

import tracer as t
from tui.cli import cli

from .helpers import DAMAGED, FOREIGN, FRAMEWORKS, counts, span_rows


def _rows_from(path: Path, fmt: str = "auto") -> list[tuple[object, ...]]:
    store = t.Store(":memory:")
    t.import_file(store, path, fmt=fmt)  # type: ignore[arg-type]
    return span_rows(store)


def _requests(name: str) -> list[bytes]:
    """The fixture's spans as one protobuf request per trace (as the collector batches them)."""
    out = []
    for line in (FOREIGN / f"{name}.jsonl").read_bytes().splitlines():
        out.append(t.decode_json(line).SerializeToString())
    return out


def _prefixed(records: list[bytes]) -> bytes:
    return b"".join(len(r).to_bytes(4, "big") + r for r in records)


def _layouts(name: str, tmp: Path) -> dict[str, Path]:
    jsonl = (FOREIGN / f"{name}.jsonl").read_bytes()
    pb = (FOREIGN / f"{name}.pb").read_bytes()
    lines = jsonl.splitlines()
    zc = zstandard.ZstdCompressor()
    files = {
        "pretty JSON": json.dumps(json.loads(t.encode_json(t.decode_proto(pb))), indent=2).encode(),
        "one-line JSON": t.encode_json(t.decode_proto(pb)) + b"\n",
        "length-prefixed protobuf": _prefixed(_requests(name)),
        "length-prefixed zstd records (JSON)": _prefixed([zc.compress(line) for line in lines]),
        "length-prefixed zstd records (protobuf)": _prefixed(
            [zc.compress(r) for r in _requests(name)]
        ),
        "zstd stream of length-prefixed protobuf": zc.compress(_prefixed(_requests(name))),
        "zstd JSON lines": zc.compress(jsonl),
        "gzip JSON lines": gzip.compress(jsonl),
        "gzip protobuf": gzip.compress(pb),
        "JSON lines with blank lines and CRLF": b"\r\n\r\n".join(lines) + b"\r\n",
        "JSON lines after a UTF-8 byte order mark": b"\xef\xbb\xbf" + jsonl,
    }
    out = {}
    for i, (label, data) in enumerate(files.items()):
        path = tmp / f"{name}-{i}.bin"
        path.write_bytes(data)
        out[label] = path
    return out


@pytest.mark.parametrize("name", FRAMEWORKS)
def test_every_layout_gives_the_same_rows(name: str, tmp_path: Path) -> None:
    expected = _rows_from(FOREIGN / f"{name}.pb")
    assert expected == _rows_from(FOREIGN / f"{name}.jsonl"), "OTLP/JSON and protobuf disagree"
    for label, path in _layouts(name, tmp_path).items():
        assert _rows_from(path) == expected, label


def test_the_stored_spans_are_the_fixture_spans_whole(tmp_path: Path) -> None:
    # Export what was imported and compare with the producer's own request, span by span.
    store = t.Store(":memory:")
    t.import_file(store, FOREIGN / "openai_agents.pb")
    (run,) = store.runs()
    sent = t.decode_proto((FOREIGN / "openai_agents.pb").read_bytes())
    back = store.export_request(run.run_id)

    def key(sp: object) -> bytes:
        return sp.span_id  # type: ignore[attr-defined, no-any-return]

    sent_spans = sorted(
        (sp for rs in sent.resource_spans for ss in rs.scope_spans for sp in ss.spans), key=key
    )
    back_spans = sorted(
        (sp for rs in back.resource_spans for ss in rs.scope_spans for sp in ss.spans), key=key
    )
    assert [sp.SerializeToString(deterministic=True) for sp in back_spans] == [
        sp.SerializeToString(deterministic=True) for sp in sent_spans
    ]


def test_reimport_stores_nothing_twice(tmp_path: Path) -> None:
    store = t.Store(tmp_path / "s.duckdb")
    first = t.import_file(store, FOREIGN / "pydantic_ai.jsonl")
    before = counts(store)
    again = t.import_file(store, FOREIGN / "pydantic_ai.pb")
    assert (again.spans, again.skipped) == (0, first.spans)
    assert counts(store) == before


def test_forced_formats(tmp_path: Path) -> None:
    store = t.Store(":memory:")
    with pytest.raises(t.DecodeError, match=r"pydantic_ai.jsonl:1: not a valid OTLP protobuf"):
        t.import_file(store, FOREIGN / "pydantic_ai.jsonl", fmt="otlp-proto")
    with pytest.raises(t.DecodeError, match=r"pydantic_ai.pb:\d+: not JSON"):
        t.import_file(store, FOREIGN / "pydantic_ai.pb", fmt="otlp-json")
    with pytest.raises(t.DecodeError, match="not a LangGraph state history"):
        t.import_file(store, FOREIGN / "pydantic_ai.jsonl", fmt="langgraph")
    assert counts(store)["spans"] == 0
    assert t.import_file(store, FOREIGN / "pydantic_ai.jsonl", fmt="otlp-json").spans == 8


def test_progress_reports_bytes_read_up_to_the_file_size(tmp_path: Path) -> None:
    for path in (
        FOREIGN / "langgraph_openinference.jsonl",
        *_layouts("pydantic_ai", tmp_path).values(),
    ):
        seen: list[int] = []
        t.import_file(t.Store(":memory:"), path, progress=seen.append)
        assert seen and seen == sorted(seen), path
        assert seen[-1] == os.path.getsize(path), path


def test_empty_and_blank_files_hold_no_request(tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_bytes(b"")
    (tmp_path / "blank.jsonl").write_bytes(b"\n  \n\n")
    store = t.Store(":memory:")
    for name in ("empty.jsonl", "blank.jsonl"):
        assert t.import_file(store, tmp_path / name).requests == 0


def test_folders_and_globs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "deep").mkdir()
    (tmp_path / "a" / ".hidden").mkdir()
    (tmp_path / "a" / "one.jsonl").write_text("x")
    (tmp_path / "a" / "deep" / "two.pb").write_text("x")
    (tmp_path / "a" / ".hidden" / "three.pb").write_text("x")
    (tmp_path / "a" / ".dotfile").write_text("x")
    got = [p.relative_to(tmp_path).as_posix() for p in t.expand_paths([str(tmp_path / "a")])]
    assert got == ["a/deep/two.pb", "a/one.jsonl"]
    monkeypatch.chdir(tmp_path)
    assert [p.as_posix() for p in t.expand_paths(["a/**/*.pb"])] == ["a/deep/two.pb"]
    assert [p.name for p in t.expand_paths([str(tmp_path / "a" / "*.jsonl")])] == ["one.jsonl"]
    with pytest.raises(t.DecodeError, match=r"nothing\*.json: no file matches"):
        list(t.expand_paths(["nothing*.json"]))


def test_cli_imports_a_folder_and_a_glob_with_a_summary(tmp_path: Path) -> None:
    folder = tmp_path / "collector"
    folder.mkdir()
    for name in FRAMEWORKS:
        (folder / f"{name}.jsonl").write_bytes((FOREIGN / f"{name}.jsonl").read_bytes())
    db = tmp_path / "s.duckdb"
    res = CliRunner().invoke(
        cli, ["import", str(folder), str(FOREIGN / "langgraph_state_history.json"), "--db", str(db)]
    )
    assert res.exit_code == 0, res.output
    with t.Store(db, read_only=True) as store:
        n_runs = len(store.runs())
        n_spans = counts(store)["spans"]
        n_versions = counts(store)["state_versions"]
    assert (
        f"imported 4 of 4 file(s): {n_runs} run(s), {n_spans} span(s), {n_versions} state version(s)"
        in res.output
    )
    assert n_runs == 5 and n_versions > 0


def test_cli_reports_each_bad_file_on_one_line_and_keeps_the_good_ones(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    res = CliRunner().invoke(
        cli,
        ["import", str(FOREIGN / "pydantic_ai.pb"), str(DAMAGED / "truncated.pb"), "--db", str(db)],
    )
    assert res.exit_code == 1
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("agentrace:")]
    assert len(errors) == 1 and "truncated.pb:1: not a valid OTLP protobuf message" in errors[0]
    assert "imported 1 of 2 file(s)" in res.stdout
    with t.Store(db, read_only=True) as store:
        assert counts(store)["spans"] == 8


def test_skip_bad_keeps_the_good_records_of_a_file(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    res = CliRunner().invoke(
        cli, ["import", "--skip-bad", str(DAMAGED / "garbage_line.jsonl"), "--db", str(db)]
    )
    assert res.exit_code == 0, res.output
    assert "garbage_line.jsonl:2: not JSON" in res.stderr
    assert "1 bad record(s) skipped" in res.stdout
    with t.Store(db, read_only=True) as store:
        assert counts(store)["spans"] == 12  # the good line: the OpenAI Agents trace
    # A file that breaks off keeps what came before the break.
    store = t.Store(":memory:")
    result = t.import_file(store, DAMAGED / "truncated_record.lpb", skip_bad=True)
    assert result.spans == 12 and "record 2 is truncated" in result.errors[0]
