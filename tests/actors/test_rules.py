"""Unit tests of the pure timing rules: backoff, staleness, failure book, resend rule."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from testkit import cancel_once

from actors import (
    Actor,
    Health,
    OptionsError,
    RuntimeOptions,
    StateTable,
    Supervisor,
    backoff_delay_s,
    failed_mask,
    needs_send,
    stale_mask,
)

S = 1_000_000_000  # ns per s


def test_backoff_doubles_and_caps() -> None:
    delays = [backoff_delay_s(k, 1.0, 30.0) for k in range(9)]
    assert delays == [0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert backoff_delay_s(10_000, 0.1, 5.0) == 5.0


def test_stale_mask_fake_clock() -> None:
    received = np.array([0, 10 * S, 10 * S], dtype=np.int64)
    now = 11 * S
    assert stale_mask(now, received, S).tolist() == [True, False, False]
    assert stale_mask(now + 1, received, S).tolist() == [True, True, True]


def test_failed_mask() -> None:
    retry = np.array([0, 5 * S], dtype=np.int64)
    assert failed_mask(4 * S, retry).tolist() == [False, True]
    assert failed_mask(5 * S, retry).tolist() == [False, False]


def _table(n: int = 2, now: int = 100 * S) -> StateTable:
    t = StateTable(list(range(1, n + 1)), [3] * n)
    t.received_ns[:] = now
    t.bounds_ok[:] = True
    return t


def test_health_failure_backoff_and_recovery() -> None:
    t = _table()
    h = Health(t, stale_after_s=1000.0, retry_min_s=1.0, retry_max_s=30.0,
               bounds_required=np.ones(2, dtype=bool))
    now = 100 * S
    assert h.ok_mask(now).tolist() == [True, True]
    # Consecutive failures double the retry delay, capped at 30 s.
    assert h.on_failure(0, now, "REJECTED") == 1.0
    assert h.ok_mask(now).tolist() == [False, True]
    assert h.reasons(now) == {1: "setpoint failed (REJECTED)"}
    assert h.ok_mask(now + S).tolist() == [True, True]  # eligible for a retry
    assert h.on_failure(0, now + S, "REJECTED") == 2.0
    assert h.ok_mask(now + 2 * S).tolist() == [False, True]
    assert h.ok_mask(now + 3 * S).tolist() == [True, True]
    for _ in range(10):
        last = h.on_failure(0, now, "UNAVAILABLE")
    assert last == 30.0
    # Success resets the book.
    h.on_success(0)
    assert h.ok_mask(now).tolist() == [True, True]
    assert h.on_failure(0, now, "FAILED") == 1.0


def test_health_stale_error_bounds_reasons() -> None:
    t = _table(4)
    now = 100 * S
    t.received_ns[0] = 0
    t.received_ns[1] = now - 2 * S
    t.state_ok[2] = False
    t.bounds_ok[3] = False
    h = Health(t, stale_after_s=1.0, retry_min_s=1.0, retry_max_s=30.0,
               bounds_required=np.ones(4, dtype=bool))
    assert h.reasons(now) == {1: "no data", 2: "stale", 3: "error state", 4: "unusable bounds"}
    # Fresh healthy data brings them back.
    t.received_ns[:] = now
    t.state_ok[:] = True
    t.bounds_ok[:] = True
    assert h.reasons(now) == {}


def test_needs_send_deadband_renewal_zero() -> None:
    now = 1000 * S
    renew = 40 * S
    new = np.array([100.0, 130.0, 0.0, 0.0, 500.0, 520.0, 10.0])
    last = np.array([100.0, 100.0, 30.0, np.nan, 500.0, 500.0, np.nan])
    sent = np.array([now, now, now, 0, now - renew, now, 0], dtype=np.int64)
    ok = np.array([True, True, True, True, True, False, True])
    got = needs_send(new, last, sent, ok, now, 50.0, renew)
    # unchanged | within deadband | to zero | never sent & 0 | renewal due | last failed | new
    assert got.tolist() == [False, False, True, False, True, True, True]


def test_needs_send_changes_held_by_the_deadband_do_not_add_up_beyond_it() -> None:
    """Five inverters each 40 W off (deadband 100 W): the fleet would be 200 W off."""
    now, renew = 1000 * S, 40 * S
    last = np.full(5, 1000.0)
    sent = np.full(5, now, dtype=np.int64)
    ok = np.ones(5, dtype=np.bool_)
    got = needs_send(last + 40.0, last, sent, ok, now, 100.0, renew)
    assert got.all()
    # Changes that cancel out, or add up to at most one deadband, are still held back.
    assert not needs_send(last + np.array([40.0, -40.0, 40.0, -40.0, 0.0]), last, sent, ok, now,
                          100.0, renew).any()
    assert not needs_send(last + np.array([40.0, 40.0, 0.0, 0.0, 0.0]), last, sent, ok, now,
                          100.0, renew).any()


def test_runtime_options_validation() -> None:
    RuntimeOptions()
    with pytest.raises(OptionsError, match="call_timeout_s"):
        RuntimeOptions(call_timeout_s=float("nan"))
    with pytest.raises(OptionsError, match="setpoint_lifetime_s"):
        RuntimeOptions(setpoint_lifetime_s=5)
    with pytest.raises(OptionsError, match="renew_margin_s"):
        RuntimeOptions(setpoint_lifetime_s=10, renew_margin_s=10)
    with pytest.raises(OptionsError, match="retry_min_s"):
        RuntimeOptions(retry_min_s=10, retry_max_s=1)


class _Flaky(Actor):
    def __init__(self, fail_times: int, done: asyncio.Event) -> None:
        super().__init__("flaky")
        self.calls = 0
        self.fail_times = fail_times
        self.done = done

    async def _run(self) -> None:
        self.calls += 1
        if self.calls <= self.fail_times:
            raise RuntimeError(f"boom {self.calls}")
        self.done.set()
        await asyncio.Event().wait()


async def test_supervisor_restarts_with_backoff_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    delays: list[float] = []

    async def fake_sleep(s: float) -> None:
        delays.append(s)

    done = asyncio.Event()
    actor = _Flaky(3, done)
    async with Supervisor([actor], restart_min_s=1.0, restart_max_s=3.0, sleep=fake_sleep):
        await asyncio.wait_for(done.wait(), 5)
    assert delays == [1.0, 2.0, 3.0]
    assert actor.restarts == 3
    assert "actor 'flaky' failed (RuntimeError: boom 1)" in caplog.text


async def test_supervisor_exit_cancels_and_propagates_cancellation() -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    class Sleeper(Actor):
        async def _run(self) -> None:
            started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise

    async def main() -> None:
        async with Supervisor([Sleeper("sleeper")]):
            await asyncio.Event().wait()

    await cancel_once(main(), started, 5)
    assert cancelled.is_set()
