"""A server restarted with another site, and another client on the same site.

Pure rules first (`SiteIdentity.differences`, `ContentionRule` on a fake clock),
then real gRPC against the simulator on loopback: a `Site` whose server is
replaced on the same port by another site sends it nothing and halts with one
line; two `Site`s commanding one simulator: the one whose setpoints are
overridden concludes that another client controls the site and stops commanding.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from testkit import FAST, connect_site, wait_until

from actors import (
    ContentionRule,
    OptionsError,
    OutcomeKind,
    RuntimeOptions,
    Site,
    SiteIdentity,
)
from actors._graph import CAT_BATTERY, CAT_INVERTER, CAT_METER, INV_BATTERY, INV_PV
from actors._identity import HOLD_SITE_CHANGED, summarize
from simulator.config import SiteConfig, load_site
from simulator.server import SimulatorServer

HANG_GUARD_S = 60.0
"""Only against a hang: every wait below ends on an event, not on elapsed time."""


def _identity(mid: int | None, comps: dict[int, tuple[int, int]], conns: set[tuple[int, int]]
              ) -> SiteIdentity:
    return SiteIdentity(microgrid_id=mid, components=comps, connections=frozenset(conns))


OLD = _identity(
    1,
    {2: (CAT_METER, 0), 10: (CAT_INVERTER, INV_BATTERY), 11: (CAT_BATTERY, 0)},
    {(2, 10), (10, 11)},
)


# ------------------------------------------------------------------ pure rules


def test_the_same_site_has_no_differences() -> None:
    same = _identity(1, dict(OLD.components), set(OLD.connections))
    assert OLD.differences(same) == []


def test_differences_name_the_id_the_kind_and_the_connections() -> None:
    new = _identity(
        2, {2: (CAT_METER, 0), 10: (CAT_INVERTER, INV_PV), 12: (CAT_METER, 0)}, {(2, 10), (2, 12)}
    )
    assert OLD.differences(new) == [
        "microgrid id 1 → 2",
        "component 10 was a battery inverter and is now a PV inverter",
        "component 11 (battery) is gone",
        "component 12 (meter) is new",
        "connection 10 → 11 is gone",
        "connection 2 → 12 is new",
    ]


def test_an_unknown_microgrid_id_on_both_sides_is_not_a_difference() -> None:
    a = _identity(None, dict(OLD.components), set(OLD.connections))
    assert a.differences(_identity(None, dict(OLD.components), set(OLD.connections))) == []
    assert a.differences(OLD) == ["microgrid id None → 1"]


def test_summary_names_the_first_changes_and_counts_the_rest() -> None:
    line = summarize([f"change {i}" for i in range(10)])
    assert line.startswith("change 0, change 1")
    assert line.endswith("and 4 more change(s)")
    assert "change 6" not in line


def test_contention_needs_enough_overrides_within_the_window() -> None:
    rule = ContentionRule(3, 10.0)
    s = 1_000_000_000
    assert not rule.record(10, 0)
    assert not rule.record(20, 5 * s)
    # The first one left the window: still two.
    assert not rule.record(10, 11 * s)
    assert rule.record(30, 12 * s)
    assert rule.in_window() == 3
    assert rule.components() == [10, 20, 30]
    assert rule.total == 4


@pytest.mark.parametrize(("overrides", "window_s"), [(0, 1.0), (2.5, 1.0), (True, 1.0), (1, 0.0)])
def test_contention_rule_rejects_bad_arguments(overrides: Any, window_s: float) -> None:
    with pytest.raises(OptionsError):
        ContentionRule(overrides, window_s)


def test_runtime_options_reject_a_fractional_override_count() -> None:
    with pytest.raises(OptionsError, match="contention_overrides"):
        RuntimeOptions(contention_overrides=2.5)  # type: ignore[arg-type]


# ------------------------------------------------------------------ real gRPC


async def _wait(coro: Any) -> Any:
    return await asyncio.wait_for(coro, HANG_GUARD_S)


async def _refused_while_held(site: Site, targets: tuple[float, ...]) -> None:
    """Each request gets its outcome, and each outcome says the setpoints are held."""
    results = site.new_result_receiver()
    for target in targets:
        site.request_power(target)
        outcome = await _wait(results.receive())
        while outcome.target_w != target:  # an outcome of an earlier request
            outcome = await _wait(results.receive())
        assert outcome.kind is OutcomeKind.ERROR, outcome
        assert outcome.message.startswith("setpoints held: "), outcome
        assert outcome.sent == 0, outcome


@pytest.mark.integration
async def test_a_server_restarted_with_another_site_gets_no_setpoint(
    sim_factory: Any, another_site: SiteConfig
) -> None:
    srv1: SimulatorServer = await sim_factory(load_site(None))
    port = srv1.port
    site = await connect_site(srv1)
    async with site:
        await wait_until(lambda: not site.stats().excluded, HANG_GUARD_S, "all components healthy")
        await site.set_power(-60_000.0)
        await srv1.stop(grace=0)
        srv2: SimulatorServer = await sim_factory(another_site, port=port)

        async def keep_asking() -> None:
            k = 0
            while True:  # what a control loop does: new targets all the time
                k += 1
                site.request_power(-60_000.0 - 100.0 * (k % 2))
                await asyncio.sleep(0.02)

        asker = asyncio.create_task(keep_asking())
        try:
            line = await _wait(site.wait_halted())
        finally:
            asker.cancel()
        assert line.startswith("site changed after reconnect: microgrid id 1 → 2, ")
        assert "component 10 was a battery inverter and is now a PV inverter" in line
        assert site.stats().site_changed == site.site_changed
        await _refused_while_held(site, (30_000.0, -30_000.0))
    # Left the site (the safe stop): not even 0 W went to the new site.
    assert srv2.stats()["setpoints_received"] == 0, srv2.stats()
    # ... and the safe stop says so instead of claiming a confirmed 0 W.
    stop = site.safe_stop
    assert stop is not None
    assert stop.withheld == HOLD_SITE_CHANGED
    assert stop.commanded > 0
    assert not stop.ok
    assert stop.describe().startswith(f"0 W withheld from the {stop.commanded} inverters")


@pytest.mark.integration
async def test_a_server_restarted_with_the_same_site_is_checked_and_control_resumes(
    sim_factory: Any,
) -> None:
    cfg = load_site(None)
    srv1: SimulatorServer = await sim_factory(cfg)
    port = srv1.port
    site = await connect_site(srv1)
    assert site.guard is not None
    async with site:
        await wait_until(lambda: not site.stats().excluded, HANG_GUARD_S, "all components healthy")
        await site.set_power(60_000.0)
        await srv1.stop(grace=0)
        await wait_until(lambda: site.dispatcher.held is not None, HANG_GUARD_S, "setpoints held")
        srv2: SimulatorServer = await sim_factory(cfg, port=port)
        await wait_until(
            lambda: site.guard is not None and site.guard.checks >= 1, HANG_GUARD_S, "a check"
        )
        await wait_until(
            lambda: srv2.stats()["setpoints_accepted"] > 0, HANG_GUARD_S, "setpoints on srv2"
        )
        await wait_until(lambda: site.dispatcher.held is None, HANG_GUARD_S, "the hold lifted")
        assert site.site_changed is None


@pytest.mark.integration
async def test_two_sites_on_one_simulator_the_overridden_one_stops(sim: SimulatorServer) -> None:
    url = f"grpc://127.0.0.1:{sim.port}"
    a = await Site.connect(url, options=FAST)
    b = await Site.connect(url, options=FAST)
    async with a, b:
        await wait_until(
            lambda: not a.stats().excluded and not b.stats().excluded, HANG_GUARD_S, "healthy"
        )

        async def fight() -> None:
            k = 0
            while True:
                k += 1
                a.request_power(40_000.0 + 1_000.0 * (k % 2))
                b.request_power(-40_000.0 - 1_000.0 * (k % 2))
                await asyncio.sleep(0.05)

        fighter = asyncio.create_task(fight())
        try:
            done, _ = await _wait(
                asyncio.wait(
                    [asyncio.create_task(a.wait_halted()), asyncio.create_task(b.wait_halted())],
                    return_when=asyncio.FIRST_COMPLETED,
                )
            )
        finally:
            fighter.cancel()
        line = next(iter(done)).result()
        loser = a if a.another_client is not None else b
        assert line.startswith(f"{loser.another_client}; stopping")
        assert "another client controls this site" in line
        stats = loser.stats()
        assert stats.another_client == loser.another_client
        assert sum(stats.overridden_by_others.values()) >= FAST.contention_overrides
        # It stops commanding at once: no new setpoint leaves, whatever is asked.
        sent = loser.dispatcher.stats.setpoints_sent
        await _refused_while_held(loser, (10_000.0, -10_000.0, 20_000.0))
        assert loser.dispatcher.stats.setpoints_sent == sent
        assert loser.dispatcher.held is not None
