"""Agents: a name, an ``execute`` and an optional ``compensate``; plain functions or objects.

``execute(state, input)`` or ``execute(state, input, ctx)``, sync or ``async``:

- ``state`` is a read-only :class:`~engine.StateView` of the version the step starts from,
- ``input`` is what the previous agent handed on (the workflow's input for the first),
- ``ctx`` is an :class:`~engine.AgentContext` (run id, step, attempt, ``sleep``, ``rng``).

It returns its output (any JSON value; pydantic models are dumped), or an
:class:`~engine.Update` to change the state (its ``output`` is then what is
handed on, by default the changes themselves).

``compensate(state, output)`` or ``compensate(state, output, ctx)`` undoes a
completed step when the workflow fails later: ``output`` is what the step
handed on. It may return an :class:`~engine.Update`, committed as a version of
kind ``compensation``.

Sync functions run in a worker thread (``asyncio.to_thread``) so they cannot
stall parallel branches; ``thread=False`` runs them on the event loop instead,
for quick, non-blocking code. An object becomes an agent through
:func:`as_agent`: its ``execute`` and ``compensate`` methods, and ``name``,
``retry``, ``timeout``, ``breaker`` and ``contract`` attributes when it has them.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Callable
from typing import Any, overload

from ._breaker import BreakerConfig
from ._contracts import Contract
from ._retry import NO_RETRY, RetryPolicy
from ._view import AgentContext, StateView

AgentFn = Callable[..., Any]
_NAME = re.compile(r"^[A-Za-z_][\w.\-]*$")


def _arity(fn: Callable[..., Any], what: str, name: str) -> bool:
    """Whether ``fn`` takes a third (``ctx``) argument; TypeError if it cannot take two."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    positional = 0
    for p in sig.parameters.values():
        if p.kind is p.VAR_POSITIONAL:
            return True
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            positional += 1
        if p.name == "ctx" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            return True
    if positional < 2:
        raise TypeError(
            f"agent {name!r}: {what} must take (state, input) or (state, input, ctx); "
            f"{getattr(fn, '__qualname__', fn)!r} takes {positional} positional argument(s)"
        )
    return positional >= 3


def _is_async(fn: Callable[..., Any]) -> bool:
    # An object whose __call__ is a coroutine function is async too.
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)


class Agent:
    """An agent and how the engine runs it. Immutable; ``replace(...)`` gives a changed copy."""

    __slots__ = (
        "_comp_async", "_comp_ctx", "_exec_async", "_exec_ctx", "breaker", "compensate", "contract",
        "description", "execute", "name", "retry", "thread", "timeout",
    )  # fmt: skip

    def __init__(
        self,
        name: str,
        execute: AgentFn,
        *,
        compensate: AgentFn | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        breaker: BreakerConfig | None = None,
        contract: Contract | None = None,
        thread: bool = True,
        description: str = "",
    ) -> None:
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"agent name {name!r}: use letters, digits, '_', '-' or '.'")
        if not callable(execute):
            raise TypeError(f"agent {name!r}: execute must be callable, got {execute!r}")
        if compensate is not None and not callable(compensate):
            raise TypeError(f"agent {name!r}: compensate must be callable, got {compensate!r}")
        if timeout is not None and timeout <= 0:
            raise ValueError(f"agent {name!r}: timeout must be positive, got {timeout}")
        self.name = name
        self.execute = execute
        self.compensate = compensate
        self.retry = retry or NO_RETRY
        self.timeout = timeout
        self.breaker = breaker
        self.contract = contract
        self.thread = thread
        self.description = description
        self._exec_ctx = _arity(execute, "execute", name)
        self._exec_async = _is_async(execute)
        self._comp_ctx = _arity(compensate, "compensate", name) if compensate is not None else False
        self._comp_async = _is_async(compensate) if compensate is not None else False

    def __repr__(self) -> str:
        return f"Agent({self.name!r})"

    @property
    def wants_ctx(self) -> bool:
        """Whether ``execute`` takes a third (``ctx``) argument."""
        return self._exec_ctx

    def replace(self, **changes: Any) -> Agent:
        """A copy with some settings changed (``name``, ``retry``, ``timeout``, ...)."""
        kw: dict[str, Any] = {
            "name": self.name, "execute": self.execute, "compensate": self.compensate, "retry": self.retry,
            "timeout": self.timeout, "breaker": self.breaker, "contract": self.contract,
            "thread": self.thread, "description": self.description,
        }  # fmt: skip
        unknown = set(changes) - set(kw)
        if unknown:
            raise TypeError(f"Agent.replace: unknown setting(s) {', '.join(sorted(unknown))}")
        kw.update(changes)
        name = kw.pop("name")
        execute = kw.pop("execute")
        return Agent(name, execute, **kw)

    async def run(self, state: StateView, value: Any, ctx: AgentContext | None) -> Any:
        """Call ``execute`` the way it wants to be called (``ctx`` may be None if it takes none)."""
        fn = self.execute
        args = (state, value, ctx) if self._exec_ctx else (state, value)
        if self._exec_async:
            return await fn(*args)
        if self.thread:
            return await asyncio.to_thread(fn, *args)
        result = fn(*args)
        if inspect.isawaitable(result):
            return await result
        return result

    async def run_compensate(self, state: StateView, output: Any, ctx: AgentContext) -> Any:
        fn = self.compensate
        assert fn is not None
        args = (state, output, ctx) if self._comp_ctx else (state, output)
        if self._comp_async:
            return await fn(*args)
        if self.thread:
            return await asyncio.to_thread(fn, *args)
        result = fn(*args)
        if inspect.isawaitable(result):
            return await result
        return result


@overload
def agent(fn: AgentFn, /) -> Agent: ...


@overload
def agent(
    fn: None = None, /, *, name: str | None = None, compensate: AgentFn | None = None,
    retry: RetryPolicy | None = None, timeout: float | None = None, breaker: BreakerConfig | None = None,
    contract: Contract | None = None, thread: bool = True, description: str = "",
) -> Callable[[AgentFn], Agent]: ...  # fmt: skip


def agent(fn: AgentFn | None = None, /, **options: Any) -> Agent | Callable[[AgentFn], Agent]:
    """Make a function an :class:`Agent`: ``@agent`` or ``@agent(name=..., retry=...)``."""

    def wrap(f: AgentFn) -> Agent:
        name = options.pop("name", None) or getattr(f, "__name__", None)
        if not name or name == "<lambda>":
            raise ValueError(
                f"cannot tell the name of agent {f!r}: use Agent(name, fn) or agent(name=...)"
            )
        return Agent(name, f, **options)

    return wrap(fn) if fn is not None else wrap


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def as_agent(obj: Any) -> Agent:
    """An :class:`Agent` from an Agent, a function, or an object with an ``execute`` method."""
    if isinstance(obj, Agent):
        return obj
    if inspect.isclass(obj):
        raise TypeError(f"{obj.__name__} is a class: pass an instance (as_agent({obj.__name__}()))")
    execute = getattr(obj, "execute", None)
    if execute is not None and callable(execute):
        name = getattr(obj, "name", None) or _snake(type(obj).__name__)
        kw: dict[str, Any] = {"compensate": getattr(obj, "compensate", None)}
        for attr in ("retry", "timeout", "breaker", "contract", "thread", "description"):
            if hasattr(obj, attr):
                kw[attr] = getattr(obj, attr)
        return Agent(name, execute, **kw)
    if callable(obj):
        return agent(obj)
    raise TypeError(f"not an agent: {obj!r} (need a function, an Agent, or an object with execute)")
