"""Retry policies, backoff with seeded jitter, and virtual time."""

from __future__ import annotations

import asyncio
import random

import pytest

import engine as e
import tracer as t


def test_backoff_is_exponential_and_capped() -> None:
    p = e.RetryPolicy(max_attempts=6, initial_delay=0.5, multiplier=3, max_delay=10)
    assert [p.delay(n) for n in range(1, 6)] == [0.5, 1.5, 4.5, 10, 10]


def test_jitter_cuts_up_to_its_share_and_repeats_under_a_seed() -> None:
    p = e.RetryPolicy(max_attempts=9, initial_delay=1, multiplier=2, max_delay=100, jitter=0.25)
    a = [p.delay(n, random.Random("s")) for n in range(1, 8)]
    b = [p.delay(n, random.Random("s")) for n in range(1, 8)]
    c = [p.delay(n, random.Random("other")) for n in range(1, 8)]
    assert a == b and a != c
    for n, d in enumerate(a, start=1):
        full = 2 ** (n - 1)
        assert 0.75 * full <= d <= full


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"multiplier": 0.5}, "multiplier"),
        ({"jitter": 1.5}, "jitter"),
        ({"initial_delay": -1}, "negative"),
    ],
)
def test_bad_policies_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        e.RetryPolicy(**kwargs)


def test_what_is_retried() -> None:
    p = e.RetryPolicy(max_attempts=3, retry_on=(ConnectionError,))
    raised = e.AgentError("a", 1, 1, "x")
    raised.__cause__ = ConnectionError()
    other = e.AgentError("a", 1, 1, "x")
    other.__cause__ = KeyError()
    assert p.retries(raised) and not p.retries(other)
    assert p.retries(e.StepTimeoutError("a", 1, 1, "t"))
    assert not p.retries(e.BreakerOpenError("a", 1, 1, "a", "open"))
    assert e.RetryPolicy(retry_breaker_open=True).retries(
        e.BreakerOpenError("a", 1, 1, "a", "open")
    )
    assert not p.retries(e.ContractViolation("a", 1, 1, "c", "b", [], {}))
    assert not p.retries(e.OutputError("a", 1, 1, "x"))


async def test_virtual_sleep_moves_the_clock_at_once() -> None:
    vt = e.VirtualTime(t.FakeClock(0))
    await vt.sleep(2.5)
    await vt.sleep(-1)
    assert vt.now_ns() == 2_500_000_000


async def test_virtual_timeout_stops_at_the_deadline() -> None:
    vt = e.VirtualTime(t.FakeClock(0))
    with pytest.raises(TimeoutError):
        async with vt.timeout(3):
            await vt.sleep(1)
            await vt.sleep(5)
    assert vt.now_ns() == 3_000_000_000
    async with vt.timeout(3):  # the deadline is gone once its block is left
        await vt.sleep(2)
    await vt.sleep(10)
    assert vt.now_ns() == 15_000_000_000


async def test_nested_virtual_timeouts_keep_the_earlier_deadline() -> None:
    vt = e.VirtualTime(t.FakeClock(0))
    with pytest.raises(TimeoutError):
        async with vt.timeout(2), vt.timeout(10):
            await vt.sleep(5)
    assert vt.now_ns() == 2_000_000_000


async def test_real_timeout_interrupts_a_wait() -> None:
    rt = e.RealTime()
    never = asyncio.Event()
    with pytest.raises(TimeoutError):
        async with rt.timeout(0.01):
            await never.wait()
