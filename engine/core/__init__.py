"""The engine's core: what every run pattern stands on.

Agents and their context (``_agent``, ``_view``), the state ledger of immutable
versions (``_ledger``), caches that may serve old versions (``_cache``), handoff
contracts (``_contracts``), retries (``_retry``), circuit breakers (``_breaker``),
the saga that undoes completed steps (``_saga``), time, real or virtual
(``_time``), the spans and events a run records (``_recording``) and the error
tree (``_errors``). Imports nothing else of the engine. Public names are in
``engine.authoring`` and ``engine.running``.
"""
