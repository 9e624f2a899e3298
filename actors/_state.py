"""The columnar state table and the telemetry decoder that fills it.

One row per streamed component, one numpy column per metric. Telemetry samples are
decoded straight into the columns (`StateTable.decode`); the distributor snapshots
columns with fancy indexing (no Python object per component).

Power bounds: the API sends a metric's allowed values as a union of closed intervals.
`[lo, a] ∪ [b, hi]` with `a <= 0 <= b` becomes `lower=lo, upper=hi, excl_lower=a,
excl_upper=b` (setpoints strictly inside `(a, b)` other than 0 are not allowed); one
interval `[lo, hi]` containing 0 has no band (`0, 0`). 0 W is always allowed, so a
single interval not containing 0 becomes an interval with a band reaching 0. Other
shapes are reduced to a safe subset (see `bounds_to_band`). Missing interval ends
(±inf) mark the bounds unusable (`bounds_ok` False) and exclude the inverter.

Incomplete data: a message without the row's power metric, without power bounds,
or with a NaN/inf value in a metric the row needs (power; SoC, its limits and
capacity for batteries; a battery's power and SoC must carry their bounds) clears
`data_ok`; health excludes the component until a
complete message arrives. A power sample without bounds also marks the bounds
unusable (they may have changed since the last ones).

Times: `received_ns` is the local `time.monotonic_ns()` at decode (0 = never);
`sample_time_ns` is the server's sample timestamp in ns since the Unix epoch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from frequenz.api.common.v1alpha8.microgrid.electrical_components import (
    electrical_components_pb2 as ec_pb2,
)

from ._api import TelemetryWire
from ._api_v1alpha import V1ALPHA8_WIRE
from ._graph import CAT_BATTERY

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


def metrics_for(
    category: int, wire: TelemetryWire = V1ALPHA8_WIRE, reactive: bool = False
) -> tuple[int, ...]:
    """The metrics the state table reads of a component (its telemetry filter).

    Args:
        category: The component's `ElectricalComponentCategory`.
        wire: The API version's metric numbers.
        reactive: Whether reactive power is controlled: then AC components also
            stream reactive power (with its bounds), apparent power (its bounds carry
            the rating) and the voltages. Without it the streams stay as small as
            before (the latency path does not pay for metrics it does not use).

    Returns:
        DC power, SoC and capacity for batteries; AC active power and frequency
        (and with ``reactive`` the reactive metrics) for every other category
        (inverters, meters).
    """
    if category == CAT_BATTERY:
        return (wire.dc_power, wire.soc, wire.capacity)
    if reactive:
        return (wire.ac_power, wire.frequency, wire.ac_reactive, wire.ac_apparent,
                wire.ac_voltage, *wire.ac_voltage_phases)
    return (wire.ac_power, wire.frequency)


#: Component states that exclude a component from allocation (the same numbers in
#: every API version).
BAD_STATES: frozenset[int] = frozenset(
    {
        ec_pb2.ELECTRICAL_COMPONENT_STATE_CODE_ERROR,
        ec_pb2.ELECTRICAL_COMPONENT_STATE_CODE_UNAVAILABLE,
        ec_pb2.ELECTRICAL_COMPONENT_STATE_CODE_OFF,
        ec_pb2.ELECTRICAL_COMPONENT_STATE_CODE_SWITCHING_OFF,
    }
)

_INF = math.inf
_NAN = math.nan


def finite_or(values: FloatArray, fill: float) -> FloatArray:
    """`values` with every NaN/±inf replaced by `fill` (a fast `np.nan_to_num`).

    Args:
        values: The array.
        fill: The replacement.

    Returns:
        A new array.
    """
    result: FloatArray = np.where(np.isfinite(values), values, fill)
    return result


def bounds_to_band(bounds: Sequence[object]) -> tuple[float, float, float, float, bool]:
    """Convert API bounds (a union of intervals) to (lower, upper, excl_lower, excl_upper, ok).

    0 W is always allowed (even when not listed). The result describes a *safe subset*
    of the allowed set in the shape `[lower, upper]` minus the open band
    `(excl_lower, excl_upper)` around 0 (0 itself allowed): the interval containing 0,
    extended to the adjacent interval on a side where the 0-interval ends exactly at 0
    (so `[lo, a] ∪ [b, hi]` with `a <= 0 <= b`, or `[lo, a] ∪ {0} ∪ [b, hi]`, are kept
    whole). Intervals further out are left out (never allowed by mistake). `ok` is
    False when an end is missing (±inf) or NaN.

    Args:
        bounds: Sequence of `Bounds` messages (fields `lower`, `upper`, both optional).

    Returns:
        The inclusion interval, the exclusion band (0, 0 when none) and `ok`.
    """
    ivs: list[tuple[float, float]] = [(0.0, 0.0)]
    for b in bounds:
        lo = b.lower if b.HasField("lower") else -_INF  # type: ignore[attr-defined]
        hi = b.upper if b.HasField("upper") else _INF  # type: ignore[attr-defined]
        if not lo <= hi:  # also NaN
            return _NAN, _NAN, 0.0, 0.0, False
        ivs.append((lo, hi))
    return _band(ivs)


def intervals_to_band(
    intervals: Sequence[tuple[float, float]],
) -> tuple[float, float, float, float, bool]:
    """`bounds_to_band` for plain ``(lower, upper)`` pairs (±inf = a missing end).

    What a component's telemetry bounds become in the state table, for a
    transport that has the intervals without the API messages (the replay's
    physics transport).

    Args:
        intervals: Closed intervals of allowed power (W).

    Returns:
        The inclusion interval, the exclusion band (0, 0 when none) and `ok`.
    """
    ivs: list[tuple[float, float]] = [(0.0, 0.0)]
    for lo, hi in intervals:
        if not lo <= hi:  # also NaN
            return _NAN, _NAN, 0.0, 0.0, False
        ivs.append((float(lo), float(hi)))
    return _band(ivs)


def _band(ivs: list[tuple[float, float]]) -> tuple[float, float, float, float, bool]:
    """The safe inclusion interval + exclusion band of ``ivs`` (which include ``(0, 0)``)."""
    ivs.sort()
    merged: list[list[float]] = []
    for lo, hi in ivs:
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    z = next(k for k, (lo, hi) in enumerate(merged) if lo <= 0.0 <= hi)
    lower, upper = merged[z]
    el = eu = 0.0
    if lower == 0.0 and z > 0:
        el = merged[z - 1][1]
        lower = merged[z - 1][0]
    if upper == 0.0 and z + 1 < len(merged):
        eu = merged[z + 1][0]
        upper = merged[z + 1][1]
    ok = math.isfinite(lower) and math.isfinite(upper)
    return lower, upper, el, eu, ok


class StateTable:
    """Columnar latest-value state of every streamed component.

    Row `i` describes component `ids[i]`; `row_of[id]` gives the row. All columns are
    numpy arrays of length `n`; NaN means "not received yet".
    """

    def __init__(
        self,
        ids: Sequence[int],
        categories: Sequence[int],
        wire: TelemetryWire = V1ALPHA8_WIRE,
        reactive: bool = False,
    ) -> None:
        """Create an empty table.

        Args:
            ids: Component ids, one row each.
            categories: Their `ElectricalComponentCategory` values.
            wire: How the API version's telemetry is read (metric numbers, fields).
            reactive: Whether to request the reactive metrics (`metrics_for`); they
                are decoded whenever a message carries them.
        """
        n = len(ids)
        self.n: int = n
        """Number of rows."""
        self.ids: IntArray = np.asarray(ids, dtype=np.int64)
        """Component id of each row."""
        self.row_of: dict[int, int] = {int(c): i for i, c in enumerate(ids)}
        """Row of each component id."""
        self.category: IntArray = np.asarray(categories, dtype=np.int64)
        """Component category of each row."""
        self.wire: TelemetryWire = wire
        """How telemetry messages are read."""
        self.metrics: list[tuple[int, ...]] = [
            metrics_for(int(c), wire, reactive) for c in categories
        ]
        """Metrics to request for each row (telemetry filter, in the wire's numbers)."""
        self._power_metric: list[int] = [m[0] for m in self.metrics]

        def col(v: float) -> FloatArray:
            return np.full(n, v, dtype=np.float64)

        self.power_w: FloatArray = col(_NAN)
        """Active power in W (AC for inverters/meters, DC for batteries), + = into the component."""
        self.power_lower_w: FloatArray = col(_NAN)
        """Lower end of the allowed power (W)."""
        self.power_upper_w: FloatArray = col(_NAN)
        """Upper end of the allowed power (W)."""
        self.power_excl_lower_w: FloatArray = col(0.0)
        """Lower end of the exclusion band around 0 W (W, <= 0)."""
        self.power_excl_upper_w: FloatArray = col(0.0)
        """Upper end of the exclusion band around 0 W (W, >= 0)."""
        self.bounds_ok: BoolArray = np.zeros(n, dtype=np.bool_)
        """Whether the last received power bounds had a usable shape."""
        self.has_bounds: BoolArray = np.zeros(n, dtype=np.bool_)
        """Whether power bounds were ever received."""
        self.soc_pct: FloatArray = col(_NAN)
        """Battery state of charge (%)."""
        self.soc_lower_pct: FloatArray = col(_NAN)
        """Lower SoC limit (%)."""
        self.soc_upper_pct: FloatArray = col(_NAN)
        """Upper SoC limit (%)."""
        self.capacity_wh: FloatArray = col(_NAN)
        """Battery capacity (Wh)."""
        self.frequency_hz: FloatArray = col(_NAN)
        """AC frequency (Hz)."""
        self.reactive_var: FloatArray = col(_NAN)
        """AC reactive power (VAr, + = into the component: absorbing, under-excited)."""
        self.reactive_lower_var: FloatArray = col(_NAN)
        """Lower end of the allowed reactive power (VAr; NaN = unknown)."""
        self.reactive_upper_var: FloatArray = col(_NAN)
        """Upper end of the allowed reactive power (VAr; NaN = unknown)."""
        self.apparent_rating_va: FloatArray = col(_NAN)
        """Apparent-power rating S: the upper end of the apparent power's bounds (VA;
        NaN = none published: only the reactive bounds apply)."""
        self.voltage_v: FloatArray = col(_NAN)
        """AC voltage: the mean of the phase-to-neutral voltages of the last message,
        else its AC voltage (V)."""
        self.sample_time_ns: IntArray = np.zeros(n, dtype=np.int64)
        """Server timestamp of the last power sample (ns since the Unix epoch)."""
        self.received_ns: IntArray = np.zeros(n, dtype=np.int64)
        """Local monotonic time of the last decoded message (0 = never)."""
        self.state_ok: BoolArray = np.ones(n, dtype=np.bool_)
        """False while the component reports an error/off/unavailable state or errors."""
        self.state_code: IntArray = np.zeros(n, dtype=np.int64)
        """First state code of the last state snapshot."""
        self.samples: IntArray = np.zeros(n, dtype=np.int64)
        """Messages decoded per row."""
        self.data_ok: BoolArray = np.ones(n, dtype=np.bool_)
        """False while the last message lacked a required metric or carried a NaN/inf
        value in one (see `decode`); the next complete message sets it again."""
        self._is_battery: list[bool] = [c == CAT_BATTERY for c in categories]

    def decode(
        self,
        row: int,
        telemetry: Any,
        now_ns: int,
    ) -> None:
        """Decode one telemetry message into row `row`.

        Args:
            row: Row of the component.
            telemetry: The component's telemetry in a stream response
                (`TelemetryWire.unwrap`): v1alpha18/19 ``ElectricalComponentTelemetry``,
                v1 ``ComponentData``.
            now_ns: Local monotonic receive time.
        """
        wire = self.wire
        pm = self._power_metric[row]
        m_soc, m_cap, m_freq = wire.soc, wire.capacity, wire.frequency
        extra: list[Any] | None = None  # reactive metrics, decoded after the loop
        # A message is complete when it carries a finite power value with bounds
        # (and, for batteries, a finite SoC and capacity). Missing or non-finite
        # values never overwrite good ones silently: they clear `data_ok`, which
        # excludes the component until a complete message arrives.
        power_ok = False
        is_battery = self._is_battery[row]
        soc_ok = cap_ok = not is_battery
        isfinite = math.isfinite
        for s in telemetry.metric_samples:
            m = s.metric
            if m == pm:
                v = s.value.simple_metric.value
                self.power_w[row] = v
                ts = getattr(s, wire.sample_time)
                self.sample_time_ns[row] = ts.seconds * 1_000_000_000 + ts.nanos
                power_ok = isfinite(v)
                if s.bounds:
                    lo, hi, el, eu, ok = bounds_to_band(s.bounds)
                    self.power_lower_w[row] = lo
                    self.power_upper_w[row] = hi
                    self.power_excl_lower_w[row] = el
                    self.power_excl_upper_w[row] = eu
                    self.bounds_ok[row] = ok
                    self.has_bounds[row] = True
                else:
                    # Bounds are unknown now (they may have changed): not usable,
                    # and for a battery, whose bounds feed the fleet's, incomplete.
                    self.bounds_ok[row] = False
                    power_ok = power_ok and not is_battery
            elif m == m_soc:
                v = s.value.simple_metric.value
                self.soc_pct[row] = v
                soc_ok = isfinite(v)
                if s.bounds:
                    b = s.bounds[0]
                    lo = b.lower if b.HasField("lower") else 0.0
                    hi = b.upper if b.HasField("upper") else 100.0
                    self.soc_lower_pct[row] = lo
                    self.soc_upper_pct[row] = hi
                    soc_ok = soc_ok and isfinite(lo) and isfinite(hi)
                else:
                    soc_ok = False  # the SoC limits are unknown now
            elif m == m_cap:
                v = s.value.simple_metric.value
                self.capacity_wh[row] = v
                cap_ok = isfinite(v)
            elif m == m_freq:
                self.frequency_hz[row] = s.value.simple_metric.value
            else:
                if extra is None:
                    extra = []
                extra.append(s)
        if extra is not None:
            self._decode_reactive(row, extra)
        self.data_ok[row] = power_ok and soc_ok and cap_ok
        snaps = getattr(telemetry, wire.snapshots)
        if snaps:
            snap = snaps[-1]
            states = snap.states
            code = states[0] if states else 0
            self.state_code[row] = code
            self.state_ok[row] = not snap.errors and not any(c in BAD_STATES for c in states)
        self.received_ns[row] = now_ns
        self.samples[row] += 1

    def _decode_reactive(self, row: int, samples: list[Any]) -> None:
        """Reactive power with its bounds, the apparent rating and the voltage of one
        message (`decode` hands over the samples it does not read itself)."""
        wire = self.wire
        m_q, m_s, m_u, m_phases = (
            wire.ac_reactive, wire.ac_apparent, wire.ac_voltage, wire.ac_voltage_phases
        )
        phase_sum, phases = 0.0, 0
        for s in samples:
            m = s.metric
            if m == m_q:
                self.reactive_var[row] = s.value.simple_metric.value
                lo = hi = _NAN  # no (usable) bounds: no reactive setpoint
                if s.bounds:
                    lo, hi, _el, _eu, ok = bounds_to_band(s.bounds)
                    if not ok:
                        lo = hi = _NAN
                self.reactive_lower_var[row] = lo
                self.reactive_upper_var[row] = hi
            elif m == m_s:
                rating = s.bounds[-1].upper if s.bounds and s.bounds[-1].HasField("upper") else 0
                # Only a finite, positive rating is one (else: none known, no circle).
                ok = math.isfinite(rating) and rating > 0
                self.apparent_rating_va[row] = rating if ok else _NAN
            elif m in m_phases:
                phase_sum += s.value.simple_metric.value
                phases += 1
            elif m == m_u and not phases:
                self.voltage_v[row] = s.value.simple_metric.value
        if phases:
            self.voltage_v[row] = phase_sum / phases
