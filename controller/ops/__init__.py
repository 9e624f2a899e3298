"""Operator I/O around a run: what a person sees, records and scrapes.

* :mod:`~controller.ops.dashboard` — the live terminal dashboard and the
  periodic status line.
* :mod:`~controller.ops.metrics` — the Prometheus exporter (``--metrics-port``).
* :mod:`~controller.ops.recording` — the per-cycle CSV (``--record``).
* :mod:`~controller.ops.report` — ``gridloop report``: plots of a recording.
* :mod:`~controller.ops.logs` — one-line text or JSON logging.
* :mod:`~controller.ops.outputs` — output paths writable and never an input.

Each consumes :class:`controller.runtime.records.CycleRecord`; none is on the
control path.
"""
