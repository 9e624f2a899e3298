"""The gridloop service: strategies run against a live site, observed, summarised.

:func:`run_main` is ``gridloop run``: it loads the config, starts the embedded
simulator unless ``--api`` names a server, connects (:class:`actors.Site`),
runs the :class:`Controller` for the run's duration or until SIGINT, SIGTERM or SIGHUP,
and prints (and optionally writes as JSON) a :class:`RunSummary`.

The control path is event-driven. Every fresh sample of a grid term (the
meters or components whose sum is the grid power, :class:`actors.GridFormula`,
logged at start-up) wakes the controller: it snapshots the site
(:meth:`actors.Site.measurements`), steps the strategies whose cadence is
"every sample" (frequency response by default), and strategies with a fixed
interval (peak shaving, 200 ms by default) run on their own timers. Each step
is :meth:`controller.cycle.ControlCycle.step` (inputs, wishes, merge by
priority: the code ``gridloop replay`` runs too), and the combined target goes
to the distributor (:meth:`actors.Site.request_power`, latest wins), whose
:class:`actors.RoundPlanner` turns it into setpoints. Observers (the
dashboard, the CSV recorder, the metrics exporter, the summary) get one
:class:`~controller.records.CycleRecord` per record interval, built off the
control path.

Units: W, Wh, %, Hz, ms; passive sign convention (+ = import / charging).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import json
import logging
import math
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from actors import (
    ApiError,
    ApiUrl,
    DistributionOutcome,
    GraphError,
    GridFormula,
    OptionsError,
    RuntimeOptions,
    SafeStopResult,
    Site,
    SiteMeasurements,
)
from controller.config import GridloopConfig, load_config
from controller.cycle import ControlCycle
from controller.embedded import EmbeddedSimulator, site_input_files
from controller.errors import (
    ConfigError,
    EmbeddedSimulatorError,
    GridloopError,
    OutputPathError,
    RecordingError,
    UserError,
)
from controller.outputs import check_outputs
from controller.process import catch_stop_signals, stop_on_signals
from controller.recording import CsvRecorder
from controller.records import CycleRecord, GroupRecord
from controller.strategies import FrequencyResponse, Strategy, StrategyInputs

__all__ = [
    "EXIT_SAFE_STOP_FAILED",
    "Controller",
    "RunOptions",
    "RunSummary",
    "grid_refusal",
    "next_tick_s",
    "periodic",
    "run_main",
    "run_service",
    "runtime_options",
]

_LOG = logging.getLogger("gridloop.controller")
_STATUS_LOG = logging.getLogger("gridloop.controller.status")
"""Lines an operator should see at the default level (start-up facts, status)."""

EXIT_SITE_CHANGED = 3
"""``gridloop run`` exit status when the server turned out to be another site after a reconnect."""
EXIT_ANOTHER_CLIENT = 4
"""``gridloop run`` exit status when another client controls the site."""
EXIT_SAFE_STOP_FAILED = 5
"""``gridloop run`` exit status when the safe stop did not reach every inverter it
commanded (the summary names them)."""

Observer = Callable[[CycleRecord], object]
OutcomeObserver = Callable[[DistributionOutcome], object]


@dataclass(frozen=True, slots=True)
class RunOptions:
    """What ``gridloop run`` was asked for on the command line (None = config/default)."""

    api_url: str | None = None
    """``grpc://HOST:PORT[?ssl=true]``; None = the config's, else the embedded simulator."""
    api_key: str | None = None
    """API key (flag or GRIDLOOP_API_KEY); None = the config's."""
    root_cert_path: str | None = None
    """PEM root certificate for TLS; None = the config's."""
    config_path: str | None = None
    """gridloop TOML config; None = defaults."""
    duration_s: float | None = None
    """Wall-clock run time; None = the config's ``run.duration_s``."""
    time_scale: float | None = None
    """Site seconds per wall second: of the embedded simulator (None = the config's),
    or of a time-scaled server given by ``api_url`` (None = 1)."""
    site_path: str | None = None
    """Embedded simulator site TOML; None = the config's (default site)."""
    summary_json: str | None = None
    """Write the summary here as JSON."""
    record_csv: str | None = None
    """Write one CSV row per record interval here."""
    metrics_port: int | None = None
    """Serve Prometheus metrics on this port."""
    dashboard: bool = False
    """Draw the live dashboard (stdout is a terminal and not --no-dashboard)."""
    log_format: Literal["text", "json"] = "text"
    """Log line format."""
    log_level: str = "WARNING"
    """Log level."""


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
    """How many of them did not acknowledge it: non-zero makes ``gridloop run`` exit 3."""
    safe_stop_failed_ids: dict[str, str] = field(default_factory=dict)
    """Each of them (id → reason), all of them (the printed line names the first few)."""

    def safe_stop(self) -> SafeStopResult:
        """The safe stop's 0 W round as the runtime reported it (for its one-line description)."""
        failed = {int(k): v for k, v in self.safe_stop_failed_ids.items()}
        return SafeStopResult(commanded=self.safe_stop_commanded, failed=failed)
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

    @property
    def exit_status(self) -> int:
        """``gridloop run``'s exit status for this run (see :func:`run_main`).

        5 the safe stop failed, 3 site changed, 4 another client, else 0.
        """
        if self.safe_stop_failed:
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
            f"time ({'embedded simulator' if self.embedded else self.api_url})",
            f"  grid power       {self.grid_formula or 'n/a'}",
            f"  peak import      {kw(self.peak_import_w)} with batteries, "
            f"{kw(self.peak_import_w_uncontrolled)} without (1-min means; limit "
            f"{kw(self.import_limit_w)}); single samples {kw(self.peak_import_w_instant)} / "
            f"{kw(self.peak_import_w_instant_uncontrolled)}",
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
        if self.safe_stop_failed:
            lines.append(f"  SAFE STOP FAILED {self.safe_stop().describe()}")
        elif self.safe_stop_commanded:
            lines.append(f"  safe stop        {self.safe_stop().describe()}")
        return "\n".join(lines) + "\n"


class _Accumulator:
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
        if self._last_ns and fr_required_w != 0.0 and math.isfinite(fr_required_w):
            # Site time between the two samples: energy is counted in the site's time.
            dt_h = (now_ns - self._last_ns) / 1e9 * self.time_scale / 3600.0
            self.fr_required_wh += abs(fr_required_w) * dt_h
            toward = math.copysign(1.0, fr_required_w) * fr_delivered_w
            if math.isfinite(toward):
                self.fr_delivered_wh += max(0.0, min(toward, abs(fr_required_w))) * dt_h
        self._last_ns = now_ns
        self.samples += 1


def next_tick_s(scheduled_s: float, now_s: float, interval_s: float) -> float:
    """When the next tick of a periodic cycle is due.

    Ticks stay on the grid ``scheduled_s + k·interval_s``; when the cycle
    overran so far that whole ticks were missed, they are skipped, not queued:
    the next tick is the first grid point after ``now_s``.

    Args:
        scheduled_s: When the tick that just ran was due.
        now_s: Now (same clock).
        interval_s: The cycle's period, > 0.

    Returns:
        The time the next tick is due: on the grid and after ``now_s``.
    """
    missed = max(0.0, math.floor((now_s - scheduled_s) / interval_s))
    return scheduled_s + (missed + 1.0) * interval_s


async def periodic(interval_s: float) -> AsyncIterator[float]:
    """Yield once per ``interval_s`` (see :func:`next_tick_s`), with how late the tick is.

    Plain ``asyncio.sleep``: cancelling the consumer always cancels the loop
    (frequenz-channels' ``Timer`` can swallow a cancellation that arrives while
    it tidies up its own helper tasks, which left a run unable to stop).
    """
    loop = asyncio.get_running_loop()
    due = loop.time() + interval_s
    while True:
        await asyncio.sleep(max(0.0, due - loop.time()))
        now = loop.time()
        yield now - due
        due = next_tick_s(due, now, interval_s)


def _percentiles(samples: Sequence[float]) -> dict[str, float]:
    if not samples:
        return {"p50": math.nan, "p99": math.nan, "max": math.nan}
    arr = np.asarray(samples, dtype=np.float64)
    p50, p99 = np.percentile(arr, [50.0, 99.0])
    return {"p50": float(p50), "p99": float(p99), "max": float(arr.max())}


class Controller:
    """Runs the strategies against a connected :class:`actors.Site`.

    One instance per run. :meth:`run` returns when ``stop`` is set or the
    duration has passed; the site's own ``__aexit__`` then brings the fleet to 0 W.
    """

    def __init__(
        self,
        site: Site,
        config: GridloopConfig,
        *,
        time_scale: float = 1.0,
        observers: Sequence[Observer] = (),
        outcome_observers: Sequence[OutcomeObserver] = (),
        record_interval_s: float = 0.2,
    ) -> None:
        """Prepare the strategies and the bookkeeping for one run.

        Args:
            site: A connected site, already entered (telemetry running).
            config: The run's configuration.
            time_scale: Site seconds per wall second (embedded simulator), for energies.
            observers: Called with one :class:`CycleRecord` per record interval.
            outcome_observers: Called with every distribution outcome (one per request).
            record_interval_s: Wall seconds between two records.
        """
        self.site = site
        self.config = config
        self.observers = list(observers)
        self.outcome_observers = list(outcome_observers)
        self.record_interval_s = record_interval_s
        self.cycle: ControlCycle = ControlCycle.from_config(config)
        """The control cycle (strategies → wishes → merge → target), shared with the replay."""
        self._fr: FrequencyResponse | None = self.cycle.frequency_response
        self.overruns = 0
        self.last_cycle_ms = math.nan
        self.acc = _Accumulator(time_scale)
        self.last_outcome: DistributionOutcome | None = None
        self._t0_ns = time.monotonic_ns()
        self._refresh: asyncio.TimerHandle | None = None
        graph = site.graph
        self._group_names = [
            f"inv {'+'.join(map(str, g.inverter_ids))} / bat {'+'.join(map(str, g.battery_ids))}"
            for g in graph.groups
        ]

    @property
    def group_names(self) -> list[str]:
        """Labels of the battery groups, in graph order."""
        return list(self._group_names)

    @property
    def strategies(self) -> list[Strategy]:
        """The run's strategies."""
        return self.cycle.strategies

    @property
    def granted(self) -> dict[str, float]:
        """What the last merge granted each strategy (W)."""
        return self.cycle.granted

    @property
    def target_w(self) -> float:
        """The last fleet target (W, + = charging)."""
        return self.cycle.target_w

    # ------------------------------------------------------------------ inputs
    def inputs(self, m: SiteMeasurements) -> StrategyInputs:
        """The strategies' view of the site from one measurement snapshot."""
        return self.cycle.inputs(m)

    def fr_required_w(self, m: SiteMeasurements) -> float:
        """Droop power frequency response asks for at the measured frequency (0 if off)."""
        if self._fr is None or not math.isfinite(m.grid_frequency_hz):
            return 0.0
        return self._fr.required_power_w(m.grid_frequency_hz)

    def fr_delivered_w(self, m: SiteMeasurements) -> float:
        """The part of the measured fleet power that is frequency response's.

        Each strategy is credited with its grant, and the fleet's tracking error
        (measured − target, e.g. while inverters ramp) is shared among the
        strategies in proportion to the size of their grants. So frequency
        response delivers exactly 0 W when it was granted nothing, and all of
        the measured power when it is the only strategy acting.
        """
        if self._fr is None or not math.isfinite(m.battery_power_w):
            return 0.0
        mine = self.granted.get(self._fr.name, 0.0)
        total_abs = sum(abs(g) for g in self.granted.values())
        if total_abs == 0.0:
            return 0.0
        return mine + (m.battery_power_w - self.target_w) * abs(mine) / total_abs

    # ------------------------------------------------------------------ control
    def _step(self, strategies: Sequence[Strategy], m: SiteMeasurements, now_s: float) -> None:
        t0 = time.perf_counter()
        self.site.request_power(self.cycle.step(m, now_s, strategies))
        self.last_cycle_ms = (time.perf_counter() - t0) * 1e3

    def _on_grid_sample(self, every_sample: Sequence[Strategy]) -> None:
        """One sample of a grid term: step the every-sample strategies, account.

        Runs synchronously on the telemetry task right after the sample is decoded
        (`Site.add_fresh_listener`): the request leaves before the decoding of
        the other streams' samples that arrived in the same burst.
        """
        now_ns = time.monotonic_ns()
        # The fleet part of the snapshot may be up to _FLEET_MAX_AGE_S old (the
        # grid part is this sample): its numpy work is redone off this path, a
        # moment after the step (the distributor allocates on live data anyway).
        m = self.site.measurements(fleet_max_age_s=_FLEET_MAX_AGE_S)
        if every_sample:
            self._step(every_sample, m, now_ns / 1e9)
        self.acc.add(m, self.fr_required_w(m), self.fr_delivered_w(m), now_ns)
        if self._refresh is None:
            self._refresh = asyncio.get_running_loop().call_later(
                _FLEET_REFRESH_DELAY_S, self._refresh_fleet
            )

    def _refresh_fleet(self) -> None:
        self._refresh = None
        self.site.measurements()

    async def _on_timer(self, strategy: Strategy) -> None:
        async for late_s in periodic(strategy.interval_s):
            if late_s >= strategy.interval_s:
                self.overruns += 1
            self._step([strategy], self.site.measurements(), time.monotonic())

    async def _on_results(self) -> None:
        receiver = self.site.new_result_receiver()
        async for outcome in receiver:
            self.last_outcome = outcome
            for observer in self.outcome_observers:
                try:
                    observer(outcome)
                except Exception:  # an observer must not stop the control loop
                    _LOG.exception("outcome observer %r failed", observer)
            if outcome.failed:
                _LOG.info(
                    "dispatch %s: %d inverter(s) failed (%s), %.0f W missing",
                    outcome.kind.name,
                    len(outcome.failed),
                    ", ".join(f"{cid}: {why}" for cid, why in sorted(outcome.failed.items())),
                    outcome.missing_w,
                )

    async def _observe(self) -> None:
        if not self.observers:
            return
        async for _ in periodic(self.record_interval_s):
            self.observe_now()

    def observe_now(self) -> None:
        """Give the observers one record of the current state (also at a stop that matters)."""
        if not self.observers:
            return
        record = self.record()
        for observer in self.observers:
            try:
                observer(record)
            except Exception:  # an observer must not stop the control loop
                _LOG.exception("observer %r failed", observer)

    def record(self) -> CycleRecord:
        """The current state of the run as one :class:`CycleRecord`."""
        m = self.site.measurements()
        stats = self.site.stats()
        setpoints = self.last_outcome.setpoints_w if self.last_outcome is not None else {}
        excluded = stats.excluded
        groups = []
        for i, g in enumerate(self.site.graph.groups):
            ids = g.inverter_ids + g.battery_ids
            reasons = [f"{c}: {excluded[c]}" for c in ids if c in excluded]
            groups.append(
                GroupRecord(
                    name=self._group_names[i],
                    soc_pct=float(m.group_soc_pct[i]),
                    setpoint_w=float(sum(setpoints.get(c, 0.0) for c in g.inverter_ids)),
                    power_w=float(m.group_power_w[i]),
                    healthy=bool(m.group_healthy[i]),
                    reason="; ".join(reasons),
                )
            )
        lat = stats.dispatch_latency_ms
        ps = self.config.peak_shaving
        return CycleRecord(
            time_s=(time.monotonic_ns() - self._t0_ns) / 1e9,
            unix_time_s=time.time(),
            grid_power_w=m.grid_power_w,
            uncontrolled_power_w=m.grid_power_w - m.battery_power_w,
            battery_power_w=m.battery_power_w,
            battery_target_w=self.target_w,
            frequency_hz=m.grid_frequency_hz,
            fr_required_w=self.fr_required_w(m),
            fr_delivered_w=self.fr_delivered_w(m),
            import_limit_w=ps.import_limit_w if ps.enabled else math.nan,
            export_limit_w=ps.export_limit_w if ps.enabled else math.nan,
            groups=tuple(groups),
            dispatch_latency_ms=lat[-1] if lat else math.nan,
            latency_p50_ms=stats.latency_p50_ms,
            latency_p99_ms=stats.latency_p99_ms,
            setpoints_sent=stats.setpoints_sent,
            setpoints_failed=sum(stats.setpoints_failed.values()),
            cycle_duration_ms=self.last_cycle_ms,
            cycle_overruns=self.overruns,
            excluded=dict(excluded),
            setpoints_overridden=sum(stats.overridden_by_others.values()),
            another_client=stats.another_client or "",
            site_changed=stats.site_changed or "",
        )

    async def run(self, duration_s: float | None, stop: asyncio.Event) -> float:
        """Control until ``stop`` is set or ``duration_s`` has passed; return the wall time run."""
        t0 = time.monotonic()
        every_sample = [s for s in self.strategies if s.interval_s <= 0]
        timed = [s for s in self.strategies if s.interval_s > 0]

        # A step per sample of any grid term: the grid power (their sum) changed.
        grid_ids = self.site.graph.grid.power_ids
        remove_listener = (
            self.site.add_fresh_listener(grid_ids, lambda _: self._on_grid_sample(every_sample))
            if grid_ids
            else None
        )
        # The children are cancelled from here when the run is over; nothing is
        # raised into the group, so the parent task never sees a cancellation.
        try:
            await self._run_tasks(timed, duration_s, stop)
        finally:
            if remove_listener is not None:
                remove_listener()
            if self._refresh is not None:
                self._refresh.cancel()
                self._refresh = None
        return time.monotonic() - t0

    async def _run_tasks(
        self, timed: Sequence[Strategy], duration_s: float | None, stop: asyncio.Event
    ) -> None:
        async with asyncio.TaskGroup() as tg:
            tasks = [
                tg.create_task(self._on_results(), name="results"),
                tg.create_task(self._observe(), name="observers"),
            ]
            tasks += [
                tg.create_task(self._on_timer(strategy), name=f"strategy-{strategy.name}")
                for strategy in timed
            ]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), duration_s)
            for task in tasks:
                task.cancel()


# ---------------------------------------------------------------------- the run


_FLEET_MAX_AGE_S = 0.25
"""How old the fleet part of the measurements a grid-sample step uses may be."""
_FLEET_REFRESH_DELAY_S = 0.02
"""The fleet snapshot is recomputed this long after a grid-sample step."""


def _read_root_cert(path: str | Path | None, field_name: str) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UserError(f"{field_name} = {str(path)!r}: cannot read: {exc.strerror}") from None


def _api_error_line(exc: ApiError) -> str:
    """One line for an API failure, with a hint when the server refused our key or cert."""
    line = str(exc)
    if exc.status in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
        line += " (check --api-key, GRIDLOOP_API_KEY or [api] api_key)"
    elif "CERTIFICATE_VERIFY_FAILED" in line or "certificate verify failed" in line.lower():
        line += " (the server's TLS certificate is not signed by the trusted root; see --root-cert)"
    return " ".join(line.split())


def grid_refusal(grid: GridFormula, config: GridloopConfig) -> str | None:
    """Why a site measured by ``grid`` cannot run the enabled strategies (None: it can).

    Peak shaving needs the grid power, frequency response the grid frequency;
    the operator may disable a strategy to run without what it needs.

    Args:
        grid: The site's grid formula.
        config: The run's configuration.

    Returns:
        One line (without the server's URL), or None.
    """
    if config.peak_shaving.enabled and grid.problem is not None:
        return (
            f"the grid power cannot be measured: {grid.problem} "
            "(set [peak_shaving] enabled = false to run without it)"
        )
    if config.frequency_response.enabled and not grid.frequency_ids:
        return (
            "the grid frequency cannot be measured: no meter or inverter on the grid "
            "connection point (set [frequency_response] enabled = false to run without it)"
        )
    return None


async def _stop_when_refused(site: Site, stop: asyncio.Event) -> None:
    # The server refusing us, or the site stopping commanding for good (another
    # site after a reconnect, another client in control), ends the run.
    async with asyncio.TaskGroup() as tg:
        waits = [tg.create_task(site.wait_fatal_error()), tg.create_task(site.wait_halted())]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        stop.set()
        for task in waits:
            task.cancel()


def _setpoint_lifetimes_s(config: GridloopConfig, time_scale: float) -> tuple[float, float]:
    """A setpoint's ``request_lifetime`` (site s, whole, 10..900) and how long it lasts (wall s)."""
    lifetime_site_s = float(
        min(900, max(10, round(config.control.setpoint_lifetime_s * time_scale)))
    )
    return lifetime_site_s, lifetime_site_s / time_scale


def _time_scale_problem(config: GridloopConfig, time_scale: float) -> str | None:
    """Why setpoints cannot be kept alive on a site running ``time_scale``× fast, or None.

    The runtime renews an unchanged setpoint ``setpoint_lifetime_s −
    renew_margin_s`` wall seconds after sending it, which must come before the
    lifetime it sent runs out by its own count (``renew_margin_s > 0``). gridloop
    renews at half the wall lifetime ``L / time_scale`` (``L`` the lifetime in site
    seconds), so ``L / (2 · time_scale) < L``: the time scale must exceed 0.5,
    whatever the configured lifetime. (Slower sites would also stretch the API's
    shortest lifetime, 10 s of site time, to more than 20 s of wall time that a
    dead controller's setpoints keep acting.)
    """
    if time_scale > 0.5:
        return None
    lifetime_site_s, lifetime_wall_s = _setpoint_lifetimes_s(config, time_scale)
    return (
        f"must be > 0.5 (site seconds per wall second): a setpoint of {lifetime_site_s:g} s"
        f" of site time lasts {lifetime_wall_s:.3g} s of wall time here, and gridloop"
        " renews setpoints after half their wall lifetime, which must come within"
        f" {lifetime_site_s:g} s"
    )


def runtime_options(config: GridloopConfig, time_scale: float = 1.0) -> RuntimeOptions:
    """The actor runtime's options for this config, on a site running ``time_scale``× fast.

    A setpoint's ``request_lifetime`` counts in the site's time. On a
    time-scaled simulator the lifetime sent is ``setpoint_lifetime_s ×
    time_scale`` (at most the API's 900 s), so that it still lasts
    ``setpoint_lifetime_s`` of wall time (or as close as the API allows): a
    killed controller leaves the site at 0 W after the configured wall time,
    and a live one renews unchanged setpoints at half of that.

    Raises:
        OptionsError: ``time_scale`` is 0.5 or less (see :func:`_time_scale_problem`).
    """
    problem = _time_scale_problem(config, time_scale)
    if problem is not None:
        raise OptionsError("time_scale", time_scale, problem)
    c = config.control
    lifetime_site_s, lifetime_wall_s = _setpoint_lifetimes_s(config, time_scale)
    return RuntimeOptions(
        call_timeout_s=config.api.call_timeout_s,
        setpoint_lifetime_s=lifetime_site_s,
        # The runtime renews when (lifetime − margin) of wall time has passed.
        renew_margin_s=lifetime_site_s - lifetime_wall_s / 2.0,
        reallocate_interval_s=min(1.0, lifetime_wall_s / 4.0),
        deadband_w=c.deadband_w,
        stale_after_s=c.stale_after_s,
        soc_exponent=c.soc_exponent,
    )


def _site_time_scale(config: GridloopConfig, options: RunOptions) -> float:
    """Site seconds per wall second: ``--time-scale``, else the embedded simulator's.

    With ``--api`` the server's clock runs at wall speed unless told otherwise (a
    time-scaled ``gridloop sim``): lifetimes and energies count in site time.
    """
    if options.time_scale:
        return options.time_scale
    return config.simulator.time_scale if (options.api_url or config.api.url) is None else 1.0


def _check_flags(config: GridloopConfig, options: RunOptions, time_scale: float) -> None:
    """Refuse, before anything starts, flags the run cannot work with (one line each).

    Raises:
        UserError: ``--api`` is not a usable URL, or the time scale is too slow
            for setpoint renewal (naming ``--time-scale`` or the config field).
    """
    if options.api_url is not None:
        try:
            ApiUrl.parse(options.api_url)
        except OptionsError as exc:
            raise UserError(f"--api: {exc}") from None
    problem = _time_scale_problem(config, time_scale)
    if problem is not None:
        name = "--time-scale" if options.time_scale else f"{config.source}: simulator.time_scale"
        raise UserError(f"{name} = {time_scale:g}: {problem}")


async def run_service(
    config: GridloopConfig,
    options: RunOptions,
    observers: Sequence[Observer] = (),
    *,
    outcome_observers: Sequence[OutcomeObserver] = (),
    stop: asyncio.Event | None = None,
) -> RunSummary:
    """Run the service once: (embedded simulator →) site → controller → summary.

    Args:
        config: The loaded configuration.
        options: Command-line choices (they override the config).
        observers: Called with one :class:`CycleRecord` per record interval.
        outcome_observers: Called with every distribution outcome.
        stop: Set it to end the run early (SIGINT, SIGTERM and SIGHUP do the same,
            see :mod:`controller.process`); if it is already set, the run ends as
            soon as it has started, with the same orderly stop.

    Returns:
        The run's summary.

    Raises:
        UserError: The server is unreachable or refused us, the graph is unusable
            (or cannot measure what an enabled strategy needs, see `grid_refusal`),
            the embedded simulator did not start, a file could not be read.
    """
    time_scale = _site_time_scale(config, options)
    _check_flags(config, options, time_scale)
    stop = stop if stop is not None else asyncio.Event()
    with stop_on_signals(asyncio.get_running_loop(), stop):
        return await _run_service(
            config, options, observers, outcome_observers, stop, time_scale
        )


async def _run_service(
    config: GridloopConfig,
    options: RunOptions,
    observers: Sequence[Observer],
    outcome_observers: Sequence[OutcomeObserver],
    stop: asyncio.Event,
    time_scale: float,
) -> RunSummary:
    api_url = options.api_url or config.api.url
    api_key = options.api_key or config.api.api_key
    if options.root_cert_path is not None:
        root_cert = _read_root_cert(options.root_cert_path, "--root-cert")
    else:
        root_cert = _read_root_cert(config.api.root_cert, f"{config.source}: api.root_cert")
    duration = options.duration_s if options.duration_s is not None else config.run.duration_s
    embedded = api_url is None
    sim: EmbeddedSimulator | None = None
    try:
        async with contextlib.AsyncExitStack() as stack:
            if embedded:
                site_path = options.site_path or config.simulator.site
                sim = EmbeddedSimulator(
                    site_path=site_path,
                    time_scale=time_scale,
                    telemetry_hz=config.simulator.telemetry_hz,
                )
                await stack.enter_async_context(sim)
                api_url = sim.url
            assert api_url is not None
            try:
                site = await Site.connect(
                    api_url,
                    api_key=api_key,
                    root_cert=root_cert,
                    options=runtime_options(config, time_scale),
                )
            except ApiError as exc:
                raise UserError(_api_error_line(exc)) from None
            except (GraphError, OptionsError) as exc:
                raise UserError(f"{api_url}: {exc}") from None
            if not site.graph.groups:
                raise UserError(f"{api_url}: the component graph has no battery behind an inverter")
            refusal = grid_refusal(site.graph.grid, config)
            if refusal is not None:
                await site.aclose()
                raise UserError(f"{api_url}: {refusal}")
            # Shown at the default level, like the status lines: what "grid" means here.
            _STATUS_LOG.warning("%s", site.graph.grid.describe())
            controller: Controller | None = None
            async with site:
                controller = Controller(
                    site,
                    config,
                    time_scale=time_scale,
                    observers=observers,
                    outcome_observers=outcome_observers,
                )
                # The server refusing us (wrong key, no permission) ends the run.
                refused = asyncio.create_task(_stop_when_refused(site, stop))
                try:
                    wall_s = await controller.run(duration, stop)
                finally:
                    refused.cancel()
                    # Wait for it without swallowing a cancellation of this task.
                    await asyncio.wait([refused])
                stats = site.stats()
                if stats.another_client or stats.site_changed:
                    controller.observe_now()  # the dashboard and metrics show why it stopped
            # After the safe stop: its 0 W calls and their failures are counted too
            # (the exclusions stay those of the end of the run, before the stop).
            stats = dataclasses.replace(site.stats(), excluded=stats.excluded)
            safe_stop = site.safe_stop or SafeStopResult(commanded=0)
            if site.fatal_error is not None:
                raise UserError(_api_error_line(site.fatal_error))
        # Both the site (fleet at 0 W) and the embedded simulator have stopped here.
    except EmbeddedSimulatorError as exc:
        raise UserError(str(exc)) from None
    assert controller is not None
    acc = controller.acc
    sim_stats = sim.stats if sim is not None else {}
    oob = sim_stats.get("setpoints_out_of_bounds") if sim is not None else None
    ps = config.peak_shaving
    return RunSummary(
        api_url=api_url,
        embedded=embedded,
        duration_s=wall_s,
        simulated_s=wall_s * time_scale,
        time_scale=time_scale,
        import_limit_w=ps.import_limit_w if ps.enabled else None,
        peak_import_w_uncontrolled=acc.peak_mean_uncontrolled_w,
        peak_import_w=acc.peak_mean_import_w,
        peak_import_w_instant_uncontrolled=acc.peak_uncontrolled_w,
        peak_import_w_instant=acc.peak_import_w,
        fr_energy_required_wh=acc.fr_required_wh,
        fr_energy_delivered_wh=acc.fr_delivered_wh,
        setpoints_sent=stats.setpoints_sent,
        setpoints_failed=sum(stats.setpoints_failed.values()),
        setpoints_failed_by_reason=dict(stats.setpoints_failed),
        setpoints_out_of_bounds=int(oob) if oob is not None else None,
        dispatch_latency_ms=_percentiles(stats.dispatch_latency_ms),
        soc_min_pct=acc.soc_min_pct,
        soc_max_pct=acc.soc_max_pct,
        grid_samples=acc.samples,
        cycle_overruns=controller.overruns,
        reconnects=stats.reconnects,
        excluded_at_end={str(k): v for k, v in stats.excluded.items()},
        simulator_stats=sim_stats,
        setpoints_overridden={str(k): v for k, v in stats.overridden_by_others.items()},
        another_client=stats.another_client,
        site_changed=stats.site_changed,
        grid_formula=controller.site.graph.grid.describe(),



        safe_stop_commanded=safe_stop.commanded,
        safe_stop_failed=len(safe_stop.failed),
        safe_stop_failed_ids={str(k): v for k, v in sorted(safe_stop.failed.items())},
    )


def run_main(options: RunOptions, stop: asyncio.Event | None = None) -> int:
    """``gridloop run``: load the config, run, print the summary; return the exit status.

    Args:
        options: What the command line asked for.
        stop: Set by the stop signals since the process started
            (:func:`controller.process.catch_stop_signals`); None catches them from here.

    Returns:
        0: the run ended normally and every output was written. 2: bad input
        (flags, config, site file, output paths, an unreachable or refusing
        server), found at start-up or when the server refuses us. 1: a runtime
        error, or data lost (the recording stopped at a failed write, or
        ``--summary-json`` could not be written at the end); the summary is
        printed all the same. 3: the server came back as another site and the run
        stopped. 4: another client commands the site and the run stopped.
        5: the safe stop's 0 W was not confirmed by every inverter gridloop had
        commanded (the summary names them). 5, 3 and 4 take precedence over 1.
    """
    if stop is None:
        with catch_stop_signals() as caught:
            return run_main(options, caught)
    from actors import run as run_on_uvloop
    from controller.logs import setup_logging

    setup_logging(options.log_level, options.log_format)
    try:
        config = load_config(options.config_path)
    except ConfigError as exc:
        sys.stderr.write(f"gridloop run: {exc}\n")
        return 2
    try:
        check_outputs(
            {"--record": options.record_csv, "--summary-json": options.summary_json},
            _input_files(config, options),
        )
    except OutputPathError as exc:
        sys.stderr.write(f"gridloop run: {exc}\n")
        return 2
    try:
        with contextlib.ExitStack() as stack:
            observers = _observers(options, stack)
            # Collect the start-up garbage once and take everything alive now
            # (modules, config, observers) out of the collector's view: full
            # collections then scan only what the run allocates, and a ~15 ms
            # pause no longer lands in the middle of a control step. Here, not in
            # `run_service`: that one leaves an embedding program's gc alone.
            gc.collect()
            gc.freeze()
            summary = run_on_uvloop(
                run_service(
                    config,
                    options,
                    observers.callbacks,
                    outcome_observers=observers.outcome_callbacks,
                    stop=stop,
                )
            )
            observers.close()
    except UserError as exc:
        sys.stderr.write(f"gridloop run: {exc}\n")
        return 2
    except GridloopError as exc:
        sys.stderr.write(f"gridloop run: {exc}\n")
        return 1
    summary.recording_error = observers.recording_error
    # 5 failed safe stop, 3 site changed, 4 another client: each was logged as one
    # line and the summary names it.
    status = summary.exit_status
    sys.stdout.write(summary.render())
    sys.stdout.flush()
    if summary.recording_error is not None:
        sys.stderr.write(
            f"gridloop run: --record = {options.record_csv!r}: recording incomplete:"
            f" {summary.recording_error}\n"
        )
        status = status or 1
    if options.summary_json:
        try:
            Path(options.summary_json).write_text(json.dumps(summary.to_json(), indent=2) + "\n")
        except OSError as exc:
            sys.stderr.write(
                f"gridloop run: --summary-json = {options.summary_json!r}: cannot write:"
                f" {exc.strerror or exc}\n"
            )
            status = status or 1
    return status


def _input_files(config: GridloopConfig, options: RunOptions) -> dict[str, Path | str | None]:
    """The files this run reads, by the flag or config field that names them.

    The embedded simulator's site file and the load/PV CSVs it names are
    included (they are read by the child process).
    """
    inputs: dict[str, Path | str | None] = {"--config": options.config_path}
    if options.root_cert_path is not None:
        inputs["--root-cert"] = options.root_cert_path
    else:
        inputs[f"{config.source}: api.root_cert"] = config.api.root_cert
    if (options.api_url or config.api.url) is None:
        if options.site_path is not None:
            site_name, site_path = "--site", options.site_path
        elif config.simulator.site is not None:
            site_name, site_path = f"{config.source}: simulator.site", str(config.simulator.site)
        else:
            site_name, site_path = "the default site", None
        site_file, *csvs = site_input_files(site_path)
        inputs[site_name] = site_file
        for csv in csvs:
            inputs[f"a CSV named by {site_file}"] = csv
    return inputs


class _Observers:
    """The run's observers (dashboard or log line, CSV recording, metrics), built from flags.

    The CSV file and the metrics port are opened before the run starts, so a
    bad path or a busy port fails at once with one line; the recorder's
    columns come from the first record (the site's groups are known then).
    A write that fails during the run (a full disk) stops the recording with
    one warning and sets :attr:`recording_error`; control goes on.
    """

    def __init__(self, options: RunOptions, stack: contextlib.ExitStack) -> None:
        from controller.dashboard import LiveDashboard, LogLine
        from controller.metrics import MetricsError, MetricsExporter

        self.callbacks: list[Observer] = []
        self.outcome_callbacks: list[OutcomeObserver] = []
        self.recording_error: str | None = None
        """Why the recording stopped early (it is not retried); None while it is fine."""
        self._record_path = options.record_csv
        self._recorder: CsvRecorder | None = None
        stack.callback(self.close)  # also on the way out of a failed run
        if self._record_path is not None:
            try:
                with open(self._record_path, "w", encoding="utf-8"):
                    pass
            except OSError as exc:
                raise UserError(
                    f"--record = {self._record_path!r}: cannot create: {exc.strerror}"
                ) from None
            self.callbacks.append(self._record)
        if options.metrics_port is not None:
            exporter = MetricsExporter(options.metrics_port)
            try:
                stack.enter_context(exporter)
            except MetricsError as exc:
                raise UserError(f"--metrics-port = {options.metrics_port}: {exc}") from None
            sys.stderr.write(f"gridloop run: metrics on {exporter.url}\n")

            def observe(record: CycleRecord) -> None:
                exporter.observe_cycle(record, record.cycle_duration_ms / 1e3)

            self.callbacks.append(observe)

            def observe_dispatch(outcome: DistributionOutcome) -> None:
                if outcome.sent > 0 and outcome.done_time_ns >= outcome.request_time_ns:
                    exporter.observe_dispatch(outcome.latency_ms / 1e3)

            self.outcome_callbacks.append(observe_dispatch)
        if options.dashboard:
            dashboard = stack.enter_context(LiveDashboard())
            self.callbacks.append(dashboard.update)
        else:
            line = LogLine(interval_s=5.0, level=logging.WARNING)
            self.callbacks.append(line.update)

    def _record(self, record: CycleRecord) -> None:
        """Write one CSV row; on the first failure stop recording (control goes on)."""
        if self.recording_error is not None:
            return
        try:
            if self._recorder is None:
                assert self._record_path is not None
                self._recorder = CsvRecorder(self._record_path, [g.name for g in record.groups])
            self._recorder.write(record)
        except RecordingError as exc:
            self._recording_failed(exc)

    def _recording_failed(self, exc: RecordingError) -> None:
        """One warning, then no more writes: a full disk must not flood the log."""
        self.recording_error = str(exc)
        _LOG.warning("recording stopped, control goes on: %s", exc)
        recorder, self._recorder = self._recorder, None
        if recorder is not None:
            with contextlib.suppress(RecordingError):  # the file is closed even so
                recorder.close()

    def close(self) -> None:
        """Flush and close the recording (idempotent); a failure is kept, not raised."""
        recorder, self._recorder = self._recorder, None
        if recorder is not None:
            try:
                recorder.close()
            except RecordingError as exc:
                self._recording_failed(exc)


def _observers(options: RunOptions, stack: contextlib.ExitStack) -> _Observers:
    return _Observers(options, stack)
