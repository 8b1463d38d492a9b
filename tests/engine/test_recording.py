"""What a run looks like in OTLP and in the store, per docs/conventions.md."""

from __future__ import annotations

import json
from typing import Any

import engine as e
from tracer import conventions as c

from .conftest import Env, attrs, events


def workflow() -> e.Workflow:
    async def research(state: e.StateView, topic: str) -> e.Update:
        return e.Update({"notes": [topic, "more"]}, output={"topic": topic})

    async def write(state: e.StateView, notes: dict[str, Any]) -> e.Update:
        first = state["notes"][0]
        return e.Update({"draft": first.upper()}, delete=["notes"])

    return (
        e.WorkflowBuilder("report", ref="tests.report", version="2")
        .chain(e.Agent("research", research), e.Agent("write", write))
        .build()
    )


async def test_root_and_step_spans_follow_the_conventions(env: Env) -> None:
    result = await env.orch().run(workflow(), "otters", scenario="demo-test")
    root, research, write = sorted(env.spans(), key=lambda s: s.start_time_unix_nano)
    assert root.name == "invoke_workflow report" and root.parent_span_id == b""
    ra = attrs(root)
    assert ra[c.GEN_AI_OPERATION_NAME] == "invoke_workflow"
    assert (ra[c.GEN_AI_WORKFLOW_NAME], ra[c.GEN_AI_PROVIDER_NAME], ra[c.RUN_PATTERN]) == (
        "report",
        "agentrace",
        "orchestration",
    )
    assert (ra[c.RUN_STATUS], ra[c.RUN_WORKFLOW_REF], ra[c.RUN_WORKFLOW_VERSION]) == (
        "completed", "tests.report", "2",
    )  # fmt: skip
    assert (ra[c.RUN_SCENARIO], ra[c.RUN_SEED]) == ("demo-test", 3)
    assert json.loads(ra[c.RUN_DECLARED_GRAPH])["edges"] == [["research", "write"]]
    assert root.trace_id.hex() == result.run_id

    for span, name, step in ((research, "research", 1), (write, "write", 2)):
        a = attrs(span)
        assert span.name == f"invoke_agent {name}" and span.parent_span_id == root.span_id
        assert span.kind == 1  # INTERNAL
        assert (a[c.GEN_AI_OPERATION_NAME], a[c.GEN_AI_AGENT_NAME], a[c.GEN_AI_CONVERSATION_ID]) == (
            "invoke_agent", name, result.run_id,
        )  # fmt: skip
        assert (a[c.AGENT_STEP], a[c.AGENT_ATTEMPT], a[c.STEP_OUTCOME]) == (step, 1, "ok")
    assert attrs(research)[c.AGENT_INPUT] == '"otters"' and c.AGENT_FROM not in attrs(research)
    assert attrs(research)[c.AGENT_OUTPUT] == '{"topic":"otters"}'
    assert attrs(write)[c.AGENT_FROM] == ["research"]
    assert attrs(write)[c.AGENT_INPUT] == '{"topic":"otters"}'
    (read,) = events(write, c.EV_STATE_READ)
    assert (read[c.STATE_VERSION], read[c.STATE_HEAD_VERSION], read[c.STATE_KEYS], read[c.STATE_VIA]) == (
        2, 2, ["notes"], "store",
    )  # fmt: skip
    (commit,) = events(write, c.EV_STATE_COMMIT)
    assert (
        commit[c.STATE_VERSION],
        commit[c.STATE_PARENT_VERSION],
        commit[c.STATE_BASE_VERSION],
    ) == (3, 2, 2)
    assert (commit[c.STATE_KIND], commit[c.STATE_AGENT], commit[c.STATE_KEYS]) == (
        "commit",
        "write",
        ["draft", "notes"],
    )
    assert commit[c.STATE_HASH] == result.ledger.hash(3)


async def test_the_store_rebuilds_every_version_and_the_chain_verifies(env: Env) -> None:
    result = await env.orch().run(workflow(), "otters", state={"lang": "en"})
    store = env.store()
    run = store.run(result.run_id)
    assert (run.workflow, run.status, run.version_count, run.workflow_ref) == (
        "report", "completed", 3, "tests.report",
    )  # fmt: skip
    for v in result.ledger.versions():
        assert store.state_at(result.run_id, v.version) == result.ledger.document(v.version)
    rows = store.state_versions(result.run_id)
    assert [(r.version, r.kind, r.agent, r.base_version, r.hash) for r in rows] == [
        (v.version, v.kind, v.agent, v.base_version or None, result.ledger.hash(v.version))
        for v in result.ledger.versions()
    ]
    (check,) = store.verify(result.run_id)
    assert check.ok and check.versions == 3


async def test_cache_reads_record_the_version_served_and_the_head(env: Env) -> None:
    async def warm(state: e.StateView, value: Any) -> None:
        state.cache("c")["score"]

    async def rewrite(state: e.StateView, value: Any) -> e.Update:
        return e.Update({"score": 2})

    async def read(state: e.StateView, value: Any) -> Any:
        return state.cache("c")["score"]

    wf = (
        e.WorkflowBuilder("w")
        .chain(e.Agent("warm", warm), e.Agent("rewrite", rewrite), e.Agent("read", read))
        .cache("c", "none")
        .build()
    )
    result = await env.orch().run(wf, None, state={"score": 1})
    assert result.output == 1  # the stale value
    store = env.store()
    reads = [
        (r.agent, r.version, r.head_version, r.via, r.cache, r.keys)
        for r in store.state_reads(result.run_id)
    ]
    assert reads == [
        ("warm", 1, 1, "cache", "c", ("score",)),
        ("read", 1, 2, "cache", "c", ("score",)),
    ]


async def test_an_unknown_cache_is_an_error_naming_the_declared_ones(env: Env) -> None:
    async def read(state: e.StateView, value: Any) -> Any:
        return state.cache("nope")["x"]

    wf = e.WorkflowBuilder("w").add(e.Agent("read", read)).cache("bureau").build()
    result = await env.orch().run(wf, None)
    assert "no cache 'nope' in this workflow (declared: bureau)" in str(result.error)
