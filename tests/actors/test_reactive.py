"""Reactive power in the actor layer over real gRPC: decoding, Q dispatch, safe stop.

Every API version: the reactive metrics are decoded into the state table, a fleet
reactive target is split within the inverters' reactive bounds and reaches the
simulator's inverters, and leaving the site sends 0 VAr. With reactive control off
no reactive metric is streamed and no reactive setpoint is sent.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from testkit import FAST, connect_site, wait_until

from actors import API_VERSIONS, OptionsError, OutcomeKind, RuntimeOptions, Site
from simulator.errors import ComponentNotReadyError
from simulator.server import SimulatorServer

pytestmark = pytest.mark.integration

REACTIVE = dataclasses.replace(FAST, reactive="p_first")


def _site_q(sim: SimulatorServer, ids: list[int]) -> np.ndarray:
    phys = sim.physics
    return np.array([phys.inverter_reactive_var[phys._inv_row[c]] for c in ids])


@pytest.mark.parametrize("api_version", API_VERSIONS)
async def test_reactive_target_reaches_the_inverters_and_ends_at_zero(
    sim: SimulatorServer, api_version: str
) -> None:
    site = await connect_site(sim, REACTIVE, api_version)
    ids = site.core.index.inverter_ids
    async with site:
        await wait_until(lambda: not site.stats().excluded, 5.0, "all components healthy")
        m = site.measurements()
        # The default site's battery inverters publish ±rated_reactive_var.
        assert m.reactive_upper_var > 60_000.0
        assert m.reactive_lower_var == pytest.approx(-m.reactive_upper_var)
        assert 200.0 < m.grid_voltage_v < 260.0
        site.request_reactive(-60_000.0)
        outcome = await site.set_power(50_000.0)
        assert outcome.kind is OutcomeKind.SUCCESS, outcome
        assert sum(outcome.reactive_var.values()) == pytest.approx(-60_000.0, abs=1.0)
        assert not outcome.reactive_failed
        await wait_until(
            lambda: abs(site.measurements().reactive_var + 60_000.0) < 500.0,
            3.0, "the fleet's measured reactive power at -60 kVAr",
        )
        q = _site_q(sim, ids)
        rows = [site.state.row_of[c] for c in ids]
        assert np.all(np.abs(q) <= site.state.reactive_upper_var[rows] + 1e-6)
        st = site.stats()
        assert st.reactive_setpoints_sent >= len(ids) - 1
        assert st.reactive_setpoints_failed == {}
        assert st.reactive_out_of_bounds == 0
    assert sim.stats()["setpoints_out_of_bounds"] == 0
    # Leaving the site sent 0 VAr too (effective after the inverters' delay).
    await wait_until(lambda: not _site_q(sim, ids).any(), 3.0, "0 VAr after the safe stop")


async def test_reactive_off_streams_and_sends_nothing_reactive(sim: SimulatorServer) -> None:
    site = await connect_site(sim)
    async with site:
        await wait_until(lambda: not site.stats().excluded, 5.0, "all components healthy")
        outcome = await site.set_power(50_000.0)
        assert outcome.reactive_var == {}
        sent = site.stats().setpoints_sent
        assert sim.stats()["setpoints_received"] == sent  # no reactive call
        assert np.isnan(site.state.reactive_var).all()  # not streamed
        assert site.q_dispatcher is None
        assert math.isnan(site.measurements().grid_voltage_v)
        with pytest.raises(OptionsError, match="reactive"):
            site.request_reactive(1_000.0)


def test_reactive_option_is_validated() -> None:
    with pytest.raises(OptionsError, match="reactive"):
        RuntimeOptions(reactive="sometimes")


async def test_a_non_finite_reactive_target_is_refused(sim: SimulatorServer) -> None:
    site: Site = await connect_site(sim, REACTIVE)
    async with site:
        with pytest.raises(OptionsError, match="target_var"):
            site.request_reactive(math.nan)


VOLTAGE_SITE = Path(__file__).resolve().parents[2] / "simulator" / "sites" / "voltage_support.toml"


@pytest.mark.parametrize("priority", ["p_first", "q_first"])
async def test_p_and_q_share_the_apparent_power_circle(sim_factory: Any, priority: str) -> None:
    """Full discharge and a large Q target: with ``p_first`` Q gets the rest of each
    inverter's circle; with ``q_first`` P is limited to sqrt(S² − Q²). Either way no
    inverter leaves its circle, and the simulator counts nothing out of bounds."""
    sim = await sim_factory(VOLTAGE_SITE)
    site = await connect_site(sim, dataclasses.replace(FAST, reactive=priority))
    ids = site.core.index.battery_inverter_ids  # Q is the battery inverters'
    rows = [site.state.row_of[c] for c in ids]
    async with site:
        await wait_until(lambda: not site.stats().excluded, 5.0, "all components healthy")
        s_va = site.state.apparent_rating_va[rows].copy()
        assert np.isfinite(s_va).all()  # the site publishes its ratings
        site.request_reactive(-400_000.0)  # more than the fleet's 205 kVAr rating
        p_lo = site.measurements().fleet_lower_w
        outcome = await site.set_power(p_lo)
        q = np.array([outcome.reactive_var[c] for c in ids])
        p = np.array([outcome.setpoints_w[c] for c in ids])
        assert np.all(np.hypot(p, q) <= s_va + 1e-6)
        if priority == "p_first":
            assert np.abs(p).sum() > 200_000.0  # P as without Q: full discharge
        else:
            assert np.all(q < 0)  # Q at its reactive ratings first...
            assert np.all(np.abs(p) <= np.sqrt(s_va**2 - q**2) + 1e-6)  # ...P the rest
        await wait_until(
            lambda: site.measurements().reactive_var < -50_000.0, 3.0, "the fleet delivering Q"
        )
        assert site.measurements().apparent_violations == 0
        st = site.stats()
        assert st.reactive_setpoints_failed == {}
        assert st.reactive_out_of_bounds == 0
    stats = sim.stats()
    assert stats["setpoints_out_of_bounds"] == 0
    assert stats["setpoints_reactive_out_of_bounds"] == 0


async def test_a_refused_reactive_setpoint_excludes_the_inverter_like_an_active_one(
    sim: SimulatorServer,
) -> None:
    """The same health rule as for P: an inverter refusing its Q setpoint is excluded
    (no setpoint at all while it waits for its retry) and the others take its Q share."""
    site = await connect_site(sim, REACTIVE)
    ids = site.core.index.inverter_ids
    bad = ids[0]
    phys = sim.physics
    original = phys.check_reactive_power

    def check(cid: int, power_var: float) -> None:
        if cid == bad:
            raise ComponentNotReadyError(cid, "refusing reactive setpoints (test)")
        original(cid, power_var)

    async with site:
        await wait_until(lambda: not site.stats().excluded, 5.0, "all components healthy")
        phys.check_reactive_power = check  # type: ignore[method-assign]
        try:
            site.request_reactive(-40_000.0)
            first = await site.set_power(20_000.0)
            assert bad in first.reactive_failed
            assert bad in site.stats().excluded
            again = await site.set_power(20_000.0)
            assert again.reactive_var[bad] == 0.0
            assert bad not in again.setpoints_w or again.setpoints_w[bad] == 0.0
            assert sum(again.reactive_var.values()) == pytest.approx(-40_000.0, abs=1.0)
        finally:
            phys.check_reactive_power = original  # type: ignore[method-assign]
        assert site.stats().reactive_setpoints_failed
