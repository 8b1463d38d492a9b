"""The debugger's widgets, one module each."""
