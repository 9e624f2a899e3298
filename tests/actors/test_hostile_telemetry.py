"""Random and hostile telemetry never crashes the path to setpoints nor breaks a bound.

Random telemetry messages (NaN, ±inf, huge values, missing metrics, bounds in
any shape, error states) are decoded into the state table; the distributor's
own snapshot (`PowerDistributor.build_fleet`) goes through the real
`distribution.allocate`. Whatever arrives: no exception, every non-zero
setpoint is inside the bounds the inverter last reported (the distributor's
independent re-check agrees), and an inverter the snapshot excluded gets 0 W.
"""

from __future__ import annotations

import math
import time

import numpy as np
from hostile import telemetry
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import distribution
from actors import (
    ComponentGraph,
    ComponentInfo,
    Dispatcher,
    Health,
    PowerDistributor,
    SetpointBook,
    StateTable,
)

INV, BAT = 3, 5
PAIRS = [(10, 11), (20, 21), (30, 31)]

def _distributor() -> tuple[PowerDistributor, StateTable]:
    comps = [ComponentInfo(i, INV, 1) for i, _ in PAIRS] + [ComponentInfo(b, BAT) for _, b in PAIRS]
    graph = ComponentGraph.build(comps, PAIRS)
    ids = list(graph.streamed_ids)
    table = StateTable(ids, [graph.components[i].category for i in ids])
    health = Health(table, stale_after_s=1000.0, retry_min_s=1.0, retry_max_s=30.0)
    inv_ids = list(graph.battery_inverter_ids)
    disp = Dispatcher(
        None,  # type: ignore[arg-type]  # never sends: only the snapshot path is used
        health, inv_ids, np.array([table.row_of[i] for i in inv_ids]),
        lifetime_s=60, timeout_s=1.0,
    )
    return PowerDistributor(graph, table, health, disp), table


@settings(
    max_examples=300, derandomize=True, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=st.data(), target=st.floats(-1e6, 1e6))
def test_hostile_telemetry_never_yields_an_out_of_bounds_setpoint(
    data: st.DataObject, target: float
) -> None:
    dist, table = _distributor()
    now = time.monotonic_ns()
    for inv, bat in PAIRS:
        for cid, battery in ((inv, False), (bat, True)):
            table.decode(table.row_of[cid], data.draw(telemetry(cid, battery)), now)

    fleet, inv_ok, _ = dist.build_fleet(now)
    result = distribution.allocate(fleet, target)
    sp = result.setpoints_w

    assert sp.shape == (len(PAIRS),)
    assert np.isfinite(sp).all()
    assert not dist.planner.check_bounds(sp).any()
    assert (sp[~inv_ok] == 0.0).all()
    rows = dist.inv_rows
    for k in np.flatnonzero(sp != 0.0):
        r = rows[k]
        lo, hi = table.power_lower_w[r], table.power_upper_w[r]
        el, eu = table.power_excl_lower_w[r], table.power_excl_upper_w[r]
        assert math.isfinite(lo)
        assert math.isfinite(hi)
        assert lo - 1e-6 <= sp[k] <= hi + 1e-6
        assert not (el + 1e-6 < sp[k] < eu - 1e-6)


@settings(
    max_examples=200, derandomize=True, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=st.data(), target=st.floats(-1e6, 1e6), q_target=st.floats(-1e6, 1e6),
       priority=st.sampled_from(["p_first", "q_first"]))
def test_hostile_reactive_telemetry_never_yields_a_reactive_setpoint_out_of_bounds(
    data: st.DataObject, target: float, q_target: float, priority: str
) -> None:
    dist, table = _distributor()
    planner = dist.planner
    planner.reactive = priority
    planner.reactive_target_var = q_target
    now = time.monotonic_ns()
    for inv, bat in PAIRS:
        for cid, battery in ((inv, False), (bat, True)):
            table.decode(table.row_of[cid], data.draw(telemetry(cid, battery, True)), now)
    q_book = SetpointBook(len(PAIRS))
    planned = planner.plan(target, now, dist.dispatcher, q_book)  # never raises
    assert not planned.bad
    q, p = planned.reactive_var, planned.setpoints_w
    assert q is not None
    assert np.isfinite(q).all()
    assert (q[~planned.inverter_ok] == 0.0).all()
    rows = dist.inv_rows
    for k in np.flatnonzero(q != 0.0):
        r = rows[k]
        lo, hi, s_va = (table.reactive_lower_var[r], table.reactive_upper_var[r],
                        table.apparent_rating_va[r])
        assert lo - 1e-6 <= q[k] <= hi + 1e-6
        assert not s_va <= 0  # a rating is positive or unknown (NaN)
        if math.isfinite(s_va):
            assert math.hypot(p[k], q[k]) <= s_va + 1e-6
    assert set(planned.q_indices) <= set(np.flatnonzero(planned.inverter_ok).tolist())
    assert planner.reactive_out_of_bounds == 0
