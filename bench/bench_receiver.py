"""Spans per second through ``agentrace serve``'s receiver, next to the file import and the parse floor.

All in one run, on the same requests (scripts/otlp_load.py builds them: one
trace of 500 agent spans per request, ids derived from sender and number):

* parse floor: ``decode_proto`` of the pre-encoded bodies, nothing stored;
* ingest floor: ``Store.ingest`` of the decoded requests into a file store,
  8 requests per transaction (the receiver's group commit with 8 senders) and 64,
  and 8 10-span requests per transaction (the small requests' ceiling);
* file import: the same bodies as one length-prefixed protobuf file, imported;
* receiver: the load generator in another process, 8 senders posting the
  pre-encoded bodies over loopback HTTP, counted from the first post to the
  last 200 (each answered only once committed); plain and gzip bodies.

Goals on 2 cores: 150,000 spans/s with 512-span requests, 20,000 with 10-span ones.

And the receiver's memory: ``agentrace serve`` in a process of its own, its
resident memory (decoding processes included) idle, idle again after one request
(which loads the compiled wire walk, kept from then on), at its peak through three
bursts of 8 senders posting 409,600 spans each, and after each burst once the
writer has been quiet for a moment (when it hands freed memory back).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import tracer as t
from bench import Measure, best_of
from tracer._receiver import MAX_PENDING
from tracer._store._ingest import Parsed

ROOT = Path(__file__).resolve().parent.parent
SENDERS = 8
SPANS_PER_SENDER = 25_600
BATCH = 512  # the OpenTelemetry SDK's default batch
SMALL_BATCH = 10
SMALL_SPANS = 2_000  # per sender: 200 requests each
LARGE_BATCH = 8_192  # bodies of about 1.6 MB: decoded by the pool's processes
LARGE_SPANS = 6 * LARGE_BATCH


def _load_module() -> Any:
    spec = importlib.util.spec_from_file_location("otlp_load", ROOT / "scripts" / "otlp_load.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Server:
    """A receiver on its own loop in a thread of this process."""

    def __init__(self, store: t.Store) -> None:
        self.store = store
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.receiver: Any = None

    def _run(self) -> None:
        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            self.stop = asyncio.Event()
            self.receiver = await t.start_receiver(self.store, "127.0.0.1", 0)
            self.ready.set()
            await self.stop.wait()
            await self.receiver.close()

        asyncio.run(main())

    def __enter__(self) -> _Server:
        self.thread.start()
        if not self.ready.wait(30):
            raise RuntimeError("the receiver did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(120)


def _through_receiver(
    tmp: Path, gzip: bool, batch: int = BATCH, spans: int = SPANS_PER_SENDER
) -> tuple[float, int, float]:
    store = t.Store(tmp / f"recv-{int(gzip)}-{batch}.duckdb")
    with _Server(store) as server:
        args = [sys.executable, str(ROOT / "scripts" / "otlp_load.py"), server.receiver.url, "--quiet",
                "--senders", str(SENDERS), "--spans", str(spans), "--batch", str(batch)]  # fmt: skip
        if gzip:
            args.append("--gzip")
        done = subprocess.run(args, capture_output=True, text=True, timeout=1800, check=False)
        stats = server.receiver.stats
    store.close()
    if done.returncode != 0:
        raise RuntimeError(f"the load generator failed: {done.stderr.strip()[-500:]}")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    return (
        float(summary["spans_per_s"]),
        int(summary["spans_acked"]),
        stats.requests / max(1, stats.commits),
    )


def _tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and its descendants (VmRSS; 0 for one that has gone)."""
    total = 0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        total += int(next(x for x in status.splitlines() if x.startswith("VmRSS:")).split()[1])
        todo += [int(k) for k in kids]
    return total * 1024


def _serve_memory(tmp: Path, bursts: int = 3) -> list[Measure]:
    """``agentrace serve`` in its own process: idle, peak and after-burst memory."""
    from tracer._receiver import IDLE_RELEASE

    args = [str(Path(sys.executable).parent / "agentrace"), "serve", "--db", str(tmp / "serve.duckdb"),
            "--port", "0"]  # fmt: skip
    server = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert server.stdout is not None
        url = ""
        for line in server.stdout:
            m = re.search(r"listening on (\S+)", line)
            if m:
                url = m.group(1)
                break
        if not url:
            raise RuntimeError("agentrace serve did not start")
        threading.Thread(target=server.stdout.read, daemon=True).start()  # keep the pipe open
        idle = _tree_rss(server.pid)

        def burst(senders: int, spans: int, seed: int) -> int:
            """The peak while the burst is posted; the writer hands memory back after
            IDLE_RELEASE quiet seconds, so the caller reads it a second after that."""
            peak = 0
            load = subprocess.Popen(
                [sys.executable, str(ROOT / "scripts" / "otlp_load.py"), url, "--quiet",
                 "--senders", str(senders), "--spans", str(spans),
                 "--batch", str(BATCH), "--seed", str(seed)],
                stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            while load.poll() is None:
                peak = max(peak, _tree_rss(server.pid))
                time.sleep(0.02)
            if load.returncode != 0:
                raise RuntimeError("the load generator failed")
            time.sleep(IDLE_RELEASE + 1)
            return peak

        # One request first: what the first request loads (the compiled wire walk) stays.
        burst(1, BATCH, 9)
        warm = _tree_rss(server.pid)
        peak, after = 0, []
        for k in range(bursts):
            peak = max(peak, burst(SENDERS, 2 * SPANS_PER_SENDER, 10 + k))
            after.append(_tree_rss(server.pid))
    finally:
        server.terminate()
        server.wait(60)
    mb = 1 << 20
    spans = SENDERS * 2 * SPANS_PER_SENDER
    return [
        Measure("receiver", "serve memory: idle", idle / mb, "MB"),
        Measure("receiver", "serve memory: idle after its first request", warm / mb, "MB"),
        Measure("receiver", f"serve memory: peak over {bursts} bursts of {spans:,} spans", peak / mb,
                "MB", f"in-flight budget {MAX_PENDING // mb} MB of bodies"),
        Measure("receiver", "serve memory: after each burst, once quiet", after[-1] / mb, "MB",
                "after the bursts: " + ", ".join(f"{a / mb:.0f}" for a in after)
                + f" MB; {after[-1] / warm:.2f}x idle after its first request"),
    ]  # fmt: skip


def run() -> list[Measure]:
    load = _load_module()
    requests = [
        load.build_request(1, s, i, BATCH)
        for s in range(SENDERS)
        for i in range(SPANS_PER_SENDER // BATCH)
    ]
    bodies = [r.SerializeToString() for r in requests]
    n = len(requests) * BATCH
    out = []
    parse = best_of(lambda: [t.decode_proto(b) for b in bodies])
    out.append(Measure("receiver", "parse floor: decode_proto (no store)", n / parse, "spans/s"))
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        # With 8 senders at most 8 requests wait for the writer, so its group commits hold
        # 8 requests at most: the floor at that size is the receiver's ceiling.
        # Bodies as the receiver hands them to the store: upb's message and its bytes.
        parsed = [Parsed(b, r) for b, r in zip(bodies, requests, strict=True)]
        for per in (SENDERS, 64):
            store = t.Store(tmp / f"ingest-{per}.duckdb")
            t0 = time.perf_counter()
            for k in range(0, len(parsed), per):
                store.ingest(parsed[k : k + per])
            rate = n / (time.perf_counter() - t0)
            out.append(
                Measure(
                    "receiver",
                    f"ingest floor: Store.ingest, {per} requests a commit",
                    rate,
                    "spans/s",
                )
            )
            store.close()
        # The same for the small requests: the 10-span case's ceiling at 8 senders.
        small = [
            load.build_request(2, s, i, SMALL_BATCH)
            for i in range(SMALL_SPANS // SMALL_BATCH)
            for s in range(SENDERS)
        ]
        store = t.Store(tmp / "ingest-small.duckdb")
        t0 = time.perf_counter()
        for k in range(0, len(small), SENDERS):
            store.ingest(small[k : k + SENDERS])
        rate = len(small) * SMALL_BATCH / (time.perf_counter() - t0)
        out.append(
            Measure(
                "receiver",
                f"ingest floor: Store.ingest, {SENDERS} {SMALL_BATCH}-span requests a commit",
                rate,
                "spans/s",
            )
        )
        store.close()
        path = tmp / "all.lpb"
        path.write_bytes(b"".join(len(b).to_bytes(4, "big") + b for b in bodies))
        store = t.Store(tmp / "import.duckdb")
        t0 = time.perf_counter()
        result = t.import_file(store, path)
        out.append(
            Measure(
                "receiver",
                "file import: length-prefixed protobuf",
                result.spans / (time.perf_counter() - t0),
                "spans/s",
            )
        )
        store.close()
        for gz in (False, True):
            rate, acked, group = _through_receiver(tmp, gz)
            label = "receiver: 8 senders, protobuf" + (" + gzip" if gz else "")
            note = f"{acked:,} spans, {group:.1f} requests a commit; {rate / (n / parse):.3f}x the parse floor; goal 150,000/s"
            out.append(Measure("receiver", label, rate, "spans/s", note))
        # Small requests, as exporters with a short schedule send them: decoded in the writer
        # (below the pool's threshold), committed in groups.
        rate, acked, group = _through_receiver(tmp, False, SMALL_BATCH, SMALL_SPANS)
        note = f"{acked:,} spans, {group:.1f} requests a commit; {rate / (n / parse):.3f}x the parse floor; goal 20,000/s"
        out.append(
            Measure(
                "receiver",
                f"receiver: 8 senders, {SMALL_BATCH}-span requests",
                rate,
                "spans/s",
                note,
            )
        )
        # Large requests (a collector's batches): decoded by the pool, a group written as one.
        rate, acked, group = _through_receiver(tmp, False, LARGE_BATCH, LARGE_SPANS)
        out.append(
            Measure(
                "receiver",
                f"receiver: 8 senders, {LARGE_BATCH:,}-span requests (decoded by the pool)",
                rate,
                "spans/s",
                f"{acked:,} spans, {group:.1f} requests a commit",
            )
        )
        out += _serve_memory(tmp)
    return out
