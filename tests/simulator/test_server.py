"""The simulator over real gRPC on loopback, via frequenz-client-microgrid 0.18 and raw stubs."""

from __future__ import annotations

import asyncio
import itertools
import math
import time
import warnings
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import grpc
import grpc.aio
import pytest
from frequenz.api.common.v1alpha8.metrics import metrics_pb2
from frequenz.api.microgrid.v1alpha18 import microgrid_pb2 as mg_pb2
from frequenz.api.microgrid.v1alpha18 import microgrid_pb2_grpc as mg_grpc
from frequenz.client.microgrid import (
    EntityNotFound,
    InvalidArgument,
    MicrogridApiClient,
    OperationOutOfRange,
    OperationPreconditionFailed,
)
from frequenz.client.microgrid.component import (
    ComponentCategory,
    ComponentDataSamples,
    ComponentStateCode,
)
from frequenz.client.microgrid.metrics import Bounds, Metric

from simulator.server import SimulatorServer

pytestmark = pytest.mark.integration

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from frequenz.client.common.microgrid.components import ComponentId

_STATUS = mg_pb2.SetElectricalComponentPowerRequestStatus


def cid(n: int) -> ComponentId:
    """A client component id (the 0.18 client wants the wrapper type)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return ComponentId(n)


@pytest.fixture
async def client(sim: SimulatorServer) -> AsyncIterator[MicrogridApiClient]:
    """The official client connected to the default ``sim``."""
    async with MicrogridApiClient(f"grpc://{sim.address}") as c:
        yield c


async def _until(
    client: MicrogridApiClient,
    component: int,
    metrics: list[Metric],
    pred: Callable[[ComponentDataSamples], bool],
    timeout_s: float = 20.0,
) -> ComponentDataSamples:
    """Receive samples until ``pred`` holds (the timeout only guards against hangs)."""
    rx = client.receive_component_data_samples_stream(cid(component), metrics)
    async with asyncio.timeout(timeout_s):
        while True:
            sample = await rx.receive()
            if pred(sample):
                return sample


def _value(sample: ComponentDataSamples, metric: Metric) -> float:
    for s in sample.metric_samples:
        if s.metric == metric:
            value = s.value
            assert isinstance(value, float)
            return value
    raise AssertionError(f"{metric} not in sample")


def _bounds(sample: ComponentDataSamples, metric: Metric) -> list[Bounds]:
    return next(s.bounds for s in sample.metric_samples if s.metric == metric)


async def _set_active_raw(
    srv: SimulatorServer, component: int, power_w: float, **extra: Any
) -> list[Any]:
    """Every response of one raw ``SetElectricalComponentPower`` call (active power);
    ``extra`` are further request fields (e.g. ``request_lifetime``)."""
    async with grpc.aio.insecure_channel(srv.address) as channel:
        stub = mg_grpc.MicrogridStub(channel)
        request = mg_pb2.SetElectricalComponentPowerRequest(
            electrical_component_id=component,
            power_type=mg_pb2.POWER_TYPE_ACTIVE,
            power=power_w,
            **extra,
        )
        return [r async for r in stub.SetElectricalComponentPower(request)]


async def test_microgrid_info(client: MicrogridApiClient) -> None:
    info = await client.get_microgrid_info()
    assert int(info.id) == 1
    assert info.name == "gridloop demo site"
    assert info.location is not None
    assert info.location.country_code == "DE"


async def test_component_list_and_filters(client: MicrogridApiClient) -> None:
    comps = list(await client.list_components())
    assert sorted(int(c.id) for c in comps) == [
        1,
        2,
        3,
        4,
        5,
        10,
        11,
        20,
        21,
        30,
        31,
        32,
        40,
        41,
        42,
    ]
    batteries = list(await client.list_components(categories=[ComponentCategory.BATTERY]))
    assert sorted(int(c.id) for c in batteries) == [11, 21, 32, 41, 42]
    by_id = list(await client.list_components(components=[cid(10), cid(11), cid(2)]))
    assert sorted(int(c.id) for c in by_id) == [2, 10, 11]
    both = list(
        await client.list_components(
            components=[cid(10), cid(11), cid(2)], categories=[ComponentCategory.INVERTER]
        )
    )
    assert [int(c.id) for c in both] == [10]
    type_names = {int(c.id): type(c).__name__ for c in comps}
    assert type_names[5] == "SolarInverter"
    assert type_names[10] == "BatteryInverter"
    assert type_names[11] == "LiIonBattery"
    assert type_names[1] == "GridConnectionPoint"


async def test_connections_and_filters(client: MicrogridApiClient) -> None:
    conns = list(await client.list_connections())
    assert len(conns) == 15
    pairs = {(int(c.source), int(c.destination)) for c in conns}
    assert (30, 32) in pairs
    assert (31, 32) in pairs
    assert (40, 41) in pairs
    from_grid_meter = list(await client.list_connections(sources=[cid(2)]))
    assert {int(c.destination) for c in from_grid_meter} == {3, 4, 10, 20, 30, 31, 40}
    into_c = list(await client.list_connections(destinations=[cid(32)]))
    assert {int(c.source) for c in into_c} == {30, 31}
    both = list(await client.list_connections(sources=[cid(30)], destinations=[cid(32), cid(41)]))
    assert [(int(c.source), int(c.destination)) for c in both] == [(30, 32)]


async def test_sensors(sim: SimulatorServer) -> None:
    async with grpc.aio.insecure_channel(sim.address) as channel:
        stub = mg_grpc.MicrogridStub(channel)
        sensors = await stub.ListSensors(mg_pb2.ListSensorRequest())
        assert [s.id for s in sensors.sensors] == [100]
        stream = stub.ReceiveSensorTelemetryStream(
            mg_pb2.ReceiveSensorTelemetryStreamRequest(sensor_id=100)
        )
        msg = await anext(aiter(stream))
        metrics = {s.metric: s.value.simple_metric.value for s in msg.telemetry.metric_samples}
        assert metrics[metrics_pb2.METRIC_SENSOR_IRRADIANCE] > 100.0
        stream.cancel()


async def test_telemetry_rate_metrics_and_shared_sample_time(
    sim_factory: Any,
) -> None:
    srv: SimulatorServer = await sim_factory(telemetry_hz=20.0)
    async with MicrogridApiClient(f"grpc://{srv.address}") as client:
        metrics = [
            Metric.AC_POWER_ACTIVE,
            Metric.AC_POWER_REACTIVE,
            Metric.AC_FREQUENCY,
            Metric.DC_POWER,
            Metric.AC_VOLTAGE_PHASE_1_N,
            Metric.AC_CURRENT_PHASE_1,
        ]
        rx = client.receive_component_data_samples_stream(cid(10), metrics)
        samples = [await rx.receive() for _ in range(21)]
    times = []
    for s in samples:
        assert {m.metric for m in s.metric_samples} == set(metrics)
        stamps = {m.sampled_at for m in s.metric_samples} | {st.sampled_at for st in s.states}
        assert len(stamps) == 1  # one sample time per message
        times.append(stamps.pop())
    span = (times[-1] - times[0]).total_seconds()
    assert 20 / 20.0 * 0.7 < span < 20 / 20.0 * 1.5  # sample times spaced at 1/telemetry_hz
    first = samples[0]
    assert _bounds(first, Metric.AC_POWER_ACTIVE) == [
        Bounds(lower=-100_000.0, upper=-2_000.0),
        Bounds(lower=2_000.0, upper=100_000.0),
    ]
    assert 49.5 < _value(first, Metric.AC_FREQUENCY) < 50.5
    assert first.states[0].states == {ComponentStateCode.READY}


async def test_battery_telemetry_for_the_sdk(client: MicrogridApiClient) -> None:
    """The metrics, bounds and states the SDK's battery pool reads."""
    metrics = [
        Metric.BATTERY_SOC_PCT,
        Metric.DC_POWER,
        Metric.BATTERY_CAPACITY,
        Metric.BATTERY_TEMPERATURE,
    ]
    sample = await _until(client, 11, metrics, lambda s: True)
    assert [m.metric for m in sample.metric_samples] == metrics  # filter honoured
    assert _value(sample, Metric.BATTERY_SOC_PCT) == pytest.approx(50.0, abs=0.1)
    assert _bounds(sample, Metric.BATTERY_SOC_PCT) == [Bounds(lower=10.0, upper=90.0)]
    assert _bounds(sample, Metric.DC_POWER) == [Bounds(lower=-100_000.0, upper=100_000.0)]
    assert _value(sample, Metric.BATTERY_CAPACITY) == 200_000.0
    assert sample.states[0].states == {ComponentStateCode.READY, ComponentStateCode.RELAY_CLOSED}


async def test_empty_metric_filter_is_invalid(sim: SimulatorServer) -> None:
    async with grpc.aio.insecure_channel(sim.address) as channel:
        stub = mg_grpc.MicrogridStub(channel)
        req = mg_pb2.ReceiveElectricalComponentTelemetryStreamRequest(
            electrical_component_id=10,
            filter=mg_pb2.ReceiveElectricalComponentTelemetryStreamRequest.ComponentTelemetryStreamFilter(),
        )
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await anext(aiter(stub.ReceiveElectricalComponentTelemetryStream(req)))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        req = mg_pb2.ReceiveElectricalComponentTelemetryStreamRequest(electrical_component_id=99)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await anext(aiter(stub.ReceiveElectricalComponentTelemetryStream(req)))
        assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_setpoint_accepted_success_and_soc_moves(sim_factory: Any) -> None:
    srv: SimulatorServer = await sim_factory(time_scale=20.0)
    responses = await _set_active_raw(srv, 20, -40_000.0, request_lifetime=300)
    assert [r.status for r in responses] == [
        _STATUS.SET_ELECTRICAL_COMPONENT_POWER_REQUEST_STATUS_ACCEPTED,
        _STATUS.SET_ELECTRICAL_COMPONENT_POWER_REQUEST_STATUS_SUCCESS,
    ]
    row = srv.physics.inverter_row(20)
    assert srv.physics.inverter_power_w[row] == pytest.approx(-40_000.0)
    async with MicrogridApiClient(f"grpc://{srv.address}") as client:
        metrics = [Metric.AC_POWER_ACTIVE]
        sample = await _until(client, 20, metrics, lambda s: True)
        assert _value(sample, Metric.AC_POWER_ACTIVE) == pytest.approx(-40_000.0)
        assert sample.states[0].states == {ComponentStateCode.DISCHARGING}
        soc = [Metric.BATTERY_SOC_PCT]
        first = _value(await _until(client, 21, soc, lambda s: True), Metric.BATTERY_SOC_PCT)
        later = await _until(
            client, 21, soc, lambda s: _value(s, Metric.BATTERY_SOC_PCT) < first - 0.2
        )
        assert _value(later, Metric.BATTERY_SOC_PCT) < 60.0  # discharging lowers SoC
        await client.set_component_power_active(cid(20), 40_000.0)
        low = _value(later, Metric.BATTERY_SOC_PCT)
        await _until(client, 21, soc, lambda s: _value(s, Metric.BATTERY_SOC_PCT) > low + 0.2)
    stats = srv.stats()
    assert stats["setpoints_received"] == 2
    assert stats["setpoints_accepted"] == 2
    assert stats["per_component"]["20"]["last_setpoint_w"] == 40_000.0


async def test_setpoint_ramp_visible_in_telemetry(sim_factory: Any) -> None:
    """A slow ramp (set on the physics) shows intermediate values, then the target."""
    srv: SimulatorServer = await sim_factory(telemetry_hz=20.0)
    srv.physics.set_ramp_rate(40, 40_000.0)  # 40 kW/s
    async with MicrogridApiClient(f"grpc://{srv.address}") as client:
        rx = client.receive_component_data_samples_stream(cid(40), [Metric.AC_POWER_ACTIVE])
        await rx.receive()
        await client.set_component_power_active(cid(40), 60_000.0)
        seen = []
        async with asyncio.timeout(20):
            while not seen or seen[-1] < 60_000.0 - 1e-3:
                seen.append(_value(await rx.receive(), Metric.AC_POWER_ACTIVE))
    assert any(0.0 < v < 60_000.0 for v in seen)  # intermediate ramp values
    steps = [b - a for a, b in itertools.pairwise(seen)]
    assert all(s >= -1e-6 for s in steps)


async def test_lifetime_expiry_back_to_zero(sim_factory: Any) -> None:
    srv: SimulatorServer = await sim_factory(time_scale=40.0)
    async with MicrogridApiClient(f"grpc://{srv.address}") as client:
        valid_until = await client.set_component_power_active(
            cid(10), 30_000.0, request_lifetime=timedelta(seconds=10)
        )
        assert valid_until is not None
        metrics = [Metric.AC_POWER_ACTIVE]
        await _until(client, 10, metrics, lambda s: _value(s, Metric.AC_POWER_ACTIVE) > 29_000)
        await _until(client, 10, metrics, lambda s: _value(s, Metric.AC_POWER_ACTIVE) == 0.0)
    assert srv.physics.now_s >= 10.0


async def test_bounds_augmentation(client: MicrogridApiClient, sim: SimulatorServer) -> None:
    await client.add_component_bounds(
        cid(10), Metric.AC_POWER_ACTIVE, [Bounds(lower=-20_000.0, upper=30_000.0)]
    )
    sample = await _until(client, 10, [Metric.AC_POWER_ACTIVE], lambda s: True)
    assert _bounds(sample, Metric.AC_POWER_ACTIVE) == [
        Bounds(lower=-20_000.0, upper=-2_000.0),
        Bounds(lower=2_000.0, upper=30_000.0),
    ]
    with pytest.raises(OperationOutOfRange):
        await client.set_component_power_active(cid(10), 50_000.0)
    await client.set_component_power_active(cid(10), 25_000.0)
    async with grpc.aio.insecure_channel(sim.address) as channel:
        stub = mg_grpc.MicrogridStub(channel)
        await stub.AugmentElectricalComponentBounds(
            mg_pb2.AugmentElectricalComponentBoundsRequest(
                electrical_component_id=10,
                target_metric=metrics_pb2.METRIC_AC_POWER_ACTIVE,
                bounds=[_pb_bounds(-5_000.0, 5_000.0)],
                request_lifetime=60,
                bounds_token="tok",
            )
        )
        assert sim.physics.active_power_bounds(10) == [(-5_000.0, -2_000.0), (2_000.0, 5_000.0)]
        await stub.ClearElectricalComponentBounds(
            mg_pb2.ClearElectricalComponentBoundsRequest(
                electrical_component_id=10,
                target_metric=metrics_pb2.METRIC_AC_POWER_ACTIVE,
                bounds_token="tok",
            )
        )
        assert sim.physics.active_power_bounds(10)[1] == (2_000.0, 30_000.0)
        for bad in (
            {"request_lifetime": 2},
            {"target_metric": metrics_pb2.METRIC_DC_POWER},
            {"electrical_component_id": 11},
        ):
            req = mg_pb2.AugmentElectricalComponentBoundsRequest(
                electrical_component_id=10,
                target_metric=metrics_pb2.METRIC_AC_POWER_ACTIVE,
                bounds=[_pb_bounds(-1.0, 1.0)],
            )
            for k, v in bad.items():
                setattr(req, k, v)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.AugmentElectricalComponentBounds(req)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def _pb_bounds(lower: float, upper: float) -> Any:
    from frequenz.api.common.v1alpha8.metrics import bounds_pb2

    return bounds_pb2.Bounds(lower=lower, upper=upper)


async def test_bad_setpoints_are_rejected_and_counted(
    client: MicrogridApiClient, sim: SimulatorServer
) -> None:
    with pytest.raises(EntityNotFound):
        await client.set_component_power_active(cid(99), 1_000.0)
    with pytest.raises(OperationOutOfRange):
        await client.set_component_power_active(cid(10), 150_000.0)
    with pytest.raises(OperationOutOfRange):
        await client.set_component_power_active(cid(10), 1_000.0)  # exclusion band
    with pytest.raises(InvalidArgument):
        await client.set_component_power_active(cid(10), math.nan, validate_arguments=False)
    with pytest.raises(InvalidArgument):
        await client.set_component_power_active(cid(10), math.inf, validate_arguments=False)
    with pytest.raises(InvalidArgument):
        await client.set_component_power_active(
            cid(10), 10_000.0, request_lifetime=timedelta(seconds=5), validate_arguments=False
        )
    with pytest.raises(InvalidArgument):
        await client.set_component_power_active(
            cid(10), 10_000.0, request_lifetime=timedelta(minutes=16), validate_arguments=False
        )
    with pytest.raises(InvalidArgument):
        await client.set_component_power_active(cid(11), 10_000.0)  # a battery
    with pytest.raises(InvalidArgument):
        await client.set_component_power_reactive(cid(2), 1_000.0)  # a meter
    async with grpc.aio.insecure_channel(sim.address) as channel:
        stub = mg_grpc.MicrogridStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await anext(
                aiter(
                    stub.SetElectricalComponentPower(
                        mg_pb2.SetElectricalComponentPowerRequest(
                            electrical_component_id=10, power=10_000.0
                        )
                    )
                )
            )
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # power type unspecified
        await stub.StopElectricalComponent(
            mg_pb2.StopElectricalComponentRequest(electrical_component_id=20)
        )
    with pytest.raises(OperationPreconditionFailed):
        await client.set_component_power_active(cid(20), 10_000.0)  # stopped
    sim.physics.inject_error(30)
    with pytest.raises(OperationPreconditionFailed):
        await client.set_component_power_active(cid(30), 10_000.0)  # errored
    stats = sim.stats()
    assert stats["setpoints_received"] == 12
    assert stats["setpoints_accepted"] == 0
    assert stats["setpoints_rejected"] == {
        "OUT_OF_RANGE": 2,
        "INVALID_ARGUMENT": 7,
        "FAILED_PRECONDITION": 2,
        "NOT_FOUND": 1,
    }
    assert stats["setpoints_out_of_bounds"] == 2
    assert stats["per_component"]["10"]["rejected"]["INVALID_ARGUMENT"] == 5


async def test_state_machine_over_grpc(sim: SimulatorServer) -> None:
    async with (
        grpc.aio.insecure_channel(sim.address) as channel,
        MicrogridApiClient(f"grpc://{sim.address}") as client,
    ):
        stub = mg_grpc.MicrogridStub(channel)

        def req(kind: Any, n: int) -> Any:
            return kind(electrical_component_id=n)

        states = [Metric.AC_POWER_ACTIVE]
        await stub.PutElectricalComponentInStandby(
            req(mg_pb2.PutElectricalComponentInStandbyRequest, 10)
        )
        await _until(client, 10, states, lambda s: ComponentStateCode.STANDBY in s.states[0].states)
        await client.set_component_power_active(cid(10), 10_000.0)  # wakes it up
        await _until(
            client, 10, states, lambda s: ComponentStateCode.CHARGING in s.states[0].states
        )
        await stub.StopElectricalComponent(req(mg_pb2.StopElectricalComponentRequest, 10))
        await _until(client, 10, states, lambda s: ComponentStateCode.OFF in s.states[0].states)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.PutElectricalComponentInStandby(
                req(mg_pb2.PutElectricalComponentInStandbyRequest, 10)
            )
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        sim.physics.inject_error(10)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.StartElectricalComponent(req(mg_pb2.StartElectricalComponentRequest, 10))
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        await stub.AckElectricalComponentError(req(mg_pb2.AckElectricalComponentErrorRequest, 10))
        await stub.StartElectricalComponent(req(mg_pb2.StartElectricalComponentRequest, 10))
        await _until(client, 10, states, lambda s: ComponentStateCode.READY in s.states[0].states)
        # a battery refuses to open its relays while power flows
        await client.set_component_power_active(cid(20), 20_000.0)
        await _until(client, 21, [Metric.DC_POWER], lambda s: _value(s, Metric.DC_POWER) > 19_000)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.StopElectricalComponent(req(mg_pb2.StopElectricalComponentRequest, 21))
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.StartElectricalComponent(req(mg_pb2.StartElectricalComponentRequest, 77))
        assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_api_key_required_when_configured(sim_factory: Any) -> None:
    srv: SimulatorServer = await sim_factory(api_key="secret")
    async with grpc.aio.insecure_channel(srv.address) as channel:
        stub = mg_grpc.MicrogridStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.ListElectricalComponents(mg_pb2.ListElectricalComponentsRequest())
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        resp = await stub.ListElectricalComponents(
            mg_pb2.ListElectricalComponentsRequest(), metadata=(("key", "secret"),)
        )
        assert len(resp.electrical_components) == 15


async def test_reactive_power_setpoint(client: MicrogridApiClient, sim: SimulatorServer) -> None:
    valid_until = await client.set_component_power_reactive(cid(10), -20_000.0)
    assert valid_until is not None
    metrics = [Metric.AC_POWER_REACTIVE]
    sample = await _until(
        client, 10, metrics, lambda s: _value(s, Metric.AC_POWER_REACTIVE) == -20_000.0
    )
    assert _bounds(sample, Metric.AC_POWER_REACTIVE) == [Bounds(lower=-50_000.0, upper=50_000.0)]
    with pytest.raises(OperationOutOfRange):
        await client.set_component_power_reactive(cid(10), 60_000.0)
    # the grid meter sees the inverter's reactive power on top of the load's
    assert sim.physics.grid_reactive_var == pytest.approx(
        sim.physics.load_reactive_var - 20_000.0
    )


async def test_accepted_response_carries_valid_until(sim_factory: Any) -> None:
    srv: SimulatorServer = await sim_factory(time_scale=10.0)
    first = (await _set_active_raw(srv, 10, -10_000.0))[0]
    assert first.status == _STATUS.SET_ELECTRICAL_COMPONENT_POWER_REQUEST_STATUS_ACCEPTED
    # default lifetime 60 simulated s = 6 wall s at time_scale 10
    now = time.time()
    assert 5.0 < first.valid_until_time.seconds + first.valid_until_time.nanos / 1e9 - now < 6.5


async def test_fault_injection_pause_and_break_streams(sim: SimulatorServer) -> None:
    async with grpc.aio.insecure_channel(sim.address) as channel:
        stub = mg_grpc.MicrogridStub(channel)
        req = mg_pb2.ReceiveElectricalComponentTelemetryStreamRequest(electrical_component_id=2)
        call = stub.ReceiveElectricalComponentTelemetryStream(req)
        it = aiter(call)
        await anext(it)
        sim.pause_telemetry(2)
        gen = sim.generation
        await sim.wait_for_generation(3)
        assert sim.generation >= gen + 3
        sim.pause_telemetry(2, paused=False)
        # exactly the next frames arrive after resuming (none were queued while paused)
        msg = await anext(it)
        sample_s = msg.telemetry.metric_samples[0].sample_time.seconds
        assert sample_s >= int(time.time()) - 1
        sim.break_streams(2)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await _drain(it)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        # a new stream works again
        fresh = stub.ReceiveElectricalComponentTelemetryStream(req)
        assert (await anext(aiter(fresh))).telemetry.electrical_component_id == 2
        fresh.cancel()


async def _drain(it: Any) -> None:
    """Read a stream until it ends or fails."""
    async for _ in it:
        pass


async def test_port_in_use_is_a_clear_oserror(sim: SimulatorServer) -> None:
    other = SimulatorServer(sim.site, port=sim.port)
    with pytest.raises(OSError, match=f"cannot bind 127.0.0.1:{sim.port}"):
        await other.start()


@pytest.mark.parametrize("phases", [0, 1001, True, 2.0])
def test_telemetry_phases_must_be_an_integer_1_to_1000(phases: Any) -> None:
    from simulator.config import load_site

    with pytest.raises(ValueError, match=f"telemetry_phases must be .*, got {phases!r}"):
        SimulatorServer(load_site(), telemetry_phases=phases)


def test_default_phases_are_10_at_most_one_every_10_ms() -> None:
    from simulator.server import default_telemetry_phases

    assert [default_telemetry_phases(hz) for hz in (0.5, 1.0, 10.0, 50.0, 200.0)] == [
        10, 10, 10, 2, 1,
    ]


async def test_components_stream_in_their_own_phase_of_the_period(sim_factory: Any) -> None:
    """Two phases at 5 Hz: the grid meter (id 2, phase 0) and inverter 3 (phase 1)
    publish 100 ms apart, so their frames arrive strictly alternating and never
    carry the same sample time; a generation is a whole period (both phases
    published)."""
    srv: SimulatorServer = await sim_factory(telemetry_hz=5.0, telemetry_phases=2)
    order: list[int] = []
    stamps: dict[int, set[int]] = {2: set(), 3: set()}
    enough = asyncio.Event()
    async with grpc.aio.insecure_channel(srv.address) as channel:
        stub = mg_grpc.MicrogridStub(channel)

        async def follow(component: int) -> None:
            req = mg_pb2.ReceiveElectricalComponentTelemetryStreamRequest(
                electrical_component_id=component
            )
            async for msg in stub.ReceiveElectricalComponentTelemetryStream(req):
                order.append(component)
                t = msg.telemetry.metric_samples[0].sample_time
                stamps[component].add(t.seconds * 10**9 + t.nanos)
                if len(order) >= 12:
                    enough.set()

        tasks = [asyncio.create_task(follow(c)) for c in (2, 3)]
        try:
            await asyncio.wait_for(enough.wait(), 20)
            gen, pubs = srv.generation, srv.publications
            await srv.wait_for_generation(1)
            assert srv.generation >= gen + 1
            assert srv.publications >= pubs + 2
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.wait(tasks)
    tail = order[2:12]  # both streams are running from here on
    assert all(a != b for a, b in itertools.pairwise(tail)), order
    assert not stamps[2] & stamps[3]


async def test_setpoints_to_unknown_ids_are_counted_in_one_entry(sim: SimulatorServer) -> None:
    """A client naming 50 ids the site does not have gets NOT_FOUND for each; the
    stats count them under one "unknown" entry instead of growing a table per id."""
    async with grpc.aio.insecure_channel(sim.address) as channel:
        stub = mg_grpc.MicrogridStub(channel)
        for k in range(50):
            req = mg_pb2.SetElectricalComponentPowerRequest(
                electrical_component_id=100_000 + k,
                power_type=mg_pb2.POWER_TYPE_ACTIVE,
                power=1_000.0,
            )
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await anext(aiter(stub.SetElectricalComponentPower(req)))
            assert info.value.code() == grpc.StatusCode.NOT_FOUND
    stats = sim.stats()
    assert stats["setpoints_rejected"]["NOT_FOUND"] == 50
    assert set(stats["per_component"]) == {"unknown"}
    assert stats["per_component"]["unknown"]["received"] == 50
    assert stats["per_component"]["unknown"]["rejected"]["NOT_FOUND"] == 50


async def test_a_preempted_tick_does_not_idle_the_loop(
    sim_factory: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The physics task pauses after a tick for at least the tick's CPU time, not its wall
    time: a tick the OS preempted (wall time passes, no CPU is used: a blocking sleep
    here) must not make the loop sit idle for as long as the tick waited."""
    srv: SimulatorServer = await sim_factory(None, telemetry_hz=10.0)
    preempted_s = 0.2
    pauses: list[float] = []
    real_sleep, real_tick = asyncio.sleep, srv._tick

    async def spy_sleep(delay: float, *args: Any) -> Any:
        task = asyncio.current_task()
        if task is not None and task.get_name() == "simulator-physics":
            pauses.append(delay)
        return await real_sleep(delay, *args)

    def preempted_tick(elapsed_wall_s: float, publish: bool) -> None:
        real_tick(elapsed_wall_s, publish)
        time.sleep(preempted_s)

    monkeypatch.setattr(asyncio, "sleep", spy_sleep)
    monkeypatch.setattr(srv, "_tick", preempted_tick)
    while len(pauses) < 3:
        await real_sleep(0.05)
    monkeypatch.undo()
    assert max(pauses) < preempted_s, pauses
