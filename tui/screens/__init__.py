"""The debugger's screens: the runs list, a run, help and prompts."""
