"""Data contracts at handoffs: a pydantic model plus rules a payload must meet.

A :class:`Contract` checks a JSON payload in two stages: the ``model`` validates
(and coerces) it, then every :class:`Rule` is tested against the validated data.
Rules are written as text, ``"confidence >= 0.7"``, ``"status in ['new', 'open']"``,
``"scores.risk < 0.5"`` (a dotted path, an operator among ``== != < <= > >= in
not in``, and a Python literal), or as ``Rule.where(name, predicate, message)``
for anything else. The result names every error in one JSON-ready list, in the
shape pydantic uses (``loc``, ``msg``, ``type``, ``input``).

A contract on an edge checks the output handed from one agent to the next; a
contract on an agent checks its output whatever follows. The engine records each
check as an ``agentrace.contract.check`` event; a rejection stops the handoff and
fails the step.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pydantic

from ._ledger import JSON, json_copy

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "in": lambda a, b: a in b,
    "not in": lambda a, b: a not in b,
}
_RULE = re.compile(
    r"^\s*([A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)*)\s*(==|!=|<=|>=|<|>|not\s+in|in)\s*(.+?)\s*$"
)
_ABSENT: Any = object()


@dataclass(frozen=True, slots=True)
class Rule:
    """One condition on a payload. Build with ``Rule.parse("confidence >= 0.7")`` or ``Rule.where``."""

    text: str
    path: tuple[str, ...] = ()
    op: str = ""
    value: Any = None
    predicate: Callable[[Any], bool] | None = field(default=None, compare=False)
    message: str = ""

    @classmethod
    def parse(cls, text: str) -> Rule:
        """A rule from text; ValueError saying what is wrong with it."""
        m = _RULE.match(text)
        if not m:
            raise ValueError(
                f"rule {text!r}: expected 'FIELD OP VALUE', e.g. 'confidence >= 0.7' "
                f"(OP one of {', '.join(_OPS)})"
            )
        path, op, literal = m.group(1), " ".join(m.group(2).split()), m.group(3)
        try:
            value = ast.literal_eval(literal)
        except (ValueError, SyntaxError):
            raise ValueError(
                f"rule {text!r}: {literal!r} is not a literal (a number, string, list...)"
            ) from None
        if op in ("in", "not in") and not isinstance(value, (list, tuple, set, frozenset, str)):
            raise ValueError(f"rule {text!r}: {op!r} needs a list or a string on the right")
        return cls(text.strip(), tuple(path.split(".")), op, value)

    @classmethod
    def where(cls, name: str, predicate: Callable[[Any], bool], message: str = "") -> Rule:
        """A rule that holds when ``predicate(payload)`` is true."""
        return cls(name, predicate=predicate, message=message or f"rule {name!r} does not hold")

    def check(self, data: Any) -> dict[str, Any] | None:
        """None when the rule holds, else one error (pydantic's shape)."""
        if self.predicate is not None:
            try:
                ok = bool(self.predicate(data))
            except Exception as exc:  # a predicate that cannot even run rejects the payload
                return _error(
                    (), f"rule {self.text!r} raised {type(exc).__name__}: {exc}", "rule_error", None
                )
            return None if ok else _error((), self.message, "rule", None)
        got = data
        for part in self.path:
            if isinstance(got, dict) and part in got:
                got = got[part]
            else:
                got = _ABSENT
                break
        if got is _ABSENT:
            return _error(self.path, f"rule {self.text!r}: field is missing", "rule_missing", None)
        try:
            ok = _OPS[self.op](got, self.value)
        except TypeError:
            return _error(
                self.path,
                f"rule {self.text!r}: cannot compare {got!r} with {self.value!r}",
                "rule_type",
                got,
            )
        if ok:
            return None
        return _error(
            self.path,
            f"rule {self.text!r} does not hold: {'.'.join(self.path)} is {got!r}",
            "rule",
            got,
        )


def _error(loc: Sequence[Any], msg: str, kind: str, value: Any) -> dict[str, Any]:
    try:
        shown = json_copy(value)
    except ValueError:
        shown = repr(value)
    return {"loc": list(loc), "msg": msg, "type": kind, "input": shown}


@dataclass(frozen=True, slots=True)
class ContractResult:
    """The outcome of one check."""

    contract: str
    passed: bool
    payload: JSON
    errors: tuple[dict[str, Any], ...] = ()
    data: JSON = None  # the validated (coerced) payload, when it passed

    @property
    def outcome(self) -> str:
        return "passed" if self.passed else "rejected"


class Contract:
    """A named pydantic model and rules (either may be left out)."""

    __slots__ = ("model", "name", "rules")

    def __init__(
        self,
        name: str,
        model: type[pydantic.BaseModel] | None = None,
        rules: Iterable[Rule | str] = (),
    ) -> None:
        if not name:
            raise ValueError("a contract needs a name")
        self.name = name
        self.model = model
        self.rules = tuple(r if isinstance(r, Rule) else Rule.parse(r) for r in rules)
        if model is None and not self.rules:
            raise ValueError(f"contract {name!r}: give a model, rules, or both")

    def __repr__(self) -> str:
        model = self.model.__name__ if self.model is not None else None
        return f"Contract({self.name!r}, model={model}, rules={[r.text for r in self.rules]})"

    def check(self, payload: JSON) -> ContractResult:
        """Validate ``payload`` (plain JSON); never raises for bad payloads."""
        data = payload
        if self.model is not None:
            try:
                validated = self.model.model_validate(payload)
            except pydantic.ValidationError as exc:
                errors = tuple(
                    _error(
                        e.get("loc", ()),
                        e.get("msg", ""),
                        e.get("type", "value_error"),
                        e.get("input"),
                    )
                    for e in exc.errors(include_url=False)
                )
                return ContractResult(self.name, False, payload, errors)
            data = validated.model_dump(mode="json")
        errors = tuple(e for e in (r.check(data) for r in self.rules) if e is not None)
        return ContractResult(self.name, not errors, payload, errors, data if not errors else None)
