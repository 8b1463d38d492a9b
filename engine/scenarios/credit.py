"""``credit`` and ``credit-fixed``: credit decisioning with a cache that serves stale scores.

Five agents, one run per application (50 applications)::

    intake → credit_score → risk_assessment → pricing → decision

- The initial state holds the customer's file, with the ``credit_score`` on file.
- ``intake`` records the application and pre-checks eligibility, reading
  ``credit_score`` through the ``bureau`` cache: that fills the cache with the
  score on file (version 1).
- ``credit_score`` pulls a fresh report from the (simulated) bureau and, when the
  fresh score differs from the one on file, commits it: a newer version of
  ``credit_score``. For 20 % of applicants (10 of 50) it differs, and across a
  rating band; for the rest it is unchanged and nothing is rewritten.
- ``risk_assessment`` rates the applicant from ``credit_score`` read through the
  ``bureau`` cache. In ``credit`` the cache is never invalidated: for the applicants
  whose score changed it serves the score on file (a stale read: version 1 while
  a newer ``credit_score`` was already committed), and the rating is wrong. In
  ``credit-fixed`` the cache drops a key when a commit writes it, so the read
  misses and gets the fresh score.
- ``pricing`` sets the rate from the rating; ``decision`` approves or declines,
  and, as an audit, rates the score of record read from the store. The decision
  carries both: ``rating`` (what was used) and ``audit_rating`` (what the fresh
  score gives), the ground truth a detector can be checked against.

So in ``credit`` the wrongly rated applications are exactly the runs with a stale
cache read, and in ``credit-fixed`` there are neither.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from tracer import Recorder

from ..core._agent import Agent, agent
from ..core._cache import Policy
from ..core._ledger import Update
from ..core._time import VirtualTime
from ..core._view import AgentContext, StateView
from ..core._workflows import workflow as registered
from ..orchestration._orchestrator import Orchestrator
from ..orchestration._workflow import Workflow, WorkflowBuilder
from ._registry import DEFAULT_SEED, Scenario, register

APPLICATIONS = 50
CHANGED_SHARE = 0.2
# Rating bands over FICO-like scores: (lowest score, rating).
BANDS = ((740, "A"), (670, "B"), (580, "C"), (300, "D"))
_BAND_RANGES = {"A": (740, 850), "B": (670, 739), "C": (580, 669), "D": (450, 579)}
BASE_APR = {"A": 6.4, "B": 9.9, "C": 15.5, "D": 24.0}
DTI_LIMIT = 0.45


def rating_for(score: int) -> str:
    """The risk rating of a credit score: its band."""
    for low, rating in BANDS:
        if score >= low:
            return rating
    return "D"


@dataclass(frozen=True, slots=True)
class Applicant:
    application: dict[str, Any]
    customer: dict[str, Any]
    score_on_file: int
    fresh_score: int

    @property
    def changed(self) -> bool:
        return self.fresh_score != self.score_on_file


def applicants(seed: int = DEFAULT_SEED, n: int = APPLICATIONS) -> list[Applicant]:
    """The applications of a seed; exactly ``round(n * 0.2)`` have a fresh score in another band."""
    rng = random.Random(f"credit/{seed}")
    changed = set(rng.sample(range(n), round(n * CHANGED_SHARE)))
    out = []
    for i in range(n):
        band = rng.choice("ABCD")
        on_file = rng.randint(*_BAND_RANGES[band])
        fresh = on_file
        if i in changed:
            other = rng.choice([b for b in "ABCD" if b != band])
            fresh = rng.randint(*_BAND_RANGES[other])
        income = rng.randrange(36_000, 180_000, 1_000)
        amount = rng.randrange(5_000, 60_000, 500)
        term = rng.choice((24, 36, 48, 60))
        monthly_debt = rng.randrange(0, int(income / 12 * 0.4), 25)
        customer_id = f"C-{rng.randrange(100_000, 999_999)}"
        out.append(
            Applicant(
                application={
                    "application_id": f"APP-{i + 1:04d}", "customer_id": customer_id, "amount": amount,
                    "term_months": term, "annual_income": income, "monthly_debt": monthly_debt,
                },
                customer={"customer_id": customer_id, "since": 2010 + rng.randrange(14)},
                score_on_file=on_file,
                fresh_score=fresh,
            )
        )  # fmt: skip
    return out


def _monthly_payment(amount: float, apr: float, months: int) -> float:
    r = apr / 100 / 12
    return amount * r / (1 - (1 + r) ** -months)


def build(seed: int = DEFAULT_SEED, *, invalidation: Policy = "none") -> Workflow:
    """The credit workflow over the simulated bureau of ``seed``, its cache invalidated per ``invalidation``."""
    bureau = {a.application["customer_id"]: a.fresh_score for a in applicants(seed)}

    @agent
    async def intake(state: StateView, app: dict[str, Any], ctx: AgentContext) -> Update:
        await ctx.sleep(0.05)
        score = state.cache("bureau")[
            "credit_score"
        ]  # pre-check on the score on file; fills the cache
        dti = round(
            (app["monthly_debt"] + app["amount"] / app["term_months"])
            / (app["annual_income"] / 12),
            4,
        )
        return Update(
            {"application": app, "precheck": {"score_seen": score, "eligible": score >= 450}},
            output={
                "application_id": app["application_id"],
                "customer_id": app["customer_id"],
                "dti": dti,
            },
        )

    @agent
    async def credit_score(state: StateView, req: dict[str, Any], ctx: AgentContext) -> Update:
        await ctx.sleep(0.4)  # the bureau call
        fresh = bureau[req["customer_id"]]
        report = {
            "customer_id": req["customer_id"],
            "score": fresh,
            "report_id": f"BR-{req['application_id'][4:]}",
        }
        changes: dict[str, Any] = {"bureau_report": report}
        if fresh != state["credit_score"]:
            changes["credit_score"] = fresh  # only a changed score is rewritten
        return Update(changes, output=req)

    @agent
    async def risk_assessment(state: StateView, req: dict[str, Any], ctx: AgentContext) -> Update:
        await ctx.sleep(0.1)
        score = state.cache("bureau")["credit_score"]
        rating = rating_for(score)
        risk = {"rating": rating, "score_used": score, "dti": req["dti"]}
        return Update({"risk": risk}, output={**req, "rating": rating})

    @agent
    async def pricing(state: StateView, req: dict[str, Any], ctx: AgentContext) -> Update:
        await ctx.sleep(0.05)
        apr = BASE_APR[req["rating"]] + (1.5 if req["dti"] > 0.35 else 0.0)
        app = state["application"]
        payment = round(_monthly_payment(app["amount"], apr, app["term_months"]), 2)
        return Update(
            {"pricing": {"apr": apr, "monthly_payment": payment}}, output={**req, "apr": apr}
        )

    @agent
    async def decision(state: StateView, req: dict[str, Any], ctx: AgentContext) -> Update:
        await ctx.sleep(0.02)
        rating = state["risk"]["rating"]
        audit_rating = rating_for(state["credit_score"])  # the score of record, from the store
        approved = rating != "D" and req["dti"] <= DTI_LIMIT
        out = {
            "application_id": req["application_id"], "approved": approved, "apr": req["apr"] if approved else None,
            "rating": rating, "audit_rating": audit_rating, "rating_ok": rating == audit_rating,
        }  # fmt: skip
        return Update({"decision": out}, output=out)

    agents: list[Agent] = [intake, credit_score, risk_assessment, pricing, decision]
    return (
        WorkflowBuilder("credit-decisioning").chain(*agents).cache("bureau", invalidation).build()
    )


@registered("agentrace.credit")
def workflow(seed: int = DEFAULT_SEED) -> Workflow:
    """``credit``: the bureau cache is never invalidated (the bug)."""
    return build(seed, invalidation="none")


@registered("agentrace.credit-fixed")
def fixed_workflow(seed: int = DEFAULT_SEED) -> Workflow:
    """``credit-fixed``: the bureau cache drops a key when a commit writes it."""
    return build(seed, invalidation="on_commit")


def _initial_state(a: Applicant) -> dict[str, Any]:
    return {
        "application_id": a.application["application_id"],
        "customer": a.customer,
        "credit_score": a.score_on_file,
    }


async def _record(recorder: Recorder, time: VirtualTime, seed: int, *, fixed: bool) -> list[str]:
    wf = fixed_workflow(seed) if fixed else workflow(seed)
    orch = Orchestrator(recorder, time=time, seed=seed)
    scenario = "credit-fixed" if fixed else "credit"
    run_ids = []
    for a in applicants(seed):
        result = await orch.run(wf, a.application, state=_initial_state(a), scenario=scenario)
        recorder.flush()
        run_ids.append(result.run_id)
        await time.sleep(1.0)  # the next application arrives a second later
    return run_ids


async def _record_credit(recorder: Recorder, time: VirtualTime, seed: int) -> list[str]:
    return await _record(recorder, time, seed, fixed=False)


async def _record_fixed(recorder: Recorder, time: VirtualTime, seed: int) -> list[str]:
    return await _record(recorder, time, seed, fixed=True)


register(
    Scenario(
        "credit",
        "Credit decisioning for 50 applications; the risk agent reads credit scores through a cache "
        "that is never invalidated, so ~20% get a rating from a stale score.",
        _record_credit,
    )
)
register(
    Scenario(
        "credit-fixed",
        "The same 50 applications with the cache invalidated on commit: no stale reads, no wrong ratings.",
        _record_fixed,
    )
)
