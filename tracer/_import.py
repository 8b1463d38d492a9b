"""Importing files into a store: each file one transaction.

``import_file`` reads OTLP files in every layout :mod:`tracer._files` knows and
LangGraph ``get_state_history`` dumps and SqliteSaver checkpointer files
(:mod:`tracer._langgraph`, :mod:`tracer._checkpointer`), detected from their first
bytes or forced with ``fmt``. A bad record stops its file's import
and leaves the store as it was, unless ``skip_bad`` is set: then each record is
checked first, the good ones are stored (still in one transaction) and the bad
ones reported, and within a good record (JSON line or protobuf request) each
span that does not validate is left out and reported the same way; a file that breaks off (a truncated record) keeps the records
before the break. Spans that clash with stored spans of the same id always
fail the whole file.

What is derived from the spans (agents, runs, flows, the state of LangGraph
runs rebuilt from their node outputs) is recomputed by the store in the same
transaction, whatever order the files come in (docs/store.md).

Progress is reported through a callback with the bytes of the file read so far;
nothing here prints. Blocking; call from one thread per file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import orjson

from ._checkpointer import is_sqlite
from ._errors import DecodeError
from ._files import Progress, Record, read_records, sniff
from ._langgraph import import_checkpointer, import_history, looks_like_history
from ._store._ingest import Batch, add_payload
from ._store._models import IngestResult
from ._store._parallel import PARALLEL_MIN_BYTES, decode_records
from ._store._store import SpillLimitError, Store

ImportFormat = Literal["auto", "otlp-json", "otlp-proto", "langgraph"]
FORMATS: tuple[ImportFormat, ...] = ("auto", "otlp-json", "otlp-proto", "langgraph")


def detect_format(path: str | Path) -> ImportFormat:
    """``langgraph`` for a state history dump or a SQLite file (a checkpointer, checked when
    read), else ``auto`` (the OTLP layouts are told apart record by record)."""
    head = sniff(path)
    return "langgraph" if is_sqlite(head) or looks_like_history(head) else "auto"


def import_file(
    store: Store,
    path: str | Path,
    *,
    fmt: ImportFormat = "auto",
    skip_bad: bool = False,
    progress: Progress | None = None,
    thread: str | None = None,
) -> IngestResult:
    """Import one file; raises :class:`DecodeError` naming the file and line when it is bad.

    A LangGraph SqliteSaver file (recognised by its content) is read as a checkpointer, and a
    ``get_state_history`` dump as one; ``thread`` keeps only that thread of either."""
    source = str(path)
    if fmt not in FORMATS:
        raise DecodeError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}", source=source)
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt == "langgraph":
        if is_sqlite(sniff(path, 16)):
            return import_checkpointer(store, source, thread=thread)
        return _import_langgraph(store, path, source, progress, thread)
    large = not skip_bad and _large(path)
    # A large file's one protobuf request is mapped and cut into pieces as it is walked,
    # never read whole (tracer._store._parallel).
    records = read_records(path, fmt, progress=progress, mapped=large)
    if large:
        # Decoded by the pool's processes, written here in the file's one transaction.
        try:
            result = store.ingest_decoded(decode_records(records, store.redactor), source=source)
        except SpillLimitError:
            # Nothing was stored: the file again, DuckDB given its usual memory.
            records = read_records(path, fmt, progress=progress, mapped=large)
            result = store.ingest_decoded(
                decode_records(records, store.redactor), source=source, bounded=False
            )
    elif not skip_bad:
        result = store.ingest(records, source=source)
    else:
        errors: list[str] = []
        result = store.ingest(_good_records(records, errors), source=source, skip_bad=True)
        result = _with(result, errors=(*errors, *result.errors))
    return result


def _large(path: str | Path) -> bool:
    try:
        return Path(path).stat().st_size >= PARALLEL_MIN_BYTES
    except OSError:
        return False  # read_records names the file


def _with(r: IngestResult, **changes: Any) -> IngestResult:
    return dataclasses.replace(r, **changes)


def _good_records(records: Iterator[Record], errors: list[str]) -> Iterator[Record]:
    try:
        for rec in records:
            try:
                # Validation only: the real batch is built by the store, in its transaction,
                # and leaves out (and names) the bad spans of a good record.
                add_payload(Batch(lenient=True), rec, rec.source, rec.line)
            except DecodeError as exc:
                errors.append(str(exc))
            else:
                yield rec
    except DecodeError as exc:  # the file itself breaks off: keep what came before
        errors.append(str(exc))


def _import_langgraph(
    store: Store, path: str | Path, source: str, progress: Progress | None, thread: str | None
) -> IngestResult:
    from ._files import open_stream

    content, raw = open_stream(path, source)
    try:
        data = content.read()
        if progress is not None:
            progress(raw.tell())
    except (OSError, EOFError, ValueError) as exc:
        raise DecodeError(f"bad compressed data: {exc}", source=source) from None
    finally:
        content.close()
        raw.close()
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"not JSON: {exc}", source=source) from None
    return import_history(store, doc, source=source, thread=thread)


def expand_paths(paths: list[str]) -> Iterator[Path]:
    """Files named directly, the files under folders (sorted, hidden ones left out), and
    glob patterns (``*``, ``?``, ``[...]``, ``**``); a pattern that matches nothing is an error."""
    for p in paths:
        path = Path(p)
        if path.is_dir():
            yield from sorted(
                q
                for q in path.rglob("*")
                if q.is_file()
                and not any(part.startswith(".") for part in q.relative_to(path).parts)
            )
        elif any(ch in p for ch in "*?["):
            if path.is_absolute():
                found = Path(path.anchor).glob(str(path.relative_to(path.anchor)))
            else:
                found = Path().glob(p)
            # As a shell does: wildcards do not reach into hidden files and folders.
            named = set(path.parts)
            matches = sorted(
                q
                for q in found
                if q.is_file() and all(not s.startswith(".") or s in named for s in q.parts)
            )
            if not matches:
                raise DecodeError("no file matches this pattern", source=p)
            yield from matches
        else:
            yield path
