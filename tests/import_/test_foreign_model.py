"""Foreign traces as a faithful model: kept field for field, derived in any batch order,
with the status, agents and edges a user of each framework would draw."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest as PB2Request,
)

import tracer as t
from tracer._receiver import _split
from tracer.analysis import analyze, coordination_graph

from .helpers import FOREIGN

ALL_FOREIGN = (
    "langgraph_openinference", "pydantic_ai", "openai_agents", "crewai", "smolagents",
    "rabbitmq_duplicate", "rabbitmq_lost", "rabbitmq_control",
)  # fmt: skip


def requests_of(path: Path) -> list[PB2Request]:
    """The requests of a fixture file, as the project's own decoders read them."""
    if path.suffix == ".pb":
        req = PB2Request()
        req.ParseFromString(path.read_bytes())
        return [req]
    return [t.decode_json(line) for line in path.read_bytes().splitlines() if line.strip()]


def singles(reqs: Iterable[PB2Request]) -> list[PB2Request]:
    """One request per span, each with its span's whole resource and scope (schema URLs too),
    split as the receiver splits a request it stores in part."""
    return [one for req in reqs for _, one, _ in _split(req) if isinstance(one, PB2Request)]


def combine(reqs: Iterable[PB2Request]) -> PB2Request:
    out = PB2Request()
    for req in reqs:
        out.resource_spans.extend(req.resource_spans)
    return out


def canonical(reqs: Iterable[PB2Request]) -> list[bytes]:
    """Every span with its resource and scope, serialised, in a stable order: two lists are
    equal when every field of every span, resource and scope is."""
    return sorted(one.SerializeToString(deterministic=True) for one in singles(reqs))


def fresh() -> t.Store:
    store = t.Store(":memory:")
    store.redactor = None  # the comparisons are of the spans as sent
    return store


# -- item 1: kept field for field ----------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["pb", "jsonl"])
@pytest.mark.parametrize("name", ALL_FOREIGN)
def test_every_foreign_fixture_exports_exactly_what_it_imported(name: str, suffix: str) -> None:
    path = FOREIGN / f"{name}.{suffix}"
    store = fresh()
    t.import_file(store, path)
    exported = [store.export_request(r.run_id) for r in store.runs()]
    assert canonical(exported) == canonical(requests_of(path))


def test_scope_and_resource_fields_come_back_through_both_encodings() -> None:
    req = PB2Request()
    rs = req.resource_spans.add()
    rs.schema_url = "https://opentelemetry.io/schemas/1.30.0"
    rs.resource.dropped_attributes_count = 3
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "svc"
    ref = rs.resource.entity_refs.add()
    ref.type, ref.schema_url = "service", "https://example.test/entities"
    ref.id_keys.append("service.name")
    ref.description_keys.append("service.version")
    ss = rs.scope_spans.add()
    ss.schema_url = "https://opentelemetry.io/schemas/1.27.0"
    ss.scope.name, ss.scope.version, ss.scope.dropped_attributes_count = "lib", "1.2", 2
    kv = ss.scope.attributes.add()
    kv.key, kv.value.int_value = "lib.shard", 7
    sp = ss.spans.add()
    sp.trace_id, sp.span_id, sp.name = b"\x01" * 16, b"\x02" * 8, "work"
    sp.start_time_unix_nano, sp.end_time_unix_nano = 10, 20
    sp.status.code = 0  # sent, as the SDK's encoder does, though unset
    for payload in (req, t.decode_json(t.encode_json(req))):
        store = fresh()
        store.ingest([payload])
        (span,) = store.spans("01" * 16)
        assert span.scope_attributes == {"lib.shard": 7}
        assert (span.scope_schema_url, span.resource_schema_url) == (ss.schema_url, rs.schema_url)
        assert (span.scope_dropped_attributes_count, span.resource_dropped_attributes_count) == (
            2,
            3,
        )
        assert canonical([store.export_request("01" * 16)]) == canonical([req])


# -- item 2: any batch order ---------------------------------------------------------------------


def model(store: t.Store) -> dict[str, Any]:
    """Everything derived about the stored runs, for comparing two stores."""
    for run in store.runs():
        analyze(store, run.run_id)
    runs = store.runs()
    return {
        "runs": [(r, r.handled_error_count, r.flow_id) for r in runs],
        "agents": store.sql(
            "SELECT trace_id, span_id, operation, agent, cycle FROM spans ORDER BY ALL"
        ).fetchall(),
        "versions": store.sql(
            """SELECT run_id, version, parent_version, base_version, kind, agent, span_id,
                      committed_ns, snapshot::VARCHAR, patch::VARCHAR, hash, keys, source, derived, step
               FROM state_versions ORDER BY ALL"""
        ).fetchall(),
        "messages": store.sql("SELECT * FROM messages ORDER BY ALL").fetchall(),
        "findings": [(f.finding_id, f.kind, f.message, f.span_ids) for f in store.findings()],
        "graph": [
            sorted(
                (u, v, d.get("kind"), d.get("count"))
                for u, v, d in coordination_graph(store, r.run_id).edges(data=True)
            )
            for r in runs
        ],
        "verify": [v.ok for v in store.verify()],
    }


ORDERED = (
    "langgraph_openinference",
    "smolagents",
    "openai_agents",
    "rabbitmq_duplicate",
    "rabbitmq_lost",
)
_BASELINES: dict[str, dict[str, Any]] = {}


def baseline(name: str) -> dict[str, Any]:
    if name not in _BASELINES:
        store = fresh()
        t.import_file(store, FOREIGN / f"{name}.pb")
        _BASELINES[name] = model(store)
    return _BASELINES[name]


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[str, list[list[int]], int]:
    """A fixture, its spans dealt into batches in any order, and after which batch the
    runs are analysed once early (a late batch then re-derives)."""
    name = draw(st.sampled_from(ORDERED))
    n = len(singles(requests_of(FOREIGN / f"{name}.pb")))
    order = draw(st.permutations(range(n)))
    cuts = sorted(draw(st.sets(st.integers(1, n - 1), max_size=min(6, n - 1))))
    bounds = [0, *cuts, n]
    batches = [list(order[a:b]) for a, b in itertools.pairwise(bounds)]
    return name, batches, draw(st.integers(0, len(batches) - 1))


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
@given(deliveries())
def test_any_batch_order_gives_the_same_model(case: tuple[str, list[list[int]], int]) -> None:
    name, batches, analysed_after = case
    spans = singles(requests_of(FOREIGN / f"{name}.pb"))
    store = fresh()
    for i, batch in enumerate(batches):
        store.ingest([combine(spans[k] for k in batch)])
        if i == analysed_after:
            for run in store.runs():
                analyze(store, run.run_id)
    got = model(store)
    assert got == baseline(name)
    assert all(got["verify"])


def test_a_langgraph_root_first_and_its_nodes_later_gives_every_version() -> None:
    spans = singles(requests_of(FOREIGN / "langgraph_openinference.pb"))
    roots = [s for s in spans if not s.resource_spans[0].scope_spans[0].spans[0].parent_span_id]
    rest = [s for s in spans if s not in roots]
    store = fresh()
    store.ingest([combine(roots)])
    # A root without its nodes says nothing of how the state grew: no versions yet.
    assert store.sql("SELECT count(*) FROM state_versions").fetchall()[0][0] == 0
    late = store.ingest([combine(rest)])
    assert late.versions == 16  # both runs whole, derived when their node spans arrived
    assert baseline("langgraph_openinference")["versions"] == model(store)["versions"]


# -- item 3: status ------------------------------------------------------------------------------


def _span(sid: int, parent: int, status: int = 0, name: str = "s", **attrs: Any) -> dict[str, Any]:
    sp: dict[str, Any] = {
        "traceId": "ab" * 16, "spanId": f"{sid:016x}", "name": name, "kind": 1,
        "startTimeUnixNano": str(1000 + sid), "endTimeUnixNano": str(2000 + sid),
        "status": {"code": status} if status else {},
        "attributes": [{"key": k, "value": {"stringValue": v}} for k, v in attrs.items()],
    }  # fmt: skip
    if parent:
        sp["parentSpanId"] = f"{parent:016x}"
    return sp


def _request(*spans: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceSpans": [{"resource": {}, "scopeSpans": [{"scope": {}, "spans": list(spans)}]}]
    }


@pytest.mark.parametrize(
    ("statuses", "status", "errors", "handled"),
    [
        # root OK; a tool failed and its agent retried it: handled, the run is ok
        ((1, 0, 2), "ok", 0, 1),
        # the failure went all the way up: three errors, none handled
        ((2, 2, 2), "error", 3, 0),
        # a root without a status (most instrumentations) with a caught error
        ((0, 0, 2), "unset", 0, 1),
        # a failed attempt caught by an agent whose own later failure reached the root
        ((2, 2, 0), "error", 2, 0),
    ],
)
def test_run_status_is_the_roots_and_handled_errors_are_counted_apart(
    statuses: tuple[int, int, int], status: str, errors: int, handled: int
) -> None:
    store = fresh()
    root, agent, tool = statuses
    store.ingest([_request(_span(1, 0, root), _span(2, 1, agent), _span(3, 2, tool))])
    (run,) = store.runs()
    assert (run.status, run.error_count, run.handled_error_count) == (status, errors, handled)


def test_runs_json_shows_status_errors_handled_errors_and_tokens(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from tui.cli import cli

    db = tmp_path / "s.duckdb"
    with t.Store(db) as store:
        store.ingest([_request(_span(1, 0, 1), _span(2, 1), _span(3, 2, 2))])
        t.import_file(store, FOREIGN / "pydantic_ai.pb")
    out = CliRunner().invoke(cli, ["runs", "--json", "--db", str(db)])
    assert out.exit_code == 0, out.output
    by_id = {r["run_id"]: r for r in json.loads(out.output)}
    ours = by_id["ab" * 16]
    assert (ours["status"], ours["errors"], ours["handled_errors"]) == ("ok", 0, 1)
    (pyd,) = (r for r in by_id.values() if r["run_id"] != "ab" * 16)
    assert pyd["agents"] == ["coordinator", "researcher"]
    assert pyd["tokens"]["input"] > 0 and pyd["tokens"]["output"] > 0


@pytest.mark.parametrize("name", ["smolagents", "pydantic_ai", "langgraph_openinference"])
def test_tokens_count_each_model_call_once_wherever_they_are_shown(name: str) -> None:
    """smolagents' agent spans repeat their calls' usage: counted once, the same in the
    runs list, the debugger's header and per agent and model."""
    from tui._data import run_tokens

    store = fresh()
    t.import_file(store, FOREIGN / f"{name}.jsonl")
    for run in store.runs():
        calls = [s for s in store.spans(run.run_id) if s.operation == "chat"]
        want_in = sum(int(s.attributes.get("gen_ai.usage.input_tokens")
                          or s.attributes.get("llm.token_count.prompt") or 0) for s in calls)  # fmt: skip
        got = store.run_tokens()[run.run_id]
        assert got.input == want_in > 0
        assert run_tokens(store, [run.run_id])[run.run_id] == got
        assert sum(i for i, _ in got.by_agent.values()) == got.input
        assert sum(i for i, _ in got.by_model.values()) == got.input


# -- item 4: every span has its agent -------------------------------------------------------------

FRAMEWORK_AGENTS = {
    "langgraph_openinference": ({"supervisor", "researcher", "tools", "writer"}, set()),
    "pydantic_ai": ({"coordinator", "researcher"}, {("coordinator", "researcher")}),
    "openai_agents": ({"Triage agent", "Billing agent"}, set()),
    "crewai": ({"Market Analyst", "Report Writer"}, set()),
    "smolagents": ({"manager", "web_researcher"}, {("manager", "web_researcher")}),
}
MODEL_AND_TOOL_OPS = ("chat", "execute_tool", "handoff", "guardrail", "retrieve", "embeddings")


@pytest.mark.parametrize("name", sorted(FRAMEWORK_AGENTS))
def test_every_model_and_tool_span_belongs_to_the_nearest_enclosing_agent(name: str) -> None:
    agents, delegations = FRAMEWORK_AGENTS[name]
    store = fresh()
    t.import_file(store, FOREIGN / f"{name}.pb")
    for run in store.runs():
        assert set(run.agents) == agents
        spans = store.spans(run.run_id)
        by_id = {s.span_id: s for s in spans}
        for s in spans:
            if s.operation in MODEL_AND_TOOL_OPS:
                assert s.agent in agents, (s.name, s.operation, s.agent)
            # The agent is the span's own or its nearest enclosing agent's.
            p = by_id.get(s.parent_span_id)
            if s.agent is not None and s.operation != "invoke_agent" and p is not None:
                assert s.agent == p.agent or p.agent is None, (s.name, s.agent, p.agent)
        g = coordination_graph(store, run.run_id)
        found = {(u, v) for u, v, d in g.edges(data=True) if d.get("delegation")}
        assert found == delegations


def test_smolagents_names_are_clean_and_the_manager_is_an_agent() -> None:
    store = fresh()
    t.import_file(store, FOREIGN / "smolagents.jsonl")
    (run,) = store.runs()
    root = store.span(run.run_id, run.root_span_id or "")
    assert (root.name, root.operation, root.agent) == ("manager.run", "invoke_agent", "manager")
    tools = [s for s in store.spans(run.run_id) if s.operation == "execute_tool"]
    # The manager's own final answer is the manager's; the researcher's tools are its own.
    assert sorted((s.name, s.agent) for s in tools) == [
        ("FinalAnswerTool", "manager"), ("FinalAnswerTool", "web_researcher"),
        ("SimpleTool", "web_researcher"),
    ]  # fmt: skip
