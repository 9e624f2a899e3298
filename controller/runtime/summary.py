"""What a ``gridloop run`` reports: the run summary, its statistics and exit statuses.

:class:`RunSummary` is printed at the end of a run and written by
``--summary-json``; :class:`Accumulator` gathers its peaks, frequency-response
energies and SoC range from every grid sample, :class:`ReactiveAccumulator` (with
reactive control on) its voltage band, Q tracking and apparent-power figures.
``EXIT_*`` are the statuses a summary can ask for (see :func:`controller.run.run_main`).

Units: W, Wh, %, ms; passive sign convention (+ = import / charging).
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from actors import (
    SafeStopResult,
    SiteMeasurements,
)
from distribution import KINDS

EXIT_SITE_CHANGED = 3
"""``gridloop run`` exit status when the server turned out to be another site after a reconnect."""
EXIT_ANOTHER_CLIENT = 4
"""``gridloop run`` exit status when another client controls the site."""
EXIT_SAFE_STOP_FAILED = 5
"""``gridloop run`` exit status when the safe stop did not reach every inverter it
commanded (the summary names them)."""


@dataclass(slots=True)
class RunSummary:
    """What a run achieved. Field names are the keys of ``--summary-json``."""

    api_url: str
    """The server that was controlled."""
    embedded: bool
    """Whether it was the embedded simulator."""
    duration_s: float
    """Wall-clock seconds the control loop ran."""
    simulated_s: float
    """Site seconds covered (``duration_s × time_scale`` on the embedded simulator)."""
    time_scale: float
    """Site seconds per wall second."""
    import_limit_w: float | None
    """Peak-shaving import limit (None when peak shaving is off)."""
    peak_import_w_uncontrolled: float
    """Highest 1-minute (site time) mean import without the batteries (grid − battery)."""
    peak_import_w: float
    """Highest 1-minute (site time) mean of the measured grid import."""
    peak_import_w_instant_uncontrolled: float
    """Highest single-sample import without the batteries."""
    peak_import_w_instant: float
    """Highest single-sample grid import (includes sub-cycle transients at load steps)."""
    fr_energy_required_wh: float
    """∫|P_required| dt of frequency response, in site time."""
    fr_energy_delivered_wh: float
    """∫ of the fleet's frequency-response power in the required direction, in site time."""
    setpoints_sent: int
    """SetElectricalComponentPower calls made."""
    setpoints_failed: int
    """Calls that failed (rejected, timed out, gRPC error)."""
    setpoints_failed_by_reason: dict[str, int]
    """The failures by reason."""
    setpoints_out_of_bounds: int | None
    """Setpoints the simulator rejected as outside bounds (None: not an embedded run)."""
    dispatch_latency_ms: dict[str, float]
    """Request → all setpoints acknowledged: ``p50``, ``p99``, ``max`` (ms)."""
    soc_min_pct: float
    """Lowest fleet SoC seen (capacity-weighted)."""
    soc_max_pct: float
    """Highest fleet SoC seen (capacity-weighted)."""
    grid_samples: int
    """Grid-meter samples the controller reacted to."""
    cycle_overruns: int
    """Timer cycles that overran (counted, not queued)."""
    reconnects: int
    """Telemetry stream reconnects."""
    excluded_at_end: dict[str, str]
    """Components excluded from allocation when the run ended (id → reason)."""
    recording_error: str | None = None
    """Why the ``--record`` CSV is incomplete (it stopped at the first failed write;
    control went on); None when the recording is complete or was not asked for."""
    simulator_stats: dict[str, Any] = field(default_factory=dict)
    """The embedded simulator's own statistics."""
    safe_stop_commanded: int = 0
    """Battery inverters the safe stop sent 0 W (those holding a non-zero setpoint of ours)."""
    safe_stop_failed: int = 0
    """How many of them did not acknowledge it: non-zero makes ``gridloop run`` exit 5."""
    safe_stop_failed_ids: dict[str, str] = field(default_factory=dict)
    """Each of them (id → reason), all of them (the printed line names the first few)."""
    safe_stop_withheld: str | None = None
    """The hold that kept the safe stop's 0 W from going out at all (None: it was sent).
    Exit 5 too, unless the hold is the site having changed (exit 3 says why)."""

    def safe_stop(self) -> SafeStopResult:
        """The safe stop's 0 W round as the runtime reported it (for its one-line description)."""
        failed = {int(k): v for k, v in self.safe_stop_failed_ids.items()}
        return SafeStopResult(
            commanded=self.safe_stop_commanded, failed=failed, withheld=self.safe_stop_withheld
        )
    setpoints_overridden: dict[str, int] = field(default_factory=dict)
    """Setpoints of ours overridden by another client's, by inverter id."""
    another_client: str | None = None
    """Why gridloop concluded that another client controls the site and stopped
    (exit status 4); None when it did not."""
    site_changed: str | None = None
    """What changed when the server turned out to be another site after a reconnect,
    which stopped the run (exit status 3); None when it did not."""
    grid_formula: str = ""
    """How the grid power was measured (``grid = meter 2 + meter 3; frequency from …``)."""
    api_version: str = ""
    """The Microgrid API version the server was spoken to in (``v1``, ``v1alpha18``, …)."""
    billed_peak_w: float = math.nan
    """The billing period's billed peak: the highest billing-interval mean of the grid
    import (the unfinished interval at its mean so far; restored state included)."""
    billed_peak_w_uncontrolled: float = math.nan
    """The same without the batteries (grid − battery)."""
    billing_period: str = ""
    """The billing period the peaks belong to (``"2026-11"``; empty if none was metered)."""
    schedule_sources: list[str] = field(default_factory=list)
    """The schedule sources the run followed (``file:PATH``; empty = none: the config's
    strategies ran all the time)."""
    schedule_changes: int = 0
    """Schedule deliveries that changed the windows (each logged, one line per window)."""
    fr_band_warnings: int = 0
    """Frequency-response windows whose SoC band was projected out of reach by their start
    (each logged as one WARNING when it was first seen)."""
    reactive_setpoints_sent: int = 0
    """Reactive setpoint calls made (0 with reactive control off)."""
    reactive_setpoints_out_of_bounds: int | None = None
    """Reactive setpoints outside the inverters' reactive bounds or apparent-power circle:
    those the planner's re-check replaced plus those the site found outside its bounds (the
    embedded simulator's count; with another server, those it refused as out of range or
    invalid) (None: reactive control off)."""
    apparent_power_violations: int | None = None
    """Battery-inverter samples whose measured sqrt(P² + Q²) exceeded the rating by more
    than `actors.APPARENT_TOLERANCE`, counted from telemetry at every grid sample (None:
    reactive control off)."""
    voltage_in_band_pct: float = math.nan
    """Share of grid samples with the grid meter's voltage inside ``[reactive_power]
    voltage_band_pct`` of nominal (%; NaN: reactive control off or no voltage)."""
    q_tracking_rms_pct: float = math.nan
    """RMS over grid samples of (fleet Q measured − Q target) / the fleet's Q capability
    then (%; NaN: reactive control off or no capability)."""
    setpoints_out_of_bounds_by_kind: dict[str, int] | None = None
    """``setpoints_out_of_bounds`` by component kind (``battery_inverter``,
    ``pv_inverter``, ``ev_charger``; None: not an embedded run)."""
    pv_curtailed_energy_wh: float = 0.0
    """PV energy our caps took off (∫ measured curtailment dt, site time; Wh)."""
    ev_energy_delivered_wh: float = 0.0
    """Energy the EV chargers delivered (∫ their measured power dt, site time; Wh)."""
    export_energy_wh: float = 0.0
    """Energy exported through the grid connection (∫ max(0, −grid) dt, site time; Wh)."""

    @property
    def exit_status(self) -> int:
        """``gridloop run``'s exit status for this run (see :func:`run_main`).

        5 the safe stop failed, 3 site changed, 4 another client, else 0.
        """
        withheld = self.safe_stop_withheld is not None and self.site_changed is None
        if self.safe_stop_failed or withheld:
            return EXIT_SAFE_STOP_FAILED
        if self.site_changed is not None:
            return EXIT_SITE_CHANGED
        if self.another_client is not None:
            return EXIT_ANOTHER_CLIENT
        return 0

    def to_json(self) -> dict[str, Any]:
        """The summary as a JSON-able dict (NaN becomes null)."""

        def clean(value: Any) -> Any:
            if isinstance(value, float) and not math.isfinite(value):
                return None
            if isinstance(value, dict):
                return {str(k): clean(v) for k, v in value.items()}
            return value

        return {k: clean(v) for k, v in dataclasses.asdict(self).items()}

    def render(self) -> str:
        """The summary as the few lines ``gridloop run`` prints at the end."""

        def kw(value: float | None) -> str:
            return "n/a" if value is None or not math.isfinite(value) else f"{value / 1e3:.1f} kW"

        def ms(value: float) -> str:
            return f"{value:.2f} ms" if math.isfinite(value) else "n/a"

        lat = self.dispatch_latency_ms
        if math.isfinite(self.soc_min_pct) and math.isfinite(self.soc_max_pct):
            soc = f"{self.soc_min_pct:.1f} % .. {self.soc_max_pct:.1f} %"
        elif self.grid_samples == 0:
            soc = "n/a (no control cycle ran)"
        else:
            soc = "n/a (no battery SoC was measured)"
        lines = [
            f"gridloop run: {self.duration_s:.1f} s wall, {self.simulated_s / 60:.1f} min of site "
            f"time ({'embedded simulator' if self.embedded else self.api_url}"
            f"{', Microgrid API ' + self.api_version if self.api_version else ''})",
            f"  grid power       {self.grid_formula or 'n/a'}",
            f"  peak import      {kw(self.peak_import_w)} with batteries, "
            f"{kw(self.peak_import_w_uncontrolled)} without (1-min means; limit "
            f"{kw(self.import_limit_w)}); single samples {kw(self.peak_import_w_instant)} / "
            f"{kw(self.peak_import_w_instant_uncontrolled)}",
            f"  billed peak      {kw(self.billed_peak_w)} with batteries, "
            f"{kw(self.billed_peak_w_uncontrolled)} without (highest billing-interval mean"
            f"{', period ' + self.billing_period if self.billing_period else ''})",
            f"  freq. response   {self.fr_energy_delivered_wh / 1e3:.2f} kWh delivered of "
            f"{self.fr_energy_required_wh / 1e3:.2f} kWh required",
            f"  setpoints        {self.setpoints_sent} sent, {self.setpoints_failed} failed, "
            + (
                f"{self.setpoints_out_of_bounds} out of bounds at the site"
                if self.setpoints_out_of_bounds is not None
                else "out-of-bounds count n/a (not the embedded simulator)"
            ),
            f"  dispatch latency p50 {ms(lat['p50'])}, p99 {ms(lat['p99'])}, max {ms(lat['max'])}",
            f"  fleet SoC        {soc}",
        ]
        if self.reactive_setpoints_out_of_bounds is not None:
            lines.append(
                f"  reactive power   {self.reactive_setpoints_sent} setpoints sent,"
                f" {self.reactive_setpoints_out_of_bounds} out of bounds;"
                f" {self.apparent_power_violations} apparent-power violations; voltage in band"
                f" {self.voltage_in_band_pct:.1f} % of the time; Q tracking RMS"
                f" {self.q_tracking_rms_pct:.1f} % of capability"
            )
        if self.pv_curtailed_energy_wh or self.ev_energy_delivered_wh:
            by_kind = self.setpoints_out_of_bounds_by_kind
            lines.append(
                f"  PV / EV          {self.pv_curtailed_energy_wh / 1e3:.2f} kWh of PV curtailed,"
                f" {self.ev_energy_delivered_wh / 1e3:.2f} kWh charged, "
                f"{self.export_energy_wh / 1e3:.2f} kWh exported"
                + (f"; out of bounds by kind {by_kind}" if by_kind is not None else "")
            )
        if self.schedule_sources:
            lines.append(
                f"  schedule         {', '.join(self.schedule_sources)}: {self.schedule_changes}"
                f" change(s); SoC band out of reach before {self.fr_band_warnings} window(s)"
            )
        if self.excluded_at_end:
            lines.append(f"  excluded at end  {self.excluded_at_end}")
        if self.recording_error is not None:
            lines.append(f"  recording        INCOMPLETE: {self.recording_error}")
        if self.setpoints_overridden:
            lines.append(
                f"  overridden       {sum(self.setpoints_overridden.values())} setpoints by"
                f" another client {self.setpoints_overridden}"
            )
        if self.another_client is not None:
            lines.append(f"  STOPPED          {self.another_client}")
        if self.site_changed is not None:
            lines.append(f"  STOPPED          site changed after reconnect: {self.site_changed}")
        if self.safe_stop_failed or self.safe_stop_withheld is not None:
            lines.append(f"  SAFE STOP FAILED {self.safe_stop().describe()}")
        elif self.safe_stop_commanded:
            lines.append(f"  safe stop        {self.safe_stop().describe()}")
        return "\n".join(lines) + "\n"


class Accumulator:
    """Run statistics gathered from every grid-meter sample (peaks, FR energy, SoC range).

    Peaks are reported two ways: the highest single sample, and the highest
    mean over ``window_s`` of site time (1 minute): demand is billed on
    interval means, and a 30× time-scaled demo compresses a load ramp into
    a couple of control cycles, so single samples catch the ramp's transient.
    """

    def __init__(self, time_scale: float, window_s: float = 60.0) -> None:
        self.time_scale = time_scale
        self.window_s = window_s
        self.peak_import_w = -math.inf
        self.peak_uncontrolled_w = -math.inf
        self.peak_mean_import_w = -math.inf
        self.peak_mean_uncontrolled_w = -math.inf
        self.fr_required_wh = 0.0
        self.fr_delivered_wh = 0.0
        self.soc_min_pct = math.inf
        self.soc_max_pct = -math.inf
        self.pv_curtailed_wh = 0.0
        self.ev_delivered_wh = 0.0
        self.export_wh = 0.0
        self.samples = 0
        self._last_ns = 0
        self._win: deque[tuple[float, float, float]] = deque()  # (site s, grid, uncontrolled)
        self._win_sum = [0.0, 0.0]

    def _window(self, site_s: float, grid_w: float, uncontrolled_w: float) -> None:
        win = self._win
        win.append((site_s, grid_w, uncontrolled_w))
        self._win_sum[0] += grid_w
        self._win_sum[1] += uncontrolled_w
        while win and win[0][0] <= site_s - self.window_s:
            _, g, u = win.popleft()
            self._win_sum[0] -= g
            self._win_sum[1] -= u
        if win and site_s - win[0][0] >= self.window_s * 0.95:  # a full window
            n = len(win)
            self.peak_mean_import_w = max(self.peak_mean_import_w, self._win_sum[0] / n)
            self.peak_mean_uncontrolled_w = max(self.peak_mean_uncontrolled_w, self._win_sum[1] / n)

    def add(
        self, m: SiteMeasurements, fr_required_w: float, fr_delivered_w: float, now_ns: int
    ) -> None:
        if math.isfinite(m.grid_power_w) and math.isfinite(m.battery_power_w):
            uncontrolled = m.grid_power_w - m.battery_power_w
            self.peak_import_w = max(self.peak_import_w, m.grid_power_w)
            self.peak_uncontrolled_w = max(self.peak_uncontrolled_w, uncontrolled)
            self._window(now_ns / 1e9 * self.time_scale, m.grid_power_w, uncontrolled)
        if math.isfinite(m.soc_pct):
            self.soc_min_pct = min(self.soc_min_pct, m.soc_pct)
            self.soc_max_pct = max(self.soc_max_pct, m.soc_pct)
        # Site time since the last sample: energy is counted in the site's time.
        dt_h = (now_ns - self._last_ns) / 1e9 * self.time_scale / 3600.0 if self._last_ns else 0.0
        self.pv_curtailed_wh += m.pv_curtailed_w * dt_h
        self.ev_delivered_wh += m.ev_power_w * dt_h
        if math.isfinite(m.grid_power_w):
            self.export_wh += max(0.0, -m.grid_power_w) * dt_h
        if self._last_ns and fr_required_w != 0.0 and math.isfinite(fr_required_w):
            self.fr_required_wh += abs(fr_required_w) * dt_h
            toward = math.copysign(1.0, fr_required_w) * fr_delivered_w
            if math.isfinite(toward):
                self.fr_delivered_wh += max(0.0, min(toward, abs(fr_required_w))) * dt_h
        self._last_ns = now_ns
        self.samples += 1


class ReactiveAccumulator:
    """Reactive-power figures gathered from every grid sample (see `RunSummary`)."""

    def __init__(self, nominal_voltage_v: float, band_pct: float) -> None:
        """Count voltages within ``band_pct`` % of ``nominal_voltage_v``."""
        self.nominal_voltage_v = nominal_voltage_v
        self.band_pct = band_pct
        self.voltage_samples = 0
        self.voltage_in_band = 0
        self.apparent_violations = 0
        self.q_samples = 0
        self._q_sq = 0.0

    def add(self, m: SiteMeasurements, q_target_var: float) -> None:
        """Account one grid sample with the reactive target then in force."""
        self.apparent_violations += m.apparent_violations
        u = m.grid_voltage_v
        if math.isfinite(u):
            self.voltage_samples += 1
            dev = 100.0 * abs(u / self.nominal_voltage_v - 1.0)
            self.voltage_in_band += dev <= self.band_pct
        cap = max(m.reactive_upper_var, -m.reactive_lower_var)
        if math.isfinite(cap) and cap > 0 and math.isfinite(m.reactive_var):
            self.q_samples += 1
            self._q_sq += ((m.reactive_var - q_target_var) / cap) ** 2

    @property
    def voltage_in_band_pct(self) -> float:
        """Share of samples with the voltage in the band (%; NaN without samples)."""
        if not self.voltage_samples:
            return math.nan
        return 100.0 * self.voltage_in_band / self.voltage_samples

    @property
    def q_tracking_rms_pct(self) -> float:
        """RMS of the Q tracking error relative to the capability (%; NaN without samples)."""
        if not self.q_samples:
            return math.nan
        return 100.0 * math.sqrt(self._q_sq / self.q_samples)


REFUSED_AS_OUT_OF_BOUNDS: tuple[str, ...] = ("OUT_OF_RANGE", "INVALID_ARGUMENT")
"""Reasons of a refused setpoint that mean the site found it outside its bounds."""


def refused_as_out_of_bounds(failed: Mapping[str, int]) -> int:
    """How many of the refusals counted by reason in ``failed`` were for being outside the
    site's bounds (`REFUSED_AS_OUT_OF_BOUNDS`)."""
    return sum(int(failed.get(reason, 0)) for reason in REFUSED_AS_OUT_OF_BOUNDS)


def out_of_bounds_by_kind(
    per_component: Mapping[str, Mapping[str, Any]], kinds: Mapping[int, str]
) -> dict[str, int]:
    """The simulator's out-of-bounds setpoint counts summed per component kind.

    Args:
        per_component: The simulator's ``per_component`` statistics (id → counters).
        kinds: The kind of each controlled component id (`distribution.KINDS` names).

    Returns:
        Every kind of `distribution.KINDS` → its count (0 when none).
    """
    out = dict.fromkeys(KINDS, 0)
    for cid, counters in per_component.items():
        kind = kinds.get(int(cid))
        if kind is not None:
            out[kind] += int(counters.get("out_of_bounds", 0))
    return out


def percentiles(samples: Sequence[float]) -> dict[str, float]:
    """p50, p99 and max of ``samples`` (NaN for each when there are none)."""
    if not samples:
        return {"p50": math.nan, "p99": math.nan, "max": math.nan}
    arr = np.asarray(samples, dtype=np.float64)
    p50, p99 = np.percentile(arr, [50.0, 99.0])
    return {"p50": float(p50), "p99": float(p99), "max": float(arr.max())}
