"""The replays' public names in one place (kept for existing imports).

The replay is split by concept: :mod:`controller.lab.replay.peak` (peak shaving
against the LP optimum), :mod:`controller.lab.replay.frequency` (frequency response
on a seeded trace), :mod:`controller.lab.replay.reports` (their results),
:mod:`controller.lab.replay.fleet` (a site's battery groups as LP models) and
:mod:`controller.lab.replay.stepping` (what both runs share). New code imports from
``controller.lab.replay`` or those modules.
"""

from __future__ import annotations

from controller.lab.replay.fleet import aggregate_model, fleet_models
from controller.lab.replay.frequency import (
    FrequencyReplayOptions,
    FrequencyTrace,
    make_frequency_trace,
    run_frequency_response,
)
from controller.lab.replay.peak import (
    PeakReplayOptions,
    classify_intervals,
    run_peak_shaving,
    staircase,
)
from controller.lab.replay.reports import FrequencyResponseReport, PeakShavingReport

__all__ = [
    "FrequencyReplayOptions",
    "FrequencyResponseReport",
    "FrequencyTrace",
    "PeakReplayOptions",
    "PeakShavingReport",
    "aggregate_model",
    "classify_intervals",
    "fleet_models",
    "make_frequency_trace",
    "run_frequency_response",
    "run_peak_shaving",
    "staircase",
]
