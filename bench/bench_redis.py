"""The bus across processes: events per second from publish to ack, on Redis Streams.

20,000 small messages published on one topic, consumed by one group whose consumers
ack each at once; the time runs from the first publish to the moment nothing is left
unacked (the publisher's ``run_until_idle``, which polls Redis every 20 ms).
Cases, in the same run: the in-process bus (the anchor: no broker, no network), the
Redis bus with one worker process, and with three worker processes (each
``concurrency=8``), all on one redis-server bound to 127.0.0.1. Publishing goes
through 16 concurrent publishers of one process.

Skipped, with a line saying so, when no redis-server binary is found
(``scripts/redis.sh install``).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

from bench import Measure

EVENTS = 20_000
PUBLISHERS = 16
CONCURRENCY = 8
ROOT = Path(__file__).resolve().parents[1]


def _messages(n: int, topic: str = "bench.events") -> list[object]:
    from engine import Message

    return [Message(f"m{i}", topic, {"n": i}, None, "bench", {}) for i in range(n)]


async def _publish_all(bus: object, messages: list[object]) -> None:
    async def one_publisher(part: list[object]) -> None:
        for m in part:
            await bus.publish(m)  # type: ignore[attr-defined]

    await asyncio.gather(*(one_publisher(messages[i::PUBLISHERS]) for i in range(PUBLISHERS)))


async def _in_process(n: int) -> float:
    from engine import InProcessBus, RealTime

    bus = InProcessBus(RealTime(), concurrency=CONCURRENCY)
    acked = 0

    async def handle(d: object) -> None:
        nonlocal acked
        await bus.ack(d)  # type: ignore[arg-type]
        acked += 1

    await bus.subscribe("bench.events", "consumers", handle)
    messages = _messages(n)
    t0 = time.perf_counter()
    await _publish_all(bus, messages)
    await bus.run_until_idle()
    elapsed = time.perf_counter() - t0
    assert acked == n, (acked, n)
    return elapsed


async def _redis(url: str, namespace: str, n: int, workers: int) -> tuple[float, float]:
    """(publish-to-ack seconds, publish-only seconds) with ``workers`` consumer processes."""
    from engine import RedisBus

    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.bench_redis", "consume", url, namespace],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(workers)
    ]
    try:
        for p in procs:
            assert p.stdout is not None
            line = p.stdout.readline()
            if "ready" not in line:
                raise RuntimeError(f"a bench consumer did not start: {line!r}")
        bus = RedisBus.from_url(url, namespace=namespace)
        try:
            messages = _messages(n)
            t0 = time.perf_counter()
            await _publish_all(bus, messages)
            published = time.perf_counter() - t0
            await bus.run_until_idle()
            elapsed = time.perf_counter() - t0
            left = await bus.unsettled()
            assert not left, f"{len(left)} message(s) unacked"
        finally:
            await bus.close()
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)
            if p.stdout is not None:
                p.stdout.close()
    return elapsed, published


async def _consume(url: str, namespace: str) -> None:
    """A bench consumer process: ack every message of the group until SIGTERM."""
    import signal

    from engine import RedisBus

    bus = RedisBus.from_url(url, namespace=namespace, concurrency=CONCURRENCY)

    async def handle(d: object) -> None:
        await bus.ack(d)  # type: ignore[arg-type]

    await bus.subscribe("bench.events", "consumers", handle)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, bus.stop)
    print("ready", flush=True)
    try:
        await bus.serve()
    finally:
        await bus.close()


def run() -> list[Measure]:
    from engine.distributed._server import RedisServer, find_redis_server

    if find_redis_server() is None:
        print("  skipped: no redis-server binary (scripts/redis.sh install installs one)")
        return []
    out = []
    inproc = asyncio.run(_in_process(EVENTS))
    out.append(
        Measure(
            "redis",
            "in-process bus, publish to ack",
            EVENTS / inproc,
            "events/s",
            f"anchor; concurrency {CONCURRENCY}",
        )
    )
    with RedisServer() as server:
        for workers in (1, 3):
            ns = f"bench{workers}"
            elapsed, published = asyncio.run(_redis(server.url, ns, EVENTS, workers))
            out.append(
                Measure(
                    "redis",
                    f"redis bus, {workers} worker process(es), publish to ack",
                    EVENTS / elapsed,
                    "events/s",
                    f"x{(EVENTS / elapsed) / (EVENTS / inproc):.3f} of in-process",
                )
            )
            out.append(
                Measure(
                    "redis",
                    f"redis bus, publish only ({workers} consuming)",
                    EVENTS / published,
                    "events/s",
                    f"{PUBLISHERS} publishers",
                )
            )
    return out


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "consume":
    asyncio.run(_consume(sys.argv[2], sys.argv[3]))
