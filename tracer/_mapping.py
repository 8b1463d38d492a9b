"""Foreign conventions mapped onto the few facts the store indexes per span.

Every span gets an ``operation`` (invoke_workflow, invoke_agent, execute_tool,
chat, send, process, ...) and, where one can be told, the ``agent`` it belongs
to. The GenAI conventions are read first, then their deprecated names,
OpenInference and the messaging conventions.

``classify`` is called once per span on ingest: keep it cheap.
"""

from __future__ import annotations

from typing import Any

from . import conventions as c

_OP_PREFIXES = (
    ("invoke_workflow ", c.OP_INVOKE_WORKFLOW),
    ("invoke_agent ", c.OP_INVOKE_AGENT),
    ("execute_tool ", c.OP_EXECUTE_TOOL),
    ("chat ", c.OP_CHAT),
    ("send ", "send"),
    ("process ", "process"),
)


def classify(name: str, kind: int, attrs: dict[str, Any]) -> tuple[str | None, str | None]:
    """``(operation, agent)`` of a span from its name, kind and attributes."""
    op = attrs.get(c.GEN_AI_OPERATION_NAME)
    if op is None:
        for prefix, value in _OP_PREFIXES:
            if name.startswith(prefix):
                op = value
                break
    agent = attrs.get(c.GEN_AI_AGENT_NAME)
    if op is None and c.MESSAGING_DESTINATION in attrs:
        op = "send" if kind == 4 else "process" if kind == 5 else None
    return (op if isinstance(op, str) else None, agent if isinstance(agent, str) else None)
