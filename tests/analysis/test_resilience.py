"""contract_violation, breaker_open, compensation_failed, saga_incomplete: minimal runs."""

import tracer as t
from tracer.analysis import detect
from tracer.testing import RunBuilder


def found(store: t.Store, run_id: str, kind: str) -> list[t.Finding]:
    return detect(store, run_id, kinds=[kind])


# -- contract_violation ----------------------------------------------------------------------


def test_a_rejected_handoff_is_reported_with_its_payload_and_errors(store) -> None:
    with RunBuilder(store) as run, run.step("analyst", outcome="rejected") as s:
        s.contract(
            "Recommendation", target="trader", outcome="rejected",
            payload={"action": "buy", "confidence": 0.41},
            errors=[{"loc": ["confidence"], "msg": "must be >= 0.7"}, "no rationale"],
        )  # fmt: skip
    (f,) = found(store, run.run_id, "contract_violation")
    assert f.severity == "warning"
    assert f.agents == ("analyst", "trader") and f.span_ids == (s.span_id,)
    ev = f.evidence
    assert ev["payload"] == {"action": "buy", "confidence": 0.41}
    assert ev["errors"] == [{"loc": ["confidence"], "msg": "must be >= 0.7"}, "no rationale"]
    assert ev["contract"] == "Recommendation" and ev["target_kind"] == "agent"
    assert f.message == (
        "contract Recommendation rejected the handoff analyst → trader: confidence: must be >= 0.7 (and 1 more)"
    )


def test_passed_contracts_are_not_findings(store) -> None:
    with RunBuilder(store) as run, run.step("analyst") as s:
        s.contract("Recommendation", target="trader", payload={"confidence": 0.9})
    assert found(store, run.run_id, "contract_violation") == []


def test_a_rejected_publish_names_no_agent_for_the_topic(store) -> None:
    decl = {"agents": ["shop"], "edges": [], "publishes": [["shop", "orders"]], "subscriptions": []}
    with RunBuilder(store, pattern="choreography", declared=decl) as run, run.step("shop") as s:
        s.contract(
            "Order", target="orders", outcome="rejected", payload={}, errors=["total missing"]
        )
    (f,) = found(store, run.run_id, "contract_violation")
    assert f.agents == ("shop",) and f.evidence["target_kind"] == "topic"


# -- breaker_open ----------------------------------------------------------------------------


def test_an_open_breaker_and_the_calls_it_refused(store) -> None:
    with RunBuilder(store) as run:
        with run.step("pricer", outcome="failed") as s1:
            s1.breaker("pricer", from_="closed", to="open", reason="3 failures in 10 s")
        r1 = run.step("pricer", outcome="breaker_open")
        r1.end()
        r2 = run.step("pricer", outcome="breaker_open")
        r2.end()
        run.advance(ms=500)
        with run.step("pricer") as s2:
            s2.breaker("pricer", from_="open", to="half_open", reason="cool-down over")
        # Refused after the breaker left "open": not this opening's doing.
        run.step("pricer", outcome="breaker_open").end()
    (f,) = found(store, run.run_id, "breaker_open")
    assert f.severity == "warning"
    assert f.span_ids == (s1.span_id, r1.span_id, r2.span_id)
    ev = f.evidence
    assert [r["span_id"] for r in ev["rejected"]] == [r1.span_id, r2.span_id]
    assert ev["reason"] == "3 failures in 10 s" and ev["next"] == "half_open"
    assert ev["open_for_ns"] == ev["next_ns"] - ev["opened_ns"] and ev["open_for_ns"] >= 500_000_000
    assert "refused 2 call(s) of pricer" in f.message and "half_open" in f.message


def test_refused_calls_go_to_the_breaker_named_after_their_agent(store) -> None:
    with RunBuilder(store) as run:
        with run.step("a", outcome="failed") as sa:
            sa.breaker("a", from_="closed", to="open")
        with run.step("b", outcome="failed") as sb:
            sb.breaker("b", from_="closed", to="open")
        ra = run.step("a", outcome="breaker_open")
        ra.end()
    by_name = {f.evidence["breaker"]: f for f in found(store, run.run_id, "breaker_open")}
    assert [r["span_id"] for r in by_name["a"].evidence["rejected"]] == [ra.span_id]
    assert (
        by_name["b"].evidence["rejected"] == []
        and "still open when the run ended" in by_name["b"].message
    )


def test_no_breaker_opened_no_finding(store) -> None:
    with RunBuilder(store) as run, run.step("pricer") as s:
        s.breaker("pricer", from_="half_open", to="closed")
    assert found(store, run.run_id, "breaker_open") == []


# -- sagas -----------------------------------------------------------------------------------


def saga_run(
    store: t.Store, *, reserve_undo: str | None, status: str, retry_ok: bool = False
) -> RunBuilder:
    """reserve (commits) → order (commits) → confirm fails → compensate order, then reserve."""
    with RunBuilder(store, initial={"funds": 100, "orders": 0}) as run:
        with run.step("reserve") as s:
            s.commit({"funds": 50})
        with run.step("order", from_=["reserve"]) as s:
            s.commit({"orders": 1})
        with run.step("quote") as s:
            pass  # read-only: nothing to undo
        with run.step("confirm", from_=["order"], outcome="failed") as s:
            s.fail("exchange down")
        with run.compensate("order") as c:
            c.commit({"orders": 0}, kind="compensation")
        if reserve_undo == "failed":
            run.compensate("reserve", outcome="failed", error="ledger locked").end()
            if retry_ok:
                run.compensate("reserve", attempt=2).end()
        elif reserve_undo == "skipped":
            # A saga that records what it skipped does so on the root.
            run.root_step.span.add_event(
                t.conventions.EV_SAGA_COMPENSATE,
                {t.conventions.SAGA_AGENT: "reserve", t.conventions.SAGA_OUTCOME: "skipped"},
            )
        run.status = status
    return run


def test_a_compensation_that_failed(store) -> None:
    run = saga_run(store, reserve_undo="failed", status="compensation_failed")
    (f,) = found(store, run.run_id, "compensation_failed")
    assert f.severity == "critical" and f.agents == ("reserve",)
    assert f.evidence["error"] == "ledger locked" and len(f.evidence["attempts"]) == 1
    assert f.message == "compensation of reserve failed: ledger locked"


def test_a_compensation_retried_to_success_did_not_fail(store) -> None:
    run = saga_run(store, reserve_undo="failed", status="compensated", retry_ok=True)
    assert found(store, run.run_id, "compensation_failed") == []
    assert found(store, run.run_id, "saga_incomplete") == []


def test_a_completed_step_never_compensated(store) -> None:
    run = saga_run(store, reserve_undo=None, status="compensation_failed")
    (f,) = found(store, run.run_id, "saga_incomplete")
    assert f.severity == "critical" and f.agents == ("reserve",) and f.versions == (2,)
    assert f.evidence["compensated"] == ["order"] and f.evidence["skip_recorded"] is False
    assert "reserve completed 1 step(s) before the rollback (committed v2)" in f.message


def test_a_saga_that_says_it_compensated_everything_is_believed(store) -> None:
    run = saga_run(store, reserve_undo=None, status="compensated")
    assert found(store, run.run_id, "saga_incomplete") == []


def test_recorded_skips_are_exactly_the_incomplete_steps(store) -> None:
    run = saga_run(store, reserve_undo="skipped", status="compensation_failed")
    (f,) = found(store, run.run_id, "saga_incomplete")
    assert f.agents == ("reserve",) and f.evidence["skip_recorded"] is True
    assert "its compensation was skipped" in f.message
    assert found(store, run.run_id, "compensation_failed") == []


def test_no_rollback_no_saga_findings(store) -> None:
    with RunBuilder(store, initial={"x": 0}) as run, run.step("a") as s:
        s.commit({"x": 1})
    assert found(store, run.run_id, "saga_incomplete") == []
    assert found(store, run.run_id, "compensation_failed") == []
