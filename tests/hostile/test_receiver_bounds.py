"""The receiver under slow, many and greedy clients: bounded, answered, one line per kind of trouble.

Only loopback addresses; every loop is bounded; waits are on events (a socket
closing, an answer arriving, a condition), never on the clock.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from pathlib import Path

import pytest

import tracer as t
from tracer import _guard
from tracer._guard import OneLineLogs

from ..import_.helpers import ThreadedReceiver, post

SPAN = {"traceId": "ab" * 16, "spanId": "cd" * 8, "name": "one", "startTimeUnixNano": "1",
        "endTimeUnixNano": "2"}  # fmt: skip
BODY = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [SPAN]}]}]}).encode()
JSON = {"Content-Type": "application/json"}


def _connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    return s


def _answer(s: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    return out


def _head(port: int, length: int, extra: str = "") -> bytes:
    return (
        f"POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n{extra}\r\n"
    ).encode()


@pytest.fixture
def frozen_log_filter(monkeypatch: pytest.MonkeyPatch) -> OneLineLogs:
    """The receiver's log filter as a fresh one whose clock stands still: every record of
    the test falls in one window, and no earlier test has spent its burst."""
    fresh = OneLineLogs(clock=lambda: 0.0)
    for name in _guard.LOGGERS:
        logger = logging.getLogger(name)
        monkeypatch.setattr(
            logger, "filters", [f for f in logger.filters if f is not _guard._FILTER]
        )
    monkeypatch.setattr(_guard, "_FILTER", fresh)
    return fresh


def test_slow_clients_are_cut_off_and_the_connection_cap_holds(
    tmp_path: Path, caplog, frozen_log_filter: OneLineLogs
) -> None:
    caplog.set_level(logging.INFO, logger="agentrace.receiver")
    store = t.Store(tmp_path / "a.duckdb")
    with ThreadedReceiver(store, max_connections=8, header_timeout=0.5) as rx:
        port = rx.receiver.port
        # Eight clients that never finish their headers hold every slot...
        slow = [_connect(port) for _ in range(8)]
        for s in slow:
            s.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\n")
        # ...the connections over the cap are answered 503 at once and closed,
        over = []
        for _ in range(40):
            s = _connect(port)
            answer = _answer(s)
            s.close()
            over.append(answer)
            if answer.startswith(b"HTTP/1.1 503"):
                break
        assert over[-1].startswith(b"HTTP/1.1 503") and b"Retry-After: 1" in over[-1]
        # ...and each slow client is cut off when its header deadline passes.
        for s in slow:
            assert _answer(s) == b""
            s.close()
        # The server is up and takes a good request.
        status, _, _ = post(rx.url, BODY, JSON)
        assert status == 200
        assert rx.receiver.connections.timed_out == 8
        assert rx.receiver.connections.refused >= 1
    store.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "agentrace.receiver"]
    assert all("\n" not in line for line in lines)
    cut = [line for line in lines if "no request within" in line]
    # Eight cut off in one window of the filter: its burst of five lines, the rest held.
    assert len(cut) == frozen_log_filter.burst == 5, cut


def test_bodies_past_the_bytes_in_flight_get_429_before_they_are_read(tmp_path: Path) -> None:
    store = t.Store(tmp_path / "a.duckdb")
    size = 600_000
    with ThreadedReceiver(store, max_pending=1_000_000) as rx:
        port = rx.receiver.port
        first = _connect(port)
        body = json.dumps({"resourceSpans": [], "pad": "x" * (size - 40)}).encode()
        body = body + b" " * (size - len(body))
        first.sendall(_head(port, size) + body[:1000])
        assert rx.receiver.in_flight.wait_for(lambda used: used >= size, timeout=30)
        # A second upload that would pass the bound: answered without sending its body.
        second = _connect(port)
        second.sendall(_head(port, size))
        answer = _answer(second)
        second.close()
        assert answer.startswith(b"HTTP/1.1 429"), answer[:200]
        assert b"Retry-After: 1" in answer
        # The first finishes and is answered; its bytes are given back.
        first.sendall(body[1000:])
        first.settimeout(30)
        reply = first.recv(65536)
        first.close()
        assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
        assert rx.receiver.in_flight.wait_for(lambda used: used == 0, timeout=30)
        status, _, _ = post(rx.url, BODY, JSON)
        assert status == 200
    store.close()


def test_a_body_that_stops_arriving_is_408(tmp_path: Path) -> None:
    store = t.Store(tmp_path / "a.duckdb")
    with ThreadedReceiver(store, body_idle_timeout=0.3) as rx:
        s = _connect(rx.receiver.port)
        s.sendall(_head(rx.receiver.port, 1000) + b'{"resourceSpans": [')
        answer = _answer(s)
        s.close()
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert rx.receiver.in_flight.used == 0
        assert post(rx.url, BODY, JSON)[0] == 200
    store.close()


def test_the_bearer_scheme_is_case_insensitive(tmp_path: Path) -> None:
    store = t.Store(tmp_path / "a.duckdb")
    with ThreadedReceiver(store, token="s3cret") as rx:
        for auth, want in (
            ("Bearer s3cret", 200), ("bearer s3cret", 200), ("BEARER  s3cret ", 200),
            ("Bearer wrong", 401), ("Basic s3cret", 401), ("s3cret", 401), ("", 401),
        ):  # fmt: skip
            status, _, body = post(rx.url, BODY, {**JSON, "Authorization": auth})
            assert status == want, (auth, status)
            assert b"s3cret" not in body
    store.close()


def test_log_lines_are_one_line_and_rate_limited() -> None:
    now = [0.0]
    filt = OneLineLogs(burst=3, window=10.0, clock=lambda: now[0])
    logger = logging.getLogger("agentrace.test-one-line")
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger.addHandler(Keep())
    logger.addFilter(filt)
    logger.propagate = False
    try:
        for i in range(1000):
            try:
                raise OSError(24, "Too many open files\n\x1b]0;x\x07")
            except OSError:
                logger.exception("socket.accept() out of system resource %d", i)
        now[0] = 11.0
        logger.error("socket.accept() out of system resource %d", 1000)
    finally:
        logger.removeFilter(filt)
    assert len(records) == 4
    texts = [r.getMessage() for r in records]
    assert all(
        r.exc_info is None and "\n" not in m and "\x1b" not in m
        for r, m in zip(records, texts, strict=True)
    )
    assert (
        texts[0]
        == "socket.accept() out of system resource 0: OSError: [Errno 24] Too many open files \\x1b]0;x\\x07"
    )
    assert texts[3].endswith("(997 more like this in the last 10s not shown)")


def test_an_empty_host_is_refused(tmp_path: Path) -> None:
    store = t.Store(tmp_path / "a.duckdb")
    with pytest.raises(OSError, match="empty host binds every interface"):
        asyncio.run(t.Receiver(store, "", 0).start())
    store.close()
