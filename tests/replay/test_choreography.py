"""Choreographies: replayed in their recorded delivery order; schedules explored for bugs."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import engine as e
from engine.scenarios import sample_path
from engine.scenarios.choreography import ACK_TIMEOUT, research_pipeline

from .conftest import Recorded, Samples

ACCOUNT = "ACC-1"


class AccountNotOpen(Exception):
    """A deposit arrived before its account was opened."""


def bank(*, safe: bool = False) -> e.Choreography:
    """A teller publishes an account opening, then a deposit. The ledger applies a deposit
    only to an opened account: a deposit that overtakes its opening is lost (the planted
    bug). ``safe``: such a deposit is refused (nacked) and delivered again later."""

    @e.agent
    def teller(state: e.StateView, request: dict[str, Any], ctx: e.EventContext) -> e.Update:
        ctx.publish("account.opened", {"account": request["account"]})
        ctx.publish("money.deposited", {"account": request["account"], "amount": request["amount"]})
        return e.Update({"requested": request["amount"]})

    @e.agent
    def opener(state: e.StateView, event: dict[str, Any]) -> e.Update:
        accounts = dict(state.get("accounts", {}))
        accounts.setdefault(event["account"], 0)
        return e.Update({"accounts": accounts})

    @e.agent
    def depositor(state: e.StateView, event: dict[str, Any]) -> e.Update:
        accounts = dict(state.get("accounts", {}))
        if event["account"] not in accounts:
            if safe:
                raise AccountNotOpen(event["account"])
            return e.Update({"unapplied": state.get("unapplied", 0) + event["amount"]})
        accounts[event["account"]] += event["amount"]
        return e.Update({"accounts": accounts})

    return (
        e.Choreography("bank", entry="deposit.requested")
        .on("deposit.requested", teller, publishes=["account.opened", "money.deposited"])
        .on("account.opened", opener)
        .on("money.deposited", depositor)
    )


def deposits_are_applied(result: e.ChoreographyResult) -> None:
    balance = result.state.get("accounts", {}).get(ACCOUNT)
    assert balance == 100, f"{ACCOUNT} holds {balance}, not the 100 deposited"


# -- the recorded delivery order ----------------------------------------------------------------


def test_double_consume_replays_its_redelivery_though_the_workflow_has_no_ack_timeout(
    samples: Samples, replayer: e.Replayer
) -> None:
    run = samples.first("double-consume")
    # Replayed with the pipeline without the 30 s ack timeout that made the bus deliver
    # research.done again (its recorded ref has it): the script delivers it again anyway.
    flow = research_pipeline()
    assert flow.policy.ack_timeout is None
    result = replayer.replay(run, workflow=flow)
    assert result.divergences == (), result.report()
    assert len(result.state["analyses"]) == 2  # the bug, reproduced
    delivered = [
        (m.consumer_group, m.attempt)
        for m in samples.store.messages(result.run_id)
        if m.event == "deliver" and m.topic == "research.done"
    ]
    assert delivered == [("analysis", 1), ("analysis", 2)]


def test_messages_published_besides_emits_are_published_again(own: Recorded) -> None:
    original = own.choreograph(bank(), {"account": ACCOUNT, "amount": 100})
    assert original.state["accounts"] == {ACCOUNT: 100}
    result = own.replayer().replay(original.run_id, workflow=bank())
    assert result.divergences == (), result.report()
    assert e.diff_runs(own.store, original.run_id, result.run_id).same


def test_a_message_the_replay_never_publishes_is_a_delivery_divergence(own: Recorded) -> None:
    def flow(reply_topic: str) -> e.Choreography:
        @e.agent
        def responder(state: e.StateView, ping: dict[str, Any]) -> e.Update:
            return e.Update({"answered": ping["n"]}, output={"n": ping["n"] + 1})

        @e.agent
        def collector(state: e.StateView, pong: dict[str, Any]) -> e.Update:
            return e.Update({"collected": pong["n"]})

        return (
            e.Choreography("ping", entry="ping")
            .on("ping", responder, emits=reply_topic)
            .on("pong", collector)
        )

    original = own.choreograph(flow("pong"), {"n": 1})
    assert original.state["collected"] == 2
    result = own.replayer().replay(original.run_id, workflow=flow("pong.v2"))
    kinds = [(d.kind, d.agent) for d in result.divergences]
    assert ("delivery", "responder") in kinds  # published pong.v2, which the recording lacks
    missed = next(d for d in result.divergences if d.kind == "delivery" and d.agent == "collector")
    assert "'pong' to 'collector' (attempt 1): never published" in missed.detail
    assert ("step", "collector") in kinds and "collected" not in result.state


# -- exploring schedules ------------------------------------------------------------------------


def test_exploration_finds_a_planted_ordering_bug_and_reproduces_it_from_its_seed() -> None:
    request = {"account": ACCOUNT, "amount": 100}
    plan = e.SchedulePlan(reorder=0.3, duplicate=0.0)
    found = asyncio.run(
        e.explore_schedules(
            bank(), request, invariants=[deposits_are_applied], schedules=40, plan=plan
        )
    )
    failure = found.failure
    assert failure is not None and failure.invariant == "deposits_are_applied"
    assert found.schedules == failure.index + 1 <= 40  # stopped at the first failure
    assert all(r.ok for r in found.runs[:-1])
    assert failure.state.get("unapplied") == 100
    assert ("reorder", "account.opened") in {(f.kind, f.topic) for f in failure.faults}
    with pytest.raises(e.ScheduleViolation, match=rf"seed {failure.seed}\b"):
        found.raise_on_failure()

    # The printed seed alone gives the same schedule and the same failure.
    again = asyncio.run(
        e.explore_schedules(
            bank(),
            request,
            invariants=[deposits_are_applied],
            schedules=1,
            seed=failure.seed,
            plan=plan,
        )
    )
    assert again.failure is not None
    assert (again.failure.message, again.failure.state) == (failure.message, failure.state)
    assert [(f.kind, f.topic, f.group, f.attempt) for f in again.failure.faults] == [
        (f.kind, f.topic, f.group, f.attempt) for f in failure.faults
    ]
    assert found.reproduce().failure is not None


def test_the_same_seed_explores_the_same_schedules() -> None:
    request = {"account": ACCOUNT, "amount": 100}

    def explore() -> e.Exploration:
        return asyncio.run(
            e.explore_schedules(
                bank(), request, invariants={"money": deposits_are_applied}, schedules=12, seed=500,
                plan=e.SchedulePlan(reorder=0.3, duplicate=0.2), stop_at_first=False,
            )
        )  # fmt: skip

    a, b = explore(), explore()
    assert [(r.seed, r.status, r.broken, r.faults) for r in a.runs] == [
        (r.seed, r.status, r.broken, r.faults) for r in b.runs
    ]
    assert [r.seed for r in a.runs] == list(range(500, 512))
    assert any(r.faults for r in a.runs) and any(not r.ok for r in a.runs)


def test_a_correct_choreography_survives_its_schedules() -> None:
    found = asyncio.run(
        e.explore_schedules(
            bank(safe=True), {"account": ACCOUNT, "amount": 100}, invariants=[deposits_are_applied],
            schedules=25, plan=e.SchedulePlan(reorder=0.5, duplicate=0.0),
        )
    )  # fmt: skip
    assert found.ok and found.schedules == 25 and found.failure is None
    assert any(f.kind == "reorder" for r in found.runs for f in r.faults)  # perturbed, still right
    assert found.raise_on_failure() is found


def analysed_once(result: e.ChoreographyResult) -> None:
    analyses = result.state.get("analyses", [])
    assert len(analyses) == 1, f"the request was analysed {len(analyses)} times"


@pytest.mark.parametrize("idempotent", [False, True], ids=["double-consume", "fixed"])
def test_double_consume_is_caught_by_schedule_exploration(agentrace, idempotent: bool) -> None:
    (run,) = agentrace.load(sample_path("research-pipeline"))
    flow = research_pipeline(ack_timeout=ACK_TIMEOUT, idempotent_analysis=idempotent)
    plan = e.SchedulePlan(duplicate=0.3, drop=0.2, reorder=0.2, topics=("research.done",))
    found = agentrace.explore(run, [analysed_once], workflow=flow, schedules=25, plan=plan)
    assert found.ok is idempotent
    if not idempotent:
        assert found.failure is not None and "analysed 2 times" in found.failure.message
        assert {f.topic for f in found.failure.faults} == {"research.done"}
        # The failing schedule was recorded as a run of its own, linked to the original.
        (schedule,) = agentrace.runs(parent=run)
        assert schedule.run_id == found.failure.run_id


def test_orchestrated_runs_have_no_schedules(samples: Samples, replayer: e.Replayer) -> None:
    with pytest.raises(e.ReplayError, match="orchestrated run"):
        replayer.explore(samples.first("credit"), [analysed_once])
    with pytest.raises(e.ReplayError, match="at least one invariant"):
        replayer.explore(samples.first("research-pipeline"), [])


def test_plan_topics_narrow_the_faults() -> None:
    plan = e.SchedulePlan(reorder=0.5, duplicate=0.5, topics=("money.deposited",))
    found = asyncio.run(
        e.explore_schedules(
            bank(), {"account": ACCOUNT, "amount": 100}, invariants=[lambda r: True],
            schedules=15, plan=plan,
        )
    )  # fmt: skip
    topics = {f.topic for r in found.runs for f in r.faults}
    assert topics == {"money.deposited"}
