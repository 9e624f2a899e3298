"""One simulator serves the Microgrid API v1, v1alpha18 and v1alpha19 at once (real gRPC).

The v1 client is built from the package's own ``frequenz.api.microgrid.v1`` stubs.
Timeouts in ``asyncio.timeout`` only guard against hangs; expiry is read through
the simulator's physics time, never the wall clock.
"""

from __future__ import annotations

import asyncio
import math
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import grpc.aio
import pytest
from frequenz.api.common.v1.metrics import bounds_pb2 as v1_bounds_pb2
from frequenz.api.common.v1.metrics import metric_sample_pb2 as v1_metrics
from frequenz.api.common.v1.microgrid.components import components_pb2 as v1_comp
from frequenz.api.common.v1alpha8.metrics import metrics_pb2
from frequenz.api.microgrid.v1 import microgrid_pb2 as v1_pb2
from frequenz.api.microgrid.v1 import microgrid_pb2_grpc as v1_grpc
from frequenz.api.microgrid.v1alpha18 import microgrid_pb2 as a18_pb2
from frequenz.api.microgrid.v1alpha18 import microgrid_pb2_grpc as a18_grpc
from frequenz.api.microgrid.v1alpha19 import microgrid_pb2 as a19_pb2
from frequenz.api.microgrid.v1alpha19 import microgrid_pb2_grpc as a19_grpc
from google.protobuf import empty_pb2

from controller.runtime.embedded import start_simulator_process
from simulator._frames import Template, corrupt_frame
from simulator.config import SiteConfig
from simulator.server import SimulatorServer

pytestmark = pytest.mark.integration

ACTIVE_V1 = v1_metrics.METRIC_AC_ACTIVE_POWER  # 26, as v1alpha8's METRIC_AC_POWER_ACTIVE
SOC_V1 = v1_metrics.METRIC_BATTERY_SOC_PCT  # 102; 101 in v1alpha8 (v1's METRIC_BATTERY_CAPACITY)
INVERTER, BATTERY, METER, GRID = 10, 11, 3, 1


class Clients:
    """A v1, a v1alpha18 and a v1alpha19 stub on one channel to one server."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.v1 = v1_grpc.MicrogridStub(channel)
        self.a18 = a18_grpc.MicrogridStub(channel)
        self.a19 = a19_grpc.MicrogridStub(channel)


@pytest.fixture
async def feeder(
    sim_factory: Callable[..., Any], feeder_site: Callable[..., SiteConfig]
) -> AsyncIterator[tuple[SimulatorServer, Clients]]:
    """The feeder site (grid 1, meters 2 and 3, inverter 10 on battery 11) and clients."""
    srv = await sim_factory(feeder_site())
    async with grpc.aio.insecure_channel(srv.address) as channel:
        yield srv, Clients(channel)


async def _code(call: Any) -> grpc.StatusCode:
    """The status code a unary call ends with (OK if it succeeds)."""
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def _v1_until(
    stub: v1_grpc.MicrogridStub,
    cid: int,
    pred: Callable[[Any], bool],
    metrics: tuple[int, ...] = (),
) -> Any:
    """The first v1 ``ComponentData`` of ``cid`` for which ``pred`` holds."""
    request = v1_pb2.ReceiveComponentDataStreamRequest(component_id=cid)
    if metrics:
        request.filter.metrics.extend(metrics)
    call = stub.ReceiveComponentDataStream(request)
    try:
        async with asyncio.timeout(20):
            async for msg in call:
                if pred(msg.data):
                    return msg.data
    finally:
        call.cancel()
    raise AssertionError("stream ended")


async def _a18_until(stub: a18_grpc.MicrogridStub, cid: int, pred: Callable[[Any], bool]) -> Any:
    """The first v1alpha18 telemetry of ``cid`` for which ``pred`` holds."""
    call = stub.ReceiveElectricalComponentTelemetryStream(
        a18_pb2.ReceiveElectricalComponentTelemetryStreamRequest(electrical_component_id=cid)
    )
    try:
        async with asyncio.timeout(20):
            async for msg in call:
                if pred(msg.telemetry):
                    return msg.telemetry
    finally:
        call.cancel()
    raise AssertionError("stream ended")


async def _drain(call: Any) -> None:
    """Read a stream until it ends (an error raises)."""
    while await call.read() is not grpc.aio.EOF:
        pass


def _value(data: Any, metric: int) -> float:
    return float(
        next(s.value.simple_metric.value for s in data.metric_samples if s.metric == metric)
    )


def _bounds(data: Any, metric: int) -> list[tuple[float, float]]:
    sample = next(s for s in data.metric_samples if s.metric == metric)
    return [
        (
            b.lower if b.HasField("lower") else -math.inf,
            b.upper if b.HasField("upper") else math.inf,
        )
        for b in sample.bounds
    ]


async def test_three_versions_answer_at_once_with_their_own_numbers(
    feeder: tuple[SimulatorServer, Clients],
) -> None:
    srv, c = feeder
    v1_list, a18_list, a19_list, meta = await asyncio.gather(
        c.v1.ListComponents(v1_pb2.ListComponentsRequest()),
        c.a18.ListElectricalComponents(a18_pb2.ListElectricalComponentsRequest()),
        c.a19.ListElectricalComponents(a19_pb2.ListElectricalComponentsRequest()),
        c.v1.GetMicrogridMetadata(empty_pb2.Empty()),
    )
    assert meta.microgrid.id == 9
    assert meta.microgrid.name == "two feeders"
    v1_cats = {x.id: x.category for x in v1_list.components}
    assert v1_cats == {
        GRID: v1_comp.COMPONENT_CATEGORY_GRID,
        2: v1_comp.COMPONENT_CATEGORY_METER,
        METER: v1_comp.COMPONENT_CATEGORY_METER,
        INVERTER: v1_comp.COMPONENT_CATEGORY_INVERTER,
        BATTERY: v1_comp.COMPONENT_CATEGORY_BATTERY,
    }
    inverter = next(x for x in v1_list.components if x.id == INVERTER)
    assert [
        (b.metric, b.config_bounds.lower, b.config_bounds.upper)
        for b in inverter.metric_config_bounds
    ] == [(ACTIVE_V1, -100_000.0, 100_000.0)]
    assert {x.id for x in a18_list.electrical_components} == set(v1_cats)
    assert a19_list.SerializeToString() == a18_list.SerializeToString()
    assert srv.stats()["api_versions"] == ["v1", "v1alpha18", "v1alpha19"]


async def test_v1_list_filters(feeder: tuple[SimulatorServer, Clients]) -> None:
    _, c = feeder
    by_id = await c.v1.ListComponents(v1_pb2.ListComponentsRequest(component_ids=[INVERTER, 99]))
    assert [x.id for x in by_id.components] == [INVERTER]
    grid = await c.v1.ListComponents(
        v1_pb2.ListComponentsRequest(categories=[v1_comp.COMPONENT_CATEGORY_GRID])
    )
    assert [x.id for x in grid.components] == [GRID]
    meters_3 = await c.v1.ListComponents(
        v1_pb2.ListComponentsRequest(
            component_ids=[METER, INVERTER], categories=[v1_comp.COMPONENT_CATEGORY_METER]
        )
    )
    assert [x.id for x in meters_3.components] == [METER]
    # v1's CHP is 10, v1alpha8's is 9: neither matches anything on this site
    chp = await c.v1.ListComponents(
        v1_pb2.ListComponentsRequest(categories=[v1_comp.COMPONENT_CATEGORY_CHP])
    )
    assert list(chp.components) == []

    def pairs(resp: Any) -> set[tuple[int, int]]:
        return {(x.source_component_id, x.destination_component_id) for x in resp.connections}

    assert pairs(await c.v1.ListConnections(v1_pb2.ListConnectionsRequest())) == {
        (1, 3),
        (10, 11),
        (1, 2),
        (2, 10),
    }
    assert pairs(await c.v1.ListConnections(v1_pb2.ListConnectionsRequest(starts=[1]))) == {
        (1, 3),
        (1, 2),
    }
    assert pairs(
        await c.v1.ListConnections(v1_pb2.ListConnectionsRequest(starts=[1], ends=[2, 10]))
    ) == {(1, 2)}
    assert pairs(await c.v1.ListConnections(v1_pb2.ListConnectionsRequest(ends=[11]))) == {(10, 11)}


async def test_v1_stream_honours_the_metric_filter_in_v1_numbers(
    feeder: tuple[SimulatorServer, Clients],
) -> None:
    _, c = feeder
    only = await _v1_until(c.v1, INVERTER, lambda d: True, metrics=(ACTIVE_V1,))
    assert only.component_id == INVERTER
    assert [s.metric for s in only.metric_samples] == [ACTIVE_V1]
    assert _bounds(only, ACTIVE_V1) == [(-100_000.0, 100_000.0)]
    assert only.metric_samples[0].HasField("sampled_at")
    assert list(only.states[0].states) == [v1_comp.COMPONENT_STATE_CODE_READY]
    battery = await _v1_until(c.v1, BATTERY, lambda d: True)
    metrics = {s.metric for s in battery.metric_samples}
    assert SOC_V1 in metrics
    assert _value(battery, SOC_V1) == pytest.approx(50.0, abs=0.5)
    assert _value(battery, v1_metrics.METRIC_BATTERY_CAPACITY) == 400_000.0
    soc_only = await _v1_until(c.v1, BATTERY, lambda d: True, metrics=(SOC_V1,))
    assert [s.metric for s in soc_only.metric_samples] == [SOC_V1]
    # a v1 number the simulator does not model is left out, as a metric the component lacks
    none = await _v1_until(
        c.v1, INVERTER, lambda d: True, metrics=(v1_metrics.METRIC_AC_POWER_FACTOR,)
    )
    assert list(none.metric_samples) == []
    empty = c.v1.ReceiveComponentDataStream(
        v1_pb2.ReceiveComponentDataStreamRequest(
            component_id=INVERTER,
            filter=v1_pb2.ReceiveComponentDataStreamRequest.ComponentDataStreamFilter(),
        )
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await empty.read()
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_v1alpha18_and_v1alpha19_streams_share_one_frame(
    feeder: tuple[SimulatorServer, Clients],
) -> None:
    srv, c = feeder
    a18 = c.a18.ReceiveElectricalComponentTelemetryStream(
        a18_pb2.ReceiveElectricalComponentTelemetryStreamRequest(electrical_component_id=INVERTER)
    )
    a19 = c.a19.ReceiveElectricalComponentTelemetryStream(
        a19_pb2.ReceiveElectricalComponentTelemetryStreamRequest(electrical_component_id=INVERTER)
    )
    v1 = c.v1.ReceiveComponentDataStream(
        v1_pb2.ReceiveComponentDataStreamRequest(component_id=INVERTER)
    )
    try:
        async with asyncio.timeout(20):
            first = await asyncio.gather(a18.read(), a19.read(), v1.read())
        assert first[0].telemetry.electrical_component_id == INVERTER
        assert first[1].telemetry.electrical_component_id == INVERTER
        assert first[2].data.component_id == INVERTER
        phase = INVERTER % srv.telemetry_phases
        keys = [k for k in srv.telemetry.frames(phase) if k[0] == INVERTER]
        assert sorted(k[2] for k in keys) == ["v1", "v1alpha8"]  # one frame per wire
    finally:
        for call in (a18, a19, v1):
            call.cancel()


async def test_v1_setpoint_moves_the_inverter_in_every_versions_telemetry(
    feeder: tuple[SimulatorServer, Clients],
) -> None:
    srv, c = feeder
    resp = await c.v1.SetComponentPowerActive(
        v1_pb2.SetComponentPowerActiveRequest(component_id=INVERTER, power=30_000.0)
    )
    assert resp.HasField("valid_until")
    seen_v1 = await _v1_until(c.v1, INVERTER, lambda d: abs(_value(d, ACTIVE_V1) - 30_000.0) < 1.0)
    assert _value(seen_v1, ACTIVE_V1) == pytest.approx(30_000.0, abs=1.0)
    seen_a18 = await _a18_until(
        c.a18,
        INVERTER,
        lambda t: abs(_value(t, metrics_pb2.METRIC_AC_POWER_ACTIVE) - 30_000.0) < 1.0,
    )
    assert seen_a18.electrical_component_id == INVERTER
    stats = srv.stats()
    assert stats["setpoints_received"] == stats["setpoints_accepted"] == 1
    assert stats["per_component"][str(INVERTER)]["last_setpoint_w"] == 30_000.0


async def test_v1_bad_setpoints_get_the_codes_of_v1alpha18(
    feeder: tuple[SimulatorServer, Clients],
) -> None:
    srv, c = feeder

    def v1(cid: int, power: float, **kw: Any) -> Any:
        return c.v1.SetComponentPowerActive(
            v1_pb2.SetComponentPowerActiveRequest(component_id=cid, power=power, **kw)
        )

    async def a18(cid: int, power: float, **kw: Any) -> grpc.StatusCode:
        call = c.a18.SetElectricalComponentPower(
            a18_pb2.SetElectricalComponentPowerRequest(
                electrical_component_id=cid, power_type=a18_pb2.POWER_TYPE_ACTIVE, power=power, **kw
            )
        )
        try:
            await call.read()
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        finally:
            call.cancel()
        return grpc.StatusCode.OK

    cases: list[tuple[int, float, dict[str, Any], grpc.StatusCode]] = [
        (INVERTER, 1_000.0, {"request_lifetime": 9}, grpc.StatusCode.INVALID_ARGUMENT),
        (INVERTER, 1_000.0, {"request_lifetime": 901}, grpc.StatusCode.INVALID_ARGUMENT),
        (INVERTER, math.nan, {}, grpc.StatusCode.INVALID_ARGUMENT),
        (INVERTER, math.inf, {}, grpc.StatusCode.INVALID_ARGUMENT),
        (INVERTER, 1e9, {}, grpc.StatusCode.OUT_OF_RANGE),
        (77, 1_000.0, {}, grpc.StatusCode.NOT_FOUND),
        (METER, 1_000.0, {}, grpc.StatusCode.INVALID_ARGUMENT),
    ]
    for cid, power, kw, expected in cases:
        got_v1 = await _code(v1(cid, power, **kw))
        got_a18 = await a18(cid, power, **kw)
        assert (got_v1, got_a18) == (expected, expected), (cid, power, kw)
    rejected = srv.stats()["setpoints_rejected"]
    assert rejected["INVALID_ARGUMENT"] == 2 * 5
    assert rejected["NOT_FOUND"] == 2
    assert srv.stats()["setpoints_accepted"] == 0
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await v1(METER, 1_000.0)
    assert "inverter" in (err.value.details() or "")


async def test_v1_bounds_narrow_telemetry_then_lapse_after_5_s(
    sim_factory: Callable[..., Any], feeder_site: Callable[..., SiteConfig]
) -> None:
    srv = await sim_factory(feeder_site(), time_scale=25.0)
    async with grpc.aio.insecure_channel(srv.address) as channel:
        v1 = v1_grpc.MicrogridStub(channel)
        added_at_s = srv.physics.now_s
        resp = await v1.AddComponentBounds(
            v1_pb2.AddComponentBoundsRequest(
                component_id=INVERTER,
                target_metric=ACTIVE_V1,
                bounds=[v1_bounds_pb2.Bounds(lower=-20_000.0, upper=30_000.0)],
            )
        )
        assert resp.HasField("ts")
        narrowed = await _v1_until(
            v1, INVERTER, lambda d: _bounds(d, ACTIVE_V1) == [(-20_000.0, 30_000.0)], (ACTIVE_V1,)
        )
        assert narrowed.component_id == INVERTER
        await _v1_until(
            v1, INVERTER, lambda d: _bounds(d, ACTIVE_V1) == [(-100_000.0, 100_000.0)], (ACTIVE_V1,)
        )
        assert srv.physics.now_s >= added_at_s + 5.0  # lapsed, not earlier than its 5 s
        # a second augmentation intersects with the one in force (1 min validity)
        for lo, hi in ((-50_000.0, 10_000.0), (-5_000.0, 40_000.0)):
            await v1.AddComponentBounds(
                v1_pb2.AddComponentBoundsRequest(
                    component_id=INVERTER,
                    target_metric=ACTIVE_V1,
                    bounds=[v1_bounds_pb2.Bounds(lower=lo, upper=hi)],
                    validity_duration=v1_pb2.COMPONENT_BOUNDS_VALIDITY_DURATION_1_MINUTE,
                )
            )
        await _v1_until(
            v1, INVERTER, lambda d: _bounds(d, ACTIVE_V1) == [(-5_000.0, 10_000.0)], (ACTIVE_V1,)
        )
        bad = [
            (
                {"target_metric": SOC_V1},
                "METRIC_BATTERY_SOC_PCT is not supported; only METRIC_AC_ACTIVE_POWER",
            ),
            ({"validity_duration": 17}, "validity_duration 17"),
            ({"bounds": []}, "at least one interval"),
        ]
        for override, words in bad:
            fields: dict[str, Any] = {
                "component_id": INVERTER,
                "target_metric": ACTIVE_V1,
                "bounds": [v1_bounds_pb2.Bounds(lower=-1.0, upper=1.0)],
                **override,
            }
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await v1.AddComponentBounds(v1_pb2.AddComponentBoundsRequest(**fields))
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert words in (err.value.details() or ""), err.value.details()


async def test_v1_bounds_cap_is_resource_exhausted(feeder: tuple[SimulatorServer, Clients]) -> None:
    srv, c = feeder
    request = v1_pb2.AddComponentBoundsRequest(
        component_id=INVERTER,
        target_metric=ACTIVE_V1,
        bounds=[v1_bounds_pb2.Bounds(lower=-90_000.0, upper=90_000.0)],
        validity_duration=v1_pb2.COMPONENT_BOUNDS_VALIDITY_DURATION_15_MINUTES,
    )
    codes = [await _code(c.v1.AddComponentBounds(request)) for _ in range(17)]
    assert codes == [grpc.StatusCode.OK] * 16 + [grpc.StatusCode.RESOURCE_EXHAUSTED]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await c.v1.AddComponentBounds(request)
    assert "limit is 16 per component" in (err.value.details() or "")
    assert len(srv.physics.augmentation_tokens(INVERTER)) == 16


async def test_v1_state_commands(feeder: tuple[SimulatorServer, Clients]) -> None:
    srv, c = feeder

    def state_is(code: int) -> Callable[[Any], bool]:
        return lambda d: code in d.states[0].states

    await c.v1.PutComponentInStandby(v1_pb2.PutComponentInStandbyRequest(component_id=INVERTER))
    await _v1_until(c.v1, INVERTER, state_is(v1_comp.COMPONENT_STATE_CODE_STANDBY))
    await c.v1.StartComponent(v1_pb2.StartComponentRequest(component_id=INVERTER))
    await _v1_until(c.v1, INVERTER, state_is(v1_comp.COMPONENT_STATE_CODE_READY))
    await c.v1.StopComponent(v1_pb2.StopComponentRequest(component_id=INVERTER))
    await _v1_until(c.v1, INVERTER, state_is(v1_comp.COMPONENT_STATE_CODE_OFF))
    srv.physics.inject_error(INVERTER)
    errored = await _v1_until(c.v1, INVERTER, state_is(v1_comp.COMPONENT_STATE_CODE_ERROR))
    assert list(errored.states[0].errors) == [v1_comp.COMPONENT_ERROR_CODE_UNKNOWN]
    start_in_error = await _code(
        c.v1.StartComponent(v1_pb2.StartComponentRequest(component_id=INVERTER))
    )
    assert start_in_error == grpc.StatusCode.FAILED_PRECONDITION
    await c.v1.AckComponentError(v1_pb2.AckComponentErrorRequest(component_id=INVERTER))
    await c.v1.StartComponent(v1_pb2.StartComponentRequest(component_id=INVERTER))
    await _v1_until(c.v1, INVERTER, state_is(v1_comp.COMPONENT_STATE_CODE_READY))
    unknown = await _code(c.v1.StopComponent(v1_pb2.StopComponentRequest(component_id=77)))
    assert unknown == grpc.StatusCode.NOT_FOUND


async def test_v1_reactive_setpoint_and_sensor_stream(sim: SimulatorServer) -> None:
    """On the default site: inverter 10 takes ±50 kVAr; a weather sensor streams irradiance."""
    async with grpc.aio.insecure_channel(sim.address) as channel:
        v1 = v1_grpc.MicrogridStub(channel)
        reactive = await v1.SetComponentPowerReactive(
            v1_pb2.SetComponentPowerReactiveRequest(component_id=10, power=-20_000.0)
        )
        assert reactive.HasField("valid_until")
        reactive_v1 = v1_metrics.METRIC_AC_REACTIVE_POWER
        seen = await _v1_until(
            v1, 10, lambda d: _value(d, reactive_v1) == -20_000.0, (reactive_v1,)
        )
        assert _bounds(seen, reactive_v1) == [(-50_000.0, 50_000.0)]
        too_much = await _code(
            v1.SetComponentPowerReactive(
                v1_pb2.SetComponentPowerReactiveRequest(component_id=10, power=60_000.0)
            )
        )
        assert too_much == grpc.StatusCode.OUT_OF_RANGE
        sensors = await v1.ListSensors(v1_pb2.ListSensorRequest())
        sid = sensors.sensors[0].id
        call = v1.ReceiveSensorDataStream(v1_pb2.ReceiveSensorDataStreamRequest(sensor_id=sid))
        try:
            async with asyncio.timeout(20):
                msg = await call.read()
        finally:
            call.cancel()
        assert msg.data.sensor_id == sid
        assert {s.metric for s in msg.data.metric_samples} == {
            v1_metrics.METRIC_SENSOR_IRRADIANCE,
            v1_metrics.METRIC_SENSOR_TEMPERATURE,
        }
        unknown = v1.ReceiveSensorDataStream(v1_pb2.ReceiveSensorDataStreamRequest(sensor_id=7))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await unknown.read()
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_v1_stream_faults_break_and_corrupt(feeder: tuple[SimulatorServer, Clients]) -> None:
    srv, c = feeder
    call = c.v1.ReceiveComponentDataStream(
        v1_pb2.ReceiveComponentDataStreamRequest(component_id=INVERTER)
    )
    async with asyncio.timeout(20):
        await call.read()
        srv.break_streams(INVERTER)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await _drain(call)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    # the bad_metric fault corrupts a v1 frame's AC active power (v1 number 26)
    key = srv.telemetry.stream_key(INVERTER, None, "v1")
    tmpl = Template(INVERTER, key[1], key[1], wire="v1")
    tmpl.render(0, 0, [1.0] * len(key[1]), {}, [], [])
    frame = v1_pb2.ReceiveComponentDataStreamResponse.FromString(
        corrupt_frame(tmpl, "inverter", "nan")
    )
    assert math.isnan(_value(frame.data, ACTIVE_V1))
    assert _value(frame.data, v1_metrics.METRIC_AC_REACTIVE_POWER) == 1.0


async def test_api_versions_restrict_the_services(
    sim_factory: Callable[..., Any], feeder_site: Callable[..., SiteConfig]
) -> None:
    only_v1 = await sim_factory(feeder_site(), api_versions=("v1",))
    only_a18 = await sim_factory(feeder_site(), api_versions=("v1alpha18",))
    assert only_v1.stats()["api_versions"] == ["v1"]
    async with (
        grpc.aio.insecure_channel(only_v1.address) as ch1,
        grpc.aio.insecure_channel(only_a18.address) as ch18,
    ):
        v1_only, a18_only = Clients(ch1), Clients(ch18)
        assert await _code(v1_only.v1.ListComponents(v1_pb2.ListComponentsRequest())) == (
            grpc.StatusCode.OK
        )
        for call in (
            v1_only.a18.ListElectricalComponents(a18_pb2.ListElectricalComponentsRequest()),
            v1_only.a19.ListElectricalComponents(a19_pb2.ListElectricalComponentsRequest()),
            a18_only.v1.ListComponents(v1_pb2.ListComponentsRequest()),
            a18_only.a19.GetMicrogrid(empty_pb2.Empty()),
        ):
            assert await _code(call) == grpc.StatusCode.UNIMPLEMENTED
        assert await _code(a18_only.a18.GetMicrogrid(empty_pb2.Empty())) == grpc.StatusCode.OK
    with pytest.raises(ValueError, match=r"^api_versions: unknown version 'v2'; allowed: v1, "):
        SimulatorServer(feeder_site(), api_versions=("v1", "v2"))
    with pytest.raises(ValueError, match=r"^api_versions: at least one version"):
        SimulatorServer(feeder_site(), api_versions=())


async def test_api_key_is_required_on_v1_too(
    sim_factory: Callable[..., Any], feeder_site: Callable[..., SiteConfig]
) -> None:
    srv = await sim_factory(feeder_site(), api_key="s3cret")
    async with grpc.aio.insecure_channel(srv.address) as channel:
        c = Clients(channel)
        key = (("key", "s3cret"),)
        for call in (
            c.v1.ListComponents(v1_pb2.ListComponentsRequest()),
            c.v1.SetComponentPowerActive(
                v1_pb2.SetComponentPowerActiveRequest(component_id=INVERTER, power=1.0)
            ),
            c.v1.AddComponentBounds(v1_pb2.AddComponentBoundsRequest(component_id=INVERTER)),
            c.v1.StartComponent(v1_pb2.StartComponentRequest(component_id=INVERTER)),
            c.a19.GetMicrogrid(empty_pb2.Empty()),
        ):
            assert await _code(call) == grpc.StatusCode.UNAUTHENTICATED
        stream = c.v1.ReceiveComponentDataStream(
            v1_pb2.ReceiveComponentDataStreamRequest(component_id=INVERTER)
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stream.read()
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        ok = await c.v1.ListComponents(v1_pb2.ListComponentsRequest(), metadata=key)
        assert len(ok.components) == 5
        await c.v1.SetComponentPowerActive(
            v1_pb2.SetComponentPowerActiveRequest(component_id=INVERTER, power=1.0), metadata=key
        )
        assert srv.stats()["setpoints_accepted"] == 1


def test_cli_api_versions_flag(tmp_path: Any) -> None:
    bad = subprocess.run(
        [sys.executable, "-m", "simulator", "--api-versions", "v1,v9"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2
    last = bad.stderr.strip().splitlines()[-1]
    assert "--api-versions v1,v9: unknown version 'v9'; allowed: v1, v1alpha18, v1alpha19" in last
    assert "Traceback" not in bad.stderr
    proc, address = start_simulator_process(
        ["--port", "0", "--api-versions", "v1"], stderr=subprocess.PIPE
    )
    try:
        asyncio.run(_check_only_v1(address))
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "gridloop sim: Microgrid API v1\n" in err


async def _check_only_v1(address: str) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        c = Clients(channel)
        assert await _code(c.v1.ListComponents(v1_pb2.ListComponentsRequest())) == (
            grpc.StatusCode.OK
        )
        code = await _code(c.a18.GetMicrogrid(empty_pb2.Empty()))
        assert code == grpc.StatusCode.UNIMPLEMENTED
