"""Choreography across processes: a bus on Redis Streams (``_bus``, ``_streams``), a state
ledger on Redis (``_ledger``), workers that serve a choreography's agents in their own
processes (``_worker``), and a throwaway ``redis-server`` for tests (``_server``).
Loads redis-py, so ``engine`` imports it on first use. See docs/distributed.md."""
