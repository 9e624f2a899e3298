"""RoundPlanner with PV inverters and EV chargers: caps only while needed, lifted in one cycle.

Cycle by cycle on a fake clock (no gRPC): the state table is filled by hand, the
setpoint book records what a dispatcher would have sent.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from frequenz.api.common.v1alpha8.microgrid.electrical_components import (
    electrical_components_pb2 as ec,
)

from actors import ComponentGraph, ComponentInfo, RuntimeOptions, SetpointBook, SiteCore
from actors._flex import HANDOVER_S, PV_MARGIN

INV = ec.ELECTRICAL_COMPONENT_CATEGORY_INVERTER
BAT = ec.ELECTRICAL_COMPONENT_CATEGORY_BATTERY
EV = ec.ELECTRICAL_COMPONENT_CATEGORY_EV_CHARGER
NOW = 5_000_000_000
CYCLE = 200_000_000


def _core(kind_order: tuple[str, ...] | None = None) -> SiteCore:
    comps = [
        ComponentInfo(10, INV, ec.INVERTER_TYPE_BATTERY),
        ComponentInfo(11, BAT),
        ComponentInfo(5, INV, ec.INVERTER_TYPE_PV, rated_power_w=150e3),
        ComponentInfo(6, INV, ec.INVERTER_TYPE_PV, rated_power_w=100e3),
        ComponentInfo(51, EV),
        ComponentInfo(52, EV),
    ]
    options = RuntimeOptions(stale_after_s=1.0, deadband_w=100.0,
                             **({"kind_order": kind_order} if kind_order else {}))
    core = SiteCore(ComponentGraph.build(comps, [(10, 11)]), options)
    t, row = core.state, core.state.row_of
    t.power_w[:] = 0.0
    t.bounds_ok[:] = t.has_bounds[:] = True
    t.power_lower_w[row[10]], t.power_upper_w[row[10]] = -50e3, 50e3
    t.power_lower_w[row[11]], t.power_upper_w[row[11]] = -60e3, 60e3
    t.soc_pct[row[11]], t.soc_lower_pct[row[11]], t.soc_upper_pct[row[11]] = 50.0, 10.0, 90.0
    t.capacity_wh[row[11]] = 100e3
    for cid, avail in ((5, 100e3), (6, 50e3)):  # PV: [−available, 0], producing it all
        t.power_lower_w[row[cid]], t.power_upper_w[row[cid]] = -avail, 0.0
        t.power_w[row[cid]] = -avail
    for cid in (51, 52):  # a car each: [4.14 kW, 22 kW] or 0, drawing 22 kW
        t.power_lower_w[row[cid]], t.power_upper_w[row[cid]] = 0.0, 22e3
        t.power_excl_upper_w[row[cid]] = 4140.0
        t.power_w[row[cid]] = 22e3
    t.received_ns[:] = NOW
    return core


def _sent(core: SiteCore, book: SetpointBook, target: float, must: float, now: int
          ) -> dict[int, float]:
    """Plan one cycle, record what goes out as acknowledged; the ids and setpoints sent."""
    core.state.received_ns[:] = now
    planned = core.planner.plan(target, now, book, must)
    book.record(planned.indices, planned.powers_w, now)
    ids = core.index.inverter_ids
    return {ids[i]: p for i, p in zip(planned.indices, planned.powers_w, strict=True)}


def test_index_lists_batteries_then_pv_then_ev() -> None:
    ix = _core().index
    assert ix.inverter_ids == [10, 5, 6, 51, 52]
    assert ix.kind_of == ["battery_inverter", "pv_inverter", "pv_inverter",
                          "ev_charger", "ev_charger"]


def test_pv_capped_when_batteries_cannot_take_it_and_lifted_within_one_cycle() -> None:
    core = _core()
    book = SetpointBook(5)
    # Must charge 90 kW; the battery takes 50 kW; PV covers 40 kW by rating (3:2).
    sent = _sent(core, book, 50e3, 90e3, NOW)
    assert sent[10] == pytest.approx(50e3)
    usable = np.array([100e3, 50e3]) * (1 - PV_MARGIN)  # above the lift margin
    produce = usable.sum() - 40e3
    assert sent[5] == pytest.approx(-min(usable[0], produce * 0.6), rel=1e-9)
    assert sent[6] == pytest.approx(-min(usable[1], produce * 0.4), rel=1e-9)
    assert 51 not in sent  # EV chargers: never commanded while not needed
    assert 52 not in sent
    m = core.measurements(NOW)
    assert m.pv_capped == 2
    assert m.flex_upper_w == pytest.approx(usable.sum())
    # The caps act: the measured curtailment (against full production) is what was
    # planned, and what the strategies then see as controlled power.
    t = core.state
    t.power_w[t.row_of[5]], t.power_w[t.row_of[6]] = sent[5], sent[6]
    assert core.measurements(NOW).flex_power_w == pytest.approx(40e3, rel=1e-9)
    # Not needed any more: the very next cycle sends the full-production setpoints ...
    lift = _sent(core, book, 0.0, math.nan, NOW + CYCLE)
    assert lift[5] == pytest.approx(-100e3 * (1 - PV_MARGIN))
    assert lift[6] == pytest.approx(-50e3 * (1 - PV_MARGIN))
    assert core.measurements(NOW + CYCLE).pv_capped == 0
    # ... and then nothing: the inverters run free, their last setpoint lapses.
    assert _sent(core, book, 0.0, math.nan, NOW + 2 * CYCLE) == {}
    # More sun than the lift allowed: it would bind, so it is lifted again.
    t.power_lower_w[t.row_of[5]] = -120e3
    assert set(_sent(core, book, 0.0, math.nan, NOW + 3 * CYCLE)) == {5}


def test_never_commanded_pv_and_ev_get_no_setpoint() -> None:
    core = _core()
    book = SetpointBook(5)
    assert _sent(core, book, 10e3, 0.0, NOW) == {10: pytest.approx(10e3)}
    assert _sent(core, book, 0.0, math.nan, NOW + CYCLE) == {10: 0.0}


def test_ev_limits_first_equal_share_and_back_to_full_power() -> None:
    core = _core(("ev_charger", "battery_inverter", "pv_inverter"))
    book = SetpointBook(5)
    sent = _sent(core, book, -30e3, -30e3, NOW)
    assert sent == {51: pytest.approx(7e3), 52: pytest.approx(7e3)}  # batteries untouched
    # Below two minimums (8.28 kW of 44): one pauses, one takes the rest.
    sent = _sent(core, book, -38e3, -38e3, NOW + CYCLE)
    assert sorted(sent.values()) == pytest.approx([0.0, 6e3])
    # Not needed: back to full power in one cycle, then no setpoint at all.
    assert _sent(core, book, 0.0, math.nan, NOW + 2 * CYCLE) == {51: 22e3, 52: 22e3}
    assert _sent(core, book, 0.0, math.nan, NOW + 3 * CYCLE) == {}


def test_stale_pv_is_neither_capped_nor_counted() -> None:
    core = _core()
    book = SetpointBook(5)
    t = core.state
    core.state.received_ns[:] = NOW
    t.received_ns[t.row_of[5]] = NOW - 3_000_000_000  # stale
    planned = core.planner.plan(50e3, NOW, book, 90e3)
    ids = [core.index.inverter_ids[i] for i in planned.indices]
    assert 5 not in ids
    assert 6 in ids
    assert core.measurements(NOW).flex_upper_w == pytest.approx(50e3 * (1 - PV_MARGIN))


def test_pv_takes_over_a_battery_about_to_reach_its_soc_limit_ahead() -> None:
    # Zero export: the battery charges the 20 kW surplus. Far from its upper SoC limit PV
    # runs free; within HANDOVER_S of it (10 Wh left at 20 kW: 1.8 s) PV is capped by
    # what the battery delivers while the battery still delivers it, so the bounds
    # closing leaves nothing to export while the caps take effect.
    core = _core()
    book = SetpointBook(5)
    t, row = core.state, core.state.row_of
    t.power_w[row[10]] = t.power_w[row[11]] = 20e3
    t.soc_pct[row[11]] = 89.0
    sent = _sent(core, book, 20e3, 20e3, NOW)
    assert set(sent) == {10}
    assert np.isnan(core.planner.flex_cap_w).all()
    t.soc_pct[row[11]] = 90.0 - 10.0 / 100e3 * 100.0  # 10 Wh left
    planned = core.planner.plan(20e3, NOW + CYCLE, book, 20e3)
    assert planned.result.achieved_w == pytest.approx(20e3)  # still charging ...
    assert planned.pv_w == pytest.approx(20e3)  # ... and PV already covers it
    assert 5 in {core.index.inverter_ids[i] for i in planned.indices}
    # The same charge further from the limit (more than HANDOVER_S) is no reason to cap.
    t.soc_pct[row[11]] = 90.0 - 20e3 * (HANDOVER_S + 1.0) / 3600.0 / 100e3 * 100.0
    assert core.planner.plan(20e3, NOW + 2 * CYCLE, book, 20e3).pv_w == 0.0


def test_a_lift_counts_what_it_holds_back_until_it_lapses() -> None:
    # A lift is full production `PV_MARGIN` short of all of it. Until it lapses that
    # withheld production is ours: the strategies see it as controlled power (the
    # batteries take it over now), not as the sun arriving at once when the lift lapses.
    core = _core()
    book = SetpointBook(5)
    _sent(core, book, 50e3, 90e3, NOW)
    lift = _sent(core, book, 0.0, math.nan, NOW + CYCLE)
    t = core.state
    t.power_w[t.row_of[5]], t.power_w[t.row_of[6]] = lift[5], lift[6]
    later = NOW + 2 * CYCLE
    t.received_ns[:] = later
    assert core.measurements(later).flex_power_w == pytest.approx(PV_MARGIN * 150e3, rel=1e-9)
    # Lapsed (one lifetime after it was sent): it holds nothing back any more.
    lapsed = NOW + CYCLE + core.planner.lifetime_ns
    t.received_ns[:] = lapsed
    assert core.measurements(lapsed).flex_power_w == 0.0
    assert core.measurements(lapsed - CYCLE).flex_power_w > 0.0


def test_past_the_export_limit_no_deadband_holds_a_raise() -> None:
    # Within the limits a change up to the deadband (100 W) is held back; while the grid
    # exports past its limit (`raise_now`) every raise goes out, a cut still waits.
    core = _core()
    book = SetpointBook(5)
    assert _sent(core, book, 40e3, 40e3, NOW) == {10: pytest.approx(40e3)}
    assert _sent(core, book, 40e3 + 90.0, 40e3 + 90.0, NOW + CYCLE) == {}
    core.planner.raise_now = True
    assert _sent(core, book, 40e3 + 90.0, 40e3 + 90.0, NOW + 2 * CYCLE) == {
        10: pytest.approx(40e3 + 90.0)}
    assert _sent(core, book, 40e3, 40e3, NOW + 3 * CYCLE) == {}
    # A capped PV inverter's raise (less production) likewise.
    sent = _sent(core, book, 50e3, 90e3, NOW + 4 * CYCLE)
    assert {5, 6} <= set(sent)
    more = _sent(core, book, 50e3, 90e3 + 60.0, NOW + 5 * CYCLE)
    assert 5 in more
    assert more[5] > sent[5]
    core.planner.raise_now = False
    assert _sent(core, book, 50e3, 90e3 + 120.0, NOW + 6 * CYCLE) == {}
