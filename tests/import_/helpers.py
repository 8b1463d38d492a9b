"""Shared by the import tests: fixture paths, store snapshots, a receiver in a thread, HTTP posts."""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import tracer as t

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
FOREIGN = FIXTURES / "foreign"
DAMAGED = FIXTURES / "damaged"
FRAMEWORKS = ("langgraph_openinference", "pydantic_ai", "openai_agents")

LOAD = FIXTURES.parent.parent / "scripts" / "otlp_load.py"

TABLES = ("runs", "spans", "span_events", "span_links", "state_versions", "state_reads", "messages")


@functools.cache
def otlp_load() -> Any:
    """scripts/otlp_load.py as a module: the load generator's request builder."""
    spec = importlib.util.spec_from_file_location("otlp_load", LOAD)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def counts(store: t.Store) -> dict[str, int]:
    """Rows per table: equal before and after means nothing was written."""
    return {name: store.sql(f"SELECT count(*) FROM {name}").fetchall()[0][0] for name in TABLES}


def span_rows(store: t.Store) -> list[tuple[Any, ...]]:
    """Every stored span with its events and links, in a stable order, for comparing stores."""
    spans = store.sql(
        """SELECT trace_id, span_id, parent_span_id, trace_state, name, kind, start_ns, end_ns,
                  status_code, status_message, attributes::VARCHAR, resource::VARCHAR, scope_name,
                  scope_version, service_name, operation, agent, dropped_attributes_count,
                  dropped_events_count, dropped_links_count
           FROM spans ORDER BY trace_id, span_id"""
    ).fetchall()
    events = store.sql(
        "SELECT trace_id, span_id, seq, time_ns, name, attributes::VARCHAR FROM span_events ORDER BY ALL"
    ).fetchall()
    links = store.sql(
        """SELECT trace_id, span_id, seq, linked_trace_id, linked_span_id, attributes::VARCHAR
           FROM span_links ORDER BY ALL"""
    ).fetchall()
    return [*spans, *events, *links]


class ThreadedReceiver:
    """A receiver on its own event loop in a thread, for clients that block (the OTLP exporter)."""

    def __init__(self, store: t.Store, **kwargs: Any) -> None:
        self.store = store
        self.kwargs = kwargs
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.receiver: Any = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            try:
                self.receiver = await t.start_receiver(self.store, "127.0.0.1", 0, **self.kwargs)
            except BaseException as exc:
                self.error = exc
                self._ready.set()
                return
            self._ready.set()
            await self._stop.wait()
            await self.receiver.close()

        asyncio.run(main())

    def __enter__(self) -> ThreadedReceiver:
        self._thread.start()
        assert self._ready.wait(20), "the receiver did not start"
        if self.error is not None:
            raise self.error
        return self

    def close(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)
        assert not self._thread.is_alive(), "the receiver did not stop"

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        return str(self.receiver.url)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.receiver.port}"


def post(
    url: str, body: bytes, headers: dict[str, str] | None = None, method: str = "POST"
) -> tuple[int, dict[str, str], bytes]:
    """Send one request; ``(status, headers, body)`` whatever the status."""
    req = urllib.request.Request(url, data=body, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), exc.read()


def spans_of(req: Any) -> list[Any]:
    return [sp for rs in req.resource_spans for ss in rs.scope_spans for sp in ss.spans]
