"""The choreography scenarios with their agents in separate processes, on Redis.

Each :class:`DistributedScenario` is the in-process scenario of the same name
(``engine.scenarios.choreography``) made to run with workers: the same choreography and
input, the faults given to the worker of the agent they hit, and timings a person
can wait for (agents' simulated work scaled by ``time_scale``; an ack timeout of
``ACK_TIMEOUT`` real seconds where the in-process scenario has 30 virtual ones)::

    agentrace serve --port 4318 &
    agentrace worker engine.scenarios.distributed:double_consume.research --bus redis://127.0.0.1:6379 --otlp http://127.0.0.1:4318 &
    agentrace worker engine.scenarios.distributed:double_consume.analysis --bus redis://127.0.0.1:6379 --otlp http://127.0.0.1:4318 &
    agentrace worker engine.scenarios.distributed:double_consume.report --bus redis://127.0.0.1:6379 --otlp http://127.0.0.1:4318 &
    agentrace worker engine.scenarios.distributed:double_consume --start --bus redis://127.0.0.1:6379 --otlp http://127.0.0.1:4318
"""

from __future__ import annotations

from typing import Final

from ..choreography._choreographer import Choreography
from ..choreography._faults import FaultRule
from ..core._workflows import workflow
from ..distributed._worker import DistributedScenario
from .choreography import REQUEST
from .choreography import research_pipeline as _pipeline

ACK_TIMEOUT: Final = 1.0  # real seconds a group waits for an ack before another delivery


# Registered workflows: the runs record their names, by which replay rebuilds what they ran.
@workflow("agentrace.distributed.double-consume")
def build_double_consume(seed: int | None = None) -> Choreography:
    return _pipeline(ack_timeout=ACK_TIMEOUT)


@workflow("agentrace.distributed.double-consume-fixed")
def build_double_consume_fixed(seed: int | None = None) -> Choreography:
    return _pipeline(ack_timeout=ACK_TIMEOUT, idempotent_analysis=True)


@workflow("agentrace.distributed.research-pipeline")
def build_resilient_pipeline(seed: int | None = None) -> Choreography:
    return _pipeline(ack_timeout=ACK_TIMEOUT)


research_pipeline = DistributedScenario("research-pipeline", _pipeline, REQUEST, REQUEST["request"])
double_consume = DistributedScenario(
    "double-consume",
    build_double_consume,
    REQUEST,
    REQUEST["request"],
    {"analysis": (FaultRule.lose_ack(topic="research.done", group="analysis", attempt=1),)},
)
double_consume_fixed = DistributedScenario(
    "double-consume-fixed",
    build_double_consume_fixed,
    REQUEST,
    REQUEST["request"],
    {"analysis": (FaultRule.lose_ack(topic="research.done", group="analysis", attempt=1),)},
)
lost_event = DistributedScenario(
    "lost-event",
    _pipeline,
    REQUEST,
    REQUEST["request"],
    {
        "analysis": (
            FaultRule.crash(during=True, topic="research.done", group="analysis", attempt=1),
        )
    },
    expect="failed",
)
# A pipeline whose groups redeliver after the ack timeout: what a killed worker needs.
resilient_pipeline = DistributedScenario(
    "research-pipeline",
    build_resilient_pipeline,
    REQUEST,
    REQUEST["request"],
)

# By scenario name (module attributes cannot hold dashes).
SCENARIOS: Final[dict[str, DistributedScenario]] = {
    s.name: s for s in (research_pipeline, double_consume, double_consume_fixed, lost_event)
}
