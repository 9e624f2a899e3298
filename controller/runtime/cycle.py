"""The control cycle: measurements → strategy inputs → wishes → merge → fleet target → setpoints.

One synchronous, clock-free piece of code (time is an argument), run by
``gridloop run`` and ``gridloop bench`` on a live :class:`actors.Site` and by
``gridloop replay`` on simulated physics; only the transport differs.

* :class:`ControlCycle` — the strategy half: from one
  :class:`actors.SiteMeasurements` it builds every strategy's
  :class:`~controller.runtime.strategies.StrategyInputs` (``higher_priority_w`` from the
  last merge), steps the strategies, merges all wishes by priority
  (:func:`actors.power_manager.merge`, within the fleet bounds of the
  measurements) and returns the fleet target. :meth:`ControlCycle.from_config`
  is the one place that turns a :class:`~controller.runtime.config.GridloopConfig` into
  the strategies the service runs. It also owns the
  :class:`~controller.runtime.billing.BillingMeter`: every step given the site's
  time (``site_time_s``) meters the grid and fills the billing interval so far into
  the strategies' inputs (peak shaving holds the interval mean, not single samples).
  Given a :class:`~controller.runtime.schedule.ScheduleBook` (``schedule``), every
  step with the site's time runs the strategies with the settings in force then:
  frequency response with the active window's reserve, curve and hold duration, and
  exactly 0 W (no droop, no SoC nudge) outside windows or at a reserve of 0; peak
  shaving with the window's limit, and preparing the SoC for the next window
  (:mod:`controller.runtime.preparation`). Without a book the config's strategies run
  all the time.
  With ``[reactive_power]`` enabled it also holds the
  :class:`~controller.runtime.strategies.ReactivePower` strategy: every step then
  computes the fleet's reactive target (``q_target_var``) from the merged active
  target and the grid meter's voltage, on the site's clock when given.
* :func:`plan_setpoints` — the whole cycle on an :class:`actors.SiteCore`:
  measure, :meth:`ControlCycle.step`, then :meth:`actors.RoundPlanner.plan`
  (fleet snapshot with health exclusion, allocation, bounds re-check,
  deadband/renewal rule). The service runs the same two halves, with the
  target handed to the :class:`actors.PowerDistributor` actor in between
  (``Site.request_power``: latest wins while a dispatch is in flight).

PV curtailment and EV limits: the strategies see the *controlled* power, the
batteries' plus what our PV caps and EV limits change now
(:attr:`actors.SiteMeasurements.flex_power_w`), so a cap in effect does not hide
the need for it (``uncontrolled = grid − controlled``; without caps both are the
batteries'). Every step also merges the wishes' *bounds* over the fleet bounds
widened by the PV and EV ranges, each wish's preferred power replaced by the
value of its range nearest 0: :attr:`ControlCycle.must_w`, what the strategies
require of batteries, PV and EV together. The batteries take the fleet target;
PV and EV serve only ``must_w`` (a preference such as recharging never curtails
PV or slows a car), in the configured kind order (``[control] kind_order``,
:func:`distribution.allocate_kinds`). While the grid exports more than the export
limit (measured), no deadband holds back a setpoint that raises a component's power
(:attr:`ControlCycle.export_exceeded`, ``RoundPlanner.raise_now``).

Export lead: every step keeps the uncontrolled power (``grid − controlled``) of the
last :data:`~controller.runtime.strategies._peak_shaving.EXPORT_SLOPE_WINDOW_S` on
the caller's clock and hands its slope to the strategies
(``uncontrolled_slope_w_per_s``); peak shaving's export
bound follows a falling uncontrolled power ``export_lead_s`` ahead (its module).

Units: W, Hz, %, s; passive sign convention (+ = charging / importing).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections import deque
from collections.abc import Sequence

from actors import PlannedRound, SetpointBook, SiteCore, SiteMeasurements
from actors.power_manager import Wish, merge
from controller.errors import PlanningError
from controller.runtime.billing import BillingClock, BillingMeter, billing_zone
from controller.runtime.config import GridloopConfig
from controller.runtime.planning import AutoLimit, AutoLimitConfig, FleetModel, LimitPlan
from controller.runtime.preparation import (
    Preparation,
    fr_config_in_force,
    ps_config_in_force,
)
from controller.runtime.schedule import ScheduleBook, Window
from controller.runtime.strategies import (
    FrequencyResponse,
    PeakShaving,
    PeakShavingConfig,
    ReactiveInputs,
    ReactivePower,
    Strategy,
    StrategyInputs,
    peak_shaving_wish,
    uncontrolled_slope_w_per_s,
)
from controller.runtime.strategies._peak_shaving import EXPORT_SLOPE_WINDOW_S

__all__ = ["ControlCycle", "plan_setpoints"]

_LOG = logging.getLogger("gridloop.controller")

_WARM_HISTORY_S = 86_400.0
"""A plan resting on this much of the site's own history is warm (`StrategyInputs.plan_warm`)."""

_EFFICIENCY = 0.95
"""One-way charge / discharge efficiency the auto limit's fleet model assumes (the
runtime does not measure it; the bundled sites' batteries are 0.95-0.96)."""


class ControlCycle:
    """Strategies, their last wishes and grants, and the fleet target (see the module)."""

    def __init__(
        self,
        strategies: Sequence[Strategy],
        meter: BillingMeter | None = None,
        auto_limit: AutoLimitConfig | None = None,
        schedule: ScheduleBook | None = None,
        reactive: ReactivePower | None = None,
    ) -> None:
        """Hold the strategies; no wish yet, target 0 W.

        Args:
            strategies: The strategies, each with a unique name.
            meter: The billing meter (None = none: peak shaving shaves single samples).
            auto_limit: The planner's settings when peak shaving runs with ``limit =
                "auto"`` (None = a fixed limit); it plans at every interval boundary.
            schedule: The service windows (None = the strategies run all the time with
                their config; see the module).
            reactive: The reactive-power strategy (None = reactive control off).
        """
        self.reactive: ReactivePower | None = reactive
        """The reactive-power strategy (None = reactive control off)."""
        self.q_target_var: float = 0.0
        """The last fleet reactive target (VAr, + = absorbing), within the fleet's range."""
        self.meter: BillingMeter | None = meter
        """The billing meter, fed by every step given the site's time."""
        self.auto_limit: AutoLimitConfig | None = auto_limit
        """The auto limit's settings (None = a fixed limit)."""
        self.plan: LimitPlan | None = None
        """The auto limit's latest plan (None = none yet)."""
        self._planned_for = math.nan  # the interval start the plan was made for
        self._history_s = 0.0  # the span of the meter's history at the last plan
        self._charge_max_w = 0.0  # the fleet's power as seen so far (the planner's model)
        self._discharge_max_w = 0.0
        self.strategies: list[Strategy] = list(strategies)
        """Every strategy of the run."""
        self.wishes: dict[str, Wish] = {}
        """The last wish of each strategy (a strategy that failed has none)."""
        self.granted: dict[str, float] = {}
        """What the last merge granted each strategy (W)."""
        self.target_w: float = 0.0
        """The last merged fleet target (W, + = charging)."""
        self.must_w: float = math.nan
        """What the last step's wish bounds required of batteries + PV + EV (W; nan =
        the site has no usable PV inverter or EV charger; see the module)."""
        self._u_samples: deque[tuple[float, float]] = deque()
        # (now_s, uncontrolled power) of the last EXPORT_SLOPE_WINDOW_S: the export lead
        self.export_exceeded: bool = False
        """Whether the grid exported more than peak shaving's export limit at the last
        step (measured): the planner then sends every raise whatever the deadband
        (`actors.RoundPlanner.raise_now`)."""
        self.schedule: ScheduleBook | None = schedule
        """The service windows (None = none: the config's settings all the time)."""
        self.preparation: Preparation = Preparation()
        """Preparation for the next frequency-response window (with a schedule)."""
        self.fr_in_force: FrequencyResponse | None = (
            self.frequency_response if schedule is None else None
        )
        """Frequency response as in force at the last step (None = outputs 0 W now; with a
        schedule, none until a window says so)."""
        self.fr_window: Window | None = None
        """The window that set frequency response at the last step (None = none)."""
        ps = self.peak_shaving
        self.ps_config: PeakShavingConfig | None = ps.config if ps is not None else None
        """Peak shaving's settings in force at the last step (None = no peak shaving)."""

    @classmethod
    def from_config(
        cls,
        config: GridloopConfig,
        site_zone: str | None = None,
        schedule: ScheduleBook | None = None,
    ) -> ControlCycle:
        """The strategies ``config`` enables (frequency response, then peak shaving) and the
        billing meter of ``[billing]``.

        Args:
            config: The run's configuration.
            site_zone: The site's IANA time zone (from the API; None = unknown), used when
                ``[billing] timezone`` is not set.
            schedule: The service windows (None = none).

        Returns:
            The cycle.
        """
        b = config.billing
        meter = BillingMeter(
            BillingClock(b.interval_s, b.period, billing_zone(b.timezone, site_zone))
        )
        strategies: list[Strategy] = []
        if config.frequency_response.enabled:
            strategies.append(FrequencyResponse(config.frequency_response))
        ps = config.peak_shaving
        if ps.enabled:
            strategies.append(PeakShaving(ps))
        auto = config.auto_limit if ps.enabled and ps.limit_mode == "auto" else None
        rp = config.reactive_power
        return cls(strategies, meter, auto, schedule,
                   ReactivePower(rp) if rp.enabled else None)

    @property
    def planned_limit_w(self) -> float:
        """The auto limit's latest planned limit (W; inf = a cold plan; nan = no plan)."""
        return self.plan.limit_w if self.plan is not None else math.nan

    @property
    def peak_shaving(self) -> PeakShaving | None:
        """The peak-shaving strategy, if the cycle has one."""
        return next((s for s in self.strategies if isinstance(s, PeakShaving)), None)

    @property
    def frequency_response(self) -> FrequencyResponse | None:
        """The frequency-response strategy, if the cycle has one."""
        return next((s for s in self.strategies if isinstance(s, FrequencyResponse)), None)

    @staticmethod
    def inputs(m: SiteMeasurements) -> StrategyInputs:
        """The strategies' view of the site from one measurement snapshot."""
        total = float(m.group_capacity_wh.sum())
        return StrategyInputs(
            grid_power_w=m.grid_power_w,
            battery_power_w=m.battery_power_w + m.flex_power_w,
            grid_frequency_hz=m.grid_frequency_hz,
            soc_pct=m.soc_pct,
            capacity_wh=total if total > 0 else math.nan,
            soc_lower_pct=m.soc_lower_pct,
            soc_upper_pct=m.soc_upper_pct,
            fleet_lower_w=m.fleet_lower_w,
            fleet_upper_w=m.fleet_upper_w,
        )

    def higher_priority_w(self, strategy: Strategy) -> float:
        """What the last merge granted to the strategies above ``strategy`` (W)."""
        return sum(
            self.granted.get(s.name, 0.0) for s in self.strategies if s.priority > strategy.priority
        )

    def _meter(self, m: SiteMeasurements, site_time_s: float | None) -> StrategyInputs:
        """Feed the meter (when the site's time is given) and add the interval to the inputs."""
        base = self.inputs(m)
        meter = self.meter
        if meter is None or site_time_s is None:
            return base
        ps = self.peak_shaving
        exempt = self.higher_priority_w(ps) if ps is not None else 0.0
        meter.update(site_time_s, m.grid_power_w, m.grid_power_w - m.battery_power_w, exempt)
        covered = meter.interval_covered_s
        plan = self._replan(m, site_time_s, meter) if self.auto_limit is not None else None
        # An interval joined late (the run started within it) is shaved sample by sample:
        # its energy before is unknown, so there is nothing to make up (billing module).
        late = meter.interval_joined_late
        return dataclasses.replace(
            base,
            interval_s=math.nan if late else covered + max(0.0, meter.remaining_s(site_time_s)),
            interval_elapsed_s=covered,
            interval_energy_wh=meter.interval_energy_wh - meter.interval_energy_exempt_wh,
            billed_peak_w=meter.billed_peak_w,
            billed_peak_w_uncontrolled=meter.billed_peak_w_uncontrolled,
            planned_limit_w=self.planned_limit_w,
            plan_warm=plan is not None and self._history_s >= _WARM_HISTORY_S,
            planned_soc_pct=(
                math.nan if plan is None else plan.soc_target_pct(base.capacity_wh)
            ),
        )

    def _replan(
        self, m: SiteMeasurements, site_time_s: float, meter: BillingMeter
    ) -> LimitPlan | None:
        """The auto limit's plan for the current interval: made at each interval boundary
        (and until one succeeds) from the meter's history and the fleet as measured."""
        self._charge_max_w = max(self._charge_max_w, m.fleet_upper_w)
        self._discharge_max_w = max(self._discharge_max_w, -m.fleet_lower_w)
        start = meter.interval_start_s
        if self.plan is not None and start == self._planned_for:
            return self.plan
        assert self.auto_limit is not None
        capacity = float(m.group_capacity_wh.sum())
        lo, hi = m.soc_lower_pct, m.soc_upper_pct
        if not (capacity > 0 and math.isfinite(lo) and math.isfinite(hi) and lo <= hi
                and math.isfinite(self._charge_max_w) and math.isfinite(self._discharge_max_w)):
            return self.plan  # the fleet is not known yet: keep the last plan (or none)
        e_min, e_max = capacity * lo / 100.0, capacity * hi / 100.0
        energy = capacity * m.soc_pct / 100.0 if math.isfinite(m.soc_pct) else math.nan
        fleet = FleetModel(self._charge_max_w, self._discharge_max_w, e_min, e_max,
                           min(max(energy, e_min), e_max) if math.isfinite(energy) else e_min,
                           _EFFICIENCY, _EFFICIENCY)
        starts, values = meter.history()
        span = float(starts[-1] - starts[0]) if starts.size else -meter.clock.interval_s
        self._history_s = span + meter.clock.interval_s
        try:
            self.plan = AutoLimit(self.auto_limit, fleet).plan(
                site_time_s, values, starts, meter.clock.interval_s, energy,
                meter.billed_peak_w, load_now_w=meter.current_mean_uncontrolled_w(),
                zone=meter.clock.tz,
            )
        except PlanningError as exc:
            _LOG.warning("auto limit: no new plan (%s); keeping the last one", exc)
            return self.plan
        except Exception:  # a planner bug must not stop the control loop
            _LOG.exception("auto limit: planning failed; keeping the last plan")
            return self.plan
        self._planned_for = start
        return self.plan

    def step(
        self,
        m: SiteMeasurements,
        now_s: float,
        strategies: Sequence[Strategy] | None = None,
        site_time_s: float | None = None,
    ) -> float:
        """Meter, step ``strategies`` (None = all) on ``m``, merge every last wish; return the
        target.

        A strategy that raises loses its wish (logged); the loop goes on.

        Args:
            m: The measurements of this cycle.
            now_s: The caller's clock, in seconds (monotonic, or virtual in a replay).
            strategies: The strategies due now (the others keep their last wish).
            site_time_s: The site's unix time (s; a time-scaled simulator's runs fast, a
                replay's is virtual); None = no billing meter this step (peak shaving
                then shaves single samples).

        Returns:
            The fleet target (W, + = charging), within the measured fleet bounds.
        """
        base = self._meter(m, site_time_s)
        ps = self.peak_shaving
        if ps is not None and ps.config.export_lead_s > 0.0:  # its one reader
            base = self._with_trend(base, now_s)
        if self.schedule is not None and site_time_s is not None:
            self._in_force(site_time_s)
        for strategy in self.strategies if strategies is None else strategies:
            inputs = dataclasses.replace(base, higher_priority_w=self.higher_priority_w(strategy))
            try:
                self.wishes[strategy.name] = self._wish(strategy, inputs, now_s, site_time_s)
            except Exception:  # a strategy bug must not stop the loop
                _LOG.exception("strategy %s failed; its wish is dropped", strategy.name)
                self.wishes.pop(strategy.name, None)
        result = merge(list(self.wishes.values()), m.fleet_lower_w, m.fleet_upper_w)
        for source, reason in result.rejected.items():
            _LOG.warning("wish of %s ignored: %s", source, reason)
        if result.fleet_error:
            _LOG.warning("fleet bounds unusable, holding 0 W: %s", result.fleet_error)
        self.granted = dict(result.granted)
        self.target_w = result.target_w
        self.must_w = self.required_w(m)
        self.export_exceeded = self._export_exceeded(m)
        if self.reactive is not None:
            self._reactive_step(m, site_time_s if site_time_s is not None else now_s)
        return result.target_w

    def _with_trend(self, base: StrategyInputs, now_s: float) -> StrategyInputs:
        """Record this step's uncontrolled power and add its recent slope (only peak
        shaving's export lead reads it: not computed without one)."""
        samples = self._u_samples
        if samples and not now_s >= samples[-1][0]:  # the clock went back: start over
            samples.clear()
        samples.append((now_s, base.uncontrolled_power_w))
        while samples[0][0] < now_s - 2 * EXPORT_SLOPE_WINDOW_S:  # the function trims
            samples.popleft()
        slope = uncontrolled_slope_w_per_s(
            [t for t, _ in samples], [u for _, u in samples], now_s)
        return dataclasses.replace(base, uncontrolled_slope_w_per_s=slope)

    def _export_exceeded(self, m: SiteMeasurements) -> bool:
        """Whether the grid exports more than peak shaving's export limit now (measured)."""
        ps = self.ps_config
        return (ps is not None and self.peak_shaving is not None
                and m.grid_power_w < -ps.export_limit_w)

    def required_w(self, m: SiteMeasurements) -> float:
        """What the wishes' bounds require of batteries, PV and EV together (module).

        Args:
            m: The measurements of this step (fleet bounds and PV / EV ranges).

        Returns:
            The merge of every last wish with its preferred power replaced by the value
            of its range nearest 0, over the widened fleet bounds (W); nan when the
            site has no PV or EV range.
        """
        if m.flex_lower_w == 0.0 and m.flex_upper_w == 0.0:
            return math.nan
        nearest_zero = [
            dataclasses.replace(w, preferred_w=min(max(0.0, w.lower_w), w.upper_w))
            for w in self.wishes.values()
        ]
        return merge(nearest_zero, m.fleet_lower_w + m.flex_lower_w,
                     m.fleet_upper_w + m.flex_upper_w).target_w

    def _reactive_step(self, m: SiteMeasurements, now_s: float) -> None:
        """The fleet's reactive target for this step, within the fleet's range now."""
        assert self.reactive is not None
        try:
            q = self.reactive.step(
                ReactiveInputs(self.target_w, m.grid_voltage_v, m.apparent_rating_va,
                               m.reactive_upper_var),
                now_s,
            )
        except Exception:  # a strategy bug must not stop the loop
            _LOG.exception("reactive power failed; holding the last reactive target")
            return
        lo, hi = m.reactive_lower_var, m.reactive_upper_var
        if math.isfinite(lo) and math.isfinite(hi) and lo <= hi:
            q = min(max(q, lo), hi)
        self.q_target_var = q if math.isfinite(q) else 0.0

    def _in_force(self, site_time_s: float) -> None:
        """Set the strategies' settings in force at ``site_time_s`` from the schedule."""
        assert self.schedule is not None
        schedule = self.schedule.schedule
        fr = self.frequency_response
        window = schedule.frequency_window(site_time_s)
        if fr is not None and window != self.fr_window:
            fw = window.frequency_response if window is not None else None
            sold = fw is not None and fw.reserved_power_w > 0
            self.fr_in_force = (
                FrequencyResponse(fr_config_in_force(fr.config, fw))
                if fw is not None and sold else None
            )
            if window is None or fw is None:
                _LOG.info("frequency response off: no window")
            else:
                _LOG.info("frequency response %s: reserve %.0f W from window %s",
                          "on" if sold else "off", fw.reserved_power_w, window.source)
        self.fr_window = window
        ps = self.peak_shaving
        if ps is not None:
            self.ps_config = ps_config_in_force(ps.config, schedule.peak_window(site_time_s))

    def _wish(self, strategy: Strategy, inputs: StrategyInputs, now_s: float,
              site_time_s: float | None) -> Wish:
        """``strategy``'s wish: its own step, or with a schedule the settings in force."""
        if self.schedule is None:
            return strategy.step(inputs, now_s)
        if strategy is self.frequency_response:
            fr = self.fr_in_force
            if fr is None:  # not sold now: exactly 0 W, no droop, no SoC nudge
                return Wish(strategy.name, strategy.priority, 0.0, 0.0, 0.0)
            return fr.step(inputs, now_s)
        fr_base = self.frequency_response
        if strategy is self.peak_shaving and self.ps_config is not None:
            prepared = (
                self.preparation.step(self.schedule.schedule, self.fr_window, fr_base.config,
                                      self.ps_config, inputs, site_time_s)
                if fr_base is not None and site_time_s is not None else None
            )
            if prepared is not None:
                return prepared
            return peak_shaving_wish(self.ps_config, inputs)
        return strategy.step(inputs, now_s)


def plan_setpoints(
    cycle: ControlCycle,
    core: SiteCore,
    book: SetpointBook,
    now_ns: int,
    strategies: Sequence[Strategy] | None = None,
    site_time_s: float | None = None,
    q_book: SetpointBook | None = None,
) -> PlannedRound:
    """One whole control cycle on ``core`` at ``now_ns``: what to send, and to whom.

    Measures (:meth:`actors.SiteCore.measurements`), steps ``cycle`` and plans
    the round for its target (:meth:`actors.RoundPlanner.plan`, which reads
    ``book`` and marks excluded inverters unknown in it). Recording what is
    then sent (``book.record``) and its acknowledgement is the transport's job.
    With reactive control on (in ``cycle`` and ``core``) the cycle's reactive target
    is handed to the planner first, as ``gridloop run`` hands it over
    (``Site.request_reactive``), and the round plans the reactive setpoints too.

    Args:
        cycle: The strategies' state.
        core: State table, health and planner of the site.
        book: What was sent before.
        now_ns: The caller's monotonic clock (ns; virtual in a replay).
        strategies: The strategies due now (None = all).
        site_time_s: The site's unix time for the billing meter (None = not metered).
        q_book: What reactive setpoints were sent before (None = no reactive setpoint
            is chosen to be sent; only used with reactive control on).

    Returns:
        The planned round.

    Raises:
        Exception: The allocation failed (the service logs it and sends nothing).
    """
    target = cycle.step(core.measurements(now_ns), now_ns / 1e9, strategies, site_time_s)
    if cycle.reactive is not None and core.reactive:
        core.planner.reactive_target_var = cycle.q_target_var
    core.planner.raise_now = cycle.export_exceeded
    return core.planner.plan(target, now_ns, book, cycle.must_w, q_book=q_book)
