"""What the panes are given: state views with writers and stale reads, span views with links."""

from __future__ import annotations

from tracer import Store
from tui._data import find_position, load_head, load_meta, load_span, load_state, writer_of


def test_the_state_view_names_the_stale_read_and_the_version_already_committed(
    small_store: tuple[Store, str],
) -> None:
    store, run_id = small_store
    meta = load_meta(store, run_id)
    assert [v.agent for v in meta.versions] == [None, "scorer", "rater", "decider"]
    rater = meta.version(3)
    assert rater is not None and rater.agent == "rater"
    view = load_state(store, run_id, 3, None, meta)
    assert view.base == 2 and view.doc["rating"] == "C"
    (read,) = view.reads
    assert (read.version, read.head, read.via, read.cache, read.stale) == (
        1,
        2,
        "cache",
        "scores",
        True,
    )
    assert read.head_meta is not None and read.head_meta.agent == "scorer"
    assert [(c.path, c.change) for c in view.changes] == [("/rating", "added")]
    assert view.changes[0].writer is not None and view.changes[0].writer.agent == "rater"
    (contract,) = view.contracts
    assert (contract.name, contract.outcome, contract.target) == ("rating", "passed", "decider")


def test_a_diff_over_several_versions_names_each_fields_last_writer(
    small_store: tuple[Store, str],
) -> None:
    store, run_id = small_store
    meta = load_meta(store, run_id)
    view = load_state(store, run_id, 4, 1, meta)
    writers = {c.path: c.writer.agent if c.writer else None for c in view.changes}
    assert writers == {
        "/score": "scorer",
        "/rating": "rater",
        "/decision": "decider",
        "/applicant/checked": "decider",
    }
    by_number = {v.version: v for v in meta.versions}
    assert writer_of("/score", 2, 4, by_number) is None  # nothing in (2, 4] wrote it
    fresh = load_state(store, run_id, 4, None, meta)
    assert all(not r.stale for r in fresh.reads)


def test_the_quick_head_load_gives_the_same_state_views(small_store: tuple[Store, str]) -> None:
    store, run_id = small_store
    full, head = load_meta(store, run_id), load_head(store, run_id)
    assert not head.complete and [v.version for v in head.versions] == [4]
    assert head.last_version == full.last_version == 4 and head.findings == full.findings
    for version, base in ((3, None), (4, None), (4, 1), (2, 4)):
        assert load_state(store, run_id, version, base, head) == load_state(
            store, run_id, version, base, full
        )


def test_span_views_carry_events_parent_and_versions(small_store: tuple[Store, str]) -> None:
    store, run_id = small_store
    meta = load_meta(store, run_id)
    rater_span = meta.version(3).span_id  # type: ignore[union-attr]
    view = load_span(store, run_id, rater_span, meta)
    assert view.span.agent == "rater"
    assert view.parent is not None and view.parent.name.startswith("invoke_workflow")
    assert view.versions == (3,)
    assert [e.name for e in view.events] == [
        "agentrace.state.read",
        "agentrace.state.commit",
        "agentrace.contract.check",
    ]
    tree = store.span_tree(run_id)
    assert find_position(tree, rater_span) is not None
    assert find_position(tree, "ffffffffffffffff") is None


def test_a_consumer_links_to_its_producer(
    scenario_store: tuple[Store, dict[str, list[str]]],
) -> None:
    store, runs = scenario_store
    (run_id,) = runs["double-consume"]
    consumer = next(s for s in store.spans(run_id) if s.kind == "CONSUMER")
    view = load_span(store, run_id, consumer.span_id, load_meta(store, run_id))
    (link,) = view.links
    assert link.same_run and link.target is not None
    assert link.target.kind == "PRODUCER" and link.target.name.startswith("send ")
