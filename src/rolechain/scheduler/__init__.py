"""The embedded scheduler (``rolechain schedule``) and its exports to other schedulers.

Pure parts -- :mod:`.policy` (keys, jitter, catch-up), :mod:`.engine` (the loop over a
clock, a launcher and a history), :mod:`.export` -- import no AWS code; :mod:`.launcher`
is the one module that starts real runs (through :func:`rolechain.run`).
"""
