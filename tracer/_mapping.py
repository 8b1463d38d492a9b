"""Foreign conventions mapped onto the few facts the store indexes per span.

Every span gets an ``operation`` (invoke_workflow, invoke_agent, execute_tool,
chat, handoff, send, process, ...) and, where one can be told, the ``agent`` it
belongs to. Sources, in the order they are read:

* the GenAI conventions: ``gen_ai.operation.name``, ``gen_ai.agent.name``, span
  names ``{operation} {target}``; and their deprecated spellings
  (``gen_ai.system``, ``gen_ai.usage.prompt_tokens``, pydantic-ai's early
  ``agent run`` / ``running tool`` spans with ``agent_name``);
* OpenInference: ``openinference.span.kind`` (AGENT, CHAIN, LLM, TOOL, ...),
  ``agent.name`` and ``graph.node.id`` (OpenAI Agents SDK), and the ``metadata``
  JSON attribute LangChain fills with ``langgraph_node`` and ``langgraph_step``:
  in a LangGraph trace the node is the agent, and the node's own span is its step;
* OpenLLMetry: ``traceloop.span.kind`` and ``traceloop.entity.name``;
* the messaging conventions: ``messaging.operation.type`` (or the deprecated
  ``messaging.operation``), else PRODUCER/CONSUMER spans with a destination.

``classify`` runs once per span on ingest, on the writer's thread: it must stay
cheap. Spans that follow our own conventions (an operation and an agent name)
return on the first two dictionary lookups; only foreign spans go further, and
the LangGraph ``metadata`` JSON is parsed only when it names a node.

``span_facts`` is the richer, slower reading (tool, model, provider, tokens,
conversation, step, handoff target) for readers that look at one span at a
time, such as a detail panel; nothing calls it on the ingest path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import orjson

from . import conventions as c

# OpenInference attribute names (openinference-semantic-conventions).
OI_SPAN_KIND: Final = "openinference.span.kind"
OI_AGENT_NAME: Final = "agent.name"
OI_GRAPH_NODE: Final = "graph.node.id"
OI_GRAPH_PARENT: Final = "graph.node.parent_id"
OI_METADATA: Final = "metadata"
OI_SESSION: Final = "session.id"
OI_TOOL_NAME: Final = "tool.name"
OI_MODEL: Final = "llm.model_name"
OI_PROVIDER: Final = "llm.provider"
OI_SYSTEM: Final = "llm.system"
OI_PROMPT_TOKENS: Final = "llm.token_count.prompt"
OI_COMPLETION_TOKENS: Final = "llm.token_count.completion"
OI_INPUT: Final = "input.value"
OI_OUTPUT: Final = "output.value"

# Deprecated GenAI names still sent by older instrumentations.
GEN_AI_USAGE_PROMPT_TOKENS: Final = "gen_ai.usage.prompt_tokens"
GEN_AI_USAGE_COMPLETION_TOKENS: Final = "gen_ai.usage.completion_tokens"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
LEGACY_AGENT_NAME: Final = "agent_name"  # pydantic-ai before the GenAI agent conventions

# OpenLLMetry (traceloop).
TL_SPAN_KIND: Final = "traceloop.span.kind"
TL_ENTITY: Final = "traceloop.entity.name"

MESSAGING_OPERATION_DEPRECATED: Final = "messaging.operation"
MESSAGING_DESTINATION_DEPRECATED: Final = "messaging.destination"

_PRODUCER, _CONSUMER = 4, 5

# Span-name prefixes of the GenAI conventions ("{operation} {target}") and our bus.
_OP_PREFIXES: Final = (
    ("invoke_agent ", c.OP_INVOKE_AGENT),
    ("execute_tool ", c.OP_EXECUTE_TOOL),
    ("chat ", c.OP_CHAT),
    ("invoke_workflow ", c.OP_INVOKE_WORKFLOW),
    ("create_agent ", "create_agent"),
    ("text_completion ", "text_completion"),
    ("generate_content ", "generate_content"),
    ("embeddings ", "embeddings"),
    ("send ", "send"),
    ("process ", "process"),
)
# Whole span names from instrumentations that predate the GenAI agent conventions.
_OP_NAMES: Final = {
    "agent run": c.OP_INVOKE_AGENT,
    "running tool": c.OP_EXECUTE_TOOL,
    "running tools": c.OP_EXECUTE_TOOL,
}
_OI_OPS: Final = {
    "LLM": c.OP_CHAT,
    "TOOL": c.OP_EXECUTE_TOOL,
    "AGENT": c.OP_INVOKE_AGENT,
    "EMBEDDING": "embeddings",
    "RETRIEVER": "retrieve",
    "RERANKER": "rerank",
    "GUARDRAIL": "guardrail",
    "EVALUATOR": "evaluate",
}
_TL_OPS: Final = {
    "workflow": c.OP_INVOKE_WORKFLOW,
    "agent": c.OP_INVOKE_AGENT,
    "tool": c.OP_EXECUTE_TOOL,
    "task": None,
}
_MSG_OPS: Final = {
    "publish": "send",
    "send": "send",
    "create": "send",
    "receive": "process",
    "process": "process",
    "deliver": "process",
    "settle": "settle",
}
_HANDOFF_PREFIX: Final = "handoff to "
_RUN_SUFFIX: Final = ".run"


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) and v else None


def langgraph_metadata(attrs: dict[str, Any]) -> dict[str, Any] | None:
    """The LangChain ``metadata`` attribute of an OpenInference span when it names a LangGraph node."""
    raw = attrs.get(OI_METADATA)
    if isinstance(raw, str):
        # Most spans of a trace are not inside a node; skip the JSON parse for them.
        if "langgraph_node" not in raw:
            return None
        try:
            meta = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
    elif isinstance(raw, dict):
        meta = raw
    else:
        return None
    return meta if isinstance(meta, dict) and isinstance(meta.get("langgraph_node"), str) else None


def _node(meta: dict[str, Any] | None) -> str | None:
    if meta is None:
        return None
    node = meta["langgraph_node"]
    # LangGraph's own bookkeeping nodes (__start__, __end__) are not agents.
    return None if node.startswith("__") else node


def classify(
    name: str, kind: int, attrs: dict[str, Any], root: bool = False
) -> tuple[str | None, str | None]:
    """``(operation, agent)`` of a span from its name, kind and attributes.

    ``root`` says the span has no parent: an OpenInference root CHAIN (a LangGraph
    graph) or an unnamed root AGENT (an OpenAI Agents SDK workflow) is the workflow.
    Pure and cheap; safe to call from any thread.
    """
    op = attrs.get(c.GEN_AI_OPERATION_NAME)
    agent = attrs.get(c.GEN_AI_AGENT_NAME)
    if op.__class__ is str and agent.__class__ is str:
        return op, agent  # our own spans and the GenAI conventions: the common case
    op = _str(op)
    agent = _str(agent)
    oi = attrs.get(OI_SPAN_KIND)
    if oi is not None:
        return _openinference(name, str(oi).upper(), attrs, op, agent, root)
    if op is None:
        op = _OP_NAMES.get(name)
        if op is None:
            for prefix, value in _OP_PREFIXES:
                if name.startswith(prefix):
                    op = value
                    break
    if agent is None:
        agent = _str(attrs.get(LEGACY_AGENT_NAME))
    tl = attrs.get(TL_SPAN_KIND)
    if tl is not None:
        if op is None:
            op = _TL_OPS.get(str(tl))
        if agent is None and tl == "agent":
            agent = _str(attrs.get(TL_ENTITY)) or name
    if op is None:
        op = _messaging_op(kind, attrs)
    return op, agent


def service_agent(kind: int, attrs: dict[str, Any], service: str | None) -> str | None:
    """The agent a producer or consumer span stands for when no span above it names one:
    its service. A plain service on a broker is the agent of the messages it sends and
    handles; an agent framework's own agent, where one encloses the span, comes first."""
    if not service or kind not in (_PRODUCER, _CONSUMER) or _messaging_op(kind, attrs) is None:
        return None
    return service


def _openinference(
    name: str, oi: str, attrs: dict[str, Any], op: str | None, agent: str | None, root: bool
) -> tuple[str | None, str | None]:
    if agent is None:
        agent = _str(attrs.get(OI_AGENT_NAME)) or _str(attrs.get(OI_GRAPH_NODE))
    meta = langgraph_metadata(attrs)
    node = _node(meta)
    if agent is None:
        agent = node
    if op is not None:
        return op, agent
    if oi == "CHAIN":
        if root:
            return c.OP_INVOKE_WORKFLOW, agent
        # The node's own span (not a router or a runnable inside it) is the agent's step.
        if node is not None and name == node:
            return c.OP_INVOKE_AGENT, agent
        return None, agent
    if oi == "AGENT":
        if agent is None:
            if name.endswith(_RUN_SUFFIX) and len(name) > len(_RUN_SUFFIX):
                # smolagents: "{agent name}.run", the manager at the root as much as the
                # agents it manages below.
                return c.OP_INVOKE_AGENT, name[: -len(_RUN_SUFFIX)]
            if root:
                return c.OP_INVOKE_WORKFLOW, None
            agent = name
        return c.OP_INVOKE_AGENT, agent
    if oi == "TOOL" and name.startswith(_HANDOFF_PREFIX):
        # OpenAI Agents SDK: "handoff to {target}", input.value = the agent handing off.
        return c.OP_HANDOFF, agent or _str(attrs.get(OI_INPUT))
    return _OI_OPS.get(oi), agent


def _messaging_op(kind: int, attrs: dict[str, Any]) -> str | None:
    mop = attrs.get(c.MESSAGING_OPERATION_TYPE)
    if mop is None:
        mop = attrs.get(MESSAGING_OPERATION_DEPRECATED)
    if mop is not None:
        op = _MSG_OPS.get(str(mop))
        if op is not None or kind not in (_PRODUCER, _CONSUMER):
            return op
    if (
        c.MESSAGING_DESTINATION in attrs
        or MESSAGING_DESTINATION_DEPRECATED in attrs
        or c.MESSAGING_SYSTEM in attrs
        or CELERY_TASK_NAME in attrs
    ):
        return "send" if kind == _PRODUCER else "process" if kind == _CONSUMER else None
    return None


# Older spellings the official instrumentations still send (pika, celery, kafka-python).
MESSAGING_MESSAGE_ID_DEPRECATED: Final = "messaging.message_id"
KAFKA_MESSAGE_KEY: Final = "messaging.kafka.message.key"
KAFKA_CONSUMER_GROUP: Final = "messaging.kafka.consumer.group"
CELERY_TASK_NAME: Final = "celery.task_name"
CELERY_TASK_ID: Final = "celery.task_id"

# Every attribute ``classify`` reads when no OpenInference kind is present (with one, it
# reads more). A span without any of them but the GenAI operation and agent names is
# classified from its name, kind, root flag and those two: the protobuf walk
# (tracer._store._wire) relies on this, and a property test holds it.
CLASSIFY_KEYS: Final = frozenset({
    c.GEN_AI_OPERATION_NAME, c.GEN_AI_AGENT_NAME, OI_SPAN_KIND, LEGACY_AGENT_NAME,
    TL_SPAN_KIND, TL_ENTITY, c.MESSAGING_OPERATION_TYPE, MESSAGING_OPERATION_DEPRECATED,
    c.MESSAGING_DESTINATION, MESSAGING_DESTINATION_DEPRECATED, c.MESSAGING_SYSTEM,
    CELERY_TASK_NAME,
})  # fmt: skip

MessagingFact = tuple[
    str, str | None, str | None, str | None, str | None, str | None, int | None
]  # event, message id, topic, key, consumer group, consumer, attempt


def messaging_fact(kind: int, attrs: dict[str, Any]) -> MessagingFact | None:
    """What a PRODUCER (``publish``) or CONSUMER (``deliver``) span says about its message,
    from the OpenTelemetry messaging conventions and the older spellings of the official
    instrumentations; None for a span that carries no messaging attributes.

    The message id is ``messaging.message.id`` (or ``messaging.message_id``, Celery's task
    id); where the producer set none, analysis identifies the message by the producer span
    the consumer carries as its parent or link.
    """
    topic = _first_str(
        attrs, c.MESSAGING_DESTINATION, MESSAGING_DESTINATION_DEPRECATED, CELERY_TASK_NAME
    )
    if topic is None and c.MESSAGING_SYSTEM not in attrs:
        return None
    attempt = _int(attrs.get(c.MESSAGING_DELIVERY_COUNT))
    return (
        "publish" if kind == _PRODUCER else "deliver",
        _first_text(attrs, c.MESSAGING_MESSAGE_ID, MESSAGING_MESSAGE_ID_DEPRECATED, CELERY_TASK_ID),
        topic,
        _first_text(attrs, c.MESSAGE_KEY, KAFKA_MESSAGE_KEY),
        _first_str(attrs, c.MESSAGING_CONSUMER_GROUP, KAFKA_CONSUMER_GROUP),
        _first_str(attrs, c.MESSAGE_CONSUMER),
        attempt if attempt is not None and attempt > 0 else None,
    )


def _first_text(attrs: dict[str, Any], *keys: str) -> str | None:
    """The first of ``keys`` present, as text (ids and keys may be sent as numbers)."""
    for k in keys:
        v = attrs.get(k)
        if v is not None and v != "" and not isinstance(v, bool | dict | list):
            return str(v)
    return None


# -- the richer reading ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SpanFacts:
    """What the conventions say about one span, whatever produced it."""

    operation: str | None
    agent: str | None
    tool: str | None = None
    model: str | None = None
    provider: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    # gen_ai.conversation.id, OpenInference session.id, or the LangGraph thread
    conversation: str | None = None
    step: int | None = None  # agentrace.agent.step or metadata.langgraph_step
    handoff_to: str | None = None
    convention: str = "none"  # agentrace | gen_ai | openinference | traceloop | messaging | none


def _int(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, str) and v.isdigit():
        return int(v)
    return None


def _first_int(attrs: dict[str, Any], *keys: str) -> int | None:
    for k in keys:
        v = _int(attrs.get(k))
        if v is not None:
            return v
    return None


def _first_str(attrs: dict[str, Any], *keys: str) -> str | None:
    for k in keys:
        v = _str(attrs.get(k))
        if v is not None:
            return v
    return None


def span_facts(name: str, kind: int, attrs: dict[str, Any], *, root: bool = False) -> SpanFacts:
    """The operation, agent, tool, model, provider, tokens, conversation, step and handoff of a span.

    Tokens are the span's own (a model call's), never an agent's aggregate, so that
    summing them over a run counts each call once. Pure; safe from any thread.
    """
    op, agent = classify(name, kind, attrs, root)
    meta = langgraph_metadata(attrs) if OI_SPAN_KIND in attrs else None
    if attrs.get(c.GEN_AI_PROVIDER_NAME) == c.PROVIDER or any(
        k.startswith("agentrace.") for k in attrs
    ):
        convention = "agentrace"
    elif OI_SPAN_KIND in attrs:
        convention = "openinference"
    elif TL_SPAN_KIND in attrs:
        convention = "traceloop"
    elif any(k.startswith("gen_ai.") for k in attrs) or op in _GEN_AI_OPS:
        convention = "gen_ai"
    elif op in ("send", "process", "settle"):
        convention = "messaging"
    else:
        convention = "none"
    tool = _first_str(attrs, c.GEN_AI_TOOL_NAME, OI_TOOL_NAME)
    if tool is None and op == c.OP_EXECUTE_TOOL:
        tool = name.removeprefix("execute_tool ") or None
    step = _first_int(attrs, c.AGENT_STEP)
    if step is None and meta is not None:
        step = _int(meta.get("langgraph_step"))
    conversation = _first_str(attrs, c.GEN_AI_CONVERSATION_ID, OI_SESSION)
    if conversation is None and meta is not None:
        conversation = _str(meta.get("thread_id"))
    handoff_to = None
    if op == c.OP_HANDOFF:
        handoff_to = _str(attrs.get(OI_OUTPUT)) or name.removeprefix(_HANDOFF_PREFIX) or None
    return SpanFacts(
        operation=op,
        agent=agent,
        tool=tool,
        model=_first_str(attrs, c.GEN_AI_REQUEST_MODEL, GEN_AI_RESPONSE_MODEL, OI_MODEL),
        provider=_first_str(attrs, c.GEN_AI_PROVIDER_NAME, c.GEN_AI_SYSTEM, OI_PROVIDER, OI_SYSTEM),
        input_tokens=_first_int(
            attrs, c.GEN_AI_USAGE_INPUT_TOKENS, GEN_AI_USAGE_PROMPT_TOKENS, OI_PROMPT_TOKENS
        ),
        output_tokens=_first_int(
            attrs,
            c.GEN_AI_USAGE_OUTPUT_TOKENS,
            GEN_AI_USAGE_COMPLETION_TOKENS,
            OI_COMPLETION_TOKENS,
        ),
        conversation=conversation,
        step=step,
        handoff_to=handoff_to,
        convention=convention,
    )


_GEN_AI_OPS: Final = frozenset(
    {c.OP_INVOKE_AGENT, c.OP_EXECUTE_TOOL, c.OP_CHAT, c.OP_INVOKE_WORKFLOW, "create_agent",
     "text_completion", "generate_content", "embeddings"}
)  # fmt: skip
