"""Hypothesis strategies for random and hostile telemetry (v1alpha8 messages).

`telemetry(cid, battery)` draws one ``ElectricalComponentTelemetry``: NaN, ±inf,
huge values, missing metrics, bounds in any shape and error states.
"""

from __future__ import annotations

from frequenz.api.common.v1alpha8.metrics import bounds_pb2, metrics_pb2
from frequenz.api.common.v1alpha8.microgrid.electrical_components import (
    electrical_components_pb2 as ec,
)
from hypothesis import strategies as st

hostile = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e300, -1e300, 5e-324]),
    st.floats(-2e5, 2e5),
)
maybe = st.one_of(st.none(), hostile)
interval = st.tuples(maybe, maybe)
states = st.sampled_from(
    [
        ec.ELECTRICAL_COMPONENT_STATE_CODE_READY,
        ec.ELECTRICAL_COMPONENT_STATE_CODE_ERROR,
        ec.ELECTRICAL_COMPONENT_STATE_CODE_UNSPECIFIED,
        ec.ELECTRICAL_COMPONENT_STATE_CODE_STANDBY,
    ]
)


def _bounds(lo: float | None, hi: float | None) -> bounds_pb2.Bounds:
    b = bounds_pb2.Bounds()
    if lo is not None:
        b.lower = lo
    if hi is not None:
        b.upper = hi
    return b


@st.composite
def telemetry(
    draw: st.DrawFn, cid: int, battery: bool, reactive: bool = False
) -> ec.ElectricalComponentTelemetry:
    """One message; with ``reactive`` an inverter's also carries hostile reactive power,
    apparent power and voltages (with hostile bounds)."""
    tel = ec.ElectricalComponentTelemetry(electrical_component_id=cid)
    metrics = (
        [metrics_pb2.METRIC_DC_POWER, metrics_pb2.METRIC_BATTERY_SOC_PCT,
         metrics_pb2.METRIC_BATTERY_CAPACITY]
        if battery
        else [metrics_pb2.METRIC_AC_POWER_ACTIVE]
    )
    if reactive and not battery:
        metrics += [metrics_pb2.METRIC_AC_POWER_REACTIVE, metrics_pb2.METRIC_AC_POWER_APPARENT,
                    metrics_pb2.METRIC_AC_VOLTAGE, metrics_pb2.METRIC_AC_VOLTAGE_PHASE_1_N]
    for metric in metrics:
        if draw(st.booleans()) and draw(st.booleans()):
            continue  # a missing metric
        sample = tel.metric_samples.add(metric=metric)
        value = draw(maybe)
        if value is not None:
            sample.value.simple_metric.value = value
        sample.bounds.extend(_bounds(*b) for b in draw(st.lists(interval, max_size=3)))
    tel.state_snapshots.add(states=[draw(states)])
    return tel
