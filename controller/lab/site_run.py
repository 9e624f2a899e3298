"""The step sequence of ``gridloop bench site`` on a connected `actors.Site`.

Offers :class:`SiteBenchOptions`, :class:`SiteBenchRefusedError`, :func:`step_sizes`
and :func:`run_steps` (the whole sequence; the analysis is
:mod:`controller.lab.site_steps`, the command :mod:`controller.lab.site_bench`).

gridloop's own client stack does the talking (so every API version, TLS and API
keys work as for ``gridloop run``): the `Site` streams the telemetry into its state
table, and its `Dispatcher` sends each setpoint (one call per inverter, so each has
its own acknowledgement time; every call with the dispatcher's finite lifetime and
deadline) and notices when another client overrides ours.

The sequence, per chosen battery inverter one at a time and then all of them
together (the fleet step, when more than one is chosen):

1. wait until the inverters are back near 0 W and have been for the pre-step
   window (the band the next step is measured against), then a random part of
   one telemetry period (the command is not locked to the stream's phase);
2. K steps alternating charge and discharge (charge first), each of the same
   size and the same hold, so the state of charge ends where it began;
   setpoints are renewed while a step holds when their lifetime runs short;
3. 0 W after each step.

Before the first setpoint it refuses (`SiteBenchRefusedError`, exit status 2) when a
chosen inverter or one of its batteries reports an error state, or when a chosen
inverter carries power although gridloop sent it nothing (another client's
setpoint; ``force`` skips this check). During the run, another client overriding
our setpoints (`Site.another_client`) or the server refusing us ends the run as
an error. Whatever ends the run (an error, a cancellation by a signal), every
inverter it moved gets 0 W before the site is left.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from frequenz.api.common.v1alpha8.microgrid.electrical_components import (
    electrical_components_pb2 as ec_pb2,
)

from actors import Site
from controller.errors import BenchError, SiteBenchRefusedError

__all__ = [
    "Recorder",
    "SiteBenchOptions",
    "SiteBenchRefusedError",
    "StepRecord",
    "run_steps",
    "step_sizes",
]

TELEMETRY_WAIT_S = 10.0
"""How long the chosen components may take to deliver their first complete samples."""
OBSERVE_S = 1.0
"""Telemetry watched before the first setpoint (another client's setpoints, noise)."""
SOC_MARGIN_PCT = 1.0
"""SoC kept away from each limit when a step is sized (the site derates near them)."""
IDLE_FRACTION = 0.01
"""An inverter runs at more than this share of its bound before any setpoint of ours:
another client's setpoint (or a local control mode) drives it."""


@dataclass(frozen=True)
class SiteBenchOptions:
    """What ``gridloop bench site`` was asked to do (validated by its parser)."""

    inverters: tuple[int, ...] | None = None
    """Battery inverters to step (None = all of the site's)."""
    step_w: float = 10_000.0
    """Wanted step size per inverter (W); shrunk to what bounds and SoC allow."""
    steps: int = 4
    """Steps per inverter and for the fleet (even: charge, discharge, ...)."""
    hold_s: float = 3.0
    """How long each step is held (s)."""
    pre_window_s: float = 0.5
    """Pre-step window: the inverters rest near 0 W this long before a step (s)."""
    force: bool = False
    """Run although a chosen inverter carries another client's setpoint."""


@dataclass
class StepRecord:
    """One step of one inverter, as commanded (times on the client's monotonic clock, ns)."""

    unit: str
    """``"single"`` or ``"fleet"``."""
    index: int
    """Step number within the unit (0-based)."""
    inverter_id: int
    """The inverter."""
    target_w: float
    """The setpoint (W, + = charging)."""
    command_ns: int
    """When the call was started."""
    ack_ns: int | None = None
    """When its acknowledgement was read (None: it failed)."""
    failure: str | None = None
    """Why it failed (gRPC or response status), if it did."""
    end_ns: int = 0
    """When the hold ended (0 W sent)."""


@dataclass
class Recorder:
    """Every sample of the chosen inverters, and every setpoint sent to them."""

    rx_ns: dict[int, list[int]] = field(default_factory=dict)
    """Client monotonic receive time of each sample, by inverter id."""
    ts_ns: dict[int, list[int]] = field(default_factory=dict)
    """The site's timestamp of each sample (ns since the Unix epoch), by inverter id."""
    power_w: dict[int, list[float]] = field(default_factory=dict)
    """Measured active power of each sample (W), by inverter id."""
    setpoints: dict[int, list[tuple[int, float]]] = field(default_factory=dict)
    """(client monotonic time, W) of each setpoint sent, by inverter id."""
    steps: list[StepRecord] = field(default_factory=list)
    """Every step, in order."""
    notes: list[str] = field(default_factory=list)
    """What was skipped, shrunk or waited out, in words."""
    moved: list[int] = field(default_factory=list)
    """Inverters sent a non-zero setpoint (set when the run ends, however it ends)."""
    overridden: list[int] = field(default_factory=list)
    """Moved inverters whose setpoint another client overrode: no 0 W from us."""
    zero_failed: dict[int, str] | None = None
    """Inverters whose final 0 W was not confirmed, with the reason (None: not sent yet)."""

    def listen(self, site: Site, ids: tuple[int, ...]) -> None:
        """Record every decoded sample of ``ids`` (a synchronous fresh-sample listener)."""
        t = site.state
        for cid in ids:
            self.rx_ns[cid], self.ts_ns[cid], self.power_w[cid] = [], [], []
            self.setpoints[cid] = []

        def on_sample(cid: int) -> None:
            row = t.row_of[cid]
            self.rx_ns[cid].append(int(t.received_ns[row]))
            self.ts_ns[cid].append(int(t.sample_time_ns[row]))
            self.power_w[cid].append(float(t.power_w[row]))

        site.add_fresh_listener(ids, on_sample)

    def recent(self, cid: int, since_ns: int) -> list[float]:
        """Power samples of ``cid`` received since ``since_ns``."""
        rx, p = self.rx_ns[cid], self.power_w[cid]
        k = len(rx)
        while k > 0 and rx[k - 1] >= since_ns:
            k -= 1
        return p[k:]


def _batteries_of(site: Site, cid: int) -> list[int]:
    return [b for g in site.graph.groups for i, b in g.links if i == cid]


def step_sizes(
    site: Site, ids: tuple[int, ...], step_w: float, hold_s: float
) -> tuple[dict[int, float], list[str]]:
    """The step size of each inverter when ``ids`` step together (one id: alone).

    The same size both ways (so the SoC comes back): the wanted ``step_w``, shrunk
    to the inverter's current bounds, to its batteries' DC bounds (shared evenly
    between the chosen inverters on one battery) and to the energy one step may
    take from or put into them (SoC headroom to each limit, less `SOC_MARGIN_PCT`,
    over the hold plus 1 s of ramps); raised to the exclusion band's edge when it
    falls inside the band. An inverter with no usable size either way is left out.

    Args:
        site: The connected site (its state table holds fresh telemetry).
        ids: The inverters stepping together.
        step_w: Wanted size (W, > 0).
        hold_s: The hold of one step (s).

    Returns:
        Size per inverter kept (W, > 0), and one note per inverter shrunk or left out.
    """
    t = site.state
    chosen = set(ids)
    share: dict[int, int] = {}
    for cid in ids:
        for b in _batteries_of(site, cid):
            share[b] = share.get(b, 0) + 1
    sizes: dict[int, float] = {}
    notes: list[str] = []
    for cid in ids:
        r = t.row_of[cid]
        bats = [b for b in _batteries_of(site, cid) if b in share]
        brow = [t.row_of[b] for b in bats]
        div = np.array([share[b] for b in bats], dtype=np.float64)
        bat_up = float((np.nan_to_num(t.power_upper_w[brow]) / div).sum())
        bat_down = float((-np.nan_to_num(t.power_lower_w[brow]) / div).sum())
        cap_wh = float((np.nan_to_num(t.capacity_wh[brow]) / div).sum())
        soc, lo_pct, hi_pct = t.soc_pct[brow], t.soc_lower_pct[brow], t.soc_upper_pct[brow]
        room_up = float(np.min(hi_pct - soc)) - SOC_MARGIN_PCT if bats else 0.0
        room_down = float(np.min(soc - lo_pct)) - SOC_MARGIN_PCT if bats else 0.0
        per_pct_w = cap_wh / 100.0 * 3600.0 / (hold_s + 1.0)  # W a step may take per % SoC
        limits = {
            "charge bound": min(float(t.power_upper_w[r]), bat_up),
            "discharge bound": min(-float(t.power_lower_w[r]), bat_down),
            "charge SoC headroom": max(room_up, 0.0) * per_pct_w,
            "discharge SoC headroom": max(room_down, 0.0) * per_pct_w,
        }
        limits = {k: (v if math.isfinite(v) else 0.0) for k, v in limits.items()}
        band = max(float(t.power_excl_upper_w[r]), -float(t.power_excl_lower_w[r]))
        why, room = min(limits.items(), key=lambda kv: kv[1])
        size = min(step_w, room)
        if size < band and band <= room:
            notes.append(f"inverter {cid}: step raised from {step_w:g} W to the exclusion"
                         f" band's edge {band:g} W")
            size = band
        elif size < max(band, 1.0):
            what = "alone" if len(chosen) == 1 else "in the fleet step"
            notes.append(f"inverter {cid}: skipped {what}: no usable step ({why} {room:.0f} W,"
                         f" exclusion band ±{band:g} W)")
            continue
        elif size < step_w:
            notes.append(f"inverter {cid}: step shrunk from {step_w:g} W to {size:.0f} W ({why})")
        sizes[cid] = size
    return sizes, notes


def _check_components(site: Site, ids: tuple[int, ...]) -> None:
    """Refuse when a chosen inverter or one of its batteries reports an error state."""
    t = site.state
    for cid in ids:
        for comp in (cid, *_batteries_of(site, cid)):
            row = t.row_of[comp]
            if not t.state_ok[row]:
                code = int(t.state_code[row])
                try:
                    name = ec_pb2.ElectricalComponentStateCode.Name(code)  # type: ignore[arg-type]
                except ValueError:
                    name = str(code)
                raise SiteBenchRefusedError(
                    f"component {comp} reports an error state ({name}); nothing was sent"
                )


def _check_idle(site: Site, rec: Recorder, ids: tuple[int, ...], since_ns: int) -> None:
    """Refuse when a chosen inverter carries power we did not command (another client)."""
    t = site.state
    for cid in ids:
        p = np.asarray(rec.recent(cid, since_ns), dtype=np.float64)
        p = p[np.isfinite(p)]
        if not p.size:
            continue
        r = t.row_of[cid]
        bound = max(abs(float(t.power_lower_w[r])), abs(float(t.power_upper_w[r])), 0.0)
        noise = 3.0 * float(p.std()) if p.size >= 2 else 0.0
        level = float(np.median(p))
        if abs(level) > max(IDLE_FRACTION * bound, noise, 1.0):
            raise SiteBenchRefusedError(
                f"inverter {cid} runs at {level:.0f} W before any setpoint of ours: the site"
                " carries another client's setpoints (stop that client, or pass --force)"
            )


class _Stepper:
    """Sends the steps through the site's dispatcher and waits them out."""

    def __init__(self, site: Site, rec: Recorder, opts: SiteBenchOptions,
                 tails: asyncio.TaskGroup) -> None:
        self.site = site
        self.rec = rec
        self.opts = opts
        self.tails = tails
        d = site.dispatcher
        self.index = {cid: k for k, cid in enumerate(d.inverter_ids)}
        self.moved: set[int] = set()
        self.renew_ns = int(d.lifetime_s * 1e9 / 2)
        self.rng = random.Random(0)  # dithering of the command times (see `step`)

    def check(self) -> None:
        """End the run when the site stopped commanding (another client) or refused us."""
        site = self.site
        if site.fatal_error is not None:
            raise BenchError(f"the server refused us: {site.fatal_error}")
        if site.another_client is not None:
            raise BenchError(site.another_client)
        if site.site_changed is not None:
            raise BenchError(f"site changed after reconnect: {site.site_changed}")

    async def command(self, cid: int, power_w: float, timeout_s: float | None = None
                      ) -> tuple[int, int | None, str | None]:
        """One setpoint; (sent at, acknowledged at or None, failure or None), client ns."""
        d = self.site.dispatcher
        if power_w != 0.0:
            self.moved.add(cid)
        sent = time.monotonic_ns()
        self.rec.setpoints[cid].append((sent, power_w))
        res = await d.send([self.index[cid]], [power_w], self.tails, timeout_s=timeout_s,
                           log_failures=False)
        if res.sent == 0:
            self.check()
            raise BenchError(f"setpoint to inverter {cid} withheld ({d.held})")
        failure = res.failed.get(cid)
        return sent, (res.done_ns if failure is None else None), failure

    def period_s(self, cid: int) -> float:
        """The telemetry period of ``cid`` as received so far (median interval, <= 1 s)."""
        rx = self.rec.rx_ns[cid][-50:]
        if len(rx) < 3:
            return 0.0
        return min(float(np.median(np.diff(rx))) / 1e9, 1.0)

    async def step(self, unit: str, k: int, sizes: dict[int, float], sign: float) -> None:
        """Command one step to every inverter of the unit, hold it, then 0 W.

        The command goes out at a random moment within one telemetry period after
        the inverters settled: settling is seen on a sample, and a command locked to
        the stream's phase would always wait about as long for the next sample;
        dithered, the figures sample the whole period, as a real event would.
        """
        ids = list(sizes)
        await asyncio.sleep(self.rng.uniform(0.0, self.period_s(ids[0])))
        results = await asyncio.gather(*(self.command(c, sign * sizes[c]) for c in ids))
        records = [
            StepRecord(unit, k, cid, sign * sizes[cid], sent, ack, failure)
            for cid, (sent, ack, failure) in zip(ids, results, strict=True)
        ]
        self.check()
        start = min(r.command_ns for r in records)
        hold_ns = int(self.opts.hold_s * 1e9)
        last = {r.inverter_id: r.command_ns for r in records}
        while (now := time.monotonic_ns()) < start + hold_ns:
            await asyncio.sleep(min(0.05, (start + hold_ns - now) / 1e9))
            self.check()
            for r in records:  # renew while the step holds (short lifetimes)
                if r.ack_ns is not None and time.monotonic_ns() - last[r.inverter_id] >= (
                    self.renew_ns
                ):
                    last[r.inverter_id] = (await self.command(r.inverter_id, r.target_w))[0]
        await asyncio.gather(*(self.zero(c) for c in ids))
        end = time.monotonic_ns()
        for r in records:
            r.end_ns = end
        self.rec.steps.extend(records)
        self.check()

    async def zero(self, cid: int, attempts: int = 3) -> None:
        """0 W to one inverter, tried up to ``attempts`` times (a refused 0 W is retried)."""
        failure: str | None = None
        for _ in range(attempts):
            failure = (await self.command(cid, 0.0))[2]
            if failure is None:
                return
        self.rec.notes.append(f"inverter {cid}: 0 W not acknowledged in {attempts} attempts"
                              f" ({failure}); its setpoint ends with its lifetime")

    async def settle(self, sizes: dict[int, float]) -> None:
        """Wait until the inverters are near 0 W for the pre-step window (bounded)."""
        pre_ns = int(self.opts.pre_window_s * 1e9)
        limit = time.monotonic_ns() + int((self.opts.hold_s + 5.0) * 1e9)
        calm_since: int | None = None
        while True:
            now = time.monotonic_ns()
            calm = all(
                (p := self.rec.power_w[c]) and abs(p[-1]) <= max(0.02 * size, 1.0)
                for c, size in sizes.items()
            )
            calm_since = (calm_since or now) if calm else None
            if calm_since is not None and now - calm_since >= pre_ns:
                return
            if now > limit:
                self.rec.notes.append(
                    f"inverters {', '.join(map(str, sizes))} not back near 0 W within"
                    f" {self.opts.hold_s + 5.0:g} s; stepped anyway"
                )
                return
            self.check()
            await asyncio.sleep(0.02)

    async def zero_moved(self) -> dict[int, str]:
        """0 W to every inverter moved that still holds a setpoint of ours (bounded, 3 tries).

        Returns:
            Inverters whose 0 W was not confirmed, with the reason.
        """
        d = self.site.dispatcher
        ids = [c for c in sorted(self.moved) if not math.isnan(d.last_w[self.index[c]])]
        self.rec.overridden = sorted(self.moved - set(ids))
        if not ids:
            return {}
        timeout = self.site.options.shutdown_timeout_s
        failed: dict[int, str] = {}
        for _ in range(3):  # a refused 0 W is tried again, at most 3 times in all
            try:
                async with asyncio.timeout(timeout + 0.5):
                    res = await d.send([self.index[c] for c in ids], [0.0] * len(ids), None,
                                       timeout_s=timeout, log_failures=False)
            except TimeoutError:
                return dict.fromkeys(ids, "SHUTDOWN_TIMEOUT")
            failed = res.failed
            ids = sorted(failed)
            if not ids:
                break
        return failed


async def _wait_telemetry(site: Site, ids: tuple[int, ...]) -> None:
    t = site.state
    comps = [c for cid in ids for c in (cid, *_batteries_of(site, cid))]
    deadline = time.monotonic() + TELEMETRY_WAIT_S
    while True:
        missing = [c for c in comps if t.samples[t.row_of[c]] < 2 or not t.data_ok[t.row_of[c]]]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise BenchError(
                f"no complete telemetry from component(s) {', '.join(map(str, missing))}"
                f" within {TELEMETRY_WAIT_S:g} s"
            )
        await asyncio.sleep(0.05)


def _soc(site: Site) -> dict[str, Any]:
    m = site.measurements()
    t = site.state
    return {
        "fleet_pct": m.soc_pct,
        "batteries_pct": {str(b): float(t.soc_pct[t.row_of[b]]) for b in site.graph.battery_ids},
    }


async def run_steps(site: Site, opts: SiteBenchOptions, rec: Recorder) -> dict[str, Any]:
    """Run the whole sequence on an entered site; ``rec`` gets every sample and step.

    Args:
        site: The site (``async with site`` entered: telemetry runs).
        opts: What to do.
        rec: Where samples, setpoints, steps and notes go.

    Returns:
        ``{"inverters": [...], "moved": [...], "soc_start": ..., "soc_end": ...}``
        (``rec.moved`` and ``rec.zero_failed`` are set however the run ends).

    Raises:
        SiteBenchRefusedError: Unknown inverters, an error state, another client's setpoints.
        BenchError: The run failed (no telemetry, another client, refused by the server).
    """
    battery_invs = site.graph.battery_inverter_ids
    ids = opts.inverters if opts.inverters is not None else battery_invs
    unknown = [c for c in ids if c not in battery_invs]
    if unknown:
        raise SiteBenchRefusedError(
            f"--inverters = {','.join(map(str, ids))}: {', '.join(map(str, unknown))} not a"
            f" battery inverter of this site (they are {', '.join(map(str, battery_invs))})"
        )
    rec.listen(site, tuple(ids))
    await _wait_telemetry(site, tuple(ids))
    since = time.monotonic_ns()
    await asyncio.sleep(OBSERVE_S)
    _check_components(site, tuple(ids))
    if opts.force:
        rec.notes.append("--force: the check for another client's setpoints was skipped")
    else:
        _check_idle(site, rec, tuple(ids), since)
    soc_start = _soc(site)
    units: list[tuple[str, tuple[int, ...]]] = [("single", (c,)) for c in ids]
    if len(ids) > 1:
        units.append(("fleet", tuple(ids)))
    error: Exception | None = None
    async with asyncio.TaskGroup() as tails:
        stepper = _Stepper(site, rec, opts, tails)
        try:
            for unit, members in units:
                sizes, notes = step_sizes(site, members, opts.step_w, opts.hold_s)
                rec.notes.extend(notes)
                if not sizes:
                    continue
                for k in range(opts.steps):
                    await stepper.settle(sizes)
                    await stepper.step(unit, k, sizes, 1.0 if k % 2 == 0 else -1.0)
            await stepper.settle(dict.fromkeys(stepper.moved, opts.step_w))
        except Exception as exc:  # raised below, not wrapped in the TaskGroup's group
            error = exc
        finally:
            rec.moved = sorted(stepper.moved)
            rec.zero_failed = await stepper.zero_moved()
    if error is not None:
        raise error
    return {
        "inverters": list(ids),
        "moved": rec.moved,
        "soc_start": soc_start,
        "soc_end": _soc(site),
    }
