"""Replay of recorded runs: re-execution with recorded outputs fed back (``_replayer``,
``_agents``, ``_bus``), the recording it reads (``_recording``), its results
(``_model``), forks, stepping through imported traces (``_trace``), run diffs
(``_rundiff``) and schedule exploration (``_explore``). See docs/replay.md."""
