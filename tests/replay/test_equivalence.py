"""The replay runs the code the service runs: same measurements in, same setpoints out.

A live `Site` + `Controller` runs against the simulator over gRPC. Every
control step (measurements → fleet target) and every distribution round
(state table, health, setpoint book, target → setpoints to send) is captured.
The same inputs are then fed, cycle by cycle, to the control that
`gridloop replay` builds for the same config (`replay_control`), which must
produce the same targets and the same setpoints.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from typing import Any

import numpy as np
import pytest

from actors import PlannedRound, SetpointBook, Site, SiteMeasurements, StateTable
from controller.lab.replay.transport import replay_control
from controller.runtime.config import ControlConfig, GridloopConfig
from controller.runtime.control import Controller
from controller.runtime.service import runtime_options

_COLUMNS = [
    "power_w", "power_lower_w", "power_upper_w", "power_excl_lower_w", "power_excl_upper_w",
    "bounds_ok", "has_bounds", "soc_pct", "soc_lower_pct", "soc_upper_pct", "capacity_wh",
    "frequency_hz", "sample_time_ns", "received_ns", "state_ok", "state_code", "samples",
    "data_ok",
]


def _table_copy(t: StateTable) -> dict[str, np.ndarray]:
    return {c: getattr(t, c).copy() for c in _COLUMNS}


def _table_load(t: StateTable, snap: dict[str, np.ndarray]) -> None:
    for c, v in snap.items():
        getattr(t, c)[:] = v


# A non-default SoC exponent and deadband: a replay built another way differs.
CONFIG = GridloopConfig(control=ControlConfig(soc_exponent=2.5, deadband_w=300.0))


@pytest.fixture
async def captured(sim_factory: Any) -> dict[str, Any]:
    """Run the service for a few seconds of a 30× site and capture every cycle."""
    time_scale = 30.0
    sim = await sim_factory(time_scale=time_scale)
    steps: list[
        tuple[SiteMeasurements, float, tuple[str, ...], float, dict[str, Any], float | None]
    ] = []
    rounds: list[tuple[float, int, dict[str, Any], PlannedRound, float]] = []
    snapshots: list[tuple[int, dict[str, Any], SiteMeasurements]] = []
    site = await Site.connect(f"grpc://127.0.0.1:{sim.port}",
                              options=runtime_options(CONFIG, time_scale))
    async with site:
        controller = Controller(site, CONFIG, time_scale=time_scale)
        cycle, core, disp = controller.cycle, site.core, site.dispatcher
        live_step, live_plan, live_measure = cycle.step, core.planner.plan, core.measurements

        def measure(now: int) -> SiteMeasurements:
            inputs = {
                "table": _table_copy(core.state),
                "failures": core.health.failures.copy(),
                "retry_at_ns": core.health.retry_at_ns.copy(),
            }
            m = live_measure(now)
            snapshots.append((now, inputs, m))
            return m

        def step(m: SiteMeasurements, now_s: float, strategies: Any = None,
                 site_time_s: float | None = None) -> float:
            table = _table_copy(core.state)
            target = live_step(m, now_s, strategies, site_time_s=site_time_s)
            names = tuple(s.name for s in (strategies or cycle.strategies))
            steps.append((m, now_s, names, target, table, site_time_s))
            return target

        def plan(target_w: float, now_ns: int, book: SetpointBook,
                 must_w: float = math.nan) -> PlannedRound:
            inputs = {
                "table": _table_copy(core.state),
                "failures": core.health.failures.copy(),
                "retry_at_ns": core.health.retry_at_ns.copy(),
                "last_w": book.last_w.copy(),
                "last_sent_ns": book.last_sent_ns.copy(),
                "last_ok": book.last_ok.copy(),
            }
            planned = live_plan(target_w, now_ns, book, must_w)
            rounds.append((target_w, now_ns, inputs, planned, must_w))
            return planned

        cycle.step = step  # type: ignore[method-assign]
        core.planner.plan = plan  # type: ignore[method-assign]
        core.measurements = measure  # type: ignore[method-assign]
        await controller.run(4.0, asyncio.Event())
        assert disp.stats.setpoints_sent > 0
    return {"steps": steps, "rounds": rounds, "snapshots": snapshots, "sim": sim}


async def test_replay_control_gives_the_live_setpoints_cycle_by_cycle(
    captured: dict[str, Any],
) -> None:
    steps, rounds = captured["steps"], captured["rounds"]
    assert len(steps) > 20
    assert len(rounds) > 20
    replay = replay_control(captured["sim"].site, CONFIG)

    # Strategies: the same measurements at the same site times (the billing meter's
    # clock) give the same targets, in sequence.
    by_name = {s.name: s for s in replay.cycle.strategies}
    assert sorted(by_name) == ["frequency_response", "peak_shaving"]
    assert all(site_s is not None for *_, site_s in steps)
    for m, now_s, names, target, _, site_s in steps:
        strategies = [by_name[n] for n in names]
        assert replay.cycle.step(m, now_s, strategies, site_time_s=site_s) == target

    # Measurements: every snapshot the live site computed (the strategies' inputs,
    # fleet bounds included) is computed the same from the same table and health.
    assert len(captured["snapshots"]) > 20
    for now, inputs, live_m in captured["snapshots"]:
        _table_load(replay.core.state, inputs["table"])
        replay.core.health.failures[:] = inputs["failures"]
        replay.core.health.retry_at_ns[:] = inputs["retry_at_ns"]
        mine = replay.core.measurements(now)
        for f in dataclasses.fields(SiteMeasurements):
            np.testing.assert_array_equal(getattr(mine, f.name), getattr(live_m, f.name),
                                          err_msg=f.name)

    # Distribution: the same table, health and book give the same setpoints to send.
    for target, now_ns, inputs, live, must in rounds:
        core, book = replay.core, SetpointBook(len(replay.core.index.inverter_ids))
        _table_load(core.state, inputs["table"])
        core.health.failures[:] = inputs["failures"]
        core.health.retry_at_ns[:] = inputs["retry_at_ns"]
        book.last_w[:] = inputs["last_w"]
        book.last_sent_ns[:] = inputs["last_sent_ns"]
        book.last_ok[:] = inputs["last_ok"]
        mine = core.planner.plan(target, now_ns, book, must)
        assert mine.indices == live.indices
        assert mine.powers_w == live.powers_w
        np.testing.assert_array_equal(mine.setpoints_w, live.setpoints_w)


def test_a_replay_built_otherwise_differs(captured: dict[str, Any]) -> None:
    """The comparison above can fail: another SoC exponent gives other setpoints."""
    other = dataclasses.replace(CONFIG, control=ControlConfig(soc_exponent=1.0,
                                                              deadband_w=300.0))
    replay = replay_control(captured["sim"].site, other)
    differ = 0
    for target, now_ns, inputs, live, _must in captured["rounds"]:
        book = SetpointBook(len(replay.core.index.inverter_ids))
        _table_load(replay.core.state, inputs["table"])
        book.last_w[:] = inputs["last_w"]
        book.last_sent_ns[:] = inputs["last_sent_ns"]
        book.last_ok[:] = inputs["last_ok"]
        mine = replay.core.planner.plan(target, now_ns, book)
        differ += not np.array_equal(mine.setpoints_w, live.setpoints_w)
    assert differ > 0
