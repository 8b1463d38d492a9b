"""The credit-scoring race in plain asyncio, recorded with ``tracer.otel`` and sent by the OTel SDK.

Two agents work on one loan application at once. ``credit_score`` pulls a fresh report
from the bureau and commits the new score; ``risk_assessment`` waits until the score is in
and rates the applicant, reading the score through the ``bureau`` cache that ``intake``
filled before. Nobody invalidates that cache, so the rating is made from the score on
file: a stale read. With ``--fixed`` the store drops the cached key when a commit
writes it (and records the invalidation), and the read gets the fresh score.

``--race lost-update`` runs the other classic instead: ``limit_review`` raises the
applicant's credit limit while ``collections`` lowers it, both from the version they
read before either wrote; the second commit overwrites the first without having seen
it, a lost update. With ``--fixed`` the second writer reads again before it writes.

No agentrace engine runs here: the agents are coroutines, the store and the cache are a
few lines below, and the spans go out through the OpenTelemetry SDK's OTLP/HTTP exporter
to ``agentrace serve``::

    agentrace serve --db credit.duckdb &          # prints: listening on http://127.0.0.1:4318/v1/traces
    python docs/examples/credit_race.py --endpoint http://127.0.0.1:4318/v1/traces
    agentrace findings --db credit.duckdb          # after stopping serve: one stale_read
    python docs/examples/credit_race.py --race lost-update   # one lost_update

It needs ``opentelemetry-sdk`` and ``opentelemetry-exporter-otlp-proto-http`` (and
agentrace, for ``tracer.otel``). It prints the run id (the trace id) and the rating.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from tracer.otel import record_commit, record_invalidation, record_read

SCORE_ON_FILE = 712  # rating B
FRESH_SCORE = 648  # rating C: the bureau's new report


def rating_for(score: int) -> str:
    for low, rating in ((740, "A"), (670, "B"), (580, "C")):
        if score >= low:
            return rating
    return "D"


@dataclass
class Version:
    number: int
    doc: dict[str, Any]
    hash: str


class Store:
    """The application's state: a document with numbered versions, each one recorded."""

    def __init__(self, initial: dict[str, Any]) -> None:
        digest = record_commit(initial, version=1)
        self.versions = [Version(1, dict(initial), digest)]
        self.on_commit: list[Any] = []

    @property
    def head(self) -> Version:
        return self.versions[-1]

    def read(self, key: str, agent: str) -> Any:
        record_read(version=self.head.number, keys=[key], via="store", agent=agent)
        return self.head.doc[key]

    def commit(self, changes: dict[str, Any], *, base: int, agent: str) -> Version:
        parent = self.head
        doc = {**parent.doc, **changes}
        number = parent.number + 1
        digest = record_commit(
            doc, version=number, parent_hash=parent.hash, base_version=base,
            keys=sorted(changes), parent_state=parent.doc, agent=agent,
        )  # fmt: skip
        self.versions.append(Version(number, doc, digest))
        for listener in self.on_commit:
            listener(number, sorted(changes))
        return self.head


class Cache:
    """A read-through cache in front of the store: it serves what it holds, at that version."""

    def __init__(self, name: str, store: Store) -> None:
        self.name, self.store = name, store
        self.entries: dict[str, tuple[int, Any]] = {}

    def get(self, key: str, agent: str) -> Any:
        if key not in self.entries:
            head = self.store.head
            self.entries[key] = (head.number, head.doc[key])
        version, value = self.entries[key]
        record_read(
            version=version, keys=[key], via="cache", cache=self.name,
            head_version=self.store.head.number, agent=agent,
        )  # fmt: skip
        return value

    def invalidate(self, version: int, keys: list[str]) -> None:
        dropped = [k for k in keys if self.entries.pop(k, None) is not None]
        if dropped:
            record_invalidation(self.name, keys=dropped, version=version)


def agent_span(tracer: trace.Tracer, name: str) -> Any:
    """A step of an agent, named as the OpenTelemetry GenAI conventions name it."""
    return tracer.start_as_current_span(
        f"invoke_agent {name}",
        attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": name},
    )


def workflow_span(tracer: trace.Tracer, name: str) -> Any:
    """The root of a run (one trace), named as the GenAI conventions name a workflow."""
    return tracer.start_as_current_span(
        f"invoke_workflow {name}",
        attributes={"gen_ai.operation.name": "invoke_workflow", "gen_ai.workflow.name": name},
    )


async def decide(tracer: trace.Tracer, *, fixed: bool) -> tuple[str, str]:
    """One application, end to end; its run id and the rating it got."""
    with workflow_span(tracer, "credit-decisioning") as root:
        store = Store({"application_id": "APP-0001", "credit_score": SCORE_ON_FILE})
        bureau = Cache("bureau", store)
        if fixed:
            store.on_commit.append(bureau.invalidate)
        scored = asyncio.Event()

        with agent_span(tracer, "intake"):
            bureau.get("credit_score", "intake")  # a pre-check; fills the cache

        async def credit_score() -> None:
            with agent_span(tracer, "credit_score"):
                base = store.head.number
                await asyncio.sleep(0)  # the bureau call
                if store.read("credit_score", "credit_score") != FRESH_SCORE:
                    store.commit({"credit_score": FRESH_SCORE}, base=base, agent="credit_score")
            scored.set()

        async def risk_assessment() -> str:
            await scored.wait()
            with agent_span(tracer, "risk_assessment"):
                base = store.head.number
                rating = rating_for(bureau.get("credit_score", "risk_assessment"))
                store.commit({"rating": rating}, base=base, agent="risk_assessment")
                return rating

        _, rating = await asyncio.gather(credit_score(), risk_assessment())
        return format(root.get_span_context().trace_id, "032x"), rating


async def adjust_limit(tracer: trace.Tracer, *, fixed: bool) -> tuple[str, int]:
    """Two agents change the credit limit at once; the run id and the limit that stayed."""
    with workflow_span(tracer, "limit-adjustment") as root:
        store = Store({"account_id": "ACC-0042", "credit_limit": 5000})
        both_read = asyncio.Barrier(2)

        async def change(agent: str, delta: int) -> None:
            with agent_span(tracer, agent):
                base = store.head.number
                limit = store.read("credit_limit", agent)
                await both_read.wait()  # each has read before either writes: the race
                if fixed and store.head.number != base:  # optimistic check: read again
                    base = store.head.number
                    limit = store.read("credit_limit", agent)
                store.commit({"credit_limit": limit + delta}, base=base, agent=agent)

        await asyncio.gather(change("limit_review", +2000), change("collections", -1000))
        return format(root.get_span_context().trace_id, "032x"), store.head.doc["credit_limit"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", default="http://127.0.0.1:4318/v1/traces")
    parser.add_argument("--race", choices=("stale-read", "lost-update"), default="stale-read")
    parser.add_argument("--fixed", action="store_true", help="run the version without the bug")
    args = parser.parse_args(argv)
    provider = TracerProvider(resource=Resource.create({"service.name": "credit-desk"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=args.endpoint)))
    tracer = provider.get_tracer("credit-desk")
    try:
        if args.race == "stale-read":
            run_id, rating = asyncio.run(decide(tracer, fixed=args.fixed))
            result = f"rating {rating} (the fresh score gives {rating_for(FRESH_SCORE)})"
        else:
            run_id, limit = asyncio.run(adjust_limit(tracer, fixed=args.fixed))
            result = f"credit limit {limit} (both changes give {5000 + 2000 - 1000})"
    finally:
        provider.shutdown()  # sends what is left and waits for the answer
    print(f"run {run_id}: {result}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
