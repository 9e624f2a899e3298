"""The simulator's telemetry encoder writes what protobuf would (`simulator._encoding`).

The reference is the encoder it replaced: a generated response message filled
field by field and serialised by protobuf (`_Reference`, kept here as it was).
Every frame is compared twice: byte for byte, and decoded with the generated
classes field by field (presence, order, NaN and the sign of zero included), on
the wire shapes of v1 and v1alpha18/v1alpha19, for components and sensors.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Callable
from typing import Any

import grpc
import grpc.aio
import pytest
from frequenz.api.common.v1.metrics import bounds_pb2 as v1_bounds_pb2
from frequenz.api.common.v1alpha8.microgrid.electrical_components import (
    electrical_components_pb2 as ec_pb2,
)
from frequenz.api.microgrid.v1 import microgrid_pb2 as v1_pb2
from frequenz.api.microgrid.v1alpha18 import microgrid_pb2 as a18_pb2
from frequenz.api.microgrid.v1alpha19 import microgrid_pb2 as a19_pb2
from google.protobuf.message import Message

from simulator._frames import (
    BATTERY_METRICS,
    INVERTER_METRICS,
    METER_METRICS,
    SENSOR_METRICS,
    M,
    Template,
    corrupt_frame,
)
from simulator._wire import (
    V1_METRIC,
    Wire,
    fast_enum,
    v1_error_code,
    v1_sensor_state_code,
    v1_state_code,
)
from simulator.faults import BAD_METRIC_MODES
from simulator.server import SimulatorServer

S = ec_pb2.ElectricalComponentStateCode


class _Reference:
    """The protobuf-object encoder `Template` replaced (one per frame: no state carried)."""

    def __init__(
        self,
        component_id: int,
        metrics: tuple[int, ...],
        full: tuple[int, ...],
        sensor: bool = False,
        wire: Wire = "v1alpha8",
    ) -> None:
        self.metrics = metrics
        self.wire = wire
        self.index = [full.index(m) for m in metrics]
        v1 = wire == "v1"
        wire_metrics = [V1_METRIC[m] for m in metrics] if v1 else list(metrics)
        body: Any
        if sensor and v1:
            self.msg: Any = v1_pb2.ReceiveSensorDataStreamResponse()
            body = self.msg.data
        elif sensor:
            self.msg = a18_pb2.ReceiveSensorTelemetryStreamResponse()
            body = self.msg.telemetry
        elif v1:
            self.msg = v1_pb2.ReceiveComponentDataStreamResponse()
            body = self.msg.data
            body.component_id = component_id
        else:
            self.msg = a18_pb2.ReceiveElectricalComponentTelemetryStreamResponse()
            body = self.msg.telemetry
            body.electrical_component_id = component_id
        if sensor:
            body.sensor_id = component_id
        self.samples = [body.metric_samples.add(metric=m) for m in wire_metrics]
        self.snapshot: Any = body.states.add() if v1 else body.state_snapshots.add()
        self._sensor = sensor

    def body(self, msg: Any) -> Any:
        return msg.data if self.wire == "v1" else msg.telemetry

    def decoded(self) -> Message:
        msg: Message = type(self.msg)()
        msg.CopyFrom(self.msg)
        return msg

    def render(
        self,
        seconds: int,
        nanos: int,
        values: list[float],
        bounds: dict[int, list[tuple[float, float]]],
        states: list[int],
        errors: list[int],
    ) -> bytes:
        v1 = self.wire == "v1"
        for metric, idx, sample in zip(self.metrics, self.index, self.samples, strict=True):
            ts = sample.sampled_at if v1 else sample.sample_time
            ts.seconds = seconds
            ts.nanos = nanos
            sample.value.simple_metric.value = values[idx]
            if metric in bounds:
                del sample.bounds[:]
                for lo, hi in bounds[metric]:
                    b = sample.bounds.add()
                    if lo != -math.inf:
                        b.lower = lo
                    if hi != math.inf:
                        b.upper = hi
        snap = self.snapshot
        ts = snap.sampled_at if v1 else snap.origin_time
        ts.seconds = seconds
        ts.nanos = nanos
        if v1:
            to_v1 = v1_sensor_state_code if self._sensor else v1_state_code
            states = [to_v1(c) for c in states]
        snap.states.extend(states)
        for code in errors:
            if v1:
                snap.errors.append(v1_error_code(code))
            else:
                snap.errors.add(diagnostic_code=code)
        data: bytes = self.msg.SerializeToString()
        return data


def assert_same(got: Message, want: Message, path: str = "") -> None:
    """``got`` and ``want`` have the same fields set, in the same order, with the same values
    (NaN equals NaN; the sign of zero counts)."""
    got_fields, want_fields = got.ListFields(), want.ListFields()
    names = [f.name for f, _ in got_fields]
    assert names == [f.name for f, _ in want_fields], path
    for (field, a), (_, b) in zip(got_fields, want_fields, strict=True):
        where = f"{path}.{field.name}"
        if field.message_type is not None and field.is_repeated:
            assert len(a) == len(b), where
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                assert_same(x, y, f"{where}[{i}]")
        elif field.message_type is not None:
            assert_same(a, b, where)
        elif field.is_repeated:
            assert list(a) == list(b), where
        elif isinstance(a, float):
            assert a == b or (math.isnan(a) and math.isnan(b)), (where, a, b)
            assert math.copysign(1.0, a) == math.copysign(1.0, b), (where, a, b)
        else:
            assert a == b, where


def assert_equivalent(fast: bytes, reference: _Reference, data: bytes) -> None:
    """The fast frame ``fast`` is the reference's ``data``: the same bytes, the same message."""
    got = type(reference.msg).FromString(fast)
    want = type(reference.msg).FromString(data)
    assert_same(got, want)
    assert fast == data


_SPECIAL = [0.0, -0.0, 1e-50, -1e-50, math.nan, math.inf, -math.inf, 1e39, -1e39, 3.4e38, 1.0]
"""Values protobuf treats specially as floats: +0.0 is left out, -0.0 and a value that
rounds to -0.0 are written, beyond the float range is infinite."""


def test_random_frames_encode_as_protobuf_does_on_both_wire_shapes() -> None:
    rng = random.Random(19)
    shapes = [(m, False) for m in (INVERTER_METRICS, BATTERY_METRICS, METER_METRICS)]
    shapes.append((SENSOR_METRICS, True))
    for trial in range(400):
        wire: Wire = "v1" if trial % 2 else "v1alpha8"
        full, sensor = shapes[trial % len(shapes)]
        metrics = tuple(m for m in full if rng.random() < 0.8) or full
        cid = rng.choice([0, 1, 10, 127, 128, 1000, 2**40])
        fast = Template(cid, metrics, full, sensor=sensor, wire=wire)
        bounded = [] if sensor else [m for m in full if rng.random() < 0.3]
        for _ in range(3):  # the same template again: nothing of the last frame stays
            seconds = rng.choice([0, 1, 1_700_000_000, 2**35])
            nanos = rng.choice([0, 1, 500_000, 999_999_999])
            values = [
                rng.choice(_SPECIAL) if rng.random() < 0.3 else rng.uniform(-1e6, 1e6) for _ in full
            ]
            ends = [-math.inf, math.inf, 0.0, -0.0, -5.0, 1e39, rng.uniform(-1e5, 1e5)]
            bounds = {
                m: [(rng.choice(ends), rng.choice(ends)) for _ in range(rng.randint(0, 2))]
                for m in bounded
            }
            states = [rng.choice([0, 1, 2, 10, 11, 200]) for _ in range(rng.randint(0, 2))]
            errors = [rng.choice([0, 1, 5, 200]) for _ in range(rng.randint(0, 2))]
            args = (seconds, nanos, values, bounds, states, errors)
            ref = _Reference(cid, metrics, full, sensor=sensor, wire=wire)
            assert_equivalent(fast.render(*args), ref, ref.render(*args))


@pytest.mark.parametrize("wire", ["v1", "v1alpha8"])
@pytest.mark.parametrize("kind", ["inverter", "battery"])
def test_bad_metric_corruption_is_unchanged(wire: Wire, kind: str) -> None:
    full = INVERTER_METRICS if kind == "inverter" else BATTERY_METRICS
    bounds = {m: [(-10.0, 10.0)] for m in (M.METRIC_AC_POWER_ACTIVE, M.METRIC_DC_POWER)}
    args = (1_700_000_000, 5, [float(i + 1) for i in range(len(full))], bounds, [1], [])
    for mode in BAD_METRIC_MODES:
        fast, ref = Template(10, full, full, wire=wire), _Reference(10, full, full, wire=wire)
        fast.render(*args)
        ref.render(*args)
        got, want = corrupt_frame(fast, kind, mode), corrupt_frame(ref, kind, mode)  # type: ignore[arg-type]
        assert_equivalent(got, ref, want)


Recorded = list[tuple[tuple[Any, ...], tuple[Any, ...], bytes]]


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> Recorded:
    """Every frame `Template.render` encodes from now on: (template args, render args, bytes)."""
    frames: Recorded = []
    init, render = Template.__init__, Template.render

    def spy_init(self: Template, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self._test_args = (*args, kwargs.get("sensor", False), kwargs.get("wire", "v1alpha8"))  # type: ignore[attr-defined]

    def spy_render(self: Template, *args: Any) -> bytes:
        data = render(self, *args)
        frames.append((self._test_args, args, data))  # type: ignore[attr-defined]
        return data

    monkeypatch.setattr(Template, "__init__", spy_init)
    monkeypatch.setattr(Template, "render", spy_render)
    return frames


async def test_served_frames_are_protobufs_encoding_on_three_versions_after_setpoints_and_faults(
    sim_factory: Callable[..., Any], recorded: Recorded
) -> None:
    """Default site, real gRPC: streams on v1, v1alpha18 and v1alpha19 (inverter, battery,
    meter, grid, PV, sensor, a metric filter) before and after a setpoint, a bounds
    augmentation and injected errors. Every frame received is one the encoder wrote,
    and every frame it wrote is the reference's."""
    srv: SimulatorServer = await sim_factory(None, telemetry_hz=20.0)
    a18 = "/frequenz.api.microgrid.v1alpha18.Microgrid/"
    a19 = "/frequenz.api.microgrid.v1alpha19.Microgrid/"
    v1 = "/frequenz.api.microgrid.v1.Microgrid/"
    component18 = a18_pb2.ReceiveElectricalComponentTelemetryStreamRequest
    component19 = a19_pb2.ReceiveElectricalComponentTelemetryStreamRequest
    streams: list[tuple[str, Message]] = [
        (
            a18 + "ReceiveElectricalComponentTelemetryStream",
            component18(electrical_component_id=10),
        ),
        (
            a19 + "ReceiveElectricalComponentTelemetryStream",
            component19(electrical_component_id=21),
        ),
        (a19 + "ReceiveElectricalComponentTelemetryStream", component19(electrical_component_id=1)),
        (
            a19 + "ReceiveElectricalComponentTelemetryStream",
            component19(
                electrical_component_id=20,
                filter={"metrics": [M.METRIC_AC_POWER_ACTIVE, M.METRIC_AC_FREQUENCY]},
            ),
        ),
        (
            v1 + "ReceiveComponentDataStream",
            v1_pb2.ReceiveComponentDataStreamRequest(component_id=10),
        ),
        (
            v1 + "ReceiveComponentDataStream",
            v1_pb2.ReceiveComponentDataStreamRequest(component_id=21),
        ),
        (
            v1 + "ReceiveComponentDataStream",
            v1_pb2.ReceiveComponentDataStreamRequest(component_id=5),
        ),
        (
            v1 + "ReceiveComponentDataStream",
            v1_pb2.ReceiveComponentDataStreamRequest(component_id=2),
        ),
    ]
    async with grpc.aio.insecure_channel(srv.address) as channel:
        sensors = await channel.unary_unary(
            v1 + "ListSensors",
            request_serializer=v1_pb2.ListSensorRequest.SerializeToString,
            response_deserializer=v1_pb2.ListSensorsResponse.FromString,
        )(v1_pb2.ListSensorRequest())
        sid = sensors.sensors[0].id
        streams += [
            (v1 + "ReceiveSensorDataStream", v1_pb2.ReceiveSensorDataStreamRequest(sensor_id=sid)),
            (
                a18 + "ReceiveSensorTelemetryStream",
                a18_pb2.ReceiveSensorTelemetryStreamRequest(sensor_id=sid),
            ),
        ]
        calls = [
            channel.unary_stream(
                method, request_serializer=type(req).SerializeToString, response_deserializer=None
            )(req)
            for method, req in streams
        ]
        received: list[bytes] = []

        async def read_all(count: int) -> None:
            for call in calls:
                for _ in range(count):
                    received.append(await call.read())

        async with asyncio.timeout(30):  # a hang guard only
            await read_all(2)
            setpoint = channel.unary_stream(
                a19 + "SetElectricalComponentPower",
                request_serializer=a19_pb2.SetElectricalComponentPowerRequest.SerializeToString,
                response_deserializer=a19_pb2.SetElectricalComponentPowerResponse.FromString,
            )(
                a19_pb2.SetElectricalComponentPowerRequest(
                    electrical_component_id=10,
                    power_type=a19_pb2.POWER_TYPE_ACTIVE,
                    power=20_000.0,
                    request_lifetime=60,
                )
            )
            await setpoint.read()
            setpoint.cancel()
            await channel.unary_unary(
                v1 + "AddComponentBounds",
                request_serializer=v1_pb2.AddComponentBoundsRequest.SerializeToString,
                response_deserializer=v1_pb2.AddComponentBoundsResponse.FromString,
            )(
                v1_pb2.AddComponentBoundsRequest(
                    component_id=10,
                    target_metric=V1_METRIC[M.METRIC_AC_POWER_ACTIVE],
                    bounds=[v1_bounds_pb2.Bounds(lower=-15_000.0, upper=25_000.0)],
                )
            )
            srv.physics.inject_error(20)
            srv.physics.inject_error(21)
            while _covered(recorded) != _EVERY_CASE:  # the setpoint takes effect after 0.1 s
                await srv.wait_for_generation(1)
            await read_all(2)
        for call in calls:
            call.cancel()

    assert set(received) <= {data for _, _, data in recorded}
    for template_args, render_args, data in recorded:
        ref = _Reference(*template_args)
        assert_equivalent(data, ref, ref.render(*render_args))


_EVERY_CASE = {
    f"{wire} {case}"
    for wire in ("v1", "v1alpha8")
    for case in ("bounds", "errors", "charging", "sensor")
}


def _covered(recorded: Recorded) -> set[str]:
    """Which cases of `_EVERY_CASE` the frames ``recorded`` so far show."""
    seen: set[str] = set()
    for (*_, sensor, wire), (_, _, _, bounds, states, errors), _ in recorded:
        seen |= {f"{wire} bounds"} if bounds else set()
        seen |= {f"{wire} errors"} if errors else set()
        seen |= (
            {f"{wire} charging"} if S.ELECTRICAL_COMPONENT_STATE_CODE_CHARGING in states else set()
        )
        seen |= {f"{wire} sensor"} if sensor else set()
    return seen


def test_fast_enum_has_every_value_and_still_names_them() -> None:
    fast = fast_enum(ec_pb2.ElectricalComponentStateCode)
    for name, number in ec_pb2.ElectricalComponentStateCode.items():
        assert getattr(fast, name) == number
        assert fast.Name(number) == name
    assert "ELECTRICAL_COMPONENT_STATE_CODE_READY" not in vars(
        ec_pb2.ElectricalComponentStateCode
    )  # the generated wrapper itself is left as it was
