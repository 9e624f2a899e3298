"""Telemetry frames: which metrics a component streams, their values and their bytes.

Offers the metric sets (`METER_METRICS`, `INVERTER_METRICS`, `BATTERY_METRICS`,
`EV_CHARGER_METRICS`, `SENSOR_METRICS`; a stream key is a component id and a
subset of its set, sensors under their negated id), `Template` (a stream key's
response, encoded once per publication: `simulator._encoding`), `Snapshot`
(plain-float copies of the physics state for one publication), `frame_values`
(a component's values, bounds, states and errors from a snapshot) and
`corrupt_frame` (the ``bad_metric`` fault).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
from frequenz.api.common.v1alpha8.metrics import metrics_pb2
from frequenz.api.common.v1alpha8.microgrid.electrical_components import (
    electrical_components_pb2 as ec_pb2,
)
from frequenz.api.common.v1alpha8.microgrid.sensors import sensors_pb2

from ._encoding import Template
from ._wire import V1_METRIC, fast_enum
from .physics import ComponentState, Interval, SitePhysics

__all__ = [
    "BATTERY_METRICS",
    "EV_CHARGER_METRICS",
    "INVERTER_METRICS",
    "METER_METRICS",
    "SENSOR_METRICS",
    "FrameValues",
    "Snapshot",
    "Template",
    "corrupt_frame",
    "frame_values",
    "metrics_of",
]

M = fast_enum(metrics_pb2.Metric)
S = fast_enum(ec_pb2.ElectricalComponentStateCode)

METER_METRICS: tuple[int, ...] = (
    M.METRIC_AC_POWER_ACTIVE,
    M.METRIC_AC_POWER_ACTIVE_PHASE_1,
    M.METRIC_AC_POWER_ACTIVE_PHASE_2,
    M.METRIC_AC_POWER_ACTIVE_PHASE_3,
    M.METRIC_AC_POWER_REACTIVE,
    M.METRIC_AC_POWER_REACTIVE_PHASE_1,
    M.METRIC_AC_POWER_REACTIVE_PHASE_2,
    M.METRIC_AC_POWER_REACTIVE_PHASE_3,
    M.METRIC_AC_CURRENT,
    M.METRIC_AC_CURRENT_PHASE_1,
    M.METRIC_AC_CURRENT_PHASE_2,
    M.METRIC_AC_CURRENT_PHASE_3,
    M.METRIC_AC_VOLTAGE_PHASE_1_N,
    M.METRIC_AC_VOLTAGE_PHASE_2_N,
    M.METRIC_AC_VOLTAGE_PHASE_3_N,
    M.METRIC_AC_FREQUENCY,
    M.METRIC_AC_VOLTAGE,
    M.METRIC_AC_POWER_APPARENT,
)
"""Metrics of meters and the grid connection point. Voltages are the connection
point's (phase-to-neutral, balanced; ``METRIC_AC_VOLTAGE`` their mean), apparent
power is ``sqrt(P² + Q²)``."""

INVERTER_METRICS: tuple[int, ...] = (
    *METER_METRICS,
    M.METRIC_DC_POWER,
    M.METRIC_INVERTER_TEMPERATURE,
)
"""Metrics of inverters (AC active power carries the bounds; reactive too, the
momentary ones left by the apparent-power circle; apparent power carries ``[0, S]``
when the inverter has an apparent-power rating)."""

BATTERY_METRICS: tuple[int, ...] = (
    M.METRIC_BATTERY_SOC_PCT,
    M.METRIC_DC_POWER,
    M.METRIC_BATTERY_CAPACITY,
    M.METRIC_BATTERY_TEMPERATURE,
    M.METRIC_DC_VOLTAGE,
    M.METRIC_DC_CURRENT,
)
"""Metrics of batteries (SoC carries SoC bounds, DC power carries power bounds)."""

EV_CHARGER_METRICS: tuple[int, ...] = METER_METRICS
"""Metrics of EV chargers: AC power (active carries the bounds: 0 or [min, rated]
while a car is connected), per-phase power and current (0 on unused phases),
voltages and frequency."""

SENSOR_METRICS: tuple[int, ...] = (M.METRIC_SENSOR_IRRADIANCE, M.METRIC_SENSOR_TEMPERATURE)

FrameValues = tuple[list[float], dict[Any, list[Interval]], list[Any], list[Any]]
"""Metric values (in the full metric order of the component's kind), bounds per
metric, state codes and error codes of one component at one publication."""


def metrics_of(kind: str) -> tuple[int, ...]:
    """All metrics a component of ``kind`` (`SitePhysics.kind_of`) streams."""
    if kind == "battery":
        return BATTERY_METRICS
    if kind == "inverter":
        return INVERTER_METRICS
    if kind == "ev_charger":
        return EV_CHARGER_METRICS
    return METER_METRICS


class Snapshot:
    """Plain-float copies of the physics state for one generation (rows built lazily)."""

    def __init__(self, phys: SitePhysics) -> None:
        self.phys = phys
        self.inv_p: list[float] = phys.inverter_power_w.tolist()
        self.inv_state: list[int] = phys.inverter_state.tolist()
        self.bat_p: list[float] = phys.battery_power_w.tolist()
        self.bat_lo: list[float] = phys.battery_lower_w.tolist()
        self.bat_hi: list[float] = phys.battery_upper_w.tolist()
        self.bat_state: list[int] = phys.battery_state.tolist()
        self.soc_min: list[float] = phys.battery_soc_min_pct.tolist()
        self.soc_max: list[float] = phys.battery_soc_max_pct.tolist()
        self.irradiance = phys.irradiance_wm2
        self._inv_rows: list[list[float]] | None = None
        self._ev_rows: dict[int, list[float]] | None = None
        self._bat_rows: list[list[float]] | None = None
        self._meter_rows: list[list[float]] | None = None

    @staticmethod
    def _ac_columns(
        p: npt.NDArray[np.float64], q: npt.NDArray[np.float64], freq: float, volt_v: float
    ) -> list[Any]:
        """Columns in METER_METRICS order for active power ``p``, reactive ``q``,
        frequency ``freq`` and phase voltage ``volt_v``."""
        volt = np.full_like(p, volt_v)
        p3, q3 = p / 3.0, q / 3.0
        cur = p3 / volt
        return [
            p,
            p3,
            p3,
            p3,
            q,
            q3,
            q3,
            q3,
            cur * 3.0,
            cur,
            cur,
            cur,
            volt,
            volt,
            volt,
            np.full_like(p, freq),
            volt,
            np.hypot(p, q),
        ]

    def inverter_rows(self) -> list[list[float]]:
        """Per inverter: values in INVERTER_METRICS order."""
        if self._inv_rows is None:
            ph = self.phys
            p = ph.inverter_power_w
            cols = self._ac_columns(
                p, ph.inverter_reactive_var, ph.frequency_hz, ph.grid_voltage_v
            )
            cols += [p, 35.0 + np.abs(p) * 1e-4]
            self._inv_rows = np.column_stack(cols).tolist() if len(p) else []
        return self._inv_rows

    def ev_row(self, row: int) -> list[float]:
        """The EV charger in power row ``row``: values in EV_CHARGER_METRICS order.

        Per-phase power and current are split evenly over the charger's phases
        (the physics' ``ev_phases``); unused phases carry 0.
        """
        if self._ev_rows is None:
            ph = self.phys
            rows = np.flatnonzero(ph.inverter_is_ev)
            p = ph.inverter_power_w[rows]
            cols = self._ac_columns(
                p, ph.inverter_reactive_var[rows], ph.frequency_hz, ph.grid_voltage_v
            )
            phases = ph.ev_phases[rows]
            volt = cols[12]
            p_ph = p / phases
            cur = p_ph / volt
            for k in range(3):
                used = phases > k
                cols[1 + k] = np.where(used, p_ph, 0.0)
                cols[5 + k] = np.zeros_like(p)
                cols[9 + k] = np.where(used, cur, 0.0)
            cols[8] = cur * phases
            table = np.column_stack(cols).tolist() if len(p) else []
            self._ev_rows = dict(zip(rows.tolist(), table, strict=True))
        return self._ev_rows[row]

    def meter_rows(self) -> list[list[float]]:
        """Per meter, then the grid connection point last: values in METER_METRICS order."""
        if self._meter_rows is None:
            ph = self.phys
            p = np.append(ph.meter_power_w, ph.grid_power_w)
            q = np.append(ph.meter_reactive_var, ph.grid_reactive_var)
            self._meter_rows = np.column_stack(
                self._ac_columns(p, q, ph.frequency_hz, ph.grid_voltage_v)
            ).tolist()
        return self._meter_rows

    def battery_rows(self) -> list[list[float]]:
        """Per battery: values in BATTERY_METRICS order."""
        if self._bat_rows is None:
            ph = self.phys
            p = ph.battery_power_w
            volt = ph.battery_voltage_v * (0.9 + 0.002 * ph.battery_soc_pct)
            cols = [
                ph.battery_soc_pct,
                p,
                ph.battery_capacity_wh,
                ph.battery_temperature_c + np.abs(p) * 2e-5,
                volt,
                p / volt,
            ]
            self._bat_rows = np.column_stack(cols).tolist() if len(p) else []
        return self._bat_rows


def frame_values(phys: SitePhysics, cid: int, snap: Snapshot) -> FrameValues:
    """Values, bounds, states and errors of component ``cid`` (a sensor: ``-id``) in ``snap``."""
    if cid < 0:  # sensor (keys use negative ids to stay apart from components)
        return [snap.irradiance, 20.0], {}, [sensors_pb2.SENSOR_STATE_CODE_OK], []
    kind = phys.kind_of(cid)
    if kind == "battery":
        return _battery_values(snap, phys.battery_row(cid))
    if kind == "inverter":
        return _inverter_values(phys, snap, cid)
    if kind == "ev_charger":
        return _ev_charger_values(phys, snap, cid)
    ready = [S.ELECTRICAL_COMPONENT_STATE_CODE_READY]
    if kind == "meter":
        return snap.meter_rows()[phys.meter_row(cid)], {}, ready, []
    return snap.meter_rows()[-1], {}, ready, []  # grid connection point


def _battery_values(snap: Snapshot, row: int) -> FrameValues:
    """`frame_values` of the battery in ``row``: SoC and DC power bounds, relay state."""
    state = snap.bat_state[row]
    p = snap.bat_p[row]
    bounds: dict[Any, list[Interval]] = {
        M.METRIC_BATTERY_SOC_PCT: [(snap.soc_min[row], snap.soc_max[row])],
        M.METRIC_DC_POWER: [(snap.bat_lo[row], snap.bat_hi[row])],
    }
    errors: list[Any] = []
    if state == ComponentState.RUNNING:
        states = [_flow_code(p), S.ELECTRICAL_COMPONENT_STATE_CODE_RELAY_CLOSED]
    elif state == ComponentState.ERROR:
        states = [
            S.ELECTRICAL_COMPONENT_STATE_CODE_ERROR,
            S.ELECTRICAL_COMPONENT_STATE_CODE_RELAY_OPEN,
        ]
        errors = [ec_pb2.ELECTRICAL_COMPONENT_DIAGNOSTIC_CODE_BATTERY_CONTROLLER_ERROR]
    else:
        states = [
            S.ELECTRICAL_COMPONENT_STATE_CODE_OFF,
            S.ELECTRICAL_COMPONENT_STATE_CODE_RELAY_OPEN,
        ]
    return snap.battery_rows()[row], bounds, states, errors


def _inverter_values(phys: SitePhysics, snap: Snapshot, cid: int) -> FrameValues:
    """`frame_values` of inverter ``cid``: active and reactive power bounds, its state."""
    row = phys.inverter_row(cid)
    code, errors = _power_row_state(snap, row)
    bounds: dict[Any, list[Interval]] = {
        M.METRIC_AC_POWER_ACTIVE: phys.active_power_bounds(cid),
        M.METRIC_AC_POWER_REACTIVE: phys.reactive_power_bounds(cid),
    }
    apparent_va = float(phys.inverter_rated_apparent_va[row])
    if math.isfinite(apparent_va):
        bounds[M.METRIC_AC_POWER_APPARENT] = [(0.0, apparent_va)]
    return snap.inverter_rows()[row], bounds, [code], errors


def _ev_charger_values(phys: SitePhysics, snap: Snapshot, cid: int) -> FrameValues:
    """`frame_values` of EV charger ``cid``: the active power bounds, its state (CHARGING
    or READY when running, as an inverter's) and its cable state (locked at the EV while
    a car is connected, else unplugged)."""
    row = phys.inverter_row(cid)
    code, errors = _power_row_state(snap, row)
    cable = (
        S.ELECTRICAL_COMPONENT_STATE_CODE_EV_CHARGING_CABLE_LOCKED_AT_EV
        if phys.ev_connected[row]
        else S.ELECTRICAL_COMPONENT_STATE_CODE_EV_CHARGING_CABLE_UNPLUGGED
    )
    bounds: dict[Any, list[Interval]] = {
        M.METRIC_AC_POWER_ACTIVE: phys.active_power_bounds(cid),
        M.METRIC_AC_POWER_REACTIVE: phys.reactive_power_bounds(cid),
    }
    return snap.ev_row(row), bounds, [code, cable], errors


def _power_row_state(snap: Snapshot, row: int) -> tuple[Any, list[Any]]:
    """State code and diagnostic codes of the power row ``row`` (inverter or EV charger)."""
    state = snap.inv_state[row]
    errors = []
    if state == ComponentState.RUNNING:
        code = _flow_code(snap.inv_p[row])
    elif state == ComponentState.STANDBY:
        code = S.ELECTRICAL_COMPONENT_STATE_CODE_STANDBY
    elif state == ComponentState.OFF:
        code = S.ELECTRICAL_COMPONENT_STATE_CODE_OFF
    else:
        code = S.ELECTRICAL_COMPONENT_STATE_CODE_ERROR
        errors = [ec_pb2.ELECTRICAL_COMPONENT_DIAGNOSTIC_CODE_HARDWARE_FAULT]
    return code, errors


def _flow_code(power_w: float) -> Any:
    """State code of a running device: CHARGING above 1 W, DISCHARGING below -1 W, else READY."""
    if power_w > 1.0:
        return S.ELECTRICAL_COMPONENT_STATE_CODE_CHARGING
    if power_w < -1.0:
        return S.ELECTRICAL_COMPONENT_STATE_CODE_DISCHARGING
    return S.ELECTRICAL_COMPONENT_STATE_CODE_READY


def corrupt_frame(tmpl: Template, kind: str, mode: str) -> bytes:
    """The frame ``tmpl`` just rendered, corrupted per the bad-metric ``mode``.

    ``kind`` is the component's (`SitePhysics.kind_of`): an inverter's active
    power is corrupted, otherwise a battery's SoC.
    """
    msg = tmpl.decoded()
    samples: Any = tmpl.body(msg).metric_samples
    if kind in ("inverter", "ev_charger"):
        value_metric: int = M.METRIC_AC_POWER_ACTIVE
        bound_metrics: tuple[int, ...] = (M.METRIC_AC_POWER_ACTIVE,)
    else:
        value_metric = M.METRIC_BATTERY_SOC_PCT
        bound_metrics = (M.METRIC_DC_POWER, M.METRIC_BATTERY_SOC_PCT)
    if tmpl.wire == "v1":
        value_metric = V1_METRIC[value_metric]
        bound_metrics = tuple(V1_METRIC[m] for m in bound_metrics)
    if mode == "missing_bounds":
        for sample in samples:
            if sample.metric in bound_metrics:
                del sample.bounds[:]
    elif mode == "missing":
        for i in reversed(range(len(samples))):
            if samples[i].metric == value_metric:
                del samples[i]
    else:
        value = {"nan": math.nan, "+inf": math.inf, "-inf": -math.inf}[mode]
        for sample in samples:
            if sample.metric == value_metric:
                sample.value.simple_metric.value = value
    data: bytes = msg.SerializeToString()
    return data
