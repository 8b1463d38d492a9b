"""LLM spans read as conversations, tokens and models: pure, from a span's attributes and events.

Two conventions carry them:

- OpenTelemetry GenAI: ``gen_ai.input.messages`` / ``gen_ai.output.messages`` (JSON
  lists of ``{role, parts: [{type: text|tool_call|tool_call_response|..., ...}]}``),
  ``gen_ai.system_instructions``, ``gen_ai.tool.definitions``, the older message
  events (``gen_ai.user.message``, ``gen_ai.choice``...), tool spans'
  ``gen_ai.tool.call.arguments`` / ``.result``, and ``gen_ai.usage.*_tokens``.
  pydantic-ai's agent spans add ``pydantic_ai.all_messages`` in the same shape.
- OpenInference: ``llm.input_messages.N.message.role`` / ``.content`` /
  ``.tool_calls.M.tool_call.function.name`` ..., ``llm.output_messages.N.*``,
  ``llm.tools.N.tool.json_schema``, ``input.value`` / ``output.value`` and
  ``llm.token_count.prompt`` / ``.completion``.

Nothing here imports Textual; the CLI and the views share it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from tracer import conventions as c

__all__ = [
    "ChatMessage",
    "Conversation",
    "ToolCall",
    "conversation",
    "langchain_messages",
    "parse_json",
    "span_kind",
    "span_model",
    "span_tokens",
]

INPUT_TOKENS = c.INPUT_TOKEN_KEYS
OUTPUT_TOKENS = c.OUTPUT_TOKEN_KEYS
MODEL_KEYS = c.MODEL_KEYS
# JSON text bigger than this is shown as text: parsing and laying it out is the user's call.
JSON_PARSE_LIMIT = 1_000_000


@dataclass(frozen=True, slots=True)
class ToolCall:
    name: str
    arguments: Any  # parsed JSON when it parses, else the text
    call_id: str | None = None


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: str
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None  # a tool result: the call it answers
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Conversation:
    system: tuple[str, ...]
    tools: tuple[str, ...]  # names of the tools offered
    input: tuple[ChatMessage, ...]
    output: tuple[ChatMessage, ...]
    tool_call: ToolCall | None = None  # a tool span: the call it ran
    tool_result: Any = None

    @property
    def empty(self) -> bool:
        return not (self.system or self.input or self.output or self.tool_call)


def parse_json(value: Any) -> Any:
    """``value`` parsed when it is a JSON object or array in a string (not too big), else None."""
    if isinstance(value, dict | list):
        return value
    if not isinstance(value, str) or len(value) > JSON_PARSE_LIMIT:
        return None
    head = value.lstrip()[:1]
    if head not in ("{", "["):
        return None
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict | list) else None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def span_tokens(attributes: Mapping[str, Any]) -> tuple[int, int] | None:
    """(input, output) tokens of one model call; None when the span reports none.

    Agent spans that sum their calls (``gen_ai.aggregated_usage.*``) are not counted:
    adding them to their calls' would count every token twice.
    """
    tin = next((v for k in INPUT_TOKENS if (v := _int(attributes.get(k))) is not None), None)
    tout = next((v for k in OUTPUT_TOKENS if (v := _int(attributes.get(k))) is not None), None)
    if tin is None and tout is None:
        return None
    return tin or 0, tout or 0


def span_model(attributes: Mapping[str, Any]) -> str | None:
    for k in MODEL_KEYS:
        v = attributes.get(k)
        if v:
            return str(v)
    return None


_GENAI_KINDS = {
    "invoke_agent": "agent", "create_agent": "agent", "invoke_workflow": "workflow",
    "chat": "llm", "text_completion": "llm", "generate_content": "llm", "embeddings": "llm",
    "execute_tool": "tool", "compensate": "undo", "handoff": "handoff",
}  # fmt: skip
_OI_KINDS = {
    "LLM": "llm", "EMBEDDING": "llm", "TOOL": "tool", "AGENT": "agent", "GUARDRAIL": "guardrail",
    "CHAIN": "chain", "RETRIEVER": "retriever", "RERANKER": "retriever", "EVALUATOR": "eval",
}  # fmt: skip


def span_kind(attributes: Mapping[str, Any]) -> str | None:
    """agent, llm, tool, guardrail, message, workflow, chain...: what the span is, if it says."""
    op = attributes.get("gen_ai.operation.name")
    if op in _GENAI_KINDS:
        return _GENAI_KINDS[str(op)]
    oi = attributes.get("openinference.span.kind")
    if oi in _OI_KINDS:
        return _OI_KINDS[str(oi)]
    if attributes.get("messaging.system") or attributes.get("messaging.operation.type"):
        return "message"
    if span_tokens(attributes) is not None:
        return "llm"
    return None


# -- GenAI ---------------------------------------------------------------------------------


def _text_of(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    try:
        return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
    except TypeError:
        return repr(value)


def _genai_message(raw: Any) -> list[ChatMessage]:
    """One GenAI message (``{role, parts}``); a tool response part becomes its own message."""
    if not isinstance(raw, dict):
        return [ChatMessage("?", _text_of(raw))]
    role = str(raw.get("role") or "?")
    parts = raw.get("parts")
    if parts is None and "content" in raw:  # the older, flat shape
        parts = [{"type": "text", "content": raw["content"]}]
    texts: list[str] = []
    calls: list[ToolCall] = []
    out: list[ChatMessage] = []
    for part in parts if isinstance(parts, list) else [parts]:
        if not isinstance(part, dict):
            texts.append(_text_of(part))
            continue
        kind = part.get("type")
        if kind == "tool_call":
            args = part.get("arguments")
            calls.append(
                ToolCall(str(part.get("name") or "?"), parse_json(args) or args, part.get("id"))
            )
        elif kind == "tool_call_response":
            out.append(
                ChatMessage("tool", _text_of(part.get("response")), tool_call_id=part.get("id"))
            )
        elif "content" in part:
            text = _text_of(part["content"])
            texts.append(f"({kind}) {text}" if kind not in (None, "text") else text)
        else:
            texts.append(_text_of(part))
    if texts or calls or not out:
        out.insert(
            0, ChatMessage(role, "\n".join(texts), tuple(calls), name=raw.get("name") or None)
        )
    return out


def _genai_messages(value: Any) -> list[ChatMessage]:
    parsed = parse_json(value)
    if not isinstance(parsed, list):
        return []
    return [m for raw in parsed for m in _genai_message(raw)]


def _instructions(value: Any) -> list[str]:
    parsed = parse_json(value)
    if parsed is None:
        return [value] if isinstance(value, str) and value else []
    items = parsed if isinstance(parsed, list) else [parsed]
    return [
        _text_of(p.get("content")) if isinstance(p, dict) and "content" in p else _text_of(p)
        for p in items
    ]


def _tool_names(value: Any) -> list[str]:
    parsed = parse_json(value)
    out = []
    for t in parsed if isinstance(parsed, list) else [parsed] if parsed else []:
        if isinstance(t, dict):
            fn: dict[str, Any] = t["function"] if isinstance(t.get("function"), dict) else t
            out.append(str(fn.get("name") or "?"))
    return out


_EVENT_ROLES = {
    "gen_ai.system.message": "system", "gen_ai.user.message": "user",
    "gen_ai.assistant.message": "assistant", "gen_ai.tool.message": "tool",
}  # fmt: skip


def _event_messages(events: Iterable[Any]) -> tuple[list[ChatMessage], list[ChatMessage]]:
    """The GenAI message events: (input, output)."""
    inp: list[ChatMessage] = []
    out: list[ChatMessage] = []
    for ev in events:
        a = ev.attributes
        if ev.name in _EVENT_ROLES:
            inp.append(
                ChatMessage(
                    _EVENT_ROLES[ev.name],
                    _text_of(a.get("content", a.get("gen_ai.event.content", ""))),
                    tool_call_id=a.get("id"),
                )
            )
        elif ev.name == "gen_ai.choice":
            msg = parse_json(a.get("message")) or {}
            content = msg.get("content") if isinstance(msg, dict) else None
            out.append(ChatMessage("assistant", _text_of(content or a.get("content", ""))))
        elif ev.name == "gen_ai.client.inference.operation.details":
            inp += _genai_messages(a.get("gen_ai.input.messages"))
            out += _genai_messages(a.get("gen_ai.output.messages"))
    return inp, out


# -- OpenInference -------------------------------------------------------------------------

_OI_KEY = re.compile(r"llm\.(input|output)_messages\.(\d+)\.message\.(.+)")
_OI_CALL = re.compile(r"tool_calls\.(\d+)\.tool_call\.(.+)")
_OI_CONTENTS = re.compile(r"contents\.(\d+)\.message_content\.(text|type)")


def _openinference(attributes: Mapping[str, Any]) -> tuple[list[ChatMessage], list[ChatMessage]]:
    found: dict[str, dict[int, dict[str, Any]]] = {"input": {}, "output": {}}
    for key, value in attributes.items():
        if not key.startswith("llm."):
            continue
        m = _OI_KEY.fullmatch(key)
        if m:
            found[m.group(1)].setdefault(int(m.group(2)), {})[m.group(3)] = value
    result: list[list[ChatMessage]] = []
    for side in ("input", "output"):
        msgs = []
        for _, fields in sorted(found[side].items()):
            calls: dict[int, dict[str, Any]] = {}
            contents: dict[int, str] = {}
            for field, value in fields.items():
                cm = _OI_CALL.fullmatch(field)
                if cm:
                    calls.setdefault(int(cm.group(1)), {})[cm.group(2)] = value
                    continue
                tm = _OI_CONTENTS.fullmatch(field)
                if tm and tm.group(2) == "text":
                    contents[int(tm.group(1))] = _text_of(value)
            text = _text_of(fields.get("content"))
            if not text and contents:
                text = "\n".join(t for _, t in sorted(contents.items()))
            tool_calls = tuple(
                ToolCall(
                    str(c.get("function.name") or "?"),
                    parse_json(c.get("function.arguments")) or c.get("function.arguments"),
                    c.get("id"),
                )
                for _, c in sorted(calls.items())
            )
            msgs.append(
                ChatMessage(
                    str(fields.get("role") or "?"),
                    text,
                    tool_calls,
                    tool_call_id=fields.get("tool_call_id"),
                    name=fields.get("name") or None,
                )
            )
        result.append(msgs)
    return result[0], result[1]


def _oi_tools(attributes: Mapping[str, Any]) -> list[str]:
    names = []
    i = 0
    while (schema := attributes.get(f"llm.tools.{i}.tool.json_schema")) is not None:
        names += _tool_names([parse_json(schema) or {}])
        i += 1
    return names


# -- the whole ----------------------------------------------------------------------------


def conversation(attributes: Mapping[str, Any], events: Iterable[Any] = ()) -> Conversation | None:
    """The span's conversation (or tool call), None when it carries none."""
    a = attributes
    system = _instructions(a.get("gen_ai.system_instructions"))
    tools = _tool_names(a.get("gen_ai.tool.definitions")) or _oi_tools(a)
    inp = _genai_messages(a.get("gen_ai.input.messages"))
    out = _genai_messages(a.get("gen_ai.output.messages"))
    if not inp and not out and "pydantic_ai.all_messages" in a:
        inp = _genai_messages(a.get("pydantic_ai.all_messages"))
    if not inp and not out:
        inp, out = _openinference(a)
    if not inp and not out:
        inp, out = _event_messages(events)
    # System messages among the input read best as instructions, before the chat.
    system += [m.content for m in inp if m.role == "system"]
    inp = [m for m in inp if m.role != "system"]
    tool_call = None
    result: Any = None
    kind = span_kind(a)
    if kind == "tool":
        name = a.get("gen_ai.tool.name") or a.get("tool.name") or "?"
        args = a.get("gen_ai.tool.call.arguments", a.get("input.value"))
        tool_call = ToolCall(str(name), parse_json(args) or args, a.get("gen_ai.tool.call.id"))
        result = a.get("gen_ai.tool.call.result", a.get("output.value"))
        result = parse_json(result) or result
    conv = Conversation(tuple(system), tuple(tools), tuple(inp), tuple(out), tool_call, result)
    return None if conv.empty else conv


# -- LangChain messages in LangGraph state ---------------------------------------------------

_LC_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}
_LC_CLASSES = {"HumanMessage": "human", "AIMessage": "ai", "SystemMessage": "system",
               "ToolMessage": "tool", "AIMessageChunk": "ai", "HumanMessageChunk": "human"}  # fmt: skip


def _lc_fields(raw: dict[str, Any]) -> dict[str, Any] | None:
    """The fields of one LangChain message in any of its recorded shapes: as decoded from a
    checkpointer (``{"__type__": "...AIMessage", "type": "ai", "content": ...}``), as
    ``messages_to_dict`` writes it (``{"type": "ai", "data": {...}}``), or as ``dumpd`` writes it
    (``{"lc": 1, "type": "constructor", "id": [..., "AIMessage"], "kwargs": {...}}``)."""
    if (
        raw.get("lc") == 1
        and isinstance(raw.get("kwargs"), dict)
        and isinstance(raw.get("id"), list)
    ):
        kind = _LC_CLASSES.get(str(raw["id"][-1]) if raw["id"] else "")
        return {**raw["kwargs"], "type": kind} if kind else None
    data = raw.get("data")
    if isinstance(data, dict) and raw.get("type") in _LC_ROLES:
        return {**data, "type": raw["type"]}
    if raw.get("type") in _LC_ROLES and "content" in raw:
        return raw
    return None


def langchain_messages(value: Any) -> tuple[ChatMessage, ...] | None:
    """A list of LangChain messages as chat messages; None unless every item is one."""
    if not isinstance(value, list) or not value:
        return None
    out: list[ChatMessage] = []
    for raw in value:
        fields = _lc_fields(raw) if isinstance(raw, dict) else None
        if fields is None:
            return None
        content = fields.get("content")
        if isinstance(content, list):  # content blocks: their text parts
            content = "\n".join(
                str(b.get("text", "")) if isinstance(b, dict) else str(b) for b in content
            )
        calls = tuple(
            ToolCall(str(tc.get("name") or "?"), tc.get("args"), tc.get("id"))
            for tc in fields.get("tool_calls") or ()
            if isinstance(tc, dict)
        )
        out.append(
            ChatMessage(
                _LC_ROLES[str(fields["type"])],
                _text_of(content),
                calls,
                tool_call_id=fields.get("tool_call_id") if fields["type"] == "tool" else None,
                name=fields.get("name") or None,
            )
        )
    return tuple(out)
