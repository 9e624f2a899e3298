"""The results of the replays: control quality as numbers, and the samples behind them.

* :class:`PeakShavingReport` — of :func:`~controller.lab.replay.peak.run_peak_shaving`.
* :class:`FrequencyResponseReport` — of
  :func:`~controller.lab.replay.frequency.run_frequency_response`.
* :class:`SiteReport` — of :func:`~controller.lab.replay.site.run_site`.
* :class:`Report` — what they all offer: :meth:`Report.summary`, the scalar fields as JSON.

Units and signs: W, Wh, %, Hz, s; + = importing / charging.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["DayReport", "FloatArray", "FrequencyResponseReport", "PeakShavingReport", "Report",
           "SiteReport"]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Report:
    """A replay's report: scalar results plus sample arrays (left out of :meth:`summary`)."""

    def summary(self) -> dict[str, Any]:
        """The scalar results as a JSON-ready dict (tuples as lists, no sample arrays)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, np.ndarray):
                continue
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out


@dataclass(frozen=True)
class PeakShavingReport(Report):
    """Control quality of a peak-shaving replay (W, %, s; + = import).

    Peaks are the largest *interval mean* import (15-min means for 15-min data:
    what a demand charge bills and what the load data describes); the
    instantaneous maximum is in :attr:`peak_import_w_instant`.
    """

    peak_import_w_uncontrolled: float
    """Peak of the load alone (no batteries)."""
    peak_import_w_optimal: float
    """Perfect-foresight optimum peak (LP, the fleet as one battery; the highest of the
    periods' optima, each from the energy the fleet had at the period's start)."""
    peak_import_w: float
    """Peak import achieved by the controller."""
    peak_import_w_optimal_groups: float
    """Optimum with one battery per group (own limits and efficiencies; nan if not solved:
    it is solved for a replay of one period).
    At most the aggregate optimum: it may favour the most efficient group, which
    SoC-balancing distribution does not do."""
    peak_import_w_instant: float
    """Largest instantaneous import (includes the sub-second transients at load steps)."""
    import_limit_w: float
    """The (highest) target limit the controller ran with (per period: ``periods``;
    ``--limit auto``: the last plan's; nan: none)."""
    reduction_optimal_w: float
    """``uncontrolled − optimal``, summed over the periods (one period: of the run)."""
    reduction_achieved_w: float
    """``uncontrolled − achieved``, summed over the periods."""
    reduction_achieved_pct_of_optimal: float
    """Over all periods: ``100 × Σ achieved / Σ optimal`` reduction, each period's
    reduction from its own uncontrolled peak (100 when the optimum is no reduction;
    periods without a limit, see ``periods``' notes, are left out)."""
    intervals_total: int
    """Metering intervals (one per load-profile sample) replayed."""
    intervals_above_limit: int
    """Intervals whose mean import exceeded the effective limit in force (``max(target,
    the period's billed peak so far)``, as the controller held it) by more than the
    tolerance."""
    intervals_above_limit_avoidable: int
    """Of those, intervals in which the excess the fleet could have covered at the time
    (it had the discharge power and so the energy) averages above the tolerance."""
    intervals_with_excursion: int
    """Intervals with any instantaneous sample above limit + tolerance (transients
    included: a load step is answered within a cycle plus the inverter delay)."""
    intervals_above_given_limit: int
    """Intervals whose mean exceeded the given (target) limit by more than the tolerance,
    whatever the billed peak had become (per period: ``periods``)."""
    intervals_above_given_limit_preventable: int
    """Of those, the ones the fleet had the discharge power and energy to prevent."""
    above_limit_tolerance_w: float
    """Tolerance used for "above the limit"."""
    max_excess_w: float
    """Largest interval-mean import above the limit (0 if never above)."""
    energy_above_limit_wh: float
    """Energy imported above the limit (instantaneous excess, integrated)."""
    soc_min_pct: float
    """Lowest fleet SoC (capacity-weighted)."""
    soc_max_pct: float
    """Highest fleet SoC."""
    control_cycles: int
    """Control cycles run."""
    simulated_s: float
    """Simulated time replayed."""
    wall_s: float
    """Wall time of the replay (information only)."""
    lp_wall_s: float
    """Wall time of the LP (information only)."""
    lp_status: str
    """HiGHS status message."""
    load: dict[str, Any] = field(default_factory=dict)
    """Where the load came from: file, column, start, days, step, scale, days of history
    before the start, billing zone."""
    limit_mode: str = "optimal"
    """``fixed``, ``optimal``, ``previous`` or ``auto``."""
    equivalent_full_cycles: float = 0.0
    """Battery throughput over the run: AC energy charged + discharged over twice the
    fleet's usable energy window."""
    periods: list[dict[str, Any]] = field(default_factory=list)
    """One row per billing period (:class:`~controller.lab.replay.periods.PeriodResult`)."""
    interval_limit_w: FloatArray = field(default_factory=lambda: np.zeros(0), repr=False)
    """Effective limit in force per interval, as the control saw it at the interval's first
    cycle (inf = none)."""
    interval_billed_peak_w: FloatArray = field(default_factory=lambda: np.zeros(0), repr=False)
    """The billing meter's billed peak at each interval's first cycle (the period's highest
    closed interval mean so far)."""
    interval_planned_limit_w: FloatArray = field(default_factory=lambda: np.zeros(0),
                                                 repr=False)
    """The auto limit's plan at each interval's first cycle (nan: no planner; inf: cold)."""
    interval_mean_w: FloatArray = field(default_factory=lambda: np.zeros(0), repr=False)
    """Mean grid import per interval."""
    time_s: FloatArray = field(default_factory=lambda: np.zeros(0), repr=False)
    """Sample times (s since the start)."""
    grid_w: FloatArray = field(default_factory=lambda: np.zeros(0), repr=False)
    """Grid power at the samples."""
    load_w: FloatArray = field(default_factory=lambda: np.zeros(0), repr=False)
    """Uncontrolled grid power (= load) at the samples."""
    battery_w: FloatArray = field(default_factory=lambda: np.zeros(0), repr=False)
    """Battery inverter AC power at the samples."""
    soc_pct: FloatArray = field(default_factory=lambda: np.zeros(0), repr=False)
    """Fleet SoC at the samples."""


@dataclass(frozen=True)
class FrequencyResponseReport(Report):
    """Control quality of a frequency-response replay (W, %, s, Hz)."""

    reserved_power_w: float
    """Power at full activation."""
    rms_error_pct: float
    """RMS of delivered − required as % of the reserve, outside the activation windows."""
    rms_error_pct_all: float
    """The same over every sample, activation windows included."""
    max_abs_error_pct: float
    """Largest |delivered − required| outside the activation windows, % of reserve."""
    activation_time_s: list[float]
    """Per step edge: time from the edge to full activation (nan if never)."""
    activation_time_max_s: float
    """Largest of those."""
    fr_energy_required_wh: float
    """∫ |required| dt."""
    fr_energy_delivered_wh: float
    """∫ |delivered| dt."""
    soc_band_pct: tuple[float, float]
    """SoC band that holds the reserve for the configured duration both ways."""
    soc_in_band_pct: float
    """Share of the time the fleet SoC was inside the band (%)."""
    soc_min_pct: float
    """Lowest fleet SoC."""
    soc_max_pct: float
    """Highest fleet SoC."""
    hold_duration_s: float
    """Configured hold duration."""
    control_cycles: int
    """Control cycles run."""
    simulated_s: float
    """Simulated time replayed."""
    wall_s: float
    """Wall time (information only)."""
    events: list[dict[str, float]] = field(default_factory=list)
    """The trace's events (start, duration, delta, ramp)."""
    frequency_source: str = "steps"
    """The trace's base: ``steps`` (nominal + noise + events), ``synthetic(seed=N)`` or
    the recorded file."""
    frequency_gaps: dict[str, float | int] = field(default_factory=dict)
    """Unknown stretches of a recorded trace in the replayed span: ``count``,
    ``seconds``, ``longest_s`` (frequency response asks 0 W there) and ``bridged``
    (short gaps interpolated, whole file); empty for a generated trace."""
    time_s: FloatArray = field(default_factory=lambda: np.zeros(0), repr=False)
    """Sample times."""
    frequency_hz: FloatArray = field(default_factory=lambda: np.zeros(0), repr=False)
    """Frequency at the samples."""
    required_w: FloatArray = field(default_factory=lambda: np.zeros(0), repr=False)
    """Required power at the samples (+ = charging)."""
    delivered_w: FloatArray = field(default_factory=lambda: np.zeros(0), repr=False)
    """Delivered battery AC power at the samples."""


@dataclass(frozen=True)
class DayReport(Report):
    """Quality of a day replay with a schedule (W, Wh, %, s; + = import / charging).

    Frequency-response figures cover the windows with a reserve > 0 (contracted
    time); how each is measured is in :mod:`controller.lab.replay.day`.
    """

    fr_availability_pct: float
    """Share of contracted time in which the fleet could hold the full reserve for the
    hold duration in both directions (SoC in the band and power headroom)."""
    fr_rms_error_pct: float
    """Time-weighted RMS of delivered − required FR power, % of each window's reserve."""
    soc_in_band_at_window_start_pct: float
    """Share of window starts with the fleet SoC in the window's band, among the windows
    whose band preparation did not project out of reach."""
    windows_sold: int
    """Windows with a reserve > 0 met in the run."""
    windows_band_unreachable: int
    """Of these, windows whose band preparation projected out of reach (warned)."""
    fr_energy_outside_windows_wh: float
    """Energy the merge granted frequency response outside sold windows (Wh)."""
    fr_energy_delivered_wh: float
    """|FR part| of the battery power integrated over the windows (Wh)."""
    fr_activation_time_max_s: float
    """Worst time to full activation after a step, on the scripted segments (s; nan: none)."""
    fr_activation_curve: str
    """The sold windows' curves, comma-separated (``linear``: FCR, target 30 s; ``knee``:
    DC, 1 s); each window's own is in its row."""
    fr_activation_wall_s: float
    """Wall time of the scripted segments (s; not part of :attr:`wall_s`)."""
    contracted_s: float
    """Contracted time replayed (s)."""
    peak_import_w_uncontrolled: float
    """Peak interval-mean import of the load alone (no batteries)."""
    peak_import_w: float
    """Achieved peak interval-mean import."""
    billed_peak_w: float
    """The billing meter's billed peak at the last interval start (W)."""
    intervals_total: int
    """Metering intervals replayed."""
    intervals_above_limit: int
    """Intervals whose mean import exceeded the limit in force (plus tolerance)."""
    intervals_above_limit_avoidable: int
    """Of these, the ones the fleet had room to avoid."""
    soc_min_pct: float
    """Lowest fleet SoC (%)."""
    soc_max_pct: float
    """Highest fleet SoC (%)."""
    control_cycles: int
    """Control cycles run."""
    simulated_s: float
    """Simulated time (s)."""
    wall_s: float
    """Wall time of the combined replay (s)."""
    frequency_source: str
    """Where the frequency came from (file or generator)."""
    load: dict[str, Any]
    """The load selection."""
    windows: list[dict[str, Any]]
    """One row per sold window (the same figures per window, plus SoC at its start)."""
    time_s: FloatArray = field(repr=False)
    grid_w: FloatArray = field(repr=False)
    soc_pct: FloatArray = field(repr=False)


@dataclass(frozen=True)
class SiteReport(Report):
    """Quality of a PV / EV site replay (W, Wh, %, s; + = import / charging).

    Everything is measured from the physics' truth (how: :mod:`controller.lab.replay.site`
    and :mod:`controller.lab.replay.site_metrics`). Limits are the config's
    ``[peak_shaving]`` ones (inf: none); an interval or a second is above a limit beyond
    ``above_limit_tolerance_w``.
    """

    export_limit_w: float
    """The export limit held (W, ≥ 0; inf: none)."""
    import_limit_w: float
    """The import limit held (``hard_import_limit_w`` if set, else a fixed
    ``import_limit_w``; inf: none)."""
    above_limit_tolerance_w: float
    """Tolerance of every above-limit count (W): max(100 W, 0.1 % of the larger finite limit)."""
    intervals_total: int
    """Billing intervals replayed (the config's ``[billing] interval_s``)."""
    export_intervals_above_limit: int
    """Intervals whose mean export exceeded the export limit."""
    export_excess_1s_max_w: float
    """Worst 1-second mean export above the limit (W, ≥ 0)."""
    export_excess_15min_max_w: float
    """Worst interval-mean export above the limit (W, ≥ 0)."""
    export_excess_longest_s: float
    """Longest stretch of time the export stayed above limit + tolerance (s)."""
    export_excess_longest_allowed_s: float
    """The target for it: the slowest PV or battery inverter's response delay plus one
    control cycle (peak shaving's ``interval_s``)."""
    export_energy_above_limit_wh: float
    """Export energy above the limit (Wh)."""
    load_drops: int
    """Load drops met (a fall of at least ``load_drop_min_w``)."""
    load_drop_min_w: float
    """What counts as a load drop (W)."""
    export_comply_time_max_s: float
    """Worst time to comply after a load drop: from the drop's start until the export is
    back within limit + tolerance and stays there ``comply_hold_s`` (s; 0: it never left
    it)."""
    load_drops_not_complied: int
    """Drops after which the export had not complied so when the next drop came,
    ``comply_window_s`` passed or the run ended."""
    pv_source: str
    """Where the PV came from."""
    pv_energy_available_wh: float
    """PV energy the panels offered (production without curtailment, Wh)."""
    pv_energy_curtailed_wh: float
    """PV energy given up by curtailment (Wh)."""
    pv_curtailed_storable_wh: float
    """Of it, what the batteries could have stored instead (Wh)."""
    pv_curtailed_storable_pct: float
    """``pv_curtailed_storable_wh``, % of the available PV energy."""
    ev_sessions: int
    """EV sessions that departed within the run."""
    ev_energy_requested_wh: float
    """Energy those cars asked for (Wh)."""
    ev_energy_allowed_wh: float
    """Energy the import limit allowed them (the fluid reference of
    :func:`~controller.lab.replay.site_metrics.ev_allowed_wh`, Wh)."""
    ev_energy_delivered_wh: float
    """Energy they received by departure (Wh)."""
    ev_energy_delivered_pct: float
    """``100 × Σ min(delivered, allowed) / Σ allowed`` over those sessions (nan: none)."""
    ev_sessions_short: int
    """Sessions that got less than 99 % of their allowed energy."""
    import_intervals_above_limit: int
    """Intervals whose mean import exceeded the import limit."""
    battery_energy_to_ev_wh: float
    """Battery discharge energy while the EVs drew more than their chargers' minimum,
    up to that surplus (Wh): EV load carried by the batteries that could have been slowed."""
    peak_import_w: float
    """Highest interval-mean import (W)."""
    peak_import_w_instant: float
    """Highest instantaneous import (W)."""
    peak_export_w_instant: float
    """Highest instantaneous export (W, ≥ 0)."""
    soc_min_pct: float
    """Lowest fleet SoC (%)."""
    soc_max_pct: float
    """Highest fleet SoC (%)."""
    controlled_kinds: tuple[str, ...]
    """The kinds of power row the control sent setpoints to (battery_inverter,
    pv_inverter, ev_charger)."""
    setpoints_refused: int
    """Setpoints the physics refused (out of bounds, not ready)."""
    control_cycles: int
    """Control cycles run."""
    simulated_s: float
    """Simulated time (s)."""
    wall_s: float
    """Wall time of the replay (s)."""
    load: dict[str, Any] = field(default_factory=dict)
    """The load replayed (source, start, days, peak)."""
    time_s: FloatArray = field(default_factory=lambda: np.zeros(0))
    """Vertex times of the true trajectory (s)."""
    grid_w: FloatArray = field(default_factory=lambda: np.zeros(0))
    """True grid power at them (W, + = import)."""
