"""Schedule windows from the Frequenz Dispatch API (`controller.runtime.dispatch_source`).

The expansion of one dispatch into windows is pure and tested on `Dispatch`
objects; the source itself runs against `simulator.dispatch.DispatchServer`
over real gRPC on loopback, driven by the official client
(`DispatchApiClient`) and by its own command line (`dispatch-cli`).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import IO, Any

import pytest
from frequenz.client.common.microgrid import MicrogridId
from frequenz.client.dispatch import DispatchApiClient
from frequenz.client.dispatch.recurrence import EndCriteria, Frequency, RecurrenceRule
from frequenz.client.dispatch.types import Dispatch, DispatchId, TargetIds
from testkit import ENTRY, wait_until

from controller.errors import ConfigError
from controller.runtime.config import config_from_dict
from controller.runtime.dispatch_source import (
    DispatchScheduleSource,
    dispatch_windows,
    horizon_s,
)
from controller.runtime.schedule import Window
from simulator.dispatch import DispatchServer

MG = 7
KEY = "test-key"
FCR = {"reserved_power_w": 100_000, "curve": "linear", "deadband_hz": 0.01,
       "hold_duration_s": 900}
H = 3600.0


def _dispatch(
    start: datetime,
    duration_s: float | None = 4 * H,
    *,
    type_: str = "FREQUENCY_RESPONSE",
    payload: dict[str, Any] | None = None,
    recurrence: RecurrenceRule | None = None,
    active: bool = True,
    dry_run: bool = False,
) -> Dispatch:
    return Dispatch(
        id=DispatchId(3), type=type_, start_time=start,
        duration=None if duration_s is None else timedelta(seconds=duration_s),
        target=TargetIds(1), active=active, dry_run=dry_run,
        payload=dict(FCR) if payload is None else payload,
        recurrence=recurrence or RecurrenceRule(), create_time=start, update_time=start,
    )


def _s(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


# ------------------------------------------------------------------ expansion (pure)


def test_a_daily_block_crosses_midnight_and_stays_in_utc_across_dst() -> None:
    # Daily 22:00–02:00 UTC; Europe leaves summer time on 2026-10-25 (01:00 UTC).
    d = _dispatch(datetime(2026, 10, 20, 22, tzinfo=UTC),
                  recurrence=RecurrenceRule(frequency=Frequency.DAILY, interval=1))
    lo, hi = horizon_s(_s("2026-10-25T12:00:00+00:00"))
    assert (lo, hi) == (_s("2026-10-24T00:00:00+00:00"), _s("2026-10-28T00:00:00+00:00"))
    ws = dispatch_windows(d, lo, hi)
    # The run that started on the 23rd ends at 02:00 on the 24th: inside the horizon.
    assert [(w.start_s, w.end_s) for w in ws] == [
        (_s(f"2026-10-{day}T22:00:00+00:00"), _s(f"2026-10-{day + 1}T02:00:00+00:00"))
        for day in (23, 24, 25, 26, 27)
    ]
    assert {w.source for w in ws} == {"dispatch:3"}
    fr = ws[0].frequency_response
    assert fr is not None
    assert (fr.reserved_power_w, fr.hold_duration_s) == (100_000, 900)
    assert fr.curve is not None
    assert fr.curve.deadband_hz == 0.01


def test_one_off_open_ended_counted_and_unused_dispatches() -> None:
    t0 = datetime(2026, 11, 2, 8, tzinfo=UTC)
    lo, hi = horizon_s(t0.timestamp())
    one = dispatch_windows(_dispatch(t0, type_="PEAK_SHAVING", payload={"limit_w": 250_000}),
                           lo, hi)
    assert [(w.start_s, w.end_s, w.peak_limit_w, w.frequency_response) for w in one] == [
        (t0.timestamp(), t0.timestamp() + 4 * H, 250_000.0, None)
    ]
    # No duration: runs until deleted, its window ends with the horizon.
    assert [(w.start_s, w.end_s) for w in dispatch_windows(_dispatch(t0, None), lo, hi)] == [
        (t0.timestamp(), hi)
    ]
    hourly = RecurrenceRule(frequency=Frequency.HOURLY, interval=6,
                            end_criteria=EndCriteria(count=3))
    assert [w.start_s - t0.timestamp() for w in
            dispatch_windows(_dispatch(t0, 3600, recurrence=hourly), lo, hi)] == [0, 6 * H, 12 * H]
    for unused in (_dispatch(t0, active=False), _dispatch(t0, dry_run=True),
                   _dispatch(t0, type_="SOMETHING_ELSE", payload={"x": 1})):
        assert dispatch_windows(unused, lo, hi) == []


@pytest.mark.parametrize(
    ("payload", "recurrence", "line"),
    [
        ({**FCR, "deadband_hz": -1.0}, None,
         "dispatch 3: payload.deadband_hz = -1.0: must be >= 0"),
        ({"curve": "linear"}, None, "dispatch 3: payload = {'curve': 'linear'}: reserved_power_w"),
        ({**FCR, "knee_hz": 0.2}, None, 'dispatch 3: payload.knee_hz = 0.2: only valid with curve'),
        (FCR, RecurrenceRule(frequency=Frequency.DAILY), "dispatch 3: recurrence.interval = 0"),
    ],
)
def test_an_invalid_dispatch_is_one_line_naming_id_field_and_value(
    payload: dict[str, Any], recurrence: RecurrenceRule | None, line: str
) -> None:
    d = _dispatch(datetime(2026, 11, 2, 8, tzinfo=UTC), payload=payload, recurrence=recurrence)
    with pytest.raises(ConfigError) as err:
        dispatch_windows(d, *horizon_s(d.start_time.timestamp()))
    assert str(err.value).startswith(line)
    assert "\n" not in str(err.value)


def test_the_dispatch_config_section_is_validated() -> None:
    cfg = config_from_dict({"dispatch": {"url": "grpc://127.0.0.1:5?ssl=false",
                                         "api_key": "k", "microgrid_id": 4}})
    assert (cfg.dispatch.url, cfg.dispatch.api_key, cfg.dispatch.microgrid_id) == (
        "grpc://127.0.0.1:5?ssl=false", "k", 4)
    with pytest.raises(ConfigError, match=r"dispatch\.url = \"http://x\": must look like grpc://"):
        config_from_dict({"dispatch": {"url": "http://x"}})


# ------------------------------------------------------------------ over gRPC


class _Deliveries:
    """What the source delivered, in order."""

    def __init__(self) -> None:
        self.lists: list[list[Window]] = []

    def __call__(self, source: str, windows: Sequence[Window]) -> None:
        assert source == "dispatch"
        self.lists.append(list(windows))

    @property
    def last(self) -> list[Window]:
        return self.lists[-1] if self.lists else []

    def ids(self) -> set[str]:
        return {w.source for w in self.last}


@pytest.fixture
async def server() -> AsyncIterator[DispatchServer]:
    async with DispatchServer(MG, api_key=KEY) as srv:
        yield srv


async def _run_source(srv: DispatchServer, got: _Deliveries) -> asyncio.Task[None]:
    source = DispatchScheduleSource(srv.url, auth_key=KEY, microgrid_id=MG,
                                    backoff_min_s=0.05, backoff_max_s=0.2)
    task = asyncio.create_task(source.run(got))
    await wait_until(lambda: got.lists, 10, "the first delivery")
    return task


@pytest.mark.integration
async def test_create_update_delete_reach_the_source(
    server: DispatchServer, caplog: pytest.LogCaptureFixture
) -> None:
    client = DispatchApiClient(server_url=server.url, auth_key=KEY)
    got = _Deliveries()
    task = await _run_source(server, got)
    try:
        assert got.last == []
        start = datetime.now(UTC) + timedelta(hours=1)
        daily = RecurrenceRule(frequency=Frequency.DAILY, interval=1)
        fcr = await client.create(MicrogridId(MG), "FREQUENCY_RESPONSE", start,
                                  timedelta(hours=4), TargetIds(1), payload=FCR,
                                  recurrence=daily)
        await wait_until(lambda: got.ids() == {f"dispatch:{int(fcr.id)}"}, 10, "the FCR window")
        starts = [w.start_s for w in got.last]
        # Recurrence honoured: one block a day from the start, within the horizon.
        assert starts[0] == pytest.approx(start.timestamp(), abs=1)
        assert [b - a for a, b in itertools.pairwise(starts)] == [86_400.0] * (len(starts) - 1)
        assert len(starts) >= 2

        # An invalid payload: one line naming the dispatch, the field and the value;
        # the valid dispatch stays.
        caplog.set_level(logging.WARNING, "controller.runtime.dispatch_source")
        bad = await client.create(MicrogridId(MG), "FREQUENCY_RESPONSE", start,
                                  timedelta(hours=1), TargetIds(1),
                                  payload={**FCR, "hold_duration_s": -5})
        peak = await client.create(MicrogridId(MG), "PEAK_SHAVING", start, timedelta(hours=1),
                                   TargetIds(1), payload={"limit_w": 250_000})
        await wait_until(lambda: f"dispatch:{int(peak.id)}" in got.ids(), 10, "the peak window")
        lines = [r.getMessage() for r in caplog.records if f"dispatch {int(bad.id)}" in
                 r.getMessage()]
        assert lines == [f"dispatch {int(bad.id)}: payload.hold_duration_s = -5.0: must be >= 0"
                         " (dispatch ignored)"]
        assert got.ids() == {f"dispatch:{int(fcr.id)}", f"dispatch:{int(peak.id)}"}

        # Update: the new reserve replaces the old windows.
        await client.update(microgrid_id=MicrogridId(MG), dispatch_id=fcr.id,
                            new_fields={"payload": {**FCR, "reserved_power_w": 50_000}})

        def reserves() -> set[float]:
            return {w.frequency_response.reserved_power_w for w in got.last
                    if w.frequency_response is not None}

        await wait_until(lambda: reserves() == {50_000.0}, 10, "the updated reserve")
        # Inactive: no window; delete: gone.
        await client.update(microgrid_id=MicrogridId(MG), dispatch_id=peak.id,
                            new_fields={"active": False})
        await wait_until(lambda: got.ids() == {f"dispatch:{int(fcr.id)}"}, 10, "peak inactive")
        await client.delete(microgrid_id=MicrogridId(MG), dispatch_id=fcr.id)
        await wait_until(lambda: got.last == [], 10, "the FCR dispatch deleted")
        # The bad dispatch was reported once, not at every delivery since.
        assert len([r for r in caplog.records if f"dispatch {int(bad.id)}" in
                    r.getMessage()]) == 1
    finally:
        task.cancel()
        await asyncio.wait([task])


@pytest.mark.integration
async def test_the_source_reconnects_after_a_server_restart(
    server: DispatchServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "controller.runtime.dispatch_source")
    got = _Deliveries()
    task = await _run_source(server, got)
    try:
        await server.stop()
        await wait_until(lambda: any("reconnecting" in r.getMessage() for r in caplog.records),
                         10, "the broken connection logged")
        assert got.last == []  # the last good windows stay meanwhile
        await server.start()  # same port, dispatches kept
        client = DispatchApiClient(server_url=server.url, auth_key=KEY)
        d = await client.create(MicrogridId(MG), "PEAK_SHAVING",
                                datetime.now(UTC) + timedelta(hours=1), timedelta(hours=1),
                                TargetIds(1), payload={"limit_w": 200_000})
        await wait_until(lambda: got.ids() == {f"dispatch:{int(d.id)}"}, 20,
                         "the dispatch created after the restart")
        assert not task.done()
    finally:
        task.cancel()
        await asyncio.wait([task])


@pytest.mark.integration
async def test_a_refused_key_is_logged_and_retried_not_raised(
    server: DispatchServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "controller.runtime.dispatch_source")
    source = DispatchScheduleSource(server.url, auth_key="wrong", microgrid_id=MG,
                                    backoff_min_s=0.05, backoff_max_s=0.1)
    got = _Deliveries()
    task = asyncio.create_task(source.run(got))
    try:
        await wait_until(lambda: len([r for r in caplog.records if "UNAUTHENTICATED" in
                                      r.getMessage()]) >= 2, 10, "two refused attempts")
        assert not task.done()
        assert got.lists == []
    finally:
        task.cancel()
        await asyncio.wait([task])


# ------------------------------------------------- the operator's path: sim + dispatch-cli


def _gridloop(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", ENTRY, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _dispatch_cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The client library's own command line, as an operator runs it (README)."""
    return subprocess.run(
        [sys.executable, "-m", "frequenz.client.dispatch", "--url", url,
         "--auth-key", "anything", *args],
        capture_output=True, text=True, timeout=60, check=False, env={**os.environ, "TZ": "UTC"},
    )


def _wait_for(stream: IO[str], pattern: str, seen: list[str]) -> None:
    """Read ``stream`` line by line (into ``seen``) until one matches ``pattern``."""
    while True:
        line = stream.readline()
        assert line, f"ended before {pattern!r}:\n" + "".join(seen[-30:])
        seen.append(line)
        if re.search(pattern, line):
            return


@pytest.mark.integration
@pytest.mark.slow
def test_dispatch_cli_switches_frequency_response_on_and_off_in_a_running_service() -> None:
    sim = _gridloop("sim", "--port", "0", "--dispatch-port", "0", "--time-scale", "10")
    run: subprocess.Popen[str] | None = None
    try:
        assert sim.stdout is not None
        assert sim.stderr is not None
        api = sim.stdout.readline().split()[-1]
        lines = [sim.stderr.readline() for _ in range(2)]
        found = re.search(r"Dispatch API on (\S+) \(microgrid (\d+)\)", lines[-1])
        assert found, lines
        url, microgrid = f"grpc://{found[1]}?ssl=false", found[2]
        cli = _dispatch_cli(url, "create", microgrid, "FREQUENCY_RESPONSE", "BATTERY", "NOW",
                            "4 hours", "--payload",
                            '{"reserved_power_w": 100000, "curve": "linear", '
                            '"hold_duration_s": 900}')
        assert cli.returncode == 0, cli.stderr
        assert "Dispatch created." in cli.stdout
        run = _gridloop("run", "--api", f"grpc://{api}", "--time-scale", "10",
                        "--dispatch-url", url, "--dispatch-key", "anything",
                        "--duration", "60", "--no-dashboard", "--log-level", "INFO")
        assert run.stderr is not None
        seen: list[str] = []
        # The site's microgrid id was used; the window was delivered, logged, and switched
        # frequency response on in the running service.
        _wait_for(run.stderr, r"schedule dispatch at site time \S+: added dispatch:1 "
                  r"\[\S+, \S+\): frequency response 100000 W", seen)
        _wait_for(run.stderr, r"frequency response on: reserve 100000 W from window "
                  r"dispatch:1", seen)
        cli = _dispatch_cli(url, "delete", microgrid, "1")
        assert cli.returncode == 0, cli.stderr
        _wait_for(run.stderr, r"schedule dispatch at site time \S+: removed dispatch:1", seen)
        _wait_for(run.stderr, r"frequency response off: no window", seen)
        run.send_signal(signal.SIGTERM)  # an orderly stop, the run still going
        _, err = run.communicate(timeout=120)
        assert run.returncode == 0, err
        text = "".join(seen) + err
        assert "Traceback" not in text
        assert "Prefix 'CID'" not in text
    finally:
        for proc in (run, sim):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.communicate(timeout=30)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--dispatch-url", "http://x", "--dispatch-key", "k"],
         "--dispatch-url = 'http://x': must look like grpc://"),
        (["--dispatch-url", "grpc://127.0.0.1:1?ssl=false"], "needs an auth key"),
    ],
)
def test_bad_dispatch_flags_are_one_line(args: list[str], needle: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DISPATCH_API_AUTH_KEY"}
    proc = subprocess.Popen([sys.executable, "-c", ENTRY, "run", "--duration", "1", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert needle in lines[0]
