"""Detectors over the resilience machinery: contracts, breakers, sagas."""

from __future__ import annotations

import collections
from typing import Any

from .. import conventions as c
from .._store._models import Finding
from ._context import EventRow, RunContext, StepRow, json_or_text
from ._model import Severity, clip, fmt_list, fmt_ns, make_finding


def _error_text(error: Any) -> str:
    """One contract error for a one-line message: pydantic's ``{"loc", "msg"}`` or plain text."""
    if isinstance(error, dict):
        loc = error.get("loc")
        where = ".".join(str(p) for p in loc) if isinstance(loc, list | tuple) else loc
        text = str(error.get("msg") or error.get("message") or error)
        return f"{where}: {text}" if where else text
    return str(error)


def detect_contract_violations(ctx: RunContext) -> list[Finding]:
    """``contract_violation``: a handoff (or a publish) rejected at its boundary by a contract,
    with the offending payload and the errors."""
    topics = ctx.topics
    out = []
    for ev in ctx.events(c.EV_CONTRACT_CHECK):
        a = ev.attributes
        if a.get(c.CONTRACT_OUTCOME) != "rejected":
            continue
        name = a.get(c.CONTRACT_NAME) or "a contract"
        source = a.get(c.CONTRACT_SOURCE) or ev.agent
        target = a.get(c.CONTRACT_TARGET)
        errors = json_or_text(a.get(c.CONTRACT_ERRORS))
        errors = errors if isinstance(errors, list) else [errors] if errors else []
        payload = json_or_text(a.get(c.CONTRACT_PAYLOAD))
        why = _error_text(errors[0]) if errors else "no error given"
        if len(errors) > 1:
            why += f" (and {len(errors) - 1} more)"
        if target:
            message = f"contract {name} rejected the handoff {source or '?'} → {target}: {why}"
        else:
            message = f"contract {name} rejected the output of {source or '?'}: {why}"
        out.append(
            make_finding(
                ctx,
                "contract_violation",
                Severity.WARNING,
                message,
                identity=(ev.span_id, ev.seq),
                at_ns=ev.time_ns,
                agents=(source, None if target in topics else target),
                span_ids=(ev.span_id,),
                evidence={
                    "contract": name,
                    "source": source,
                    "target": target,
                    "target_kind": "topic" if target in topics else "agent",
                    "payload": clip(payload),
                    "errors": [clip(e) for e in errors],
                    "span_id": ev.span_id,
                },
            )
        )
    return out


def _breaker_for(
    step: StepRow, open_now: list[tuple[str, EventRow]]
) -> tuple[str, EventRow] | None:
    """Which of the breakers open at a refused step's start refused it.

    The step's own ``agentrace.breaker.name`` when recorded, else a breaker named after
    its agent, else one whose name mentions the agent, else the last one opened.
    """
    if not open_now:
        return None
    for test in (
        lambda name: step.breaker is not None and name == step.breaker,
        lambda name: name == step.agent,
        lambda name: step.agent in name,
    ):
        for item in reversed(open_now):
            if test(item[0]):
                return item
    return None if step.breaker is not None else open_now[-1]


def detect_breaker_opens(ctx: RunContext) -> list[Finding]:
    """``breaker_open``: a circuit breaker opened; with the calls it refused while open.

    A refused call is an agent step with ``agentrace.step.outcome=breaker_open`` (or
    ``agentrace.breaker.rejected``) that began while the breaker was open: after the
    transition to ``open`` and before the breaker's next transition.
    """
    transitions = ctx.events(c.EV_BREAKER_TRANSITION)
    opens = [ev for ev in transitions if ev.attributes.get(c.BREAKER_TO) == "open"]
    if not opens:
        return []
    # Each open lasts until the same breaker's next transition.
    closes: dict[tuple[str, int], EventRow | None] = {}
    by_name: dict[str, list[EventRow]] = collections.defaultdict(list)
    for ev in transitions:
        by_name[str(ev.attributes.get(c.BREAKER_NAME) or "")].append(ev)
    for evs in by_name.values():
        for i, ev in enumerate(evs):
            if ev.attributes.get(c.BREAKER_TO) == "open":
                closes[(ev.span_id, ev.seq)] = evs[i + 1] if i + 1 < len(evs) else None
    refused: dict[tuple[str, int], list[StepRow]] = collections.defaultdict(list)
    for step in ctx.steps:
        if not step.breaker_rejected:
            continue
        open_now = []
        for ev in opens:
            close = closes[(ev.span_id, ev.seq)]
            if ev.time_ns <= step.start_ns and (close is None or step.start_ns < close.time_ns):
                open_now.append((str(ev.attributes.get(c.BREAKER_NAME) or ""), ev))
        hit = _breaker_for(step, open_now)
        if hit is not None:
            refused[(hit[1].span_id, hit[1].seq)].append(step)
    out = []
    for ev in opens:
        a = ev.attributes
        name = str(a.get(c.BREAKER_NAME) or "?")
        close = closes[(ev.span_id, ev.seq)]
        steps = refused.get((ev.span_id, ev.seq), [])
        rejected_agents = list(dict.fromkeys(s.agent for s in steps))
        reason = a.get(c.BREAKER_REASON)
        message = f"breaker {name} opened" + (f" ({reason})" if reason else "")
        if steps:
            message += f" and refused {len(steps)} call(s) of {fmt_list(rejected_agents)}"
        else:
            message += " and refused no calls"
        if close is not None:
            message += f"; {close.attributes.get(c.BREAKER_TO) or 'changed'} {fmt_ns(close.time_ns - ev.time_ns)} later"
        else:
            message += "; still open when the run ended"
        out.append(
            make_finding(
                ctx,
                "breaker_open",
                Severity.WARNING,
                message,
                identity=(ev.span_id, ev.seq),
                at_ns=ev.time_ns,
                agents=(ev.agent, *rejected_agents),
                span_ids=(ev.span_id, *(s.span_id for s in steps)),
                evidence={
                    "breaker": name,
                    "from": a.get(c.BREAKER_FROM),
                    "reason": reason,
                    "opened_ns": ev.time_ns,
                    "opened_by": ev.agent,
                    "transition_span_id": ev.span_id,
                    "next": close.attributes.get(c.BREAKER_TO) if close else None,
                    "next_ns": close.time_ns if close else None,
                    "open_for_ns": (close.time_ns if close else ctx.end_ns) - ev.time_ns,
                    "rejected": [
                        {"span_id": s.span_id, "agent": s.agent, "start_ns": s.start_ns}
                        for s in steps
                    ],
                },
            )
        )
    return out


def _compensations(ctx: RunContext) -> dict[str, list[EventRow]]:
    by_agent: dict[str, list[EventRow]] = collections.defaultdict(list)
    for ev in ctx.events(c.EV_SAGA_COMPENSATE):
        agent = str(ev.attributes.get(c.SAGA_AGENT) or ev.agent or "")
        if agent:
            by_agent[agent].append(ev)
    return by_agent


def detect_compensation_failures(ctx: RunContext) -> list[Finding]:
    """``compensation_failed``: an agent's compensation whose last attempt failed (a failed
    attempt that a later one made good is no finding)."""
    out = []
    for agent, evs in _compensations(ctx).items():
        evs = [ev for ev in evs if _outcome(ev) != "skipped"]
        if not evs or _outcome(evs[-1]) != "failed":
            continue
        last = evs[-1]
        error = last.attributes.get(c.SAGA_ERROR)
        message = f"compensation of {agent} failed" + (
            f" after {len(evs)} attempts" if len(evs) > 1 else ""
        )
        if error:
            message += f": {error}"
        out.append(
            make_finding(
                ctx,
                "compensation_failed",
                Severity.CRITICAL,
                message,
                identity=(agent,),
                at_ns=last.time_ns,
                agents=(agent,),
                span_ids=[ev.span_id for ev in evs],
                evidence={
                    "agent": agent,
                    "error": error,
                    "attempts": [
                        {
                            "span_id": ev.span_id,
                            "attempt": ev.attributes.get(c.SAGA_ATTEMPT),
                            "outcome": ev.attributes.get(c.SAGA_OUTCOME),
                            "error": ev.attributes.get(c.SAGA_ERROR),
                            "time_ns": ev.time_ns,
                        }
                        for ev in evs
                    ],
                },
            )
        )
    return out


def detect_incomplete_sagas(ctx: RunContext) -> list[Finding]:
    """``saga_incomplete``: a rollback began and a step completed before it was never undone.

    When the saga records the compensations it skipped (``agentrace.saga.compensate``
    with outcome ``skipped``), those are the findings. Otherwise, unless the run ended
    ``compensated`` (the saga's own word that every compensable step was undone), an
    agent that completed a step with an effect (committed state, or published) before
    the first compensation began, and was never compensated at all, is one. A step the
    saga recorded as skipped for reason ``no_compensation`` needed no undoing and is never
    named; a trace that records no such skips does not say which steps had a
    compensation, so there a step that needed none is named too.
    """
    comps: dict[str, list[EventRow]] = {}
    needless: set[str] = set()  # agents the saga recorded as having nothing to undo
    for agent, evs in _compensations(ctx).items():
        kept = [ev for ev in evs if ev.attributes.get(c.SAGA_REASON) != "no_compensation"]
        if kept:
            comps[agent] = kept
        else:
            needless.add(agent)
    attempted = {a: evs for a, evs in comps.items() if any(_outcome(ev) != "skipped" for ev in evs)}
    skipped = {a: evs for a, evs in comps.items() if a not in attempted}
    recorded_skips = any(_outcome(ev) == "skipped" for evs in comps.values() for ev in evs)
    if not attempted or (ctx.run.status == "compensated" and not recorded_skips):
        return []
    began = min(ev.span_start_ns for evs in attempted.values() for ev in evs)
    committed: dict[str, list[int]] = collections.defaultdict(list)
    for span_id, version in ctx.store.sql(
        "SELECT span_id, version FROM state_versions WHERE run_id = ? AND kind = 'commit' ORDER BY version",
        [ctx.run_id],
    ).fetchall():
        committed[span_id].append(version)
    published: dict[str, list[str]] = collections.defaultdict(list)
    for p in ctx.publishes:
        if p.agent and p.time_ns < began:
            published[p.agent].append(p.span_id)
    done: dict[str, list[StepRow]] = collections.defaultdict(list)
    for s in ctx.steps:
        if (
            s.outcome == "ok"
            and not s.error
            and s.end_ns <= began
            and s.agent not in attempted
            and s.agent not in needless
        ):
            done[s.agent].append(s)
    agents = list(skipped) if recorded_skips else list(done)
    out = []
    for agent in agents:
        steps = done.get(agent, [])
        versions = [v for s in steps for v in committed.get(s.span_id, ())]
        sends = published.get(agent, [])
        if not recorded_skips and not versions and not sends:
            continue  # nothing it did needs undoing
        what = []
        if versions:
            what.append(f"committed v{', v'.join(map(str, versions))}")
        if sends:
            what.append(f"published {len(sends)} message(s)")
        effect = f" ({' and '.join(what)})" if what else ""
        how = "its compensation was skipped" if agent in skipped else "it was never compensated"
        message = (
            f"{agent} completed {len(steps) or 'a'} step(s) before the rollback{effect} and {how}"
        )
        out.append(
            make_finding(
                ctx,
                "saga_incomplete",
                Severity.CRITICAL,
                message,
                identity=(agent,),
                at_ns=ctx.end_ns,
                agents=(agent,),
                versions=versions,
                span_ids=[
                    *(s.span_id for s in steps),
                    *sends,
                    *(ev.span_id for ev in skipped.get(agent, ())),
                ],
                evidence={
                    "agent": agent,
                    "rollback_began_ns": began,
                    "versions": versions,
                    "step_span_ids": [s.span_id for s in steps],
                    "publish_span_ids": sends,
                    "compensated": sorted(attempted),
                    "skip_recorded": agent in skipped,
                    "run_status": ctx.run.status,
                },
            )
        )
    return out


def _outcome(ev: EventRow) -> str:
    return str(ev.attributes.get(c.SAGA_OUTCOME) or "ok")
