"""Random and hostile requests of every API version: a status code every time.

Hypothesis builds requests of v1, v1alpha18 and v1alpha19 (random and unknown
ids, NaN/±inf/huge powers, empty and oversized filters, missing fields, random
enum numbers) and sends them over real gRPC to one simulator (running in a
thread with its own event loop, so the examples use blocking stubs). Every call
must end with a status code that is not a handler crash (UNKNOWN, INTERNAL) and
not a hang: unary calls get a deadline that must not pass, a stream must give
one message or an error within it. The deadline only guards against hangs.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from frequenz.api.common.v1.metrics import bounds_pb2 as v1_bounds_pb2
from frequenz.api.common.v1alpha8.metrics import bounds_pb2 as a8_bounds_pb2
from frequenz.api.microgrid.v1 import microgrid_pb2 as v1_pb2
from frequenz.api.microgrid.v1 import microgrid_pb2_grpc as v1_grpc
from frequenz.api.microgrid.v1alpha18 import microgrid_pb2 as a18_pb2
from frequenz.api.microgrid.v1alpha18 import microgrid_pb2_grpc as a18_grpc
from frequenz.api.microgrid.v1alpha19 import microgrid_pb2 as a19_pb2
from frequenz.api.microgrid.v1alpha19 import microgrid_pb2_grpc as a19_grpc
from google.protobuf import empty_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.config import load_site
from simulator.server import SimulatorServer

pytestmark = pytest.mark.integration

DEADLINE_S = 10.0
CRASH_CODES = {
    grpc.StatusCode.UNKNOWN,  # the handler raised
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.DEADLINE_EXCEEDED,  # the call hung
}
SITE_IDS = [1, 2, 3, 4, 5, 10, 11, 20, 21, 30, 31, 32, 40, 41, 42, 100]

ids = st.one_of(st.sampled_from(SITE_IDS), st.integers(0, 2**64 - 1))
enums = st.integers(-(2**31), 2**31 - 1)
powers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e9, -1e9, 1e308, 5_000.0, -5_000.0]),
)
lifetimes = st.one_of(st.none(), st.integers(0, 2**64 - 1), st.sampled_from([9, 10, 900, 901]))
id_lists = st.one_of(
    st.lists(ids, max_size=20),
    st.integers(0, 20_000).map(lambda n: list(range(n))),  # up to and beyond 64 KiB
)
enum_lists = st.one_of(st.lists(enums, max_size=20), st.integers(0, 20_000).map(lambda n: [26] * n))
maybe_floats = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True))


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[SimulatorServer, grpc.Channel]]:
    """The default site served from a thread of its own; a blocking channel to it."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    srv = SimulatorServer(load_site(None), host="127.0.0.1", port=0, time_scale=10.0)
    asyncio.run_coroutine_threadsafe(srv.start(), loop).result(30)
    channel = grpc.insecure_channel(srv.address)
    try:
        yield srv, channel
    finally:
        channel.close()
        asyncio.run_coroutine_threadsafe(srv.stop(grace=0), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()


def _unary_code(call: Callable[..., Any], request: Any) -> grpc.StatusCode:
    try:
        call(request, timeout=DEADLINE_S)
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[attr-defined,no-any-return]
    return grpc.StatusCode.OK


def _stream_code(call: Callable[..., Any], request: Any) -> grpc.StatusCode:
    """The code of a stream after its first message (OK) or its error."""
    it = call(request, timeout=DEADLINE_S)
    try:
        next(it)
    except StopIteration:
        return grpc.StatusCode.OK
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[attr-defined,no-any-return]
    finally:
        it.cancel()
    return grpc.StatusCode.OK


def _bounds(module: Any) -> st.SearchStrategy[list[Any]]:
    def make(lo: float | None, hi: float | None) -> Any:
        b = module.Bounds()
        if lo is not None:
            b.lower = lo
        if hi is not None:
            b.upper = hi
        return b

    return st.lists(st.builds(make, maybe_floats, maybe_floats), max_size=12)


def _with_lifetime(request: Any, lifetime: int | None) -> Any:
    if lifetime is not None:
        request.request_lifetime = lifetime
    return request


def _v1_calls(stub: v1_grpc.MicrogridStub) -> st.SearchStrategy[tuple[str, Any, Any]]:
    F = v1_pb2.ReceiveComponentDataStreamRequest.ComponentDataStreamFilter
    SF = v1_pb2.ReceiveSensorDataStreamRequest.SensorDataStreamFilter
    u, s = "unary", "stream"
    return st.one_of(
        st.tuples(st.just(u), st.just(stub.GetMicrogridMetadata), st.just(empty_pb2.Empty())),
        st.tuples(
            st.just(u),
            st.just(stub.ListComponents),
            st.builds(v1_pb2.ListComponentsRequest, component_ids=id_lists, categories=enum_lists),
        ),
        st.tuples(
            st.just(u),
            st.just(stub.ListSensors),
            st.builds(v1_pb2.ListSensorRequest, sensor_ids=id_lists, categories=enum_lists),
        ),
        st.tuples(
            st.just(u),
            st.just(stub.ListConnections),
            st.builds(v1_pb2.ListConnectionsRequest, starts=id_lists, ends=id_lists),
        ),
        st.tuples(
            st.just(s),
            st.just(stub.ReceiveComponentDataStream),
            st.builds(
                v1_pb2.ReceiveComponentDataStreamRequest,
                component_id=ids,
                filter=st.one_of(st.none(), st.builds(F, metrics=enum_lists)),
            ),
        ),
        st.tuples(
            st.just(s),
            st.just(stub.ReceiveSensorDataStream),
            st.builds(
                v1_pb2.ReceiveSensorDataStreamRequest,
                sensor_id=ids,
                filter=st.one_of(st.none(), st.builds(SF, metrics=enum_lists)),
            ),
        ),
        st.tuples(
            st.just(u),
            st.just(stub.AddComponentBounds),
            st.builds(
                v1_pb2.AddComponentBoundsRequest,
                component_id=ids,
                target_metric=st.one_of(st.just(26), enums),
                bounds=_bounds(v1_bounds_pb2),
                validity_duration=st.one_of(st.integers(0, 4), enums),
            ),
        ),
        st.tuples(
            st.just(u),
            st.just(stub.SetComponentPowerActive),
            st.builds(
                _with_lifetime,
                st.builds(v1_pb2.SetComponentPowerActiveRequest, component_id=ids, power=powers),
                lifetimes,
            ),
        ),
        st.tuples(
            st.just(u),
            st.just(stub.SetComponentPowerReactive),
            st.builds(
                _with_lifetime,
                st.builds(v1_pb2.SetComponentPowerReactiveRequest, component_id=ids, power=powers),
                lifetimes,
            ),
        ),
        st.tuples(
            st.just(u),
            st.sampled_from(
                [
                    (stub.StartComponent, v1_pb2.StartComponentRequest),
                    (stub.PutComponentInStandby, v1_pb2.PutComponentInStandbyRequest),
                    (stub.StopComponent, v1_pb2.StopComponentRequest),
                    (stub.AckComponentError, v1_pb2.AckComponentErrorRequest),
                ]
            ),
            ids,
        ).map(lambda t: (t[0], t[1][0], t[1][1](component_id=t[2]))),
    )


def _alpha_calls(stub: Any, pb: Any) -> st.SearchStrategy[tuple[str, Any, Any]]:
    """Requests of v1alpha18 or v1alpha19 (``pb``: that version's messages)."""
    R = pb.ReceiveElectricalComponentTelemetryStreamRequest
    filter_cls = R.DESCRIPTOR.fields_by_name["filter"].message_type._concrete_class
    SR = pb.ReceiveSensorTelemetryStreamRequest
    sensor_filter_cls = SR.DESCRIPTOR.fields_by_name["filter"].message_type._concrete_class
    u, s = "unary", "stream"

    def augment(
        cid: int, metric: int, bounds: list[Any], lifetime: int | None, token: str | None
    ) -> Any:
        r = pb.AugmentElectricalComponentBoundsRequest(
            electrical_component_id=cid, target_metric=metric, bounds=bounds
        )
        if lifetime is not None:
            r.request_lifetime = lifetime
        if token is not None:
            r.bounds_token = token
        return r

    return st.one_of(
        st.tuples(st.just(u), st.just(stub.GetMicrogrid), st.just(empty_pb2.Empty())),
        st.tuples(
            st.just(u),
            st.just(stub.ListElectricalComponents),
            st.builds(
                pb.ListElectricalComponentsRequest,
                electrical_component_ids=id_lists,
                electrical_component_categories=enum_lists,
            ),
        ),
        st.tuples(
            st.just(u),
            st.just(stub.ListElectricalComponentConnections),
            st.builds(
                pb.ListElectricalComponentConnectionsRequest,
                source_electrical_component_ids=id_lists,
                destination_electrical_component_ids=id_lists,
            ),
        ),
        st.tuples(
            st.just(s),
            st.just(stub.ReceiveElectricalComponentTelemetryStream),
            st.builds(
                R,
                electrical_component_id=ids,
                filter=st.one_of(st.none(), st.builds(filter_cls, metrics=enum_lists)),
            ),
        ),
        st.tuples(
            st.just(s),
            st.just(stub.ReceiveSensorTelemetryStream),
            st.builds(
                SR,
                sensor_id=ids,
                filter=st.one_of(st.none(), st.builds(sensor_filter_cls, metrics=enum_lists)),
            ),
        ),
        st.tuples(
            st.just(u),
            st.just(stub.AugmentElectricalComponentBounds),
            st.builds(
                augment,
                ids,
                st.one_of(st.just(26), enums),
                _bounds(a8_bounds_pb2),
                st.one_of(st.none(), st.integers(0, 2**64 - 1)),
                st.one_of(st.none(), st.text(max_size=200)),
            ),
        ),
        st.tuples(
            st.just(u),
            st.just(stub.ClearElectricalComponentBounds),
            st.builds(
                pb.ClearElectricalComponentBoundsRequest,
                electrical_component_id=ids,
                bounds_token=st.text(max_size=200),
            ),
        ),
        st.tuples(
            st.just(s),
            st.just(stub.SetElectricalComponentPower),
            st.builds(
                _with_lifetime,
                st.builds(
                    pb.SetElectricalComponentPowerRequest,
                    electrical_component_id=ids,
                    power_type=st.one_of(st.integers(0, 2), enums),
                    power=powers,
                ),
                lifetimes,
            ),
        ),
        st.tuples(
            st.just(u),
            st.sampled_from(
                [
                    (stub.StartElectricalComponent, pb.StartElectricalComponentRequest),
                    (
                        stub.PutElectricalComponentInStandby,
                        pb.PutElectricalComponentInStandbyRequest,
                    ),
                    (stub.StopElectricalComponent, pb.StopElectricalComponentRequest),
                    (stub.AckElectricalComponentError, pb.AckElectricalComponentErrorRequest),
                ]
            ),
            ids,
        ).map(lambda t: (t[0], t[1][0], t[1][1](electrical_component_id=t[2]))),
    )


def _check(call: tuple[str, Any, Any]) -> grpc.StatusCode:
    kind, method, request = call
    code = _unary_code(method, request) if kind == "unary" else _stream_code(method, request)
    assert code not in CRASH_CODES, (code, type(request).__name__, str(request)[:300])
    return code


def _still_serving(srv: SimulatorServer, channel: grpc.Channel) -> None:
    """After the examples: every version still lists the site, and the physics ticks."""
    before = srv.publications
    v1_grpc.MicrogridStub(channel).ListComponents(
        v1_pb2.ListComponentsRequest(), timeout=DEADLINE_S
    )
    a18_grpc.MicrogridStub(channel).GetMicrogrid(empty_pb2.Empty(), timeout=DEADLINE_S)
    a19_grpc.MicrogridStub(channel).GetMicrogrid(empty_pb2.Empty(), timeout=DEADLINE_S)
    it = v1_grpc.MicrogridStub(channel).ReceiveComponentDataStream(
        v1_pb2.ReceiveComponentDataStreamRequest(component_id=10), timeout=DEADLINE_S
    )
    next(it)
    it.cancel()
    assert srv.publications > before


_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@_SETTINGS
@given(data=st.data())
def test_v1_hostile_requests_get_a_status_code(
    server: tuple[SimulatorServer, grpc.Channel], data: st.DataObject
) -> None:
    _, channel = server
    _check(data.draw(_v1_calls(v1_grpc.MicrogridStub(channel))))


@_SETTINGS
@given(data=st.data())
def test_v1alpha18_hostile_requests_get_a_status_code(
    server: tuple[SimulatorServer, grpc.Channel], data: st.DataObject
) -> None:
    _, channel = server
    _check(data.draw(_alpha_calls(a18_grpc.MicrogridStub(channel), a18_pb2)))


@_SETTINGS
@given(data=st.data())
def test_v1alpha19_hostile_requests_get_a_status_code(
    server: tuple[SimulatorServer, grpc.Channel], data: st.DataObject
) -> None:
    _, channel = server
    _check(data.draw(_alpha_calls(a19_grpc.MicrogridStub(channel), a19_pb2)))


def test_server_still_serves_every_version_after_the_hostile_requests(
    server: tuple[SimulatorServer, grpc.Channel],
) -> None:
    srv, channel = server
    _still_serving(srv, channel)
    stats = srv.stats()
    assert math.isfinite(stats["simulated_s"])
    assert stats["telemetry_streams_open"] <= srv.max_streams
