"""What runs on a site: from the config to setpoints and the run's summary.

* :mod:`~controller.runtime.config` — ``load_config(path) -> GridloopConfig``,
  strict TOML validation (``ConfigError`` names file, field and value).
* :mod:`~controller.runtime.strategies` — pure strategies: peak shaving,
  frequency response (``step(inputs, now) -> Wish``).
* :mod:`~controller.runtime.schedule` — service windows: ``Window``, ``ScheduleBook``
  (the latest windows per source), the ``ScheduleSource`` protocol.
* :mod:`~controller.runtime.schedule_file` — the schedule file format and
  ``FileScheduleSource`` (reload on change or SIGHUP).
* :mod:`~controller.runtime.preparation` — the settings a window puts in force and
  the SoC preparation before a frequency-response window.
* :mod:`~controller.runtime.cycle` — ``ControlCycle``: measurements → strategy
  inputs → wishes → merge → target; the one cycle ``gridloop run`` and
  ``gridloop replay`` both execute.
* :mod:`~controller.runtime.control` — ``Controller``: the cycle run against a
  live :class:`actors.Site` (grid-sample and timer steps, observers).
* :mod:`~controller.runtime.service` — ``run_service`` (one run, config to
  summary), ``runtime_options``, ``grid_refusal``.
* :mod:`~controller.runtime.summary` — ``RunSummary`` and the exit statuses.
* :mod:`~controller.runtime.records` — ``CycleRecord``, what observers consume.
* :mod:`~controller.runtime.process` — stop signals and closed standard streams.
* :mod:`~controller.runtime.embedded` — the bundled simulator as a child
  process: the one simulator launcher.
"""
