"""The gridloop service: config, strategies, CLI and the wiring of actors.

Modules:

* :mod:`controller.cli` — the ``gridloop`` command (``run``, ``sim``, ``replay``,
  ``report``, ``bench``).
* :mod:`controller.config` — ``load_config(path) -> GridloopConfig``, strict TOML
  validation (``ConfigError`` names file, field and value).
* :mod:`controller.strategies` — pure strategies: peak shaving, frequency response.
* :mod:`controller.service` — ``run_service`` / ``Controller``: strategies run against
  a live :class:`actors.Site`, the run summary.
* :mod:`controller.embedded` — the one simulator launcher: the bundled simulator as a
  child process (the embedded default, and every other simulator child).
* :mod:`controller.outputs` — ``check_outputs``: output files writable, never an input.
* :mod:`controller.records` — ``CycleRecord``, what observers of a run consume, and
  ``RecordObserver``, their start/stop lifetime as a context manager.
* :mod:`controller.dashboard`, :mod:`controller.recording`, :mod:`controller.report`,
  :mod:`controller.metrics`, :mod:`controller.logs` — operator experience.
* :mod:`controller.replay` — control quality on recorded load against the LP optimum.
"""
