import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

import tracer as t

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False).filter(
        lambda x: x != 0 or math.copysign(1, x) > 0
    )
    | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=20,
)
documents = st.dictionaries(st.text(max_size=6), json_values, max_size=6)


@given(documents, documents)
def test_patch_from_diff_rebuilds_the_new_document(old, new) -> None:
    patch = t.diff(old, new)
    assert t.apply_patch(old, patch) == new
    assert old == t.apply_patch(old, [])  # apply_patch does not change its input


@given(documents, documents)
def test_field_changes_cover_every_difference(old, new) -> None:
    changes = t.field_changes(old, new)
    assert (changes == []) == (t.canonical_json(old) == t.canonical_json(new))


def test_keys_with_slashes_and_tildes_survive() -> None:
    old, new = {"a/b": 1, "c~d": [1]}, {"a/b": 2, "c~d": [1, 2]}
    patch = t.diff(old, new)
    assert {op["path"] for op in patch} == {"/a~1b", "/c~0d/1"}
    assert t.apply_patch(old, patch) == new


def test_chain_hash_depends_on_parent_and_content() -> None:
    h1 = t.chain_hash("", {"a": 1})
    assert h1 == t.chain_hash("", {"a": 1}) and len(h1) == 64
    assert t.chain_hash(h1, {"a": 1}) != h1
    assert t.chain_hash("", {"a": 2}) != h1
    # key order does not matter: canonical JSON sorts keys
    assert t.chain_hash("", {"x": 1, "y": 2}) == t.chain_hash("", {"y": 2, "x": 1})


def test_canonical_json_refuses_nan() -> None:
    with pytest.raises(ValueError):
        t.canonical_json({"x": float("nan")})


@given(json_values)
def test_canonical_json_reads_back_and_is_stable(doc) -> None:
    import json

    text = t.canonical_json(doc)
    assert json.loads(text) == doc
    assert t.canonical_json(json.loads(text)) == text
    orders: list[list[str]] = []
    json.loads(
        text, object_pairs_hook=lambda pairs: orders.append([k for k, _ in pairs]) or dict(pairs)
    )
    assert all(keys == sorted(keys) for keys in orders)
    # No whitespace outside strings: the text is as short as the tokens allow.
    python = json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert len(re.sub(r"[-+.\deE]+", "0", text)) == len(re.sub(r"[-+.\deE]+", "0", python))


def test_canonical_json_takes_integers_beyond_64_bits() -> None:
    assert t.canonical_json({"n": 2**80}) == '{"n":1208925819614629174706176}'
