"""Rate-driven fault injection: config, CLI flags, schedule, accounting, and every
fault kind observed by a real gRPC client on loopback.

Servers run at a high time scale so that hourly rates fire within a second of
wall time; schedules are seeded, so the drawn sequence of faults is fixed.
Timeouts in ``asyncio.timeout`` only guard against hangs.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from frequenz.api.common.v1alpha8.metrics import metrics_pb2
from frequenz.api.common.v1alpha8.microgrid.electrical_components import (
    electrical_components_pb2 as ec_pb2,
)
from frequenz.api.microgrid.v1alpha18 import microgrid_pb2 as mg_pb2
from frequenz.api.microgrid.v1alpha18 import microgrid_pb2_grpc as mg_grpc
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.runtime.embedded import start_simulator_process
from simulator.cli import main, parse_fault_overrides
from simulator.config import (
    FAULT_KEYS,
    FaultConfig,
    SiteConfig,
    SiteConfigError,
    load_site,
    site_from_dict,
)
from simulator.errors import InvalidRequestError, PowerOutOfRangeError
from simulator.faults import (
    BAD_METRIC_MODES,
    EPISODE_KINDS,
    BoundsHistory,
    FaultLedger,
    FaultScheduler,
    SetpointFaults,
)
from simulator.physics import ComponentState, SitePhysics
from simulator.server import SimulatorServer

M = metrics_pb2.Metric
S = ec_pb2.ElectricalComponentStateCode
_ACCEPTED = mg_pb2.SetElectricalComponentPowerRequestStatus.Value(
    "SET_ELECTRICAL_COMPONENT_POWER_REQUEST_STATUS_ACCEPTED"
)
ROOT = Path(__file__).resolve().parents[2]
RATED_W = 10_000.0


def _tiny_doc() -> dict[str, Any]:
    """Grid 1 -> meter 2 -> inverter 10 (±10 kW) -> battery 11."""
    return {
        "microgrid": {"id": 7, "name": "tiny"},
        "component": [
            {"id": 1, "category": "grid"},
            {"id": 2, "category": "meter", "load_share": 1.0},
            {
                "id": 10,
                "category": "inverter",
                "type": "battery",
                "rated_lower_w": -RATED_W,
                "rated_upper_w": RATED_W,
            },
            {
                "id": 11,
                "category": "battery",
                "capacity_wh": 100_000.0,
                "soc_pct": 50.0,
                "max_charge_w": RATED_W,
                "max_discharge_w": RATED_W,
            },
        ],
        "connection": [
            {"source": 1, "destination": 2},
            {"source": 2, "destination": 10},
            {"source": 10, "destination": 11},
        ],
    }


def _tiny() -> SiteConfig:
    return site_from_dict(_tiny_doc(), "tiny")


Stub = mg_grpc.MicrogridStub
TinySim = Callable[..., Awaitable[tuple[SimulatorServer, Stub]]]


@pytest.fixture
async def tiny_sim(sim_factory: Callable[..., Any]) -> AsyncIterator[TinySim]:
    """``await tiny_sim(faults, **kw)``: a server on the tiny site with ``faults``
    (time_scale 3600 unless ``kw`` says otherwise) and a raw stub on it; the stubs'
    channels are closed at teardown."""
    channels: list[grpc.aio.Channel] = []

    async def start(faults: FaultConfig, **kw: Any) -> tuple[SimulatorServer, Stub]:
        kw.setdefault("time_scale", 3600.0)
        srv: SimulatorServer = await sim_factory(_tiny(), faults=faults, **kw)
        channel = grpc.aio.insecure_channel(srv.address)
        channels.append(channel)
        return srv, mg_grpc.MicrogridStub(channel)

    yield start
    for channel in channels:
        await channel.close()


def _telemetry(stub: mg_grpc.MicrogridStub, cid: int) -> Any:
    return stub.ReceiveElectricalComponentTelemetryStream(
        mg_pb2.ReceiveElectricalComponentTelemetryStreamRequest(electrical_component_id=cid)
    )


async def _set_power(stub: mg_grpc.MicrogridStub, cid: int, power_w: float) -> Any:
    """The first response of a SetElectricalComponentPower call (raises AioRpcError)."""
    call = stub.SetElectricalComponentPower(
        mg_pb2.SetElectricalComponentPowerRequest(
            electrical_component_id=cid,
            power=power_w,
            power_type=mg_pb2.POWER_TYPE_ACTIVE,
            request_lifetime=60,
        )
    )
    first = await anext(aiter(call))
    call.cancel()
    return first


async def _code_of(coro: Any) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await coro
    code: grpc.StatusCode = info.value.code()
    return code


async def _drain(call: Any) -> None:
    """Read a stream until it ends (or raises)."""
    async for _ in call:
        pass


async def _until(srv: SimulatorServer, pred: Callable[[], Any], timeout_s: float = 20.0) -> Any:
    """Poll ``pred`` once per telemetry generation until it is truthy; return its value."""
    async with asyncio.timeout(timeout_s):
        while True:
            value = pred()
            if value:
                return value
            await srv.wait_for_generation()


def _episodes(srv: SimulatorServer, kind: str, cid: int | None = None) -> list[dict[str, Any]]:
    return [
        e
        for e in srv.stats()["faults"]["episodes"]
        if e["kind"] == kind and (cid is None or e["component_id"] == cid)
    ]


def _unix(srv: SimulatorServer, wall_s: float) -> float:
    assert srv.listening_at_unix is not None
    return srv.listening_at_unix + wall_s


def _sample_unix(msg: Any) -> float:
    snap = msg.telemetry.state_snapshots[0].origin_time
    return float(snap.seconds + snap.nanos / 1e9)


def _metric(msg: Any, metric: int) -> Any:
    for sample in msg.telemetry.metric_samples:
        if sample.metric == metric:
            return sample
    return None


def _bounds(msg: Any, metric: int) -> list[tuple[float, float]]:
    sample = _metric(msg, metric)
    return [
        (
            b.lower if b.HasField("lower") else -math.inf,
            b.upper if b.HasField("upper") else math.inf,
        )
        for b in sample.bounds
    ]


# --------------------------------------------------------------------------- config


def test_faults_off_by_default_and_on_in_the_soak_site() -> None:
    assert load_site().faults == FaultConfig()
    assert not FaultConfig().enabled
    soak_ref = resources.files("simulator.sites").joinpath("soak.toml")
    soak = load_site(Path(str(soak_ref)))
    assert soak.faults.enabled
    for kind in EPISODE_KINDS:
        assert getattr(soak.faults, f"{kind}_per_h") > 0, kind
    assert soak.faults.setpoint_delay_prob > 0
    assert soak.faults.setpoint_reject_prob > 0
    # same site as the default otherwise
    assert soak.components == load_site().components
    assert soak.connections == load_site().connections


@pytest.mark.parametrize(
    ("faults", "message"),
    [
        ({"stream_end_per_h": -1}, "faults.stream_end_per_h = -1: must be >= 0"),
        ({"error_state_per_h": "x"}, 'faults.error_state_per_h = "x": expected a number'),
        ({"bad_metric_per_h": math.inf}, "faults.bad_metric_per_h = inf: must be finite"),
        ({"setpoint_reject_prob": 1.5}, "faults.setpoint_reject_prob = 1.5: must be <= 1"),
        ({"bounds_flap_s": 0}, "faults.bounds_flap_s = 0: must be > 0"),
        ({"setpoint_delay_s": 600}, "faults.setpoint_delay_s = 600: must be <= 60"),
        ({"seed": 1.5}, "faults.seed = 1.5: expected an integer"),
        ({"max_episodes": 0}, "faults.max_episodes = 0: must be >= 1"),
        ({"stream_stal_per_h": 1}, "faults.stream_stal_per_h = 1: unknown field"),
    ],
)
def test_bad_faults_table_is_one_clear_line(faults: dict[str, Any], message: str) -> None:
    doc = _tiny_doc()
    doc["faults"] = faults
    with pytest.raises(SiteConfigError) as info:
        site_from_dict(doc, "site.toml")
    assert str(info.value) == f"site.toml: {message}"


def test_faults_table_must_be_a_table() -> None:
    doc = _tiny_doc()
    doc["faults"] = 3
    with pytest.raises(SiteConfigError, match=r"^site.toml: faults = 3: expected a table$"):
        site_from_dict(doc, "site.toml")


def test_faults_table_parsed() -> None:
    doc = _tiny_doc()
    doc["faults"] = {"seed": 9, "stream_end_per_h": 2, "setpoint_delay_s": 0.25}
    cfg = site_from_dict(doc).faults
    assert cfg == FaultConfig(seed=9, stream_end_per_h=2.0, setpoint_delay_s=0.25)
    assert cfg.enabled


def test_cli_fault_flags_override_the_site() -> None:
    base = FaultConfig(seed=1, stream_end_per_h=5.0, bad_metric_per_h=1.0)
    cfg = parse_fault_overrides(["stream_end_per_h=2", "error_state_per_h=0.5"], 42, base)
    assert cfg == FaultConfig(
        seed=42, stream_end_per_h=2.0, bad_metric_per_h=1.0, error_state_per_h=0.5
    )
    assert parse_fault_overrides([], None, base) == base


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--fault", "stream_end_per_h=-1"], "--fault stream_end_per_h=-1: faults.stream_end_"),
        (["--fault", "stream_end_per_h"], "expected KEY=VALUE"),
        (["--fault", "=3"], "expected KEY=VALUE"),
        (["--fault", "bad\tkey=3"], "--fault 'bad\\tkey=3': unknown key 'bad\\tkey'"),
        (["--fault", "explode_per_h=1"], "--fault explode_per_h=1: unknown key 'explode_per_h'"),
        (
            ["--fault", "setpoint_reject_prob=lots"],
            'faults.setpoint_reject_prob = "lots": expected a number',
        ),
        (["--fault", "setpoint_delay_prob=2"], "faults.setpoint_delay_prob = 2: must be <= 1"),
        (["--faults-seed", "-4"], "--faults-seed -4: faults.seed = -4: must be >= 0"),
        (["--stats-interval", "1"], "--stats-interval needs --stats-json"),
    ],
)
def test_cli_bad_fault_flags_exit_2_one_line(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--port", "0", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("error: "), err
    assert needle in err


def test_cli_unwritable_stats_file_exit_2_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "no" / "such" / "dir" / "stats.json"
    assert main(["--port", "0", "--stats-json", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"error: --stats-json {target}: "), err


# --------------------------------------------------------------------------- schedule


def test_schedule_is_seeded_per_kind_and_respects_eligibility() -> None:
    site = load_site()
    rates = {f"{kind}_per_h": 2.0 for kind in EPISODE_KINDS}
    cfg = FaultConfig(seed=3, **rates)
    horizon_s = 10 * 3600.0
    one = FaultScheduler(cfg, site).due(horizon_s)
    assert one == FaultScheduler(cfg, site).due(horizon_s)
    assert one != FaultScheduler(FaultConfig(seed=4, **rates), site).due(horizon_s)
    # polling in small steps gives the same injections as one big poll
    stepped = FaultScheduler(cfg, site)
    polled = [inj for t in range(0, int(horizon_s), 7) for inj in stepped.due(float(t))]
    polled += stepped.due(horizon_s)
    assert sorted(polled, key=lambda i: (i.at_sim_s, i.kind)) == sorted(
        one, key=lambda i: (i.at_sim_s, i.kind)
    )
    # one kind's schedule does not depend on which other kinds are on
    alone = FaultScheduler(FaultConfig(seed=3, bad_metric_per_h=2.0), site).due(horizon_s)
    assert alone == [i for i in one if i.kind == "bad_metric"]
    assert all(a.at_sim_s <= b.at_sim_s for a, b in itertools.pairwise(one))

    devices = {10, 20, 30, 31, 40, 11, 21, 32, 41, 42}
    every = {c.id for c in site.components}
    for kind in EPISODE_KINDS:
        hits = [i for i in one if i.kind == kind]
        expected = 2.0 * len(every if kind.startswith("stream") else devices) * 10
        assert abs(len(hits) - expected) < 5 * math.sqrt(expected), (kind, len(hits))
        ids = {i.component_id for i in hits}
        assert ids == (every if kind.startswith("stream") else devices), kind
    for inj in one:
        if inj.kind == "bounds_flap":
            assert inj.lower_w <= 0.0 <= inj.upper_w
            assert inj.variant.split(":")[0] in ("derate", "charge_only", "discharge_only")
            assert inj.duration_sim_s == cfg.bounds_flap_s
        if inj.kind == "bad_metric":
            assert inj.variant in BAD_METRIC_MODES
    assert {i.variant for i in one if i.kind == "bad_metric"} == set(BAD_METRIC_MODES)


def test_setpoint_coin_flips_are_seeded() -> None:
    cfg = FaultConfig(seed=2, setpoint_delay_prob=0.3, setpoint_reject_prob=0.5)
    a, b = SetpointFaults(cfg), SetpointFaults(cfg)
    flips = [(a.delay_s(), a.reject()) for _ in range(200)]
    assert flips == [(b.delay_s(), b.reject()) for _ in range(200)]
    assert {d for d, _ in flips} == {0.0, cfg.setpoint_delay_s}
    assert 40 < sum(r for _, r in flips) < 160
    off = SetpointFaults(FaultConfig())
    assert not any(off.reject() or off.delay_s() for _ in range(100))


# --------------------------------------------------------------------------- accounting


def test_ledger_counts_setpoints_during_and_first_setpoint_after() -> None:
    ledger = FaultLedger(FaultConfig(detection_grace_s=2.0, max_episodes=3))
    ep = ledger.open("stream_stall", 11, (10,), sim_s=0.0, wall_s=10.0)
    ledger.on_setpoint_received(10, 5_000.0, wall_s=11.0)  # within the detection grace
    ledger.on_setpoint_received(10, 0.0, wall_s=13.0)  # 0 W is always fine
    ledger.on_setpoint_received(20, 5_000.0, wall_s=13.0)  # another inverter
    ledger.on_setpoint_received(10, -5_000.0, wall_s=12.5)
    ledger.on_setpoint_accepted(10, -5_000.0, received_wall_s=12.5, wall_s=12.6)
    ledger.on_setpoint_accepted(10, 5_000.0, received_wall_s=11.0, wall_s=11.1)  # in grace
    assert (ep.setpoints_during, ep.setpoints_accepted_during) == (1, 1)
    ledger.close(ep, sim_s=100.0, wall_s=14.0)
    ledger.close(ep, sim_s=200.0, wall_s=20.0)  # no-op
    ledger.on_setpoint_received(10, 5_000.0, wall_s=14.2)  # after the end: not "during"
    ledger.on_setpoint_accepted(10, 0.0, received_wall_s=14.2, wall_s=14.3)
    assert ep.first_nonzero_setpoint_after_wall_s is None
    ledger.on_setpoint_accepted(10, 3_000.0, received_wall_s=14.9, wall_s=15.0)
    ledger.on_setpoint_accepted(10, 3_000.0, received_wall_s=15.9, wall_s=16.0)
    assert ep.first_nonzero_setpoint_after_wall_s == pytest.approx(1.0)
    assert ep.end_wall_s == 14.0
    assert ep.end_sim_s == 100.0
    assert ep.setpoints_during == 1
    ledger.count_call("setpoint_reject")
    ledger.skip("stream_stall")
    out = ledger.to_json()
    json.dumps(out)
    assert out["injected"]["stream_stall"] == 1
    assert out["injected"]["setpoint_reject"] == 1
    assert out["active_episodes"] == 0
    summary = out["summary"]["stream_stall"]
    assert summary == {
        "episodes": 1,
        "ended": 1,
        "ended_with_inverters": 1,
        "skipped": 1,
        "setpoints_during": 1,
        "setpoints_accepted_during": 1,
        "episodes_with_setpoints_during": 1,
        "recovered": 1,
        "first_nonzero_setpoint_after_wall_s_max": pytest.approx(1.0),
        "first_nonzero_setpoint_after_wall_s_mean": pytest.approx(1.0),
        "duration_wall_s_mean": pytest.approx(4.0),
    }
    # bounded episode list, unbounded aggregates
    for k in range(5):
        ledger.open("error_state", 10, (10,), sim_s=k, wall_s=20.0 + k)
    out = ledger.to_json()
    assert len(out["episodes"]) == 3
    assert out["episodes_dropped"] == 3
    assert out["summary"]["error_state"]["episodes"] == 5
    assert out["active_episodes"] == 5
    assert [e["start_sim_s"] for e in out["episodes"]] == [2, 3, 4]


def test_bounds_history_window() -> None:
    hist = BoundsHistory(keep_s=5.0)
    hist.note(10, [(-10.0, 10.0)], wall_s=1.0)
    hist.note(10, [(-10.0, 10.0)], wall_s=2.0)
    hist.note(10, [(-2.0, 2.0)], wall_s=2.5)
    assert hist.advertised_since(10, 8.0, since_wall_s=1.5)  # last seen at 2.0
    assert not hist.advertised_since(10, 8.0, since_wall_s=2.1)
    assert hist.advertised_since(10, 1.0, since_wall_s=2.4)
    assert not hist.advertised_since(10, 20.0, since_wall_s=0.0)
    assert not hist.advertised_since(20, 1.0, since_wall_s=0.0)
    hist.note(10, [(-3.0, 3.0)], wall_s=30.0)  # old entries are dropped
    assert not hist.advertised_since(10, 8.0, since_wall_s=0.0)


# --------------------------------------------------------------------------- over gRPC


async def test_stream_end_fault_client_sees_unavailable_and_reconnects(tiny_sim: TinySim) -> None:
    srv, stub = await tiny_sim(FaultConfig(seed=1, stream_end_per_h=1.0))
    async with asyncio.timeout(20):
        code = await _code_of(_drain(_telemetry(stub, 10)))
    assert code == grpc.StatusCode.UNAVAILABLE
    ends = _episodes(srv, "stream_end", 10)
    assert ends
    assert all(e["end_sim_s"] == e["start_sim_s"] for e in ends)
    srv.injecting = False
    fresh = _telemetry(stub, 10)
    assert (await anext(aiter(fresh))).telemetry.electrical_component_id == 10
    fresh.cancel()


async def test_stream_stall_silences_a_component_then_resumes(tiny_sim: TinySim) -> None:
    # 1800 simulated s = 0.5 wall s per stall
    srv, stub = await tiny_sim(FaultConfig(seed=2, stream_stall_per_h=1.0, stream_stall_s=1800.0))
    times: list[float] = []

    async def read() -> None:
        async for msg in _telemetry(stub, 10):
            times.append(_sample_unix(msg))

    reader = asyncio.create_task(read())
    await _until(srv, lambda: times)

    def done() -> list[dict[str, Any]]:
        return [
            e
            for e in _episodes(srv, "stream_stall", 10)
            if e["end_wall_s"] is not None
            and _unix(srv, e["start_wall_s"]) > times[0]
            and times[-1] > _unix(srv, e["end_wall_s"])
        ]

    episodes = await _until(srv, done)
    srv.injecting = False
    reader.cancel()
    await asyncio.wait([reader])
    assert reader.cancelled()  # the stream never failed: it stayed open through the stall
    eps = 0.005  # clock conversion margin (monotonic -> unix), not a timing threshold
    for ep in episodes:
        start, end = _unix(srv, ep["start_wall_s"]), _unix(srv, ep["end_wall_s"])
        inside = [t for t in times if start + eps < t < end - eps]
        assert inside == [], (ep, inside)
        assert any(t >= end for t in times)  # resumed
        assert ep["inverter_ids"] == [10]


async def test_setpoint_delay_holds_the_call(tiny_sim: TinySim) -> None:
    srv, stub = await tiny_sim(
        FaultConfig(setpoint_delay_prob=1.0, setpoint_delay_s=0.3), time_scale=1.0
    )
    t0 = time.monotonic()
    first = await _set_power(stub, 10, 5_000.0)
    held_s = time.monotonic() - t0
    assert first.status == _ACCEPTED
    assert held_s >= 0.3 - 0.01  # asyncio.sleep never wakes (much) early: a lower bound
    stats = srv.stats()
    assert stats["faults"]["injected"]["setpoint_delay"] == 1
    assert stats["setpoints_accepted"] == 1


async def test_setpoint_reject_after_validation(tiny_sim: TinySim) -> None:
    cfg = FaultConfig(seed=5, setpoint_reject_prob=1.0)
    srv, stub = await tiny_sim(cfg, time_scale=1.0)
    assert await _code_of(_set_power(stub, 10, 5_000.0)) == grpc.StatusCode.UNAVAILABLE
    # validation comes first: an out-of-bounds setpoint is still OUT_OF_RANGE and counted
    assert await _code_of(_set_power(stub, 10, 50_000.0)) == grpc.StatusCode.OUT_OF_RANGE
    assert math.isnan(srv.physics.inverter_setpoint_w[srv.physics.inverter_row(10)])
    assert srv.physics.setpoints_in_flight(10) == 0
    stats = srv.stats()
    assert stats["setpoints_rejected_injected"] == 1
    assert stats["per_component"]["10"]["rejected_injected"] == 1
    assert stats["setpoints_out_of_bounds"] == 1
    assert stats["setpoints_accepted"] == 0
    assert stats["first_setpoint_accepted_at_unix"] is None
    assert stats["faults"]["injected"]["setpoint_reject"] == 1
    srv.injecting = False
    assert (await _set_power(stub, 10, 5_000.0)).status == _ACCEPTED
    assert srv.stats()["first_setpoint_accepted_at_unix"] is not None


async def test_setpoint_reject_probability_is_seeded(tiny_sim: TinySim) -> None:
    cfg = FaultConfig(seed=8, setpoint_reject_prob=0.5)
    srv, stub = await tiny_sim(cfg, time_scale=1.0)
    outcomes = []
    codes = set()
    for k in range(30):
        try:
            await _set_power(stub, 10, 1_000.0 + k)
            outcomes.append(False)
        except grpc.aio.AioRpcError as exc:
            codes.add(exc.code())
            outcomes.append(True)
    assert codes == {grpc.StatusCode.UNAVAILABLE}
    flips = SetpointFaults(cfg)
    assert outcomes == [flips.reject() for _ in range(30)]
    assert srv.stats()["setpoints_rejected_injected"] == sum(outcomes)


async def test_error_state_persists_until_ack_then_start(tiny_sim: TinySim) -> None:
    srv, stub = await tiny_sim(FaultConfig(seed=4, error_state_per_h=0.5, detection_grace_s=0.0))
    first = await _until(srv, lambda: _episodes(srv, "error_state"))
    srv.injecting = False
    episodes = _episodes(srv, "error_state")
    faulted = sorted({e["component_id"] for e in episodes})
    cid = first[0]["component_id"]
    assert cid in (10, 11)
    assert first[0]["inverter_ids"] == [10]
    # the client sees ERROR in telemetry
    msg = await anext(aiter(_telemetry(stub, cid)))
    assert S.ELECTRICAL_COMPONENT_STATE_CODE_ERROR in msg.telemetry.state_snapshots[0].states
    # a non-zero setpoint is refused, Start is refused until the error is acknowledged
    code = await _code_of(_set_power(stub, 10, 5_000.0))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    start = mg_pb2.StartElectricalComponentRequest(electrical_component_id=cid)
    code = await _code_of(stub.StartElectricalComponent(start))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    sim_before = srv.physics.now_s
    await srv.wait_for_generation(5)
    assert srv.physics.now_s > sim_before + 60.0
    assert srv.physics.state_of(cid) == ComponentState.ERROR  # it persists
    for c in faulted:
        await stub.AckElectricalComponentError(
            mg_pb2.AckElectricalComponentErrorRequest(electrical_component_id=c)
        )
        assert srv.physics.state_of(c) == ComponentState.OFF
    await srv.wait_for_generation(2)
    assert all(e["end_sim_s"] is None for e in _episodes(srv, "error_state"))  # OFF != back
    for c in faulted:
        await stub.StartElectricalComponent(
            mg_pb2.StartElectricalComponentRequest(electrical_component_id=c)
        )
        assert srv.physics.state_of(c) == ComponentState.RUNNING
    await _until(
        srv, lambda: all(e["end_sim_s"] is not None for e in _episodes(srv, "error_state"))
    )
    assert (await _set_power(stub, 10, 5_000.0)).status == _ACCEPTED
    stats = srv.stats()["faults"]
    ep = next(e for e in stats["episodes"] if e["start_sim_s"] == first[0]["start_sim_s"])
    assert ep["setpoints_during"] == 1
    assert ep["setpoints_accepted_during"] == 0
    assert ep["first_nonzero_setpoint_after_wall_s"] is not None
    assert ep["end_wall_s"] > ep["start_wall_s"]
    summary = stats["summary"]["error_state"]
    assert summary["recovered"] == summary["ended"] == summary["episodes"] == len(episodes)
    assert summary["ended_with_inverters"] == summary["ended"]
    assert stats["active_episodes"] == 0


def _check_corruption(msg: Any, kind: str, mode: str | None) -> None:
    """Assert that a telemetry frame carries exactly the corruption ``mode`` (None = clean)."""
    value_metric = M.METRIC_AC_POWER_ACTIVE if kind == "inverter" else M.METRIC_BATTERY_SOC_PCT
    bound_metrics = (
        [M.METRIC_AC_POWER_ACTIVE]
        if kind == "inverter"
        else [M.METRIC_DC_POWER, M.METRIC_BATTERY_SOC_PCT]
    )
    sample = _metric(msg, value_metric)
    if mode == "missing":
        assert sample is None
        return
    assert sample is not None
    value = sample.value.simple_metric.value
    if mode == "nan":
        assert math.isnan(value)
    elif mode == "+inf":
        assert value == math.inf
    elif mode == "-inf":
        assert value == -math.inf
    else:
        assert math.isfinite(value)
    for metric in bound_metrics:
        has_bounds = len(_metric(msg, metric).bounds) > 0
        assert has_bounds == (mode != "missing_bounds"), (metric, mode)


async def test_bad_metric_episodes_corrupt_exactly_their_window(tiny_sim: TinySim) -> None:
    # 1440 simulated s = 0.4 wall s per episode; 2 components x 3/h = 6 episodes per wall s
    srv, stub = await tiny_sim(
        FaultConfig(seed=5, bad_metric_per_h=3.0, bad_metric_s=1440.0), telemetry_hz=20.0
    )
    frames: dict[int, list[Any]] = {10: [], 11: []}

    async def read(cid: int) -> None:
        async for msg in _telemetry(stub, cid):
            frames[cid].append(msg)

    readers = [asyncio.create_task(read(c)) for c in frames]
    await _until(srv, lambda: srv.stats()["faults"]["injected"]["bad_metric"] >= 12)
    srv.injecting = False
    await _until(srv, lambda: srv.stats()["faults"]["active_episodes"] == 0)
    await srv.wait_for_generation(2)
    for task in readers:
        task.cancel()
    await asyncio.wait(readers)
    episodes = _episodes(srv, "bad_metric")
    assert {e["variant"] for e in episodes} == set(BAD_METRIC_MODES)
    eps = 0.005  # clock conversion margin (monotonic -> unix)
    checked = {"clean": 0, "bad": 0}
    for cid, kind in ((10, "inverter"), (11, "battery")):
        windows = [
            (_unix(srv, e["start_wall_s"]), _unix(srv, e["end_wall_s"]), e["variant"])
            for e in episodes
            if e["component_id"] == cid
        ]
        for msg in frames[cid]:
            t = _sample_unix(msg)
            if any(abs(t - s) < eps or abs(t - e) < eps for s, e, _ in windows):
                continue
            modes = [v for s, e, v in windows if s <= t < e]
            assert len(modes) <= 1
            _check_corruption(msg, kind, modes[0] if modes else None)
            checked["bad" if modes else "clean"] += 1
    assert checked["bad"] > 0, checked
    assert checked["clean"] > 0, checked


def _flap_bounds(variant: str) -> tuple[float, float]:
    if variant == "charge_only":
        return 0.0, RATED_W
    if variant == "discharge_only":
        return -RATED_W, 0.0
    frac = float(variant.split(":")[1])
    return -RATED_W * frac, RATED_W * frac


async def test_bounds_flap_in_telemetry_and_enforced(tiny_sim: TinySim) -> None:
    # 10800 simulated s = 3 wall s per flap; grace 0: every OUT_OF_RANGE counts
    srv, stub = await tiny_sim(
        FaultConfig(seed=6, bounds_flap_per_h=1.0, bounds_flap_s=10_800.0, bounds_grace_s=0.0)
    )
    stream = aiter(_telemetry(stub, 10))
    assert _bounds(await anext(stream), M.METRIC_AC_POWER_ACTIVE) == [(-RATED_W, RATED_W)]
    ep = (await _until(srv, lambda: _episodes(srv, "bounds_flap")))[0]
    srv.injecting = False
    lo, hi = _flap_bounds(ep["variant"])
    # a component's own bounds (inverter 10, or battery 11 behind it) reach the inverter
    async with asyncio.timeout(20):
        while _bounds(msg := await anext(stream), M.METRIC_AC_POWER_ACTIVE) != [(lo, hi)]:
            pass
    if ep["component_id"] == 11:
        battery = await anext(aiter(_telemetry(stub, 11)))
        assert _bounds(battery, M.METRIC_DC_POWER) == [(lo, hi)]
    outside = hi + 500.0 if hi > 0 else 5_000.0
    inside = hi / 2 if hi > 0 else lo / 2
    assert await _code_of(_set_power(stub, 10, outside)) == grpc.StatusCode.OUT_OF_RANGE
    assert (await _set_power(stub, 10, inside)).status == _ACCEPTED
    assert srv.stats()["faults"]["episodes"][0]["end_sim_s"] is None  # still flapping
    stats = srv.stats()
    assert stats["setpoints_out_of_bounds"] == 1
    assert stats["setpoints_rejected_bounds_race"] == 0
    # restored when the episode ends
    async with asyncio.timeout(20):
        while _bounds(msg := await anext(stream), M.METRIC_AC_POWER_ACTIVE) != [
            (-RATED_W, RATED_W)
        ]:
            pass
    assert _episodes(srv, "bounds_flap")[0]["end_sim_s"] is not None
    assert (await _set_power(stub, 10, outside)).status == _ACCEPTED
    del msg


async def test_out_of_bounds_only_if_never_advertised_within_grace(tiny_sim: TinySim) -> None:
    srv, stub = await tiny_sim(FaultConfig(bounds_grace_s=30.0), time_scale=1.0)
    stream = aiter(_telemetry(stub, 10))
    assert _bounds(await anext(stream), M.METRIC_AC_POWER_ACTIVE) == [(-RATED_W, RATED_W)]
    srv.physics.limit_power(10, -2_000.0, 2_000.0)
    while _bounds(await anext(stream), M.METRIC_AC_POWER_ACTIVE) != [(-2_000.0, 2_000.0)]:
        pass
    # outside the current bounds, inside the ones advertised a moment ago: a race
    assert await _code_of(_set_power(stub, 10, 5_000.0)) == grpc.StatusCode.OUT_OF_RANGE
    # outside everything ever advertised: out of bounds
    assert await _code_of(_set_power(stub, 10, 20_000.0)) == grpc.StatusCode.OUT_OF_RANGE
    stats = srv.stats()
    assert stats["setpoints_rejected"]["OUT_OF_RANGE"] == 2
    assert stats["setpoints_rejected_bounds_race"] == 1
    assert stats["setpoints_out_of_bounds"] == 1
    assert stats["per_component"]["10"]["bounds_race"] == 1
    assert stats["per_component"]["10"]["out_of_bounds"] == 1

    # with no grace, the same race counts as out of bounds
    strict, stub2 = await tiny_sim(FaultConfig(bounds_grace_s=0.0), time_scale=1.0)
    stream2 = aiter(_telemetry(stub2, 10))
    await anext(stream2)
    strict.physics.limit_power(10, -2_000.0, 2_000.0)
    while _bounds(await anext(stream2), M.METRIC_AC_POWER_ACTIVE) != [(-2_000.0, 2_000.0)]:
        pass
    assert await _code_of(_set_power(stub2, 10, 5_000.0)) == grpc.StatusCode.OUT_OF_RANGE
    assert strict.stats()["setpoints_out_of_bounds"] == 1
    assert strict.stats()["setpoints_rejected_bounds_race"] == 0


# --------------------------------------------------------------------------- the CLI process


def _start_cli(*args: str) -> tuple[subprocess.Popen[str], int]:
    """``python -m simulator ARGS`` through the one launcher; (process, its loopback port)."""
    proc, address = start_simulator_process(
        args, stderr=subprocess.PIPE, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    host, port = address.rsplit(":", 1)
    assert host == "127.0.0.1", address
    return proc, int(port)


def _read_or_empty(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""


async def _poll_json(path: Path, pred: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """Read ``path`` until ``pred`` holds; every read must be complete JSON (atomic writes)."""
    async with asyncio.timeout(20):
        while True:
            text = await asyncio.to_thread(_read_or_empty, path)
            if text:
                data: dict[str, Any] = json.loads(text)
                if pred(data):
                    return data
            await asyncio.sleep(0.02)


async def test_cli_writes_stats_periodically_and_atomically(tmp_path: Path) -> None:
    stats_path = tmp_path / "stats.json"
    proc, port = _start_cli(
        "--port", "0", "--time-scale", "100", "--stats-json", str(stats_path),
        "--stats-interval", "0.05", "--fault", "stream_end_per_h=1", "--faults-seed", "3",
    )  # fmt: skip
    try:
        first = await _poll_json(stats_path, lambda d: True)
        assert first["listening_at_unix"] <= time.time()
        assert first["first_setpoint_accepted_at_unix"] is None
        assert first["faults"]["config"]["stream_end_per_h"] == 1.0
        assert first["faults"]["config"]["seed"] == 3
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = mg_grpc.MicrogridStub(channel)
            sent_at = time.time()
            assert (await _set_power(stub, 20, 5_000.0)).status == _ACCEPTED
        later = await _poll_json(
            stats_path, lambda d: d["first_setpoint_accepted_at_unix"] is not None
        )
        assert later["first_setpoint_accepted_at_unix"] >= sent_at
        assert later["first_nonzero_setpoint_accepted_at_unix"] is not None
        assert later["simulated_s"] > first["simulated_s"]
        assert later["listening_at_unix"] == first["listening_at_unix"]
        assert later["faults"]["injecting"] is True
        proc.send_signal(signal.SIGUSR1)  # stop injecting new faults
        await _poll_json(stats_path, lambda d: d["faults"]["injecting"] is False)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        final = json.loads(stats_path.read_text(encoding="utf-8"))
        assert final["setpoints_accepted"] == 1
        assert final["faults"]["enabled"] is True
        ends = final["faults"]["injected"]["stream_end"]
        assert ends == final["faults"]["summary"]["stream_end"]["episodes"]
        assert ends == len(final["faults"]["episodes"])
        names = sorted(await asyncio.to_thread(os.listdir, tmp_path))
        assert names == ["stats.json"]  # no temp files left behind
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)


async def test_cli_restarts_on_the_same_port_after_kill_9(tmp_path: Path) -> None:
    stats_path = tmp_path / "stats.json"
    proc, port = _start_cli("--port", "0", "--stats-json", str(stats_path))
    restarted: subprocess.Popen[str] | None = None
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = mg_grpc.MicrogridStub(channel)
            stream = aiter(_telemetry(stub, 10))
            await anext(stream)  # an established connection when the server dies
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            killed_at = time.time()
            restarted, restarted_port = _start_cli(
                "--port", str(port), "--stats-json", str(stats_path), "--stats-interval", "0.05"
            )  # fmt: skip
            assert restarted_port == port
            stats = await _poll_json(stats_path, lambda d: d["listening_at_unix"] > killed_at)
            assert stats["first_setpoint_accepted_at_unix"] is None
            # the same channel reconnects to the new server
            codes = set()
            async with asyncio.timeout(20):
                while True:
                    try:
                        first = await _set_power(stub, 20, 5_000.0)
                        break
                    except grpc.aio.AioRpcError as exc:
                        codes.add(exc.code())
                        await asyncio.sleep(0.05)
            assert codes <= {grpc.StatusCode.UNAVAILABLE}
            assert first.status == _ACCEPTED
            stats = await _poll_json(
                stats_path, lambda d: d["first_setpoint_accepted_at_unix"] is not None
            )
            assert stats["first_setpoint_accepted_at_unix"] >= stats["listening_at_unix"]
    finally:
        for p in (proc, restarted):
            if p is not None and p.poll() is None:
                p.kill()
                p.communicate(timeout=10)


def test_episodes_watch_the_battery_inverters_a_component_is_commanded_through() -> None:
    affected = SimulatorServer(load_site()).fault_driver.inverters_of
    assert affected[10] == (10,)
    assert affected[11] == (10,)
    assert affected[32] == (30, 31)  # one battery behind two inverters
    assert affected[41] == affected[42] == (40,)  # two batteries behind one inverter
    assert affected[5] == ()  # PV inverter
    assert affected[1] == affected[2] == affected[3] == ()  # grid, meters


_fault_values = st.one_of(
    st.integers(-5, 10_000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.one_of(st.sampled_from(FAULT_KEYS), st.text(min_size=1, max_size=8)),
        _fault_values,
        max_size=6,
    )
)
def test_random_faults_tables_are_valid_or_one_line(table: dict[str, Any]) -> None:
    doc = _tiny_doc()
    doc["faults"] = table
    error: SiteConfigError | None = None
    try:
        cfg = site_from_dict(doc, "site.toml").faults
    except SiteConfigError as exc:
        error = exc
    if error is not None:
        assert "\n" not in str(error)
        assert str(error).startswith("site.toml: faults.")
        key = error.field.split(".", 1)[1]
        assert key in table or key in {repr(k) for k in table}
        return
    for key in FAULT_KEYS:
        value = getattr(cfg, key)
        assert math.isfinite(value)
        assert value >= 0
    assert cfg.setpoint_delay_prob <= 1
    assert cfg.setpoint_reject_prob <= 1
    assert cfg.max_episodes >= 1


def test_physics_power_limit_clamps_bounds_and_running_power() -> None:
    phys = SitePhysics(_tiny(), max_step_s=0.05)
    phys.set_active_power(10, 8_000.0)
    phys.step(1.0)
    assert phys.inverter_power_w[phys.inverter_row(10)] == pytest.approx(8_000.0)
    phys.limit_power(11, -RATED_W, 3_000.0)  # battery side: charge derated
    assert phys.active_power_bounds(10) == [(-RATED_W, 3_000.0)]
    phys.step(1.0)
    assert phys.inverter_power_w[phys.inverter_row(10)] == pytest.approx(3_000.0)
    with pytest.raises(PowerOutOfRangeError):
        phys.check_active_power(10, 5_000.0)
    phys.limit_power(10, -1_000.0, RATED_W)  # inverter side too: both apply
    assert phys.active_power_bounds(10) == [(-1_000.0, 3_000.0)]
    phys.clear_power_limit(11)
    assert phys.active_power_bounds(10) == [(-1_000.0, RATED_W)]
    phys.clear_power_limit(10)
    assert phys.active_power_bounds(10) == [(-RATED_W, RATED_W)]
    phys.step(1.0)
    assert phys.inverter_power_w[phys.inverter_row(10)] == pytest.approx(8_000.0)
    with pytest.raises(InvalidRequestError):
        phys.limit_power(10, 1_000.0, 2_000.0)  # must contain 0 W
    with pytest.raises(InvalidRequestError):
        phys.limit_power(2, -1.0, 1.0)  # a meter
