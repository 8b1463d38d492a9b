"""``flaky``: a failing agent opens its circuit breaker, which later closes again.

``fetch_quotes`` calls a quote feed that fails its first five calls. The agent has
a consecutive-failure breaker (threshold 5, cooldown 20 s, one half-open trial)
and a retry policy that waits out an open breaker (exponential backoff, 1 s
doubling to 8 s, 10 % jitter under the seed). So, in one run:

1. attempts 1-5 fail; the fifth failure opens the breaker;
2. the next attempts are refused at once (``breaker_open``: the feed is not called);
3. the first attempt after the 20 s cooldown moves the breaker to half-open and is
   its trial call; the feed answers, the breaker closes, and ``summarize`` runs.

Each transition is an ``agentrace.breaker.transition`` event on the step that
caused it.
"""

from __future__ import annotations

from typing import Any

from tracer import Recorder

from ..core._agent import agent
from ..core._breaker import BreakerConfig
from ..core._ledger import Update
from ..core._retry import RetryPolicy
from ..core._time import VirtualTime
from ..core._view import AgentContext, StateView
from ..core._workflows import workflow as registered
from ..orchestration._orchestrator import Orchestrator
from ..orchestration._workflow import Workflow, WorkflowBuilder
from ._registry import DEFAULT_SEED, Scenario, register

FAILURES = 5
BREAKER = BreakerConfig(
    mode="consecutive", failure_threshold=5, cooldown=20.0, half_open_max_calls=1
)
RETRY = RetryPolicy(
    max_attempts=10,
    initial_delay=1.0,
    multiplier=2.0,
    max_delay=8.0,
    jitter=0.1,
    retry_breaker_open=True,
)


class FeedUnavailable(ConnectionError):
    """The quote feed did not answer."""


@registered("agentrace.flaky")
def workflow(seed: int = DEFAULT_SEED, failures: int = FAILURES) -> Workflow:
    """fetch_quotes (fails its first ``failures`` calls) → summarize."""
    calls = {"n": 0}

    @agent(breaker=BREAKER, retry=RETRY, timeout=5.0)
    async def fetch_quotes(state: StateView, symbols: list[str], ctx: AgentContext) -> Update:
        calls["n"] += 1
        await ctx.sleep(0.2)
        if calls["n"] <= failures:
            raise FeedUnavailable(f"quote feed unavailable (HTTP 503), call {calls['n']}")
        quotes = {s: round(100 + 7.5 * i + ctx.rng.random(), 2) for i, s in enumerate(symbols)}
        return Update({"quotes": quotes}, output=quotes)

    @agent
    async def summarize(state: StateView, quotes: dict[str, Any], ctx: AgentContext) -> Update:
        await ctx.sleep(0.05)
        top = max(quotes, key=quotes.__getitem__)
        return Update({"summary": {"symbols": len(quotes), "highest": top}})

    return WorkflowBuilder("quotes").chain(fetch_quotes, summarize).build()


async def _record(recorder: Recorder, time: VirtualTime, seed: int) -> list[str]:
    orch = Orchestrator(recorder, time=time, seed=seed)
    result = await orch.run(workflow(seed), ["ACME", "GLOBEX", "INITECH"], scenario="flaky")
    recorder.flush()
    return [result.run_id]


register(
    Scenario(
        "flaky",
        "An agent that fails five times opens its breaker; calls fail fast; after the cooldown a "
        "half-open probe succeeds and closes it.",
        _record,
    )
)
