"""Choreography: agents react to events on a bus instead of being called.

The bus contract and delivery policy (``_bus``), the in-process bus (``_memory_bus``),
the spans every bus records (``_bus_tracer``), delivery faults (``_faults``) and the
:class:`~engine.Choreographer` (``_choreographer``). See docs/choreography.md.
"""
