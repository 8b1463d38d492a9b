"""Orchestration: a workflow is a DAG of agents (``_workflow``), run step by step by the
:class:`~engine.Orchestrator` (``_orchestrator``). Stands on ``engine.core`` only."""
