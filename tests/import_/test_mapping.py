"""Conventions mapped on ingest: spans from real frameworks come out as agents, tools and handoffs."""

from __future__ import annotations

from collections import Counter

import orjson
import pytest

import tracer as t
from tracer import conventions as c

from .helpers import FOREIGN


@pytest.fixture
def store() -> t.Store:
    s = t.Store(":memory:")
    for name in ("langgraph_openinference", "pydantic_ai", "openai_agents"):
        t.import_file(s, FOREIGN / f"{name}.pb")
    return s


def _runs_by_service(store: t.Store) -> dict[str, list[t.Run]]:
    out: dict[str, list[t.Run]] = {}
    for run in store.runs():
        out.setdefault(run.service_name or "", []).append(run)
    return out


def test_each_framework_shows_its_agents(store: t.Store) -> None:
    runs = _runs_by_service(store)
    assert sorted(runs) == [
        "langgraph-research-team",
        "openai-agents-support-desk",
        "pydantic-ai-delegation",
    ]
    for run in runs["langgraph-research-team"]:
        # The graph's nodes, as the metadata each span carries names them.
        nodes = {
            orjson.loads(sp.attributes["metadata"]).get("langgraph_node")
            for sp in store.spans(run.run_id)
            if "langgraph_node" in sp.attributes.get("metadata", "")
        }
        assert set(run.agents) == nodes == {"supervisor", "researcher", "tools", "writer"}
        assert run.workflow == "research_team"
    (pyd,) = runs["pydantic-ai-delegation"]
    assert set(pyd.agents) == {sp.attributes[c.GEN_AI_AGENT_NAME] for sp in store.spans(pyd.run_id)}
    assert set(pyd.agents) == {"coordinator", "researcher"}
    (oai,) = runs["openai-agents-support-desk"]
    assert set(oai.agents) == {"Triage agent", "Billing agent"}
    assert oai.workflow == "Support desk"


def test_langgraph_nodes_are_agent_steps_and_their_calls_belong_to_them(store: t.Store) -> None:
    run = _runs_by_service(store)["langgraph-research-team"][0]
    spans = store.spans(run.run_id)
    by_op = Counter(sp.operation for sp in spans if sp.scope_name.startswith("openinference"))
    steps = [sp for sp in spans if sp.operation == c.OP_INVOKE_AGENT]
    # One agent step per node execution: the graph ran supervisor, researcher, tools,
    # researcher, supervisor, writer, supervisor.
    assert [sp.agent for sp in steps] == [
        "supervisor",
        "researcher",
        "tools",
        "researcher",
        "supervisor",
        "writer",
        "supervisor",
    ]
    assert all(sp.name == sp.agent for sp in steps)
    assert by_op[c.OP_INVOKE_WORKFLOW] == 1
    chats = [sp for sp in spans if sp.operation == c.OP_CHAT]
    assert chats and all(sp.attributes["openinference.span.kind"] == "LLM" for sp in chats)
    parents = {sp.span_id: sp for sp in spans}
    assert all(parents[sp.parent_span_id].agent == sp.agent for sp in chats)
    (tool,) = [sp for sp in spans if sp.operation == c.OP_EXECUTE_TOOL]
    assert (tool.name, tool.agent) == ("web_search", "tools")


def test_openai_agents_handoff_is_a_handoff_from_the_agent_that_gave_up(store: t.Store) -> None:
    (run,) = _runs_by_service(store)["openai-agents-support-desk"]
    spans = store.spans(run.run_id)
    (handoff,) = [sp for sp in spans if sp.operation == c.OP_HANDOFF]
    assert handoff.agent == handoff.attributes["input.value"] == "Triage agent"
    facts = t.span_facts(handoff.name, 1, handoff.attributes)
    assert facts.handoff_to == "Billing agent"
    billing = next(
        sp for sp in spans if sp.agent == "Billing agent" and sp.operation == c.OP_INVOKE_AGENT
    )
    assert billing.attributes["graph.node.parent_id"] == handoff.agent
    root = next(sp for sp in spans if not sp.parent_span_id)
    assert (root.operation, root.agent) == (c.OP_INVOKE_WORKFLOW, None)


def test_token_facts_count_each_model_call_once(store: t.Store) -> None:
    (run,) = _runs_by_service(store)["pydantic-ai-delegation"]
    spans = store.spans(run.run_id)
    facts = [t.span_facts(sp.name, 1, sp.attributes, root=not sp.parent_span_id) for sp in spans]
    # pydantic-ai reports each agent's aggregate on its invoke_agent span: the sum of the
    # chat calls' own usage must equal the sum of the aggregates.
    agg_in = sum(
        sp.attributes["gen_ai.aggregated_usage.input_tokens"]
        for sp in spans
        if sp.operation == c.OP_INVOKE_AGENT
    )
    agg_out = sum(
        sp.attributes["gen_ai.aggregated_usage.output_tokens"]
        for sp in spans
        if sp.operation == c.OP_INVOKE_AGENT
    )
    assert sum(f.input_tokens or 0 for f in facts) == agg_in
    assert sum(f.output_tokens or 0 for f in facts) == agg_out
    chat = next(f for f in facts if f.operation == c.OP_CHAT)
    assert chat.convention == "gen_ai" and chat.provider in ("function", "test") and chat.model
    tools = {f.tool for f in facts if f.operation == c.OP_EXECUTE_TOOL}
    assert tools == {"ask_researcher", "lookup"}


def test_openinference_facts_read_session_step_model_and_tokens(store: t.Store) -> None:
    run = _runs_by_service(store)["langgraph-research-team"][0]
    spans = [sp for sp in store.spans(run.run_id) if sp.scope_name.startswith("openinference")]
    facts = [
        (sp, t.span_facts(sp.name, 1, sp.attributes, root=not sp.parent_span_id)) for sp in spans
    ]
    llm = [(sp, f) for sp, f in facts if f.operation == c.OP_CHAT]
    assert all(f.input_tokens == sp.attributes["llm.token_count.prompt"] for sp, f in llm)
    assert all(f.model == sp.attributes["llm.model_name"] for sp, f in llm)
    assert {f.conversation for _, f in facts} == {spans[0].attributes["session.id"]}
    steps = [f.step for _, f in facts if f.operation == c.OP_INVOKE_AGENT]
    assert steps == sorted(steps) and steps[0] == 1


@pytest.mark.parametrize(
    ("name", "kind", "attrs", "expected"),
    [
        # our own spans and the current GenAI conventions
        (
            "invoke_agent planner",
            1,
            {c.GEN_AI_OPERATION_NAME: "invoke_agent", c.GEN_AI_AGENT_NAME: "planner"},
            ("invoke_agent", "planner"),
        ),
        ("execute_tool search", 1, {}, ("execute_tool", None)),
        ("chat gpt-4o", 3, {c.GEN_AI_AGENT_NAME: "writer"}, ("chat", "writer")),
        ("create_agent helper", 3, {}, ("create_agent", None)),
        # pydantic-ai before the GenAI agent conventions
        ("agent run", 1, {"agent_name": "support"}, ("invoke_agent", "support")),
        ("running tool", 1, {"gen_ai.tool.name": "lookup"}, ("execute_tool", None)),
        # OpenLLMetry
        (
            "research.agent",
            1,
            {"traceloop.span.kind": "agent", "traceloop.entity.name": "research"},
            ("invoke_agent", "research"),
        ),
        ("pipeline.workflow", 1, {"traceloop.span.kind": "workflow"}, ("invoke_workflow", None)),
        # messaging, current and deprecated
        ("orders publish", 4, {"messaging.destination.name": "orders"}, ("send", None)),
        ("orders process", 5, {"messaging.destination.name": "orders"}, ("process", None)),
        ("orders receive", 5, {"messaging.operation.type": "receive"}, ("process", None)),
        (
            "orders send",
            4,
            {"messaging.operation": "publish", "messaging.destination": "orders"},
            ("send", None),
        ),
        # OpenInference without names
        ("Crew", 1, {"openinference.span.kind": "AGENT"}, ("invoke_agent", "Crew")),
        ("retrieve docs", 1, {"openinference.span.kind": "RETRIEVER"}, ("retrieve", None)),
        ("whatever", 1, {}, (None, None)),
    ],
)
def test_classify(
    name: str, kind: int, attrs: dict[str, object], expected: tuple[str | None, str | None]
) -> None:
    assert t.classify(name, kind, attrs) == expected


def test_deprecated_usage_and_provider_names_are_read() -> None:
    facts = t.span_facts(
        "chat gpt",
        3,
        {
            "gen_ai.system": "openai",
            "gen_ai.usage.prompt_tokens": 12,
            "gen_ai.usage.completion_tokens": 3,
        },
    )
    assert (facts.provider, facts.input_tokens, facts.output_tokens) == ("openai", 12, 3)


def test_langgraph_bookkeeping_nodes_are_not_agents() -> None:
    meta = orjson.dumps({"langgraph_node": "__start__", "langgraph_step": 0}).decode()
    assert t.classify("__start__", 1, {"openinference.span.kind": "CHAIN", "metadata": meta}) == (
        None,
        None,
    )
