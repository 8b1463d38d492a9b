"""Importing files into a store: each file one transaction.

A bad record stops its file's import and leaves the store as it was, unless
``skip_bad`` is set: then every record is checked first, the good ones are
stored (still in one transaction) and the bad ones are reported.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ._errors import DecodeError
from ._otlp import Format, Record, read_records
from ._store._ingest import Batch
from ._store._models import IngestResult
from ._store._store import Store, add_payload


def import_file(store: Store, path: str | Path, *, fmt: Format = "auto", skip_bad: bool = False) -> IngestResult:
    """Import one file; raises :class:`DecodeError` naming the file and line when it is bad."""
    source = str(path)
    records = list(read_records(path, fmt))
    if not skip_bad:
        return store.ingest(records, source=source)
    good: list[Record] = []
    errors: list[str] = []
    for rec in records:
        try:
            add_payload(Batch(), rec, source, rec.line)
        except DecodeError as exc:
            errors.append(str(exc))
        else:
            good.append(rec)
    result = store.ingest(good, source=source)
    return IngestResult(
        runs=result.runs, spans=result.spans, skipped=result.skipped, versions=result.versions,
        requests=result.requests, errors=tuple(errors),
    )  # fmt: skip


def expand_paths(paths: list[str]) -> Iterator[Path]:
    """Files named directly, the files under folders (sorted), and glob patterns."""
    for p in paths:
        path = Path(p)
        if path.is_dir():
            yield from sorted(q for q in path.rglob("*") if q.is_file() and not q.name.startswith("."))
        elif any(ch in p for ch in "*?["):
            matches = sorted(q for q in Path().glob(p) if q.is_file()) if not path.is_absolute() else sorted(
                q for q in Path(path.anchor).glob(str(path.relative_to(path.anchor))) if q.is_file()
            )
            if not matches:
                raise DecodeError("no file matches this pattern", source=p)
            yield from matches
        else:
            yield path
