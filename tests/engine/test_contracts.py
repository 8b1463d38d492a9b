"""Contracts: a pydantic model plus rules, with errors ready for JSON."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel, Field

import engine as e


class Report(BaseModel):
    ticker: str
    confidence: float = Field(ge=0, le=1)
    sources: list[str] = Field(min_length=1)


def test_a_payload_that_meets_model_and_rules_passes() -> None:
    c = e.Contract("report", Report, ["confidence >= 0.7", "ticker in ['ACME', 'GLOBEX']"])
    r = c.check({"ticker": "ACME", "confidence": "0.9", "sources": ["x"]})
    assert r.passed and r.outcome == "passed" and r.errors == ()
    assert r.data == {"ticker": "ACME", "confidence": 0.9, "sources": ["x"]}  # validated, coerced


def test_a_rule_that_does_not_hold_rejects_with_the_value() -> None:
    c = e.Contract("report", Report, ["confidence >= 0.7"])
    r = c.check({"ticker": "ACME", "confidence": 0.4, "sources": ["x"]})
    assert not r.passed and r.outcome == "rejected"
    assert r.errors == (
        {"loc": ["confidence"], "msg": "rule 'confidence >= 0.7' does not hold: confidence is 0.4",
         "type": "rule", "input": 0.4},
    )  # fmt: skip
    json.dumps(list(r.errors))  # JSON-ready


def test_model_errors_are_reported_and_rules_not_run() -> None:
    c = e.Contract("report", Report, ["confidence >= 0.7"])
    r = c.check({"ticker": 5, "confidence": 3, "sources": []})
    locs = sorted(tuple(err["loc"]) for err in r.errors)
    assert locs == [("confidence",), ("sources",), ("ticker",)]
    assert all(err["type"] != "rule" for err in r.errors)
    json.dumps(list(r.errors))


def test_rules_alone_nested_paths_and_missing_fields() -> None:
    c = e.Contract("risk", rules=["scores.risk < 0.5", "status not in ['blocked']"])
    assert c.check({"scores": {"risk": 0.2}, "status": "ok"}).passed
    r = c.check({"scores": {}, "status": "blocked"})
    assert [err["type"] for err in r.errors] == ["rule_missing", "rule"]
    r = c.check({"scores": {"risk": "high"}, "status": "ok"})
    assert r.errors[0]["type"] == "rule_type"


def test_predicate_rules() -> None:
    c = e.Contract(
        "even", rules=[e.Rule.where("even", lambda p: p["n"] % 2 == 0, "n must be even")]
    )
    assert c.check({"n": 2}).passed
    assert c.check({"n": 3}).errors[0]["msg"] == "n must be even"
    assert c.check({}).errors[0]["type"] == "rule_error"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("confidence", "expected 'FIELD OP VALUE'"),
        ("confidence >= high", "is not a literal"),
        ("status in 3", "needs a list or a string"),
    ],
)
def test_bad_rules_are_refused_when_written(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        e.Rule.parse(text)


def test_a_contract_needs_something_to_check() -> None:
    with pytest.raises(ValueError, match="give a model, rules, or both"):
        e.Contract("empty")
