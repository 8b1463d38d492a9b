"""unfinished_consumer on the in-process bus: a consumer that commits, then dies before publishing and acking."""

from __future__ import annotations

import engine as e
from tracer import conventions as c
from tracer.analysis import detect

from .conftest import Env, attrs
from .test_choreo import pipeline


async def test_a_crash_after_commit_names_the_commit_and_the_event_never_sent(env: Env) -> None:
    faults = e.Faults([e.FaultRule.crash(group="b")])  # no ack timeout: never redelivered
    result = await env.choreographer(faults=faults).run(pipeline(), {"n": 1})
    assert result.status == "failed" and result.state["count"] == 1
    (crashed,) = [s for s in env.spans("process t2") if s.status.code == 2]
    assert attrs(crashed)[c.MESSAGE_UNPUBLISHED] == ["t3"]
    findings = detect(env.store(), result.run_id)
    assert [f.kind for f in findings] == ["unfinished_consumer"]
    (f,) = findings
    assert f.severity == "error" and f.agents == ("b",)
    count_version = result.ledger.versions()[-1].version
    assert f.versions == (count_version,)
    ev = f.evidence
    assert (ev["topic"], ev["group"], ev["fault"], ev["acked"]) == ("t2", "b", "crash", False)
    assert ev["never_published"] == ["t3"] and ev["published"] == [] and ev["keys"] == ["count"]
    assert [s["name"] for s in ev["steps"]] == ["invoke_agent b"]
    assert f.message == (
        f"b handled message {ev['message_id']} on t2 (committed v{count_version} and ran "
        "invoke_agent b), then died: it never published to t3 and never acked it, "
        "and no later delivery finished it"
    )


async def test_a_crash_the_redelivery_made_good_is_no_unfinished_consumer(env: Env) -> None:
    faults = e.Faults([e.FaultRule.crash(group="b", attempt=1)])
    policy = e.DeliveryPolicy(ack_timeout=30.0)
    result = await env.choreographer(faults=faults).run(
        pipeline(idempotent=True, policy=policy), {"n": 1}
    )
    assert result.status == "completed"
    assert detect(env.store(), result.run_id) == []


async def test_a_crash_before_commit_is_no_unfinished_consumer(env: Env) -> None:
    faults = e.Faults([e.FaultRule.crash(during=True, group="b")])
    result = await env.choreographer(faults=faults).run(pipeline(), {"n": 1})
    assert [f.kind for f in detect(env.store(), result.run_id)] == ["lost_event"]
