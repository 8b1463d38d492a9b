"""What you write a multi-agent system with: agents, workflows, choreographies, contracts, policies.

The authoring door of the engine (``engine.running`` runs what is written here,
``engine.testing`` tests it; ``engine`` itself offers both doors' names)::

    from engine.authoring import Update, WorkflowBuilder, agent

    @agent
    async def research(state, topic):
        return Update({"notes": f"notes on {topic}"})

Every name here is pinned by a test: adding one is a deliberate change.
"""

from __future__ import annotations

from .choreography._bus import DeliveryPolicy, Message, dead_letter_topic
from .choreography._choreographer import (
    Choreography,
    DeliveryFailed,
    EventContext,
    Subscription,
    compensation_topic,
)
from .core._agent import Agent, agent, as_agent
from .core._breaker import BreakerConfig
from .core._cache import CachePolicy
from .core._contracts import Contract, ContractResult, Rule
from .core._errors import (
    AgentError,
    BreakerOpenError,
    CompensationError,
    ContractViolation,
    EngineError,
    OutputError,
    ScenarioError,
    StepCancelled,
    StepError,
    StepTimeoutError,
    WorkflowError,
    WorkflowFailed,
)
from .core._ledger import Update, json_copy
from .core._retry import RetryPolicy
from .core._saga import SagaPolicy
from .core._view import AgentContext, CacheView, StateView
from .core._workflows import WorkflowRegistry, workflow, workflows
from .orchestration._workflow import Route, Workflow, WorkflowBuilder, chain

__all__ = [
    "Agent",
    "AgentContext",
    "AgentError",
    "BreakerConfig",
    "BreakerOpenError",
    "CachePolicy",
    "CacheView",
    "Choreography",
    "CompensationError",
    "Contract",
    "ContractResult",
    "ContractViolation",
    "DeliveryFailed",
    "DeliveryPolicy",
    "EngineError",
    "EventContext",
    "Message",
    "OutputError",
    "RetryPolicy",
    "Route",
    "Rule",
    "SagaPolicy",
    "ScenarioError",
    "StateView",
    "StepCancelled",
    "StepError",
    "StepTimeoutError",
    "Subscription",
    "Update",
    "Workflow",
    "WorkflowBuilder",
    "WorkflowError",
    "WorkflowFailed",
    "WorkflowRegistry",
    "agent",
    "as_agent",
    "chain",
    "compensation_topic",
    "dead_letter_topic",
    "json_copy",
    "workflow",
    "workflows",
]
