"""Generated interleavings of reads and commits, checked against a simple reference model.

The reference model knows nothing of the store: it replays the generated operations in
program order and says, from the definitions alone, which reads were stale and which
updates were lost. The detectors see only what the recorder wrote and the store projected.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tracer as t
from tracer.analysis import detect
from tracer.testing import RunBuilder

KEYS = ("a", "b", "c")
AGENTS = ("ann", "bob", "cy")

keys = st.frozensets(st.sampled_from(KEYS), min_size=1)
op = st.one_of(
    # commit: agent, keys, which base (taken modulo the head), twice in one step?
    st.tuples(st.just("commit"), st.sampled_from(AGENTS), keys, st.integers(0, 50), st.booleans()),
    # read: agent, keys (empty: the whole document), which version, with the head recorded?
    st.tuples(st.just("read"), st.sampled_from(AGENTS), st.frozensets(st.sampled_from(KEYS)),
              st.integers(0, 50), st.booleans()),
    st.tuples(st.just("wait"), st.integers(0, 5)),
)  # fmt: skip


@dataclass
class Model:
    """The reference: the ledger as a list, reads and commits in program order."""

    distinct_times: bool  # every clock reading moves time on; else only waits do
    epoch: int = 0  # how many times a wait has moved time on
    # (version, keys, base, span, epoch) of every commit
    commits: list[tuple[int, frozenset[str], int, str, int]] = field(default_factory=list)
    # span of a stale read -> (version read, first newer, last newer)
    stale: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    lost: set[tuple[int, int]] = field(default_factory=set)

    def wait(self, ms: int) -> None:
        self.epoch += ms > 0

    def read(self, span: str, version: int, keys: frozenset[str], with_head: bool) -> None:
        # With the head recorded, every commit so far was in the ledger when the read was
        # served. By time alone, a commit counts when time moved on between it and the read.
        newer = [
            v
            for v, ks, _, _, epoch in self.commits
            if v > version
            and (ks & keys if keys else ks)
            and (with_head or self.distinct_times or epoch < self.epoch)
        ]
        if newer:
            self.stale[span] = (version, min(newer), max(newer))

    def commit(self, version: int, keys: frozenset[str], base: int, span: str) -> None:
        for v, ks, _, s, _ in self.commits:
            if base < v < version and s != span and ks & keys:
                self.lost.add((v, version))
        self.commits.append((version, keys, base, span, self.epoch))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(op, max_size=24), distinct_times=st.booleans())
def test_stale_reads_and_lost_updates_match_the_reference_model(ops, distinct_times: bool) -> None:
    model = Model(distinct_times)
    counter = 0
    with t.Store(":memory:") as store:
        with RunBuilder(
            store, initial=dict.fromkeys(KEYS, 0), tick_ns=1_000 if distinct_times else 0
        ) as run:
            model.commits.append((1, frozenset(KEYS), 0, run.root.span_id, 0))
            for o in ops:
                if o[0] == "wait":
                    run.advance(ms=o[1])
                    model.wait(o[1])
                    continue
                with run.step(o[1]) as s:
                    head = run.ledger.head
                    if o[0] == "read":
                        _, _, ks, pick, with_head = o
                        version = s.read(sorted(ks), version=1 + pick % head, head=with_head)
                        model.read(s.span_id, version, ks, with_head)
                        continue
                    _, _, ks, pick, twice = o
                    base = 1 + pick % head
                    for _ in range(2 if twice else 1):
                        counter += 1
                        v = s.commit({k: counter for k in ks}, base=base)
                        model.commit(v, ks, base, s.span_id)
        stale = {f.span_ids[0]: f for f in detect(store, run.run_id, kinds=["stale_read"])}
        lost = {f.versions for f in detect(store, run.run_id, kinds=["lost_update"])}
    assert {
        sid: (f.versions[0], f.evidence["stale_since_version"], f.versions[1])
        for sid, f in stale.items()
    } == model.stale
    assert lost == model.lost
