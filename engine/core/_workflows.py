"""Workflows by name: what a run records so that replay can find its code again.

A run records the registered name and version of its workflow
(``agentrace.run.workflow_ref``, ``agentrace.run.workflow_version``), never a
module path: replay finds the code through a :class:`WorkflowRegistry` that the
user's code fills, so nothing read from a trace makes agentrace import a module
or call a function::

    from engine import workflow

    @workflow("claims", version="2")
    def claims(seed: int = 0) -> Workflow:
        return WorkflowBuilder("insurance-claims").chain(...).build()

Calling the decorated factory gives its workflow (or choreography) stamped with
the name and version, so the runs it makes record them; :data:`workflows` (or
the registry given) maps the name back to the factory.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Callable
from typing import Any, Protocol, Self, TypeVar

from ._errors import WorkflowError

NAME = re.compile(r"^[A-Za-z0-9][\w.\-/]*$")  # a name, never an import path (no ':')
DEFAULT_VERSION = "1"


class Nameable(Protocol):
    """What a factory builds: a Workflow or a Choreography, which can carry its registered name."""

    ref: str | None
    version: str | None

    def registered(self, name: str, version: str) -> Self: ...


F = TypeVar("F", bound=Callable[..., Any])


def check_name(name: str, what: str = "workflow name") -> str:
    """``name`` if it is a registrable name (letters, digits, ``_ . - /``), else WorkflowError."""
    if not isinstance(name, str) or not NAME.match(name):
        raise WorkflowError(
            str(name), f"a {what} is a name like 'claims' or 'myapp.claims', not {name!r}"
        )
    return name


class WorkflowRegistry:
    """Factories of workflows by (name, version). Thread-safe; a name and version register once."""

    def __init__(self) -> None:
        self._factories: dict[tuple[str, str], Callable[..., Any]] = {}
        self._lock = threading.Lock()

    def register(self, name: str, factory: F, *, version: str = DEFAULT_VERSION) -> F:
        """Add ``factory`` under ``name`` and ``version`` and give back the factory, stamping:
        what it builds records that name and version."""
        check_name(name)
        check_name(version, "workflow version")

        @functools.wraps(factory)
        def stamped(*args: Any, **kwargs: Any) -> Any:
            made = factory(*args, **kwargs)
            if not callable(getattr(made, "registered", None)):
                raise WorkflowError(
                    name, f"the factory gave {type(made).__name__}, not a Workflow or Choreography"
                )
            return made.registered(name, version)

        with self._lock:
            prior = self._factories.get((name, version))
            if prior is not None and getattr(prior, "__wrapped__", None) is not factory:
                raise WorkflowError(name, f"two factories are registered as version {version}")
            self._factories[(name, version)] = stamped
        return stamped  # type: ignore[return-value]  # same signature, via functools.wraps

    def __contains__(self, name: object) -> bool:
        return any(n == name for n, _ in self._factories)

    def versions(self, name: str) -> list[str]:
        """The versions registered under ``name``, sorted."""
        return sorted(v for n, v in self._factories if n == name)

    def names(self) -> list[str]:
        return sorted({n for n, _ in self._factories})

    def factory(self, name: str, version: str | None = None) -> Callable[..., Any]:
        """The factory registered as ``name`` (at ``version``; None: the only or the highest one).
        WorkflowError naming what is registered otherwise."""
        have = self.versions(name)
        if not have:
            known = ", ".join(self.names()) or "none"
            raise WorkflowError(name, f"no workflow is registered under this name (have: {known})")
        if version is None:
            version = max(have, key=_version_key)
        elif version not in have:
            raise WorkflowError(
                name, f"version {version} is not registered (have: {', '.join(have)})"
            )
        return self._factories[(name, version)]


def _version_key(v: str) -> tuple[int, ...] | tuple[float, str]:
    parts = v.split(".")
    if all(p.isdigit() for p in parts):
        return tuple(int(p) for p in parts)
    return (float("inf"), v)


workflows = WorkflowRegistry()
"""The registry your code fills with :func:`workflow` and replay looks names up in."""


def workflow(
    name: str, *, version: str = DEFAULT_VERSION, registry: WorkflowRegistry | None = None
) -> Callable[[F], F]:
    """Register the decorated factory as ``name`` (``version``) in ``registry`` (default
    :data:`workflows`): the workflows it builds record that name, and replay finds it by it."""

    def register(factory: F) -> F:
        return (registry or workflows).register(name, factory, version=version)

    return register
