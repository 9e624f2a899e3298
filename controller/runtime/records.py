"""What one control cycle looked like: the record every observer of a run consumes.

The service builds one :class:`CycleRecord` per control cycle, off the hot path,
from the site's measurements and the latest distribution outcome. The live
dashboard, the CSV recorder, the Prometheus exporter and the run summary all
read these records and nothing else, so they can be tested from recorded data
without a site.

Units and signs: watts, percent, hertz, milliseconds; passive sign convention
(positive = into the component: the site importing, a battery charging).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

__all__ = ["CycleRecord", "GroupRecord", "RecordObserver"]


class RecordObserver:
    """The lifetime of an observer of a run's records, as a context manager.

    ``with observer:`` calls :meth:`start` and :meth:`stop`, so the dashboard, the
    metrics exporter and the CSV recorder begin and end with the run one way.
    """

    def start(self) -> None:
        """Begin observing (default: nothing to start, e.g. the file is already open)."""

    def stop(self) -> None:
        """End observing: release what :meth:`start` or the constructor took."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        """:meth:`start`; returns the observer."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """:meth:`stop`."""
        self.stop()


@dataclass(frozen=True, slots=True)
class GroupRecord:
    """One battery group (inverters + batteries connected to each other) in one cycle."""

    name: str
    """Human label, e.g. ``"g1 inv 10 / bat 11"``."""
    soc_pct: float
    """Capacity-weighted SoC of the group's batteries (nan if unknown)."""
    setpoint_w: float
    """Sum of the last active-power setpoints sent to the group's inverters (+ = charging)."""
    power_w: float
    """Measured AC power of the group's inverters (+ = charging, nan if unknown)."""
    healthy: bool
    """False while any component of the group is excluded from allocation."""
    reason: str = ""
    """Why the group (or part of it) is excluded, empty when healthy."""


@dataclass(frozen=True, slots=True)
class CycleRecord:
    """The state of the site and of the controller at the end of one control cycle."""

    time_s: float
    """Seconds since the run started (monotonic clock)."""
    unix_time_s: float
    """Wall-clock time of the cycle, seconds since the epoch (for recordings)."""
    grid_power_w: float
    """Measured power through the grid connection point (+ = import)."""
    uncontrolled_power_w: float
    """What the grid power would be without the batteries: grid − battery power."""
    battery_power_w: float
    """Measured AC power of all battery inverters (+ = charging)."""
    battery_target_w: float
    """The combined target the power manager sent to the distributor (+ = charging)."""
    frequency_hz: float
    """Grid frequency from a meter (or inverter) on the grid connection point (nan if
    unknown)."""
    fr_required_w: float
    """Power the frequency-response droop asks for at this frequency (0 when disabled)."""
    fr_delivered_w: float
    """Power the fleet delivered towards frequency response (the granted share, measured)."""
    import_limit_w: float = math.nan
    """Peak-shaving import limit (nan when peak shaving is off)."""
    export_limit_w: float = math.nan
    """Peak-shaving export limit, as a positive number of watts (nan when off)."""
    effective_import_limit_w: float = math.nan
    """The limit the billing-interval means are held to: max(import limit, the period's
    billed peak) (nan when peak shaving is off)."""
    interval_projected_mean_w: float = math.nan
    """The current billing interval's mean if the grid power now held to its end (W)."""
    billed_peak_w: float = math.nan
    """The period's billed peak so far: the highest closed interval mean (W; nan before the
    first sample)."""
    groups: tuple[GroupRecord, ...] = ()
    """One entry per battery group, in graph order."""
    dispatch_latency_ms: float = math.nan
    """Request → all setpoints acknowledged for the latest dispatch (nan if none yet)."""
    latency_p50_ms: float = math.nan
    """Median dispatch latency over the run so far."""
    latency_p99_ms: float = math.nan
    """99th-percentile dispatch latency over the run so far."""
    setpoints_sent: int = 0
    """Setpoint calls sent since the run started."""
    setpoints_failed: int = 0
    """Setpoint calls that failed (rejected, timed out, gRPC error) since the start."""
    cycle_duration_ms: float = math.nan
    """How long the latest control cycle took: measurements → strategies → merge → request."""
    cycle_overruns: int = 0
    """Control cycles that started late because the previous one overran."""
    excluded: dict[int, str] = field(default_factory=dict)
    """Component id → reason, for every component excluded from allocation now."""
    setpoints_overridden: int = 0
    """Setpoints of ours overridden by another client's since the start."""
    another_client: str = ""
    """Why gridloop concluded another client controls the site and stopped commanding
    (empty while it has not)."""
    site_changed: str = ""
    """What changed when the server turned out to be another site after a reconnect
    (empty while it has not); gridloop then stopped commanding."""
    api_version: str = ""
    """The Microgrid API version the server is spoken to in (``v1``, ``v1alpha18``, …)."""
    fr_reserve_w: float = math.nan
    """Frequency-response reserve in force (W; 0 = not sold now; nan = not known)."""
    fr_band_unreachable: bool = False
    """Preparing for a frequency-response window whose SoC band is projected out of reach
    by its start (:class:`~controller.runtime.preparation.Preparation`)."""
    fr_band_warnings: int = 0
    """Windows whose SoC band was projected out of reach since the start (one warning each)."""
    pv_curtailed_w: float = 0.0
    """PV production our caps take off now (measured, W ≥ 0)."""
    pv_capped: int = 0
    """PV inverters under a cap of ours."""
    ev_power_w: float = 0.0
    """Charging power of the EV chargers (measured, W ≥ 0)."""
    ev_limited: int = 0
    """EV chargers under a charge limit of ours (paused ones included)."""
    caps_w: dict[int, float] = field(default_factory=dict)
    """PV caps (W, ≤ 0: the most the inverter may produce, negative) and EV charge
    limits (W, ≥ 0; 0 = paused) of the latest dispatch, by component id."""
