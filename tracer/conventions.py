"""Attribute and event names: the OpenTelemetry conventions agentrace follows and its own.

The GenAI agent conventions and the messaging conventions come first; facts no
convention covers live under ``agentrace.*``. Every part of agentrace (the
engine that writes them, the store that projects them, the analysis that reads
them) takes the names from here.
"""

from __future__ import annotations

from typing import Final

# -- OpenTelemetry GenAI conventions -------------------------------------------------------
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_SYSTEM: Final = "gen_ai.system"  # deprecated name of gen_ai.provider.name
GEN_AI_AGENT_NAME: Final = "gen_ai.agent.name"
GEN_AI_AGENT_ID: Final = "gen_ai.agent.id"
GEN_AI_CONVERSATION_ID: Final = "gen_ai.conversation.id"
GEN_AI_WORKFLOW_NAME: Final = "gen_ai.workflow.name"
GEN_AI_TOOL_NAME: Final = "gen_ai.tool.name"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
# Token usage and the model of a model call, each in the spellings seen in the wild:
# GenAI (current, then older), then OpenInference. The first present wins.
INPUT_TOKEN_KEYS: Final = (
    GEN_AI_USAGE_INPUT_TOKENS,
    "gen_ai.usage.prompt_tokens",
    "llm.token_count.prompt",
)
OUTPUT_TOKEN_KEYS: Final = (
    GEN_AI_USAGE_OUTPUT_TOKENS, "gen_ai.usage.completion_tokens", "llm.token_count.completion",
)  # fmt: skip
MODEL_KEYS: Final = ("gen_ai.response.model", GEN_AI_REQUEST_MODEL, "llm.model_name")
GEN_AI_INPUT_MESSAGES: Final = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES: Final = "gen_ai.output.messages"

OP_INVOKE_WORKFLOW: Final = "invoke_workflow"
OP_INVOKE_AGENT: Final = "invoke_agent"
OP_EXECUTE_TOOL: Final = "execute_tool"
OP_CHAT: Final = "chat"
# Operations that are one model call (an agent span's aggregated usage repeats theirs).
MODEL_CALL_OPERATIONS: Final = (OP_CHAT, "text_completion", "generate_content")
OP_COMPENSATE: Final = "compensate"  # ours: a saga undoing a completed step
OP_HANDOFF: Final = "handoff"  # a handoff between agents (OpenAI Agents SDK spans)

PROVIDER: Final = "agentrace"

# -- OpenTelemetry messaging conventions ---------------------------------------------------
MESSAGING_SYSTEM: Final = "messaging.system"
MESSAGING_DESTINATION: Final = "messaging.destination.name"
MESSAGING_MESSAGE_ID: Final = "messaging.message.id"
MESSAGING_CONSUMER_GROUP: Final = "messaging.consumer.group.name"
MESSAGING_OPERATION_TYPE: Final = "messaging.operation.type"
MESSAGING_OPERATION_NAME: Final = "messaging.operation.name"
MESSAGING_DELIVERY_COUNT: Final = "messaging.message.delivery_count"

SERVICE_NAME: Final = "service.name"

# -- agentrace: the run (on the workflow root span) ----------------------------------------
RUN_PATTERN: Final = "agentrace.run.pattern"  # orchestration | choreography | hybrid
RUN_STATUS: Final = "agentrace.run.status"  # completed | failed | compensated | compensation_failed
RUN_WORKFLOW_REF: Final = "agentrace.run.workflow_ref"  # registered workflow name, for replay
RUN_WORKFLOW_VERSION: Final = "agentrace.run.workflow_version"  # its registered version
RUN_PARENT: Final = "agentrace.run.parent"  # run id this run replays or forks
RUN_FORK_VERSION: Final = "agentrace.run.fork_version"
RUN_SCHEDULE_SEED: Final = "agentrace.run.schedule_seed"  # a recorded explored schedule
RUN_SCENARIO: Final = "agentrace.run.scenario"
RUN_SEED: Final = "agentrace.run.seed"
RUN_DECLARED_GRAPH: Final = "agentrace.run.declared_graph"  # JSON: {"edges": [[a, b], ...], ...}

# -- agentrace: agents and steps -----------------------------------------------------------
AGENT_INPUT: Final = "agentrace.agent.input"  # JSON
AGENT_OUTPUT: Final = "agentrace.agent.output"  # JSON; what deterministic replay feeds back
AGENT_ATTEMPT: Final = "agentrace.agent.attempt"
AGENT_STEP: Final = "agentrace.agent.step"  # sequence number of the step in its run
AGENT_FROM: Final = "agentrace.agent.from"  # the agent(s) whose output this step received
STEP_OUTCOME: Final = "agentrace.step.outcome"  # ok|failed|rejected|breaker_open|timeout|cancelled

# -- agentrace: span events ----------------------------------------------------------------
EV_STATE_COMMIT: Final = "agentrace.state.commit"
EV_STATE_READ: Final = "agentrace.state.read"
EV_CONTRACT_CHECK: Final = "agentrace.contract.check"
EV_BREAKER_TRANSITION: Final = "agentrace.breaker.transition"
EV_MESSAGE_DELIVER: Final = "agentrace.message.deliver"
EV_MESSAGE_ACK: Final = "agentrace.message.ack"
EV_SAGA_COMPENSATE: Final = "agentrace.saga.compensate"
EV_CACHE_INVALIDATE: Final = "agentrace.cache.invalidate"  # keys dropped from a cache

# state.commit / state.read attributes
STATE_VERSION: Final = "agentrace.state.version"
STATE_PARENT_VERSION: Final = "agentrace.state.parent_version"
STATE_BASE_VERSION: Final = "agentrace.state.base_version"
STATE_HEAD_VERSION: Final = "agentrace.state.head_version"  # ledger head when a read was served
STATE_KIND: Final = "agentrace.state.kind"  # initial | commit | rollback | compensation | fork
STATE_HASH: Final = "agentrace.state.hash"
STATE_SNAPSHOT: Final = "agentrace.state.snapshot"  # canonical JSON of the whole document
STATE_PATCH: Final = "agentrace.state.patch"  # JSON Patch (RFC 6902) against the parent
STATE_KEYS: Final = "agentrace.state.keys"  # top-level keys written or read
STATE_VIA: Final = "agentrace.state.via"  # store | cache | message
STATE_CACHE: Final = "agentrace.state.cache"  # the cache's name (via=cache; cache.invalidate)
STATE_AGENT: Final = "agentrace.state.agent"
STATE_SOURCE: Final = "agentrace.state.source"  # where a version came from; absent = agentrace

STATE_KINDS: Final = ("initial", "commit", "rollback", "compensation", "fork")
READ_VIA: Final = ("store", "cache", "message")

# contract.check attributes
CONTRACT_NAME: Final = "agentrace.contract.name"
CONTRACT_OUTCOME: Final = "agentrace.contract.outcome"  # passed | rejected
CONTRACT_SOURCE: Final = "agentrace.contract.source"  # producing agent
CONTRACT_TARGET: Final = "agentrace.contract.target"  # receiving agent or topic
CONTRACT_PAYLOAD: Final = "agentrace.contract.payload"  # JSON
CONTRACT_ERRORS: Final = "agentrace.contract.errors"  # JSON list

# breaker.transition attributes
BREAKER_NAME: Final = "agentrace.breaker.name"
BREAKER_FROM: Final = "agentrace.breaker.from"
BREAKER_TO: Final = "agentrace.breaker.to"  # closed | open | half_open
BREAKER_REASON: Final = "agentrace.breaker.reason"
BREAKER_REJECTED: Final = "agentrace.breaker.rejected"  # bool on a step refused while open

# message.deliver / message.ack attributes (plus the messaging.* ones above)
MESSAGE_ATTEMPT: Final = "agentrace.message.attempt"
MESSAGE_CONSUMER: Final = "agentrace.message.consumer"
MESSAGE_KEY: Final = "agentrace.message.key"
MESSAGE_OUTCOME: Final = (
    "agentrace.message.outcome"  # acked | nacked | dead_lettered | duplicate | dropped
)
MESSAGE_FAULT: Final = "agentrace.message.fault"  # an injected fault, when there was one
MESSAGE_UNPUBLISHED: Final = (
    "agentrace.message.unpublished"  # topics a consumer that died had staged and never published
)

# saga.compensate attributes
SAGA_AGENT: Final = "agentrace.saga.agent"
SAGA_OUTCOME: Final = "agentrace.saga.outcome"  # ok | failed | skipped
SAGA_REASON: Final = "agentrace.saga.reason"  # why skipped: no_compensation | stopped
SAGA_STEP: Final = "agentrace.saga.step"  # the step a skip is about (its event has no step span)
SAGA_ATTEMPT: Final = "agentrace.saga.attempt"
SAGA_ERROR: Final = "agentrace.saga.error"
