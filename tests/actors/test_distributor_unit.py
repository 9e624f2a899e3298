"""Latest-wins and outcome rules of the PowerDistributor, without network.

The dispatcher is replaced by a recorder whose `send` blocks on a gate, and
`distribution.allocate` by a trivial proportional stand-in (tests only), so the
ordering rules are checked with events, not sleeps.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

import distribution
from actors import (
    ComponentGraph,
    ComponentInfo,
    Dispatcher,
    Health,
    OutcomeKind,
    PowerDistributor,
    StateTable,
)
from actors._dispatch import RoundResult

INV, BAT = 3, 5


@dataclass
class _Fleet:
    kw: dict[str, Any]


@dataclass
class _Result:
    setpoints_w: np.ndarray
    fleet_lower_w: float
    fleet_upper_w: float
    status: str = "OK"


def _allocate(fleet: _Fleet, target_w: float, soc_exponent: float = 1.0) -> _Result:
    lo = np.where(fleet.kw["inverter_available"], fleet.kw["inverter_lower_w"], 0.0)
    hi = np.where(fleet.kw["inverter_available"], fleet.kw["inverter_upper_w"], 0.0)
    t = min(max(target_w, lo.sum()), hi.sum())
    share = hi if t >= 0 else lo
    sp = share * (t / share.sum()) if share.sum() else np.zeros_like(share)
    return _Result(sp, float(lo.sum()), float(hi.sum()))


class _GatedDispatcher(Dispatcher):
    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.rounds: list[list[float]] = []
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()
        self.fail_ids: set[int] = set()
        self.started_inline: list[list[float]] = []

    def start_calls(self, indices: list[int], powers_w: list[float]) -> None:
        self.started_inline.append(list(powers_w))  # no network: `send` records it

    async def send(self, indices: list[int], powers_w: list[float], tails: Any,
                   *, timeout_s: float | None = None, started: Any = None) -> RoundResult:
        self.rounds.append(list(powers_w))
        self.entered.set()
        await self.gate.wait()
        failed = {}
        for i, p in zip(indices, powers_w, strict=True):
            self.last_w[i] = p
            self.last_sent_ns[i] = time.monotonic_ns()
            cid = self.inverter_ids[i]
            self.last_ok[i] = cid not in self.fail_ids
            if cid in self.fail_ids:
                failed[cid] = "REJECTED"
                self._fail(i, "REJECTED", time.monotonic_ns())
        return RoundResult(sent=len(indices), failed=failed, done_ns=time.monotonic_ns())


@pytest.fixture
def parts(monkeypatch: pytest.MonkeyPatch) -> tuple[PowerDistributor, _GatedDispatcher]:
    monkeypatch.setattr(distribution, "Fleet", lambda **kw: _Fleet(kw), raising=False)
    monkeypatch.setattr(distribution, "allocate", _allocate, raising=False)
    comps = [ComponentInfo(10, INV, 1), ComponentInfo(11, BAT),
             ComponentInfo(20, INV, 1), ComponentInfo(21, BAT)]
    graph = ComponentGraph.build(comps, [(10, 11), (20, 21)])
    ids = list(graph.streamed_ids)
    table = StateTable(ids, [graph.components[i].category for i in ids])
    table.received_ns[:] = time.monotonic_ns()
    table.bounds_ok[:] = True
    for inv in (10, 20):
        r = table.row_of[inv]
        table.power_lower_w[r], table.power_upper_w[r] = -10_000.0, 10_000.0
    for bat in (11, 21):
        r = table.row_of[bat]
        table.soc_pct[r], table.capacity_wh[r] = 50.0, 10_000.0
    health = Health(table, stale_after_s=1000.0, retry_min_s=1.0, retry_max_s=30.0)
    inv_ids = list(graph.battery_inverter_ids)
    disp = _GatedDispatcher(None, health, inv_ids,  # type: ignore[arg-type]
                            np.array([table.row_of[i] for i in inv_ids]),
                            lifetime_s=60, timeout_s=1.0)
    dist = PowerDistributor(graph, table, health, disp, reallocate_interval_s=1000.0)
    return dist, disp


async def test_latest_wins_while_dispatch_in_flight(
    parts: tuple[PowerDistributor, _GatedDispatcher],
) -> None:
    dist, disp = parts
    results = dist.new_result_receiver()
    async with dist:
        first = asyncio.create_task(dist.set_power(1000.0))
        await asyncio.wait_for(disp.entered.wait(), 5)  # first dispatch is in flight
        second = asyncio.create_task(dist.set_power(2000.0))
        await asyncio.sleep(0)  # let `second` make its request
        dist.request_power(3000.0)
        disp.gate.set()
        o1 = await asyncio.wait_for(first, 5)
        o2 = await asyncio.wait_for(second, 5)
        assert o1.target_w == 1000.0
        assert o1.kind is OutcomeKind.SUCCESS
        # The 2000 W request was replaced by 3000 W before it was processed.
        assert o2.target_w == 3000.0
        assert o2.seq == 3
        assert [sum(r) for r in disp.rounds] == [pytest.approx(1000.0), pytest.approx(3000.0)]
        got = [(await results.receive()).target_w for _ in range(2)]
        assert got == [1000.0, 3000.0]
        assert o2.achieved_w == pytest.approx(3000.0)


async def test_deadband_skips_and_partial_failure(
    parts: tuple[PowerDistributor, _GatedDispatcher],
) -> None:
    dist, disp = parts
    disp.gate.set()
    async with dist:
        await dist.set_power(1000.0)
        o = await dist.set_power(1040.0)  # 20 W per inverter: inside the 50 W deadband
        assert o.sent == 0
        assert o.skipped == 2
        disp.fail_ids = {20}
        o = await dist.set_power(-4000.0)
        assert o.kind is OutcomeKind.PARTIAL_FAILURE
        assert o.failed == {20: "REJECTED"}
        assert o.missing_w == pytest.approx(-2000.0)
        disp.fail_ids = set()
        # 20 waits for its retry (1 s): its share moved to 10, the fleet is smaller.
        o = await dist.set_power(50_000.0)
        assert o.kind is OutcomeKind.OUT_OF_BOUNDS
        assert o.fleet_upper_w == 10_000.0
        assert o.setpoints_w == {10: 10_000.0, 20: 0.0}


async def test_bad_target_names_field(parts: tuple[PowerDistributor, _GatedDispatcher]) -> None:
    dist, _ = parts
    with pytest.raises(ValueError, match="target_w"):
        dist.request_power(float("nan"))


async def test_allocation_error_is_an_outcome_not_a_crash(
    parts: tuple[PowerDistributor, _GatedDispatcher], monkeypatch: pytest.MonkeyPatch
) -> None:
    dist, disp = parts
    disp.gate.set()

    def broken(*_a: Any, **_k: Any) -> _Result:
        raise ValueError("battery_soc_pct[1]=nan")

    async with dist:
        monkeypatch.setattr(distribution, "allocate", broken)
        o = await dist.set_power(1000.0)
        assert o.kind is OutcomeKind.ERROR
        assert "battery_soc_pct[1]=nan" in o.message
        assert disp.rounds == []
        monkeypatch.setattr(distribution, "allocate", _allocate)
        o = await dist.set_power(1000.0)  # the loop survived
        assert o.kind is OutcomeKind.SUCCESS
    assert dist.restarts == 0


async def test_excluded_inverter_is_never_commanded_and_resent_when_back(
    parts: tuple[PowerDistributor, _GatedDispatcher],
) -> None:
    dist, disp = parts
    disp.gate.set()
    table = disp._health.table
    row20 = table.row_of[20]
    async with dist:
        o = await dist.set_power(4000.0)
        assert o.setpoints_w == {10: pytest.approx(2000.0), 20: pytest.approx(2000.0)}
        rounds = len(disp.rounds)
        # 20's telemetry is stale now: older than stale_after_s, whatever the clock's origin.
        table.received_ns[row20] = time.monotonic_ns() - int(2000 * 1e9)
        o = await dist.set_power(4000.0)
        assert o.setpoints_w == {10: pytest.approx(4000.0), 20: 0.0}
        # Only 10 was commanded: 20 got nothing, not even 0 W.
        assert disp.rounds[rounds:] == [[pytest.approx(4000.0)]]
        table.received_ns[row20] = time.monotonic_ns()  # back
        o = await dist.set_power(4000.0)
        # 20's last setpoint (2000 W) is within the deadband of the new one, yet it
        # is re-sent: what 20 did while excluded is unknown.
        assert o.sent == 2
        assert sorted(disp.rounds[-1]) == [pytest.approx(2000.0), pytest.approx(2000.0)]


async def test_idle_distributor_starts_the_calls_inside_request_power(
    parts: tuple[PowerDistributor, _GatedDispatcher],
) -> None:
    dist, disp = parts
    disp.gate.set()
    results = dist.new_result_receiver()
    async with dist:
        for _ in range(100):  # let the loop task reach its wait for work
            if dist._idle:
                break
            await asyncio.sleep(0)
        assert dist._idle
        dist.request_power(3000.0)
        # Allocated and started before this coroutine yielded once.
        assert disp.started_inline == [[pytest.approx(1500.0), pytest.approx(1500.0)]]
        # A request made before the loop collected that round waits its turn.
        dist.request_power(-2000.0)
        assert len(disp.started_inline) == 1
        first, second = await results.receive(), await results.receive()
        assert (first.target_w, second.target_w) == (3000.0, -2000.0)
        assert second.setpoints_w == {10: pytest.approx(-1000.0), 20: pytest.approx(-1000.0)}
