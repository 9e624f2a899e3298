"""The controller: strategies run against a live :class:`actors.Site`.

The control path is event-driven. Every fresh sample of a grid term (the
meters or components whose sum is the grid power, :class:`actors.GridFormula`)
wakes the controller: it snapshots the site (:meth:`actors.Site.measurements`),
steps the strategies whose cadence is "every sample" (frequency response by
default), and strategies with a fixed interval (peak shaving, 200 ms by
default) run on their own timers (:func:`periodic`). Each step is
:meth:`controller.runtime.cycle.ControlCycle.step` (inputs, wishes, merge by
priority: the code ``gridloop replay`` runs too), and the combined target goes
to the distributor (:meth:`actors.Site.request_power`, latest wins), whose
:class:`actors.RoundPlanner` turns it into setpoints. Observers (the
dashboard, the CSV recorder, the metrics exporter) get one
:class:`~controller.runtime.records.CycleRecord` per record interval, built off
the control path.

Units: W, Wh, %, Hz, ms; passive sign convention (+ = import / charging).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

from actors import (
    DistributionOutcome,
    Site,
    SiteMeasurements,
)
from controller.runtime.billing import (
    BillingMeter,
    SiteKey,
    load_state,
    state_document,
    write_state,
)
from controller.runtime.config import GridloopConfig
from controller.runtime.cycle import ControlCycle
from controller.runtime.records import CycleRecord, GroupRecord
from controller.runtime.schedule import ScheduleBook
from controller.runtime.strategies import (
    FrequencyResponse,
    Strategy,
    effective_limit_w,
    target_limit_w,
)
from controller.runtime.summary import Accumulator, ReactiveAccumulator

_LOG = logging.getLogger("gridloop.controller")
_STATUS_LOG = logging.getLogger("gridloop.controller.status")

Observer = Callable[[CycleRecord], object]
"""Called with one :class:`CycleRecord` per record interval."""
OutcomeObserver = Callable[[DistributionOutcome], object]
"""Called with every distribution outcome (one per request)."""


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
        state_file: Path | None = None,
        site_key: SiteKey | None = None,
        site_zone: str | None = None,
        schedule: ScheduleBook | None = None,
    ) -> None:
        """Prepare the strategies and the bookkeeping for one run; restore the billing state.

        Args:
            site: A connected site, already entered (telemetry running).
            config: The run's configuration.
            time_scale: Site seconds per wall second (embedded simulator), for energies.
            observers: Called with one :class:`CycleRecord` per record interval.
            outcome_observers: Called with every distribution outcome (one per request).
            record_interval_s: Wall seconds between two records.
            state_file: Where the billing meter's state is kept (None = not kept).
            site_key: Which site this is (written into the state file and checked
                when it is read); None = unknown.
            site_zone: The site's IANA time zone; None = the one the server's
                location gives (`actors.MicrogridInfo.timezone`), if any.
            schedule: The service windows the strategies follow (None = none: the
                config's settings all the time).
        """
        self.site = site
        self.config = config
        self.observers = list(observers)
        self.outcome_observers = list(outcome_observers)
        self.record_interval_s = record_interval_s
        if site_zone is None and site.microgrid is not None:
            site_zone = site.microgrid.timezone
        self.cycle: ControlCycle = ControlCycle.from_config(config, site_zone, schedule)
        """The control cycle (strategies → wishes → merge → target), shared with the replay."""
        assert self.cycle.meter is not None
        self.meter: BillingMeter = self.cycle.meter
        """The billing meter (intervals, the period's billed peak)."""
        self.time_scale = time_scale
        """Site seconds per wall second."""
        self._t0_unix = time.time()
        self.state_file = state_file
        """The billing state file (None = not kept)."""
        self._site_key = site_key if site_key is not None else SiteKey(None, "")
        self._interval_closed = asyncio.Event()
        self._saving: asyncio.Future[None] | None = None
        self._save_error: str | None = None
        if state_file is not None and load_state(state_file, self.meter, self._site_key):
            _STATUS_LOG.warning("%s", restored_line(state_file, self.meter))
        self._fr: FrequencyResponse | None = self.cycle.frequency_response
        self.overruns = 0
        self.last_cycle_ms = math.nan
        self.acc = Accumulator(time_scale)
        rp = config.reactive_power
        self.reactive_acc: ReactiveAccumulator | None = (
            ReactiveAccumulator(rp.nominal_voltage_v, rp.voltage_band_pct)
            if self.cycle.reactive is not None else None
        )
        """Reactive-power figures (None = reactive control off)."""
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
    def fr_required_w(self, m: SiteMeasurements) -> float:
        """Droop power frequency response asks for at the measured frequency (0 if off)."""
        fr = self.cycle.fr_in_force  # with a schedule: None outside its windows
        if fr is None or not math.isfinite(m.grid_frequency_hz):
            return 0.0
        return fr.required_power_w(m.grid_frequency_hz)

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
    def site_time_s(self, now_ns: int) -> float:
        """The site's unix time at monotonic ``now_ns``: the wall time at the start plus the
        elapsed wall time × the time scale (the one place this is computed)."""
        return self._t0_unix + (now_ns - self._t0_ns) / 1e9 * self.time_scale

    def _step(self, strategies: Sequence[Strategy], m: SiteMeasurements, now_ns: int) -> None:
        t0 = time.perf_counter()
        closed = self.meter.closed
        target = self.cycle.step(
            m, now_ns / 1e9, strategies, site_time_s=self.site_time_s(now_ns)
        )
        if self.cycle.reactive is not None and self.site.q_dispatcher is not None:
            self.site.request_reactive(self.cycle.q_target_var)
        self.site.request_power(target, self.cycle.must_w, raise_now=self.cycle.export_exceeded)
        if self.meter.closed != closed:
            self._interval_closed.set()
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
            self._step(every_sample, m, now_ns)
        self.acc.add(m, self.fr_required_w(m), self.fr_delivered_w(m), now_ns)
        if self.reactive_acc is not None:
            self.reactive_acc.add(m, self.cycle.q_target_var)
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
            self._step([strategy], self.site.measurements(), time.monotonic_ns())

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
        ps = self.cycle.ps_config or self.config.peak_shaving
        planned = self.cycle.planned_limit_w
        fr = self.cycle.fr_in_force
        prep = self.cycle.preparation.status
        site_now = self.site_time_s(time.monotonic_ns())
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
            import_limit_w=target_limit_w(ps, planned) if ps.enabled else math.nan,
            effective_import_limit_w=(
                effective_limit_w(ps, self.meter.billed_peak_w, planned)
                if ps.enabled
                else math.nan
            ),
            interval_projected_mean_w=self.meter.projected_mean_w(site_now, m.grid_power_w),
            billed_peak_w=self.meter.billed_peak_w if self.meter.period_key else math.nan,
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
            api_version=self.site.client.api_version or "",
            fr_reserve_w=fr.config.reserved_power_w if fr is not None else 0.0,
            fr_band_unreachable=prep is not None and not prep.reachable,
            fr_band_warnings=self.cycle.preparation.warned,
            reactive_target_var=(
                self.cycle.q_target_var if self.cycle.reactive is not None else math.nan
            ),
            reactive_var=m.reactive_var,
            grid_voltage_v=m.grid_voltage_v,
            pv_curtailed_w=m.pv_curtailed_w,
            pv_capped=m.pv_capped,
            ev_power_w=m.ev_power_w,
            ev_limited=m.ev_limited,
            caps_w=dict(self.last_outcome.caps_w) if self.last_outcome is not None else {},
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
            if self._saving is not None:  # a checkpoint still being written
                await asyncio.wait([self._saving])
            self.save_state()
        return time.monotonic() - t0

    # ------------------------------------------------------------------ billing state
    def save_state(self) -> None:
        """Write the billing state now (nothing without a state file); a failure is a warning."""
        if self.state_file is not None:
            self._write(state_document(self.meter, self._site_key))

    def _write(self, document: dict[str, Any]) -> None:
        assert self.state_file is not None
        try:
            write_state(self.state_file, document)
        except OSError as exc:
            error = exc.strerror or str(exc)
            if error != self._save_error:  # one warning per kind of failure, not a flood
                _LOG.warning(
                    "billing state %s: cannot write (%s); control goes on", self.state_file, error
                )
            self._save_error = error
        else:
            self._save_error = None

    async def _checkpoints(self) -> None:
        """Save at every interval close and every ``_CHECKPOINT_S``, off the event loop."""
        if self.state_file is None:
            return
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._interval_closed.wait(), _CHECKPOINT_S)
            self._interval_closed.clear()
            document = state_document(self.meter, self._site_key)  # a snapshot, on the loop
            self._saving = asyncio.ensure_future(asyncio.to_thread(self._write, document))
            await asyncio.shield(self._saving)

    async def _run_tasks(
        self, timed: Sequence[Strategy], duration_s: float | None, stop: asyncio.Event
    ) -> None:
        async with asyncio.TaskGroup() as tg:
            tasks = [
                tg.create_task(self._on_results(), name="results"),
                tg.create_task(self._observe(), name="observers"),
                tg.create_task(self._checkpoints(), name="billing-state"),
            ]
            tasks += [
                tg.create_task(self._on_timer(strategy), name=f"strategy-{strategy.name}")
                for strategy in timed
            ]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), duration_s)
            for task in tasks:
                task.cancel()


def restored_line(path: Path, meter: BillingMeter) -> str:
    """The start-up line saying what was restored from a billing state file."""
    start = meter.interval_start_s
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(start)) if math.isfinite(start) else "-"
    return (
        f"billing state restored from {path}: period {meter.period_key}, billed peak"
        f" {meter.billed_peak_w / 1e3:.1f} kW ({meter.billed_peak_w_uncontrolled / 1e3:.1f} kW"
        f" without batteries), interval from {when} UTC with"
        f" {meter.interval_energy_wh / 1e3:.3f} kWh over {meter.interval_covered_s:.0f} s"
    )


_CHECKPOINT_S = 10.0
"""Wall seconds between two saves of the billing state within an interval."""
_FLEET_MAX_AGE_S = 0.25
"""How old the fleet part of the measurements a grid-sample step uses may be."""
_FLEET_REFRESH_DELAY_S = 0.02
"""The fleet snapshot is recomputed this long after a grid-sample step."""
