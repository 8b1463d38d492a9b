"""The credit incident as a regression test: red on the buggy cache, green on the fixed one."""

import pytest

from engine import Update
from engine.scenarios import credit, sample_path

INCIDENT = sample_path("credit")  # 50 applications; 10 were rated from a stale cached score
BUGGY = pytest.mark.xfail(strict=True, reason="the cache is never invalidated: stale scores")


@pytest.mark.parametrize("cache", [pytest.param("none", marks=BUGGY), "on_commit"])
def test_every_rating_uses_the_fresh_score(agentrace, cache):
    workflow = credit.build(invalidation=cache)
    # Replay each application up to the bureau's commit (version 3), then run live from there.
    forks = [agentrace.fork(run, 3, workflow=workflow) for run in agentrace.load(INCIDENT)]
    assert agentrace.findings(forks, kind="stale_read") == []
    assert all(fork.state["decision"]["rating_ok"] for fork in forks)


def risk_from_the_store(state, req):
    """The fix as an agent override: rate the score of record, not the cached one."""
    score = state["credit_score"]
    risk = {"rating": credit.rating_for(score), "score_used": score, "dti": req["dti"]}
    return Update({"risk": risk}, output={**req, "rating": risk["rating"]})


def test_the_incident_replayed_with_the_fixed_risk_agent(agentrace):
    fixed = {"risk_assessment": risk_from_the_store}
    forks = [agentrace.fork(run, 3, overrides=fixed) for run in agentrace.load(INCIDENT)]
    assert agentrace.findings(forks, kind="stale_read") == []
    assert all(fork.state["decision"]["rating_ok"] for fork in forks)
