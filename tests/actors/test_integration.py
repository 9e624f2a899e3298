"""Integration tests of the actor layer over real gRPC against the simulator.

Every test polls with a deadline (no fixed sleeps) and checks at the end that no
setpoint outside the component's bounds reached the simulator (its stats).

`_freeze` silences the telemetry of chosen components with
`SimulatorServer.pause_telemetry` (their streams stay open but go silent while
setpoints still work).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import numpy as np
import pytest
from testkit import connect_site, wait_until

from actors import API_VERSIONS, ApiError, OutcomeKind, RuntimeOptions, Site
from simulator.config import load_site
from simulator.errors import ComponentNotReadyError
from simulator.server import SimulatorServer

pytestmark = pytest.mark.integration

def assert_no_setpoint_out_of_bounds(srv: SimulatorServer) -> None:
    st = srv.stats()
    assert st["setpoints_out_of_bounds"] == 0, st
    assert st["setpoints_rejected"]["OUT_OF_RANGE"] == 0, st
    assert st["setpoints_rejected"]["INVALID_ARGUMENT"] == 0, st


@contextmanager
def _refuse_setpoints(srv: SimulatorServer, ids: set[int]) -> Iterator[None]:
    """Make the server refuse setpoints to `ids` (FAILED_PRECONDITION) while telemetry
    keeps saying they are ready."""
    phys = srv.physics
    original = phys.check_active_power

    def check(cid: int, power_w: float) -> None:
        if cid in ids:
            raise ComponentNotReadyError(cid, "refusing setpoints (test)")
        original(cid, power_w)

    phys.check_active_power = check  # type: ignore[method-assign]
    try:
        yield
    finally:
        phys.check_active_power = original  # type: ignore[method-assign]


@contextmanager
def _freeze(srv: SimulatorServer, ids: set[int]) -> Iterator[None]:
    for cid in ids:
        srv.pause_telemetry(cid)
    try:
        yield
    finally:
        for cid in ids:
            srv.pause_telemetry(cid, paused=False)


def _power(site: Site, cid: int) -> float:
    return float(site.state.power_w[site.state.row_of[cid]])


@asynccontextmanager
async def _running(srv: SimulatorServer, api_version: str | None = None) -> AsyncIterator[Site]:
    """A `Site` connected to ``srv`` in ``api_version`` (None: the newest) and running,
    once every component is fresh and healthy."""
    site = await connect_site(srv, api_version=api_version)
    assert site.client.api_version == (api_version or API_VERSIONS[0])
    async with site:
        await wait_until(
            lambda: not site.stats().excluded, 5.0, "all components fresh and healthy"
        )
        yield site


@pytest.mark.parametrize("api_version", API_VERSIONS)
async def test_charge_100kw_reaches_telemetry_split_by_soc(
    sim: SimulatorServer, api_version: str
) -> None:
    async with _running(sim, api_version) as site:
        results = site.new_result_receiver()
        outcome = await site.set_power(100_000.0)
        assert outcome.kind is OutcomeKind.SUCCESS, outcome
        assert outcome.achieved_w == pytest.approx(100_000.0, abs=1.0)
        assert sum(outcome.setpoints_w.values()) == pytest.approx(100_000.0, abs=1.0)
        assert (await results.receive()).seq == outcome.seq
        # Ramp: 0.1 s response delay + <= 0.2 s ramp + one telemetry period; allow 3 s.
        await wait_until(
            lambda: abs(site.measurements().battery_power_w - 100_000.0) < 200.0,
            3.0,
            "battery inverters' summed AC power at +100 kW",
        )
        for cid, sp in outcome.setpoints_w.items():
            assert _power(site, cid) == pytest.approx(sp, abs=50.0), cid
        m = site.measurements()
        # Split by SoC: per Wh of capacity, the emptiest group (D, 45 %) charges
        # faster than the fullest one (B, 60 %).
        per_wh = m.group_power_w / m.group_capacity_wh
        assert per_wh[int(np.argmin(m.group_soc_pct))] > per_wh[int(np.argmax(m.group_soc_pct))]
        assert m.group_healthy.all()
        assert m.fleet_lower_w < 0 < m.fleet_upper_w
        st = site.stats()
        assert st.setpoints_failed == {}
        assert st.dispatch_latency_ms
        assert st.latency_p50_ms > 0
    assert_no_setpoint_out_of_bounds(sim)
    # Leaving the site sent 0 W to every commanded inverter.
    per = sim.stats()["per_component"]
    last = {cid: per[str(cid)]["last_setpoint_w"] for cid in outcome.setpoints_w}
    assert last == dict.fromkeys(outcome.setpoints_w, 0.0)


@pytest.mark.parametrize("api_version", API_VERSIONS)
async def test_silent_stream_excluded_share_moves_and_returns(
    sim: SimulatorServer, api_version: str
) -> None:
    others = [10, 30, 31, 40]
    async with _running(sim, api_version) as site:
        outcome = await site.set_power(100_000.0)
        share_20 = outcome.setpoints_w[20]
        assert share_20 > 5_000.0
        await wait_until(lambda: abs(site.measurements().battery_power_w - 1e5) < 200, 3, "100 kW")
        with _freeze(sim, {20}):
            await wait_until(lambda: site.stats().excluded.get(20) == "stale", 3, "20 stale")
            received_20 = sim.stats()["per_component"]["20"]["received"]
            # The others took over its share ...
            await wait_until(
                lambda: abs(sum(_power(site, c) for c in others) - 100_000.0) < 300.0,
                3,
                "the other inverters carrying 100 kW",
            )
            # ... and 20 itself, whose state is unknown, was never commanded: not even
            # 0 W (it keeps its last setpoint until that one's lifetime ends).
            assert sim.stats()["per_component"]["20"]["received"] == received_20
            phys = sim.physics
            assert abs(phys.inverter_power_w[phys.inverter_row(20)] - share_20) < 300.0
        await wait_until(lambda: 20 not in site.stats().excluded, 3, "20 back")
        await wait_until(
            lambda: abs(site.measurements().battery_power_w - 100_000.0) < 300.0,
            3,
            "100 kW again, 20 included",
        )
        assert abs(_power(site, 20) - share_20) < 300.0
    assert_no_setpoint_out_of_bounds(sim)


async def test_failing_setpoints_partial_failure_retry_and_recovery(
    sim: SimulatorServer,
) -> None:
    async with _running(sim) as site:
        with _refuse_setpoints(sim, {10}):  # telemetry says "ready" while it refuses
            outcome = await site.set_power(100_000.0)
            assert outcome.kind is OutcomeKind.PARTIAL_FAILURE, outcome
            assert outcome.failed == {10: "FAILED_PRECONDITION"}
            assert outcome.missing_w == pytest.approx(outcome.setpoints_w[10], abs=1.0)
            # Its share moves to the others right away (re-allocation after the failure).
            await wait_until(
                lambda: abs(site.measurements().battery_power_w - 100_000.0) < 300.0,
                3,
                "the others carrying 100 kW",
            )
            # ... and it is retried later with backoff, failing each time.
            await wait_until(
                lambda: sim.stats()["per_component"]["10"]["rejected"].get(
                    "FAILED_PRECONDITION", 0
                ) >= 3,
                5,
                "three retries of inverter 10",
            )
            assert site.stats().setpoints_failed["FAILED_PRECONDITION"] >= 3
        await wait_until(lambda: _power(site, 10) > 5_000.0, 5, "10 back in service")
        await wait_until(lambda: 10 not in site.stats().excluded, 3, "10 no longer excluded")
        await wait_until(
            lambda: abs(site.measurements().battery_power_w - 100_000.0) < 300.0, 3, "100 kW"
        )
    assert_no_setpoint_out_of_bounds(sim)


@pytest.mark.parametrize("api_version", API_VERSIONS)
async def test_error_state_excluded_acknowledged_restarted_and_reused(
    sim: SimulatorServer, api_version: str
) -> None:
    phys = sim.physics
    async with _running(sim, api_version) as site:
        outcome = await site.set_power(-80_000.0)
        share_40 = outcome.setpoints_w[40]
        assert share_40 < -5_000.0
        received_40 = sim.stats()["per_component"]["40"]["received"]
        phys.inject_error(40)
        # The runtime acknowledges the error and starts the inverter again ...
        await wait_until(lambda: site.recovery.stats.starts_sent >= 1, 3, "40 restarted")
        assert site.recovery.stats.acks_sent >= 1
        # ... it is used again once its telemetry says it runs ...
        await wait_until(lambda: 40 not in site.stats().excluded, 3, "40 back")
        await wait_until(lambda: abs(_power(site, 40) - share_40) < 300.0, 3, "40 carrying")
        await wait_until(
            lambda: abs(site.measurements().battery_power_w + 80_000.0) < 300.0, 3, "-80 kW"
        )
    # ... and while in ERROR it was never sent a setpoint (the server would refuse it).
    stats_40 = sim.stats()["per_component"]["40"]
    assert sum(stats_40["rejected"].values()) == 0
    assert stats_40["received"] > received_40
    assert_no_setpoint_out_of_bounds(sim)


async def test_error_state_excludes_component_until_it_runs(sim: SimulatorServer) -> None:
    refused: list[int] = []
    original = sim.physics.start

    def start(cid: int) -> None:  # the inverter does not come back from its error
        if cid == 40:
            refused.append(cid)
            raise ComponentNotReadyError(cid, "still broken (test)")
        original(cid)

    sim.physics.start = start  # type: ignore[method-assign]
    async with _running(sim) as site:
        await site.set_power(-80_000.0)
        sim.physics.inject_error(40)
        await wait_until(lambda: site.stats().excluded.get(40) == "error state", 3, "40 excluded")
        await wait_until(
            lambda: abs(site.measurements().battery_power_w + 80_000.0) < 300.0,
            3,
            "the others discharging 80 kW",
        )
        outcome = await site.set_power(-90_000.0)
        assert outcome.setpoints_w[40] == 0.0
        assert outcome.kind is OutcomeKind.SUCCESS
        # The client counts a failure after the server refused: wait on the client side.
        await wait_until(
            lambda: site.recovery.stats.failures >= 2, 5, "a second start attempt (backoff)"
        )
        assert len(refused) >= 2
        assert site.stats().excluded.get(40) == "error state"
    assert sum(sim.stats()["per_component"]["40"]["rejected"].values()) == 0
    assert_no_setpoint_out_of_bounds(sim)


@pytest.mark.parametrize("api_version", API_VERSIONS)
async def test_survives_simulator_restart(sim_factory: Any, api_version: str) -> None:
    cfg = load_site(None)
    srv1: SimulatorServer = await sim_factory(cfg)
    port = srv1.port
    async with _running(srv1, api_version) as site:
        await site.set_power(60_000.0)
        await wait_until(lambda: abs(site.measurements().battery_power_w - 6e4) < 200, 3, "60 kW")
        await srv1.stop(grace=0)
        await wait_until(
            lambda: len(site.stats().excluded) == site.state.n, 3, "all components stale"
        )
        srv2: SimulatorServer = await sim_factory(cfg, port=port)
        # No intervention: streams reconnect, the last target is re-dispatched.
        await wait_until(lambda: not site.stats().excluded, 10, "all components back")
        await wait_until(
            lambda: abs(site.measurements().battery_power_w - 60_000.0) < 200.0,
            10,
            "60 kW on the restarted simulator",
        )
        assert site.stats().reconnects >= site.state.n
    assert_no_setpoint_out_of_bounds(srv1)
    assert_no_setpoint_out_of_bounds(srv2)


async def test_fresh_receiver_gets_grid_meter_samples(sim: SimulatorServer) -> None:
    site = await connect_site(sim)
    grid = site.graph.grid_meter_id
    assert grid == 2
    fresh = site.new_fresh_receiver([grid])
    async with site:
        got = await asyncio.wait_for(fresh.receive(), 5)
        assert got == grid
        m = site.measurements()
        assert m.grid_sample_time_ns > 0
        assert math.isfinite(m.grid_power_w)
        assert m.grid_frequency_hz == pytest.approx(50.0, abs=0.5)


async def test_connect_errors_name_url_and_status(sim_factory: Any) -> None:
    srv: SimulatorServer = await sim_factory(api_key="secret")
    url = f"grpc://127.0.0.1:{srv.port}"
    with pytest.raises(ApiError, match="UNAUTHENTICATED") as info:
        await Site.connect(url)
    assert info.value.url == f"{url}?ssl=false"
    site = await Site.connect(url, api_key="secret")
    assert len(site.graph.groups) == 4
    await site.aclose()
    await srv.stop(grace=0)
    with pytest.raises(ApiError, match="UNAVAILABLE"):
        await Site.connect(url, options=RuntimeOptions(call_timeout_s=1.0))


async def test_measurements_reuse_a_recent_fleet_snapshot_but_never_old_grid_data(
    sim: SimulatorServer,
) -> None:
    async with _running(sim) as site:
        full = site.measurements()
        samples = int(site.state.samples[site.state.row_of[2]])
        await wait_until(
            lambda: site.state.samples[site.state.row_of[2]] > samples, 3, "a new grid sample"
        )
        quick = site.measurements(fleet_max_age_s=60.0)
        assert quick.group_soc_pct is full.group_soc_pct  # the stored fleet snapshot
        assert quick.grid_sample_time_ns > full.grid_sample_time_ns  # the new grid sample
        assert site.measurements(fleet_max_age_s=0.0).group_soc_pct is not full.group_soc_pct
        with _freeze(sim, {2}):  # the grid meter goes stale: NaN, even from the quick path
            await wait_until(
                lambda: math.isnan(site.measurements(fleet_max_age_s=60.0).grid_power_w),
                3,
                "stale grid power is NaN",
            )
            assert math.isnan(site.measurements().grid_frequency_hz)


async def test_a_round_larger_than_the_inline_head_reaches_every_inverter_once(
    sim_factory: Any,
) -> None:
    """The first calls of a round start inline (`Dispatcher.start_calls`), the
    rest from the distributor task: 40 inverters, each gets exactly one setpoint."""
    from controller.lab.bench import site_dict
    from simulator.config import site_from_dict

    n = 40
    srv: SimulatorServer = await sim_factory(site_from_dict(site_dict(n), source="<40 pairs>"))
    async with _running(srv) as site:
        before = srv.stats()["setpoints_received"]
        outcome = await site.set_power(n * 5_000.0)
        assert outcome.kind is OutcomeKind.SUCCESS, outcome
        assert outcome.sent == n
        per = srv.stats()["per_component"]
        got = {int(cid): e["last_setpoint_w"] for cid, e in per.items() if e["received"]}
        assert got == {cid: pytest.approx(5_000.0) for cid in site.graph.battery_inverter_ids}
        assert srv.stats()["setpoints_received"] - before == n
    assert_no_setpoint_out_of_bounds(srv)


async def test_grid_power_is_the_sum_of_both_feeders(
    sim_factory: Any, feeder_site: Callable[..., Any]
) -> None:
    # grid 1 -> meter 2 -> inverter 10 -> battery 11, grid 1 -> meter 3 (100 kW of load).
    srv: SimulatorServer = await sim_factory(feeder_site(100_000.0))
    async with _running(srv) as site:
        assert site.graph.grid.power_ids == (2, 3)
        await site.set_power(-40_000.0)
        await wait_until(
            lambda: abs(_power(site, 2) + 40_000.0) < 100.0, 5, "meter 2 shows the discharge"
        )
        for m in (site.measurements(), site.measurements(fleet_max_age_s=60.0)):
            assert m.grid_power_w == _power(site, 2) + _power(site, 3)
            assert m.grid_power_w == pytest.approx(srv.physics.grid_power_w, abs=100.0)
            assert m.grid_power_w == pytest.approx(60_000.0, abs=100.0)  # not meter 2's -40 kW
        with _freeze(srv, {3}):  # one feeder goes stale: the sum is unknown
            await wait_until(
                lambda: math.isnan(site.measurements(fleet_max_age_s=60.0).grid_power_w),
                3,
                "grid power NaN while meter 3 is stale",
            )
            assert math.isnan(site.measurements().grid_power_w)
            assert site.measurements().grid_frequency_hz == pytest.approx(50.0)  # meter 2's
        with _freeze(srv, {2}):  # the frequency then comes from meter 3
            await wait_until(
                lambda: math.isnan(site.measurements().grid_power_w), 3, "meter 2 stale"
            )
            assert site.measurements(fleet_max_age_s=60.0).grid_frequency_hz == pytest.approx(50.0)
    assert_no_setpoint_out_of_bounds(srv)


async def test_an_inverter_on_the_grid_point_counts_with_its_own_power(
    sim_factory: Any, feeder_site: Callable[..., Any]
) -> None:
    srv: SimulatorServer = await sim_factory(feeder_site(100_000.0, inverter_on_grid=True))
    async with _running(srv) as site:
        assert site.graph.grid.describe() == (
            "grid = meter 3 + inverter 10; frequency from meter 3, inverter 10"
        )
        await site.set_power(-40_000.0)
        await wait_until(
            lambda: abs(site.measurements().grid_power_w - 60_000.0) < 100.0,
            5,
            "grid = 100 kW load - 40 kW discharge",
        )
        grid_w = site.measurements().grid_power_w
        assert grid_w == pytest.approx(srv.physics.grid_power_w, abs=100.0)


@pytest.mark.parametrize("api_version", API_VERSIONS)
async def test_safe_stop_reports_the_inverters_that_refused_0w(
    sim: SimulatorServer, api_version: str
) -> None:
    async with _running(sim, api_version) as site:
        outcome = await site.set_power(100_000.0)
        assert outcome.kind is OutcomeKind.SUCCESS, outcome
        refused = set(sorted(outcome.setpoints_w)[:2])
        with _refuse_setpoints(sim, refused):
            await site.aclose()
    result = site.safe_stop
    assert result is not None
    assert result.commanded == len(outcome.setpoints_w)
    assert set(result.failed) == refused
    assert set(result.failed.values()) == {"FAILED_PRECONDITION"}
    assert not result.ok
    assert result.describe().startswith(
        f"0 W not confirmed by 2 of {result.commanded} inverters: "
        + ", ".join(str(i) for i in sorted(refused))
    )
    assert sum(site.stats().setpoints_failed.values()) == 2
