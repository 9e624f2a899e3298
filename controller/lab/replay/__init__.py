"""Deterministic replay and control-quality measurement (``gridloop replay``).

Offers:

* :func:`load_profile` / :class:`LoadProfile` / :data:`BUNDLED_LOAD_CSV` — a load
  series from a CSV (timestamp + one numeric column, any unit), selected and
  scaled, with the rows before it as the site's history; two bundled years
  (``BUNDLED_PROFILES``) so the replay works on a fresh clone.
* :func:`optimal_peak` / :class:`FleetModel` / :class:`OptimumResult` — the
  perfect-foresight optimum peak import by LP (HiGHS), per group or aggregate.
* :func:`run_peak_shaving` / :class:`PeakShavingReport` / :class:`PeakReplayOptions`
  — peak shaving + power manager + distribution against the simulator physics on
  a virtual clock and the data's site time, billing period after billing period,
  with a fixed limit, each period's LP optimum, the previous one's, or ``auto``.
* :func:`run_frequency_response` / :class:`FrequencyResponseReport` /
  :class:`FrequencyReplayOptions` / :func:`make_frequency_trace` /
  :class:`FrequencyTrace` — frequency response on a seeded trace with step events.
* :func:`run_day` / :class:`DayReport` / :class:`DayReplayOptions` / :func:`schedule_book`
  — a day or more with a schedule file's windows: frequency response in its windows
  and peak shaving together, per-window availability, SoC at the start, tracking.
* :func:`run_voltage_support` / :class:`ReactiveReport` / :class:`ReactiveReplayOptions` /
  :func:`settling_time_s` — a site's own scenario with ``[reactive_power]``, with and
  without reactive control: Q tracking, settling after voltage steps, voltage in band,
  out-of-bounds and apparent-power counts, the peak-shaving figures of both.
* :func:`run_site` / :class:`SiteReport` / :class:`SiteReplayOptions` — a site with its PV
  inverters and EV chargers under the config's export and import limits, for days: export
  above the limit, time to comply after a load drop, curtailed PV the batteries could have
  stored, EV energy delivered of what the limit allowed.
* :func:`fleet_models` / :func:`aggregate_model` — a site's battery groups as LP models.
* :func:`classify_intervals` — which metering intervals were above the limit, avoidably.

Modules: ``peak`` (peak-shaving replay), ``periods`` (billing periods, history,
rows), ``frequency`` (frequency-response replay and its trace), ``day`` (the day
replay with a schedule; ``day_cli`` its part of the command), ``reactive`` (the
voltage-support replay; ``reactive_cli`` its part of the command), ``site`` (the PV / EV
site replay; ``site_metrics`` its measures, ``site_cli`` its part of the command),
``reports`` (the
results), ``fleet`` (LP models of a site), ``stepping`` (what both replays
share), ``transport`` (the production control cycle against the physics),
``optimum``, ``loader``.
* :class:`ReplayError` — the package's one error type (one-line messages).
* ``controller.lab.replay.cli.main`` — the ``gridloop replay`` command.
"""

from controller.lab.replay.day import DayReplayOptions, run_day, schedule_book
from controller.lab.replay.errors import ReplayError
from controller.lab.replay.fleet import aggregate_model, fleet_models
from controller.lab.replay.frequency import (
    FrequencyReplayOptions,
    FrequencyTrace,
    make_frequency_trace,
    run_frequency_response,
)
from controller.lab.replay.loader import BUNDLED_LOAD_CSV, LoadProfile, load_profile
from controller.lab.replay.optimum import FleetModel, OptimumResult, optimal_peak
from controller.lab.replay.peak import PeakReplayOptions, classify_intervals, run_peak_shaving
from controller.lab.replay.reactive import (
    ReactiveReplayOptions,
    ReactiveReport,
    run_voltage_support,
    settling_time_s,
)
from controller.lab.replay.reports import (
    DayReport,
    FrequencyResponseReport,
    PeakShavingReport,
    SiteReport,
)
from controller.lab.replay.site import SiteReplayOptions, run_site

__all__ = [
    "BUNDLED_LOAD_CSV",
    "DayReplayOptions",
    "DayReport",
    "FleetModel",
    "FrequencyReplayOptions",
    "FrequencyResponseReport",
    "FrequencyTrace",
    "LoadProfile",
    "OptimumResult",
    "PeakReplayOptions",
    "PeakShavingReport",
    "ReactiveReplayOptions",
    "ReactiveReport",
    "ReplayError",
    "SiteReplayOptions",
    "SiteReport",
    "aggregate_model",
    "classify_intervals",
    "fleet_models",
    "load_profile",
    "make_frequency_trace",
    "optimal_peak",
    "run_day",
    "run_frequency_response",
    "run_peak_shaving",
    "run_site",
    "run_voltage_support",
    "schedule_book",
    "settling_time_s",
]
