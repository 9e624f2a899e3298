"""The two wire shapes the simulator speaks, and the tables between their numbers.

The simulator models a site once, in the numbering of the common API v1alpha8
(what ``frequenz.api.microgrid.v1alpha18`` and ``v1alpha19`` carry: they are the
same messages on the wire). ``frequenz.api.microgrid.v1`` (the original 0.17
API) carries ``frequenz.api.common.v1`` types, whose enums name the same things
with other names and, from 68 on, other numbers: AC active power is
``METRIC_AC_POWER_ACTIVE`` in v1alpha8 and ``METRIC_AC_ACTIVE_POWER`` in v1 (26
in both), but SoC is 101 in v1alpha8 and 102 in v1 (where 101 is the battery
capacity), irradiance 166 and 167; the grid connection point is category 1 in
both, but CHP is 9 in v1alpha8 and 10 in v1. Every translation
goes through the tables here, built once from the enum names (so they cannot
drift from the generated code).

Offers `API_VERSIONS` (the service versions, newest of a kind last),
`SERVICE_NAMES` (version -> gRPC service name), `wire_of` (version -> the wire
shape, ``"v1"`` or ``"v1alpha8"``), the tables `V1_METRIC` / `V1ALPHA8_METRIC`
(metric numbers each way), `V1_CATEGORY` / `V1ALPHA8_CATEGORY` (component
categories each way), `v1_state_code`, `v1_error_code`, `v1_sensor_state_code`,
`enum_name` (a value's name, or its number when the enum does not know it) and
`fast_enum` (a generated enum whose values are plain attributes).
"""

from __future__ import annotations

import copy
from typing import Any, Literal, TypeVar

from frequenz.api.common.v1.metrics import metric_sample_pb2 as v1_metrics_pb2
from frequenz.api.common.v1.microgrid.components import components_pb2 as v1_comp_pb2
from frequenz.api.common.v1.microgrid.sensors import sensors_pb2 as v1_sensors_pb2
from frequenz.api.common.v1alpha8.metrics import metrics_pb2
from frequenz.api.common.v1alpha8.microgrid.electrical_components import (
    electrical_components_pb2 as ec_pb2,
)
from frequenz.api.common.v1alpha8.microgrid.sensors import sensors_pb2

__all__ = [
    "API_VERSIONS",
    "SERVICE_NAMES",
    "V1ALPHA8_CATEGORY",
    "V1ALPHA8_METRIC",
    "V1_CATEGORY",
    "V1_METRIC",
    "Wire",
    "enum_name",
    "fast_enum",
    "v1_error_code",
    "v1_sensor_state_code",
    "v1_state_code",
    "wire_of",
]

Wire = Literal["v1", "v1alpha8"]
"""A wire shape: ``"v1"`` (common v1 types) or ``"v1alpha8"`` (v1alpha18/19)."""

API_VERSIONS: tuple[str, ...] = ("v1", "v1alpha18", "v1alpha19")
"""The Microgrid API versions the simulator serves."""

SERVICE_NAMES: dict[str, str] = {v: f"frequenz.api.microgrid.{v}.Microgrid" for v in API_VERSIONS}
"""The gRPC service name of each version."""


def wire_of(version: str) -> Wire:
    """The wire shape of API ``version`` (v1alpha18 and v1alpha19 share one)."""
    return "v1" if version == "v1" else "v1alpha8"


def enum_name(enum: Any, value: int) -> str:
    """``enum``'s name of ``value``, or the bare number if the enum has none.

    A client may send any number in an enum field; an error message naming it
    must not fail on it (``Name`` raises `ValueError` for unknown numbers).
    """
    try:
        name: str = enum.Name(value)
    except ValueError:
        return str(value)
    return name


_Enum = TypeVar("_Enum")


def fast_enum(enum: _Enum) -> _Enum:
    """A copy of the generated enum wrapper ``enum`` whose values are plain attributes.

    The generated wrapper finds ``Enum.NAME`` through a Python ``__getattr__``
    (a string search each time); code run for every telemetry frame reads
    several such names. The copy keeps ``Name``, ``Value``, ``items`` etc.
    """
    fast = copy.copy(enum)
    vars(fast).update(enum.items())  # type: ignore[attr-defined]
    return fast


def _by_name(src: Any, dst: Any, rename: dict[str, str], prefix: tuple[str, str]) -> dict[int, int]:
    """``src`` number -> ``dst`` number for the names both enums have.

    A ``src`` name is looked up in ``dst`` after ``rename`` (whole names) or
    after replacing the prefix ``prefix[0]`` by ``prefix[1]``.
    """
    out: dict[int, int] = {}
    dst_names = set(dst.keys())
    for name, number in src.items():
        target = rename.get(name)
        if target is None and name.startswith(prefix[0]):
            target = prefix[1] + name[len(prefix[0]) :]
        if target in dst_names:
            out[number] = dst.Value(target)
    return out


def _v1_metric_name(name: str) -> str:
    """The v1 name of a v1alpha8 metric: ``AC_POWER_ACTIVE`` -> ``AC_ACTIVE_POWER`` etc."""
    for quantity in ("POWER", "ENERGY"):
        for kind in ("ACTIVE", "REACTIVE", "APPARENT"):
            name = name.replace(f"METRIC_AC_{quantity}_{kind}", f"METRIC_AC_{kind}_{quantity}")
    return name


_M8 = metrics_pb2.Metric
_M1 = v1_metrics_pb2.Metric

_V1_METRIC_NAMES = {n: _v1_metric_name(n) for n, _ in _M8.items()}
V1_METRIC: dict[int, int] = _by_name(_M8, _M1, _V1_METRIC_NAMES, ("", ""))
"""v1alpha8 metric number -> v1 metric number (by meaning; every metric the
simulator streams is in it, v1alpha8's ``METRIC_PRESSURE_ABSOLUTE`` is not)."""
V1ALPHA8_METRIC: dict[int, int] = {v1: v8 for v8, v1 in V1_METRIC.items()}
"""v1 metric number -> v1alpha8 metric number."""

_C8 = ec_pb2.ElectricalComponentCategory
_C1 = v1_comp_pb2.ComponentCategory
V1_CATEGORY: dict[int, int] = _by_name(
    _C8,
    _C1,
    {
        "ELECTRICAL_COMPONENT_CATEGORY_GRID_CONNECTION_POINT": "COMPONENT_CATEGORY_GRID",
        "ELECTRICAL_COMPONENT_CATEGORY_BREAKER": "COMPONENT_CATEGORY_RELAY",
        "ELECTRICAL_COMPONENT_CATEGORY_POWER_TRANSFORMER": "COMPONENT_CATEGORY_VOLTAGE_TRANSFORMER",
    },
    ("ELECTRICAL_COMPONENT_CATEGORY_", "COMPONENT_CATEGORY_"),
)
"""v1alpha8 component category -> v1 category (by meaning: the grid connection
point is v1's GRID, CHP 9 is v1's 10, …)."""
V1ALPHA8_CATEGORY: dict[int, int] = {v1: v8 for v8, v1 in V1_CATEGORY.items()}
"""v1 component category -> v1alpha8 category."""

_STATE = _by_name(
    ec_pb2.ElectricalComponentStateCode,
    v1_comp_pb2.ComponentStateCode,
    {},
    ("ELECTRICAL_COMPONENT_STATE_CODE_", "COMPONENT_STATE_CODE_"),
)
_ERROR = _by_name(
    ec_pb2.ElectricalComponentDiagnosticCode,
    v1_comp_pb2.ComponentErrorCode,
    {},
    ("ELECTRICAL_COMPONENT_DIAGNOSTIC_CODE_", "COMPONENT_ERROR_CODE_"),
)
_SENSOR_STATE = _by_name(
    sensors_pb2.SensorStateCode,
    v1_sensors_pb2.SensorStateCode,
    {"SENSOR_STATE_CODE_OK": "SENSOR_STATE_CODE_ON"},
    ("", ""),
)


def v1_state_code(code: int) -> int:
    """The v1 ``ComponentStateCode`` of a v1alpha8 state code (UNKNOWN if v1 has none)."""
    return _STATE.get(code, v1_comp_pb2.COMPONENT_STATE_CODE_UNKNOWN)


def v1_error_code(code: int) -> int:
    """The v1 ``ComponentErrorCode`` of a v1alpha8 diagnostic code (UNKNOWN if v1 has
    none, e.g. HARDWARE_FAULT)."""
    return _ERROR.get(code, v1_comp_pb2.COMPONENT_ERROR_CODE_UNKNOWN)


def v1_sensor_state_code(code: int) -> int:
    """The v1 ``SensorStateCode`` of a v1alpha8 one (OK is v1's ON)."""
    return _SENSOR_STATE.get(code, v1_sensors_pb2.SENSOR_STATE_CODE_UNSPECIFIED)
