"""The simulator's resource limits over real gRPC: telemetry stream caps, bounds
augmentation caps and the largest request it receives.

A client must not be able to take the server from other clients (thousands of
streams it never reads) nor grow its memory without bound (bounds tokens).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
import pytest
from frequenz.api.common.v1alpha8.metrics import bounds_pb2, metrics_pb2
from frequenz.api.microgrid.v1alpha18 import microgrid_pb2 as mg_pb2
from frequenz.api.microgrid.v1alpha18 import microgrid_pb2_grpc as mg_grpc
from grpc._cython import cygrpc

from simulator.config import load_site
from simulator.server import (
    MAX_BOUNDS_INTERVALS,
    MAX_BOUNDS_PER_COMPONENT,
    MAX_BOUNDS_TOKEN_BYTES,
    SimulatorServer,
    default_stream_caps,
    pending_call_limits,
)

pytestmark = pytest.mark.integration

OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]
"""Channel option: a connection of its own (channels of one process with the same
arguments otherwise share one), as a client in another process would have."""


def _telemetry(component_id: int) -> Any:
    return mg_pb2.ReceiveElectricalComponentTelemetryStreamRequest(
        electrical_component_id=component_id
    )


async def _count_frames(stub: mg_grpc.MicrogridStub, component_id: int, box: list[int]) -> None:
    """Read one component's stream, counting its frames in ``box[0]``."""
    async for _ in stub.ReceiveElectricalComponentTelemetryStream(_telemetry(component_id)):
        box[0] += 1


async def test_unread_streams_of_one_client_do_not_slow_another(sim_factory: Any) -> None:
    """One connection opens 3 000 telemetry streams and never reads them; another
    client's stream keeps the configured rate.

    The rate is counted in publications, not wall time: over K generations, the
    healthy stream must receive at least 90 % of the generations the schedule
    had, i.e. K plus the generations the publisher skipped because its loop was
    late. Without the per-connection cap the server writes every publication to
    every open stream (the client's gRPC library buffers them for the unread
    application), its loop falls behind, and the healthy client got ~80 %."""
    srv: SimulatorServer = await sim_factory()
    hog_streams, window = 3_000, 30
    ids = [c.id for c in srv.site.components]
    async with (
        grpc.aio.insecure_channel(srv.address, options=OWN_CONNECTION) as hog,
        grpc.aio.insecure_channel(srv.address) as channel,
    ):
        box = [0]
        healthy = asyncio.create_task(_count_frames(mg_grpc.MicrogridStub(channel), 10, box))
        while not box[0]:  # the healthy client is in before the burst
            await srv.wait_for_generation(1)
        hog_stub = mg_grpc.MicrogridStub(hog)
        calls = [
            hog_stub.ReceiveElectricalComponentTelemetryStream(_telemetry(ids[k % len(ids)]))
            for k in range(hog_streams)
        ]
        codes = [asyncio.ensure_future(call.code()) for call in calls]
        try:
            await srv.wait_for_generation(20)  # the hog's calls have arrived
            assert not healthy.done()
            received, missed = box[0], srv.stats()["telemetry_publications_missed"]
            await srv.wait_for_generation(window)
            scheduled = window + (
                srv.stats()["telemetry_publications_missed"] - missed
            ) / srv.telemetry_phases
            assert box[0] - received >= 0.9 * scheduled, (box[0] - received, scheduled)
            refused = [
                call for call, code in zip(calls, codes, strict=True)
                if code.done() and code.result() == grpc.StatusCode.RESOURCE_EXHAUSTED
            ]
            assert refused, "the hog's streams beyond the cap are refused"
            assert "max_streams_per_client=" in await refused[0].details()
            assert srv.telemetry_streams == srv.max_streams_per_client + 1  # + the healthy one
            assert srv.stats()["telemetry_streams_refused"] == len(refused)
        finally:
            healthy.cancel()
            for call in calls:
                call.cancel()
            await asyncio.wait([healthy, *codes])


async def test_server_wide_stream_cap_and_streams_are_counted_until_closed(
    sim_factory: Any,
) -> None:
    """``max_streams`` bounds all connections together; a closed stream frees its slot."""
    srv: SimulatorServer = await sim_factory(max_streams_per_client=2, max_streams=3)
    async with (
        grpc.aio.insecure_channel(srv.address, options=OWN_CONNECTION) as first,
        grpc.aio.insecure_channel(srv.address, options=OWN_CONNECTION) as second,
    ):
        a, b = mg_grpc.MicrogridStub(first), mg_grpc.MicrogridStub(second)
        open_calls = [a.ReceiveElectricalComponentTelemetryStream(_telemetry(2)) for _ in range(2)]
        for call in open_calls:
            await anext(aiter(call))
        third = a.ReceiveElectricalComponentTelemetryStream(_telemetry(2))
        assert await third.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "max_streams_per_client=2" in await third.details()
        fourth = b.ReceiveElectricalComponentTelemetryStream(_telemetry(3))
        await anext(aiter(fourth))
        fifth = b.ReceiveElectricalComponentTelemetryStream(_telemetry(3))
        assert await fifth.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "max_streams=3" in await fifth.details()
        assert srv.telemetry_streams == 3
        open_calls[0].cancel()
        while srv.telemetry_streams > 2:  # the server sees the cancellation
            await srv.wait_for_generation(1)
        again = b.ReceiveElectricalComponentTelemetryStream(_telemetry(3))
        await anext(aiter(again))
        for call in (open_calls[1], fourth, again):
            call.cancel()


def test_default_stream_caps_fit_one_stream_per_component_several_times() -> None:
    site = load_site(None)
    per_client, total = default_stream_caps(site)
    assert per_client >= 4 * (len(site.components) + len(site.sensors))
    assert total >= 8 * per_client


def _streams_arrived(port: int) -> int:
    """HTTP/2 streams gRPC core has received on the server listening on ``port``
    (channelz), whether or not the server's loop has taken their calls yet."""
    arrived = 0
    for server in json.loads(cygrpc.channelz_get_servers(0)).get("server", []):
        server_id = int(server["ref"]["serverId"])
        sockets = json.loads(cygrpc.channelz_get_server_sockets(server_id, 0, 0))
        for ref in sockets.get("socketRef", []):
            sock = json.loads(cygrpc.channelz_get_socket(int(ref["socketId"])))["socket"]
            if sock.get("local", {}).get("tcpipAddress", {}).get("port") == port:
                arrived += int(sock["data"].get("streamsStarted", 0))
    return arrived


def _block_until_arrived(port: int, count: int) -> None:
    """Block the calling thread (and its event loop) until ``count`` streams arrived."""
    give_up = time.monotonic() + 120.0  # only against a hang; never reached when healthy
    while (arrived := _streams_arrived(port)) < count:
        assert time.monotonic() < give_up, f"only {arrived} of {count} streams arrived"
        time.sleep(0.01)


def _open_streams_and_read_one_frame(address: str, ids: list[int]) -> Counter[str]:
    """Open a stream per id at once on one connection (synchronous client, in a thread),
    then read each one's first frame: ``frame`` or the status code it ended with."""
    outcomes: Counter[str] = Counter()
    with grpc.insecure_channel(address) as channel:
        stub = mg_grpc.MicrogridStub(channel)
        calls = [stub.ReceiveElectricalComponentTelemetryStream(_telemetry(cid)) for cid in ids]
        for call in calls:
            try:
                next(call)
                outcomes["frame"] += 1
            except grpc.RpcError as exc:
                outcomes[exc.code().name] += 1
        for call in calls:
            call.cancel()
    return outcomes


async def test_a_full_stream_cap_opened_while_the_loop_is_busy_is_not_cancelled(
    sim_factory: Any,
) -> None:
    """A client opens its whole stream cap (1 300 streams) at once while the server's
    loop is busy: every stream delivers a frame, none is CANCELLED.

    The loop is blocked until gRPC core has received all the streams (channelz), so
    all wait in its backlog of calls the loop has not taken. gRPC's default backlog
    (1 000 soft, 3 000 hard) sheds the calls beyond 1 000 at random with CANCELLED
    before any handler runs (~22 expected of 1 300): what cancelled streams of a
    client connecting to a 1 000-pair site (2 001 streams)."""
    k = 1_300
    srv: SimulatorServer = await sim_factory(max_streams_per_client=k, max_streams=k)
    ids = [c.id for c in srv.site.components]
    loop = asyncio.get_running_loop()
    opened = loop.run_in_executor(
        None, _open_streams_and_read_one_frame, srv.address, [ids[i % len(ids)] for i in range(k)]
    )
    _block_until_arrived(srv.port, k)  # the server's loop is this one
    assert await opened == {"frame": k}


def test_grpc_backlog_holds_one_connections_full_stream_cap() -> None:
    """The backlog of calls not yet taken by the loop never sheds below the
    per-connection stream cap, and never goes below gRPC's own defaults."""
    assert pending_call_limits(64) == (1_000, 3_000)
    assert pending_call_limits(8_008) == (8_008, 24_024)
    srv = SimulatorServer(load_site(None), max_streams_per_client=5_000)
    options = dict(srv.grpc_options())
    assert options["grpc.server.max_pending_requests"] == 5_000
    assert options["grpc.server.max_pending_requests_hard_limit"] == 15_000


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"max_streams_per_client": 0}, "max_streams_per_client"),
     ({"max_streams": True}, "max_streams"),
     ({"max_streams": 2.0}, "max_streams")],
)
def test_stream_caps_must_be_positive_integers(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=f"^{name} must be a positive integer"):
        SimulatorServer(load_site(None), **kwargs)


# ---------------------------------------------------------------------- bounds


@pytest.fixture
async def stub(sim_factory: Any) -> AsyncIterator[tuple[SimulatorServer, mg_grpc.MicrogridStub]]:
    """A simulator at 60x (a 5 s bounds lifetime lapses in ~0.1 s) and a raw stub."""
    srv: SimulatorServer = await sim_factory(time_scale=60.0)
    async with grpc.aio.insecure_channel(srv.address) as channel:
        yield srv, mg_grpc.MicrogridStub(channel)


def _augment(n_intervals: int = 1, token: str | None = None, lifetime: int = 5) -> Any:
    req = mg_pb2.AugmentElectricalComponentBoundsRequest(
        electrical_component_id=10,
        target_metric=metrics_pb2.METRIC_AC_POWER_ACTIVE,
        bounds=[
            bounds_pb2.Bounds(lower=-50_000.0 + k, upper=50_000.0 - k)
            for k in range(n_intervals)
        ],
        request_lifetime=lifetime,
    )
    if token is not None:
        req.bounds_token = token
    return req


async def _code(call: Any) -> tuple[grpc.StatusCode, str]:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


async def test_bounds_request_with_too_many_intervals_is_invalid(stub: Any) -> None:
    _, s = stub
    assert await _code(s.AugmentElectricalComponentBounds(_augment(MAX_BOUNDS_INTERVALS))) == (
        grpc.StatusCode.OK, ""
    )
    code, details = await _code(s.AugmentElectricalComponentBounds(_augment(100)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details == (
        f"component 10: bounds: at most {MAX_BOUNDS_INTERVALS} intervals per request, got 100"
    )


async def test_bounds_token_length_is_capped(stub: Any) -> None:
    srv, s = stub
    ok = "t" * MAX_BOUNDS_TOKEN_BYTES
    assert (await _code(s.AugmentElectricalComponentBounds(_augment(token=ok))))[0] == (
        grpc.StatusCode.OK
    )
    code, details = await _code(s.AugmentElectricalComponentBounds(_augment(token="t" * 1000)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details == (
        f"component 10: bounds_token: at most {MAX_BOUNDS_TOKEN_BYTES} bytes, got 1000"
    )
    assert srv.physics.augmentation_tokens(10) == {ok}


async def test_a_3_mb_request_is_refused_by_grpc(stub: Any) -> None:
    """gRPC's default limit is 4 MB; the server receives at most 64 KiB, which fits
    every legitimate request (List* filters with thousands of ids)."""
    srv, s = stub
    code, details = await _code(s.AugmentElectricalComponentBounds(_augment(token="x" * 3_000_000)))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in details
    assert srv.physics.augmentation_tokens(10) == frozenset()
    many_ids = mg_pb2.ListElectricalComponentsRequest(electrical_component_ids=range(1, 5_001))
    listed = await s.ListElectricalComponents(many_ids)
    assert len(listed.electrical_components) == len(srv.site.components)


async def test_bounds_augmentations_per_component_are_capped_until_they_lapse(
    stub: Any,
) -> None:
    """Distinct tokens beyond the cap are RESOURCE_EXHAUSTED; re-sending a token in
    force still works; once the augmentations lapse, new tokens are accepted again
    (lapsed ones no longer count)."""
    srv, s = stub
    for k in range(MAX_BOUNDS_PER_COMPONENT):
        await s.AugmentElectricalComponentBounds(_augment(token=f"tok{k}"))
    code, details = await _code(s.AugmentElectricalComponentBounds(_augment(token="one-more")))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details == (
        f"component 10: {MAX_BOUNDS_PER_COMPONENT} bounds augmentations in force, the limit is"
        f" {MAX_BOUNDS_PER_COMPONENT} per component; clear one with its bounds_token"
        " or let it lapse"
    )
    code, _ = await _code(s.AugmentElectricalComponentBounds(_augment()))  # server-made token
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    await s.AugmentElectricalComponentBounds(_augment(token="tok0", lifetime=60))  # replaces
    await s.ClearElectricalComponentBounds(
        mg_pb2.ClearElectricalComponentBoundsRequest(
            electrical_component_id=10,
            target_metric=metrics_pb2.METRIC_AC_POWER_ACTIVE,
            bounds_token="tok1",
        )
    )
    await s.AugmentElectricalComponentBounds(_augment(token="after-clear"))
    lapse = srv.physics.now_s + 5.0
    while srv.physics.now_s <= lapse:
        await srv.wait_for_generation(1)
    assert srv.physics.augmentation_tokens(10) == {"tok0"}
    for k in range(MAX_BOUNDS_PER_COMPONENT - 1):
        await s.AugmentElectricalComponentBounds(_augment(token=f"new{k}"))
    code, _ = await _code(s.AugmentElectricalComponentBounds(_augment(token="one-more")))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert Counter(t[:3] for t in srv.physics.augmentation_tokens(10)) == {
        "new": MAX_BOUNDS_PER_COMPONENT - 1, "tok": 1
    }
