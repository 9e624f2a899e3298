"""The power distributor: target W for the battery fleet → allocation → dispatch.

`request_power(target_w)` is non-blocking: it stores the request in a one-slot
mailbox and wakes the distributor, so while a dispatch is in flight a newer request
replaces an older pending one (latest wins). For every processed request the
distributor snapshots the `StateTable` into a `distribution.Fleet` (health decides
availability), calls `distribution.allocate`, re-checks every setpoint against the
snapshot's bounds, dispatches the ones that changed (see `needs_send`), and publishes
a `DistributionOutcome`. Every `reallocate_interval_s` (and right after a partial
failure) it re-runs the last target without publishing, which renews lifetimes and
moves power away from / back to components whose health changed.

An inverter excluded by health (stale or missing telemetry, bad data, an error
state, unusable bounds, a failed setpoint waiting for its retry) is never sent a
setpoint, not even 0 W: its state is unknown, and its last setpoint expires with
its finite lifetime. Its share goes to the others.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from frequenz.channels import BroadcastReceiver, BroadcastSender, Receiver

import distribution as _dist

from ._actor import Actor, new_broadcast_channel
from ._dispatch import Dispatcher, needs_send
from ._errors import OptionsError
from ._graph import ComponentGraph
from ._health import Health
from ._state import BoolArray, FloatArray, IntArray, StateTable

_logger = logging.getLogger(__name__)

_TOL_W = 1e-6


class OutcomeKind(enum.Enum):
    """What happened to a power request."""

    SUCCESS = "success"
    """All needed setpoints were acknowledged and the target is within the fleet bounds."""
    PARTIAL_FAILURE = "partial_failure"
    """Some setpoints failed (see `failed`, `missing_w`)."""
    OUT_OF_BOUNDS = "out_of_bounds"
    """The target is outside the fleet bounds; the nearest feasible power was dispatched."""
    ERROR = "error"
    """The request could not be processed (see `message`); nothing new was sent."""


@dataclass(frozen=True)
class DistributionOutcome:
    """The result of one processed power request."""

    kind: OutcomeKind
    """What happened."""
    target_w: float
    """Requested battery fleet power (W, + = charging)."""
    achieved_w: float
    """Sum of the setpoints now in effect on healthy inverters (W)."""
    setpoints_w: dict[int, float]
    """Allocated setpoint by battery inverter id (W)."""
    failed: dict[int, str] = field(default_factory=dict)
    """Inverters whose setpoint failed, with the reason."""
    missing_w: float = 0.0
    """Feasible target minus achieved power (W)."""
    fleet_lower_w: float = math.nan
    """Lower AC bound of the usable fleet at allocation time (W)."""
    fleet_upper_w: float = math.nan
    """Upper AC bound of the usable fleet at allocation time (W)."""
    request_time_ns: int = 0
    """Monotonic time of `request_power`."""
    done_time_ns: int = 0
    """Monotonic time when the last acknowledgement arrived."""
    sent: int = 0
    """Setpoint calls made for this request."""
    skipped: int = 0
    """Setpoints not re-sent (deadband)."""
    seq: int = 0
    """Request sequence number (superseded requests share the outcome of the newer one)."""
    message: str = ""
    """Human readable detail (allocation status, error)."""

    @property
    def latency_ms(self) -> float:
        """Request → all acknowledgements, in ms."""
        return (self.done_time_ns - self.request_time_ns) / 1e6


def fleet_bounds(
    group_of_inv: IntArray,
    group_of_bat: IntArray,
    n_groups: int,
    inv_lower_w: FloatArray,
    inv_upper_w: FloatArray,
    inv_ok: BoolArray,
    bat_lower_w: FloatArray,
    bat_upper_w: FloatArray,
    bat_soc_pct: FloatArray,
    bat_soc_lower_pct: FloatArray,
    bat_soc_upper_pct: FloatArray,
    bat_ok: BoolArray,
) -> tuple[FloatArray, FloatArray]:
    """AC bounds per battery group (SoC-aware), a simple independent estimate.

    Per group: inverter bounds summed over usable inverters, limited by the usable
    batteries' summed DC bounds (NaN = unlimited); no charging when every usable
    battery is at/above its upper SoC limit, no discharging at/below the lower one;
    0 when the group has no usable inverter or battery.

    Returns:
        (lower_w, upper_w) arrays of length `n_groups`.
    """
    ilo = np.bincount(group_of_inv, np.where(inv_ok, inv_lower_w, 0.0), n_groups)
    ihi = np.bincount(group_of_inv, np.where(inv_ok, inv_upper_w, 0.0), n_groups)
    blo = np.bincount(
        group_of_bat, np.where(bat_ok, np.where(np.isnan(bat_lower_w), -1e18, bat_lower_w), 0.0),
        n_groups,
    )
    bhi = np.bincount(
        group_of_bat, np.where(bat_ok, np.where(np.isnan(bat_upper_w), 1e18, bat_upper_w), 0.0),
        n_groups,
    )
    can_charge = np.bincount(group_of_bat, bat_ok & ~(bat_soc_pct >= bat_soc_upper_pct), n_groups)
    can_dis = np.bincount(group_of_bat, bat_ok & ~(bat_soc_pct <= bat_soc_lower_pct), n_groups)
    lo = np.where(can_dis > 0, np.maximum(ilo, blo), 0.0)
    hi = np.where(can_charge > 0, np.minimum(ihi, bhi), 0.0)
    return np.minimum(lo, 0.0), np.maximum(hi, 0.0)


@dataclass
class _Prepared:
    """An allocated round, ready to send (or already started)."""

    target_w: float
    req_ns: int
    seq: int
    res: Any
    sp: FloatArray
    inv_ok: BoolArray
    bad: bool
    message: str
    indices: list[int]
    powers_w: list[float]
    skipped: int
    started: list[Any] | None


class PowerDistributor(Actor):
    """Turns power requests into dispatched setpoints (see module docstring)."""

    def __init__(
        self,
        graph: ComponentGraph,
        table: StateTable,
        health: Health,
        dispatcher: Dispatcher,
        *,
        soc_exponent: float = 1.0,
        deadband_w: float = 50.0,
        renew_after_s: float = 40.0,
        reallocate_interval_s: float = 1.0,
        name: str = "power-distributor",
    ) -> None:
        """Create the distributor.

        Args:
            graph: The component graph.
            table: The state table.
            health: The health book.
            dispatcher: Sends the setpoints.
            soc_exponent: Passed to `allocate`.
            deadband_w: Changes up to this are not re-sent.
            renew_after_s: Unchanged setpoints are re-sent after this age.
            reallocate_interval_s: Period of the unpublished re-allocation of the last target.
            name: Actor name.
        """
        super().__init__(name)
        self._graph = graph
        self._table = table
        self._health = health
        self.dispatcher: Dispatcher = dispatcher
        """The dispatcher."""
        self._soc_exponent = soc_exponent
        self._deadband_w = deadband_w
        self._renew_after_ns = int(renew_after_s * 1e9)
        self._realloc_s = reallocate_interval_s
        row = table.row_of
        self.inverter_ids: list[int] = list(graph.battery_inverter_ids)
        """Battery inverter ids, group by group (index of the Fleet's inverter arrays)."""
        self.battery_ids: list[int] = list(graph.battery_ids)
        """Battery ids, group by group."""
        self.inv_rows: IntArray = np.array([row[i] for i in self.inverter_ids], dtype=np.int64)
        """State-table rows of the inverters."""
        self.bat_rows: IntArray = np.array([row[b] for b in self.battery_ids], dtype=np.int64)
        """State-table rows of the batteries."""
        inv_idx = {c: k for k, c in enumerate(self.inverter_ids)}
        bat_idx = {c: k for k, c in enumerate(self.battery_ids)}
        self.links: IntArray = np.array(
            [(inv_idx[i], bat_idx[b]) for g in graph.groups for i, b in g.links], dtype=np.int64
        ).reshape(-1, 2)
        """(inverter index, battery index) links."""
        self.n_groups: int = len(graph.groups)
        """Number of battery groups."""
        self.group_of_inv: IntArray = np.array(
            [k for k, g in enumerate(graph.groups) for _ in g.inverter_ids], dtype=np.int64
        )
        """Group index of each inverter."""
        self.group_of_bat: IntArray = np.array(
            [k for k, g in enumerate(graph.groups) for _ in g.battery_ids], dtype=np.int64
        )
        """Group index of each battery."""
        self._pending: tuple[float, int, int] | None = None
        self._prepared: _Prepared | DistributionOutcome | None = None
        self._idle = False
        self._seq = 0
        self._wake = asyncio.Event()
        self._refresh_due = False
        self._last_target: float | None = None
        self._waiters: dict[int, asyncio.Future[DistributionOutcome]] = {}
        # The channel closes when all its receivers are gone: keep one (never read).
        self._result_sender: BroadcastSender[DistributionOutcome]
        self._keepalive: BroadcastReceiver[DistributionOutcome]
        self._result_sender, self._keepalive = new_broadcast_channel(
            "distribution-results", limit=1, warn_on_overflow=False
        )
        self.latencies_ms: collections.deque[float] = collections.deque(maxlen=4096)
        """Dispatch latency (request → all acks) of the last 4096 published outcomes, in ms."""
        self.last_outcome: DistributionOutcome | None = None
        """The most recent published outcome."""
        self.allocations: int = 0
        """allocate() calls."""

    # ----------------------------------------------------------------- requests
    def request_power(self, target_w: float) -> int:
        """Ask for `target_w` (W, + = charging) for the battery fleet; latest wins.

        Args:
            target_w: Fleet target power in W.

        Returns:
            The request's sequence number.

        Raises:
            OptionsError: If `target_w` is not a finite number.
        """
        if isinstance(target_w, bool) or not isinstance(target_w, (int, float, np.floating)):
            raise OptionsError("target_w", target_w, "must be a number of watts")
        if not math.isfinite(target_w):
            raise OptionsError("target_w", target_w, "must be finite")
        self._seq += 1
        req = (float(target_w), time.monotonic_ns(), self._seq)
        self._pending = req
        if self._idle and self._prepared is None:
            # The loop waits for work: allocate and start the calls right here, so
            # the setpoints leave before whatever else is queued on the event loop
            # (the loop task only collects the acknowledgements).
            try:
                self._prepared = self._prepare(*req, inline=True)
                self._pending = None
            except Exception:  # e.g. the channel is closing: the loop task retries
                _logger.exception("preparing %.1f W inline failed", target_w)
        self._wake.set()
        return self._seq

    async def set_power(self, target_w: float) -> DistributionOutcome:
        """Request `target_w` and wait for the outcome that covers it.

        Args:
            target_w: Fleet target power in W.

        Returns:
            The outcome (of this request or of a newer one that superseded it).
        """
        seq = self.request_power(target_w)
        fut: asyncio.Future[DistributionOutcome] = asyncio.get_running_loop().create_future()
        self._waiters[seq] = fut
        try:
            return await fut
        finally:
            self._waiters.pop(seq, None)

    def new_result_receiver(self, limit: int = 64) -> Receiver[DistributionOutcome]:
        """Receive one `DistributionOutcome` per processed request.

        Args:
            limit: Receiver buffer size (oldest outcomes dropped when full).

        Returns:
            The receiver.
        """
        return self._result_sender.subscribe(limit=limit, warn_on_overflow=False)

    # ----------------------------------------------------------------- loop
    def _on_refresh_timer(self) -> None:
        self._refresh_due = True
        self._wake.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle | None = None

        def schedule(delay_s: float) -> None:
            nonlocal handle
            if handle is not None:
                handle.cancel()
            handle = loop.call_later(delay_s, self._on_refresh_timer)

        try:
            async with asyncio.TaskGroup() as tails:
                schedule(self._realloc_s)
                while True:
                    self._idle = True
                    try:
                        await self._wake.wait()
                    finally:
                        self._idle = False
                    self._wake.clear()
                    prepared, self._prepared = self._prepared, None
                    if prepared is None and self._pending is not None:
                        pending, self._pending = self._pending, None
                        prepared = self._prepare(*pending)
                    if prepared is not None:
                        outcome = await self._finish(prepared, tails)
                        seq = outcome.seq
                        if self._pending is not None:
                            self._wake.set()  # a newer request came in meanwhile
                        self.last_outcome = outcome
                        self.latencies_ms.append(outcome.latency_ms)
                        for s in [s for s in self._waiters if s <= seq]:
                            fut = self._waiters.pop(s)
                            if not fut.done():
                                fut.set_result(outcome)
                        await self._result_sender.send(outcome)
                        if outcome.kind is OutcomeKind.PARTIAL_FAILURE:
                            # Move the failed components' share to the others now.
                            self._on_refresh_timer()
                    elif self._refresh_due:
                        self._refresh_due = False
                        schedule(self._realloc_s)
                        if self._last_target is not None:
                            out = await self._finish(
                                self._prepare(self._last_target, time.monotonic_ns(), 0), tails
                            )
                            if out.kind is OutcomeKind.PARTIAL_FAILURE:
                                schedule(min(0.05, self._realloc_s))
        finally:
            if handle is not None:
                handle.cancel()

    def build_fleet(self, now_ns: int) -> tuple[Any, BoolArray, BoolArray]:
        """Snapshot the state table into a `distribution.Fleet`.

        Args:
            now_ns: Current monotonic time (health rules).

        Returns:
            (fleet, inverter usable mask, battery usable mask).
        """
        t = self._table
        ok = self._health.ok_mask(now_ns)
        ir, br = self.inv_rows, self.bat_rows
        inv_ok = ok[ir]
        cap = t.capacity_wh[br]
        # A non-positive capacity is live data gone wrong, not a structural error:
        # exclude the battery (Fleet raises on negative capacity by contract).
        bat_ok = ok[br] & np.isfinite(t.soc_pct[br]) & np.isfinite(cap) & (cap > 0.0)

        def z(a: FloatArray, mask: BoolArray, fill: float) -> FloatArray:
            return np.where(mask & np.isfinite(a), a, fill)

        soc = t.soc_pct[br]
        fleet = _dist.Fleet(
            inverter_lower_w=z(t.power_lower_w[ir], inv_ok, 0.0),
            inverter_upper_w=z(t.power_upper_w[ir], inv_ok, 0.0),
            inverter_excl_lower_w=z(t.power_excl_lower_w[ir], inv_ok, 0.0),
            inverter_excl_upper_w=z(t.power_excl_upper_w[ir], inv_ok, 0.0),
            battery_soc_pct=np.where(np.isfinite(soc), soc, 50.0),
            battery_soc_lower_pct=np.nan_to_num(t.soc_lower_pct[br], nan=0.0),
            battery_soc_upper_pct=np.nan_to_num(t.soc_upper_pct[br], nan=100.0),
            battery_capacity_wh=z(t.capacity_wh[br], bat_ok, 1.0),
            battery_lower_w=z(t.power_lower_w[br], bat_ok, -1e12),
            battery_upper_w=z(t.power_upper_w[br], bat_ok, 1e12),
            links=self.links,
            inverter_available=inv_ok,
            battery_available=bat_ok,
        )
        return fleet, inv_ok, bat_ok

    def _check_bounds(self, sp: FloatArray) -> BoolArray:
        """Independent re-check: True where a non-zero setpoint violates the snapshot bounds."""
        t = self._table
        ir = self.inv_rows
        lo, hi = t.power_lower_w[ir], t.power_upper_w[ir]
        el, eu = t.power_excl_lower_w[ir], t.power_excl_upper_w[ir]
        with np.errstate(invalid="ignore"):
            inside = (sp >= lo - _TOL_W) & (sp <= hi + _TOL_W)
            ok = inside & ~((sp > el + _TOL_W) & (sp < eu - _TOL_W))
        bad: BoolArray = (sp != 0.0) & ~ok
        return bad

    def _prepare(
        self, target_w: float, req_ns: int, seq: int, *, inline: bool = False
    ) -> _Prepared | DistributionOutcome:
        """Allocate `target_w` and decide what to send (synchronous).

        With `inline`, the first calls of the round are also started here
        (`Dispatcher.start_calls`). Returns an ERROR outcome when the allocation
        failed (nothing is sent then).
        """
        self._last_target = target_w
        now_ns = time.monotonic_ns()
        disp = self.dispatcher
        if disp.held is not None:
            # The site holds every setpoint (an unchecked reconnect, another site,
            # another client): nothing is allocated or sent; the last target is
            # re-run by the refresh timer once the hold is lifted.
            return DistributionOutcome(
                kind=OutcomeKind.ERROR,
                target_w=target_w,
                achieved_w=float(np.nansum(np.where(disp.last_ok, disp.last_w, 0.0))),
                setpoints_w={},
                request_time_ns=req_ns,
                done_time_ns=now_ns,
                seq=seq,
                message=f"setpoints held: {disp.held}",
            )
        try:
            fleet, inv_ok, _bat_ok = self.build_fleet(now_ns)
            res = _dist.allocate(fleet, target_w, soc_exponent=self._soc_exponent)
            self.allocations += 1
            sp = np.asarray(res.setpoints_w, dtype=np.float64)
            sp = np.where(inv_ok, sp, 0.0)
            bad = self._check_bounds(sp)
        except Exception as exc:
            _logger.exception("allocation for %.1f W failed", target_w)
            return DistributionOutcome(
                kind=OutcomeKind.ERROR,
                target_w=target_w,
                achieved_w=float(np.nansum(np.where(disp.last_ok, disp.last_w, 0.0))),
                setpoints_w={},
                request_time_ns=req_ns,
                done_time_ns=time.monotonic_ns(),
                seq=seq,
                message=f"allocation failed: {type(exc).__name__}: {exc}",
            )
        message = str(getattr(res.status, "name", res.status))
        if bad.any():
            bad_ids = [self.inverter_ids[i] for i in np.flatnonzero(bad)]
            _logger.error("allocation gave out-of-bounds setpoints for %s; sending 0 W", bad_ids)
            sp = np.where(bad, 0.0, sp)
            message += f"; out-of-bounds setpoints replaced by 0 W for {bad_ids}"
        send = needs_send(
            sp, disp.last_w, disp.last_sent_ns, disp.last_ok, now_ns, self._deadband_w,
            self._renew_after_ns,
        )
        # An excluded inverter (stale, no data, bad data, error state, unusable
        # bounds, waiting for a retry after a failed setpoint) is never commanded:
        # what it is doing now is unknown. Its last setpoint is forgotten as
        # acknowledged, so the first allocation after it is back re-sends it.
        send &= inv_ok
        disp.mark_unknown(~inv_ok)
        idx = np.flatnonzero(send).tolist()
        powers = sp[idx].tolist()
        skipped = int(np.count_nonzero(~send & inv_ok & ~np.isnan(disp.last_w)))
        disp.stats.setpoints_skipped_deadband += skipped
        return _Prepared(
            target_w=target_w, req_ns=req_ns, seq=seq, res=res, sp=sp, inv_ok=inv_ok,
            bad=bool(bad.any()), message=message, indices=idx, powers_w=powers,
            skipped=skipped, started=disp.start_calls(idx, powers) if inline and idx else None,
        )

    async def _finish(
        self, prep: _Prepared | DistributionOutcome, tails: asyncio.TaskGroup
    ) -> DistributionOutcome:
        """Send (or collect) the prepared round's calls; build the outcome."""
        if isinstance(prep, DistributionOutcome):
            return prep
        disp = self.dispatcher
        result = await disp.send(prep.indices, prep.powers_w, tails, started=prep.started)
        inv_ok, res, target_w = prep.inv_ok, prep.res, prep.target_w
        achieved = float(np.sum(np.where(disp.last_ok & inv_ok, np.nan_to_num(disp.last_w), 0.0)))
        f_lo = float(getattr(res, "fleet_lower_w", math.nan))
        f_hi = float(getattr(res, "fleet_upper_w", math.nan))
        feasible = min(max(target_w, f_lo), f_hi) if math.isfinite(f_lo + f_hi) else target_w
        if result.failed:
            kind = OutcomeKind.PARTIAL_FAILURE
        elif prep.bad:
            kind = OutcomeKind.ERROR
        elif math.isfinite(f_lo + f_hi) and not (f_lo - 1e-3 <= target_w <= f_hi + 1e-3):
            kind = OutcomeKind.OUT_OF_BOUNDS
        else:
            kind = OutcomeKind.SUCCESS
        return DistributionOutcome(
            kind=kind,
            target_w=target_w,
            achieved_w=achieved,
            setpoints_w=dict(zip(self.inverter_ids, prep.sp.tolist(), strict=True)),
            failed=result.failed,
            missing_w=feasible - achieved if result.failed else 0.0,
            fleet_lower_w=f_lo,
            fleet_upper_w=f_hi,
            request_time_ns=prep.req_ns,
            done_time_ns=result.done_ns,
            sent=result.sent,
            skipped=prep.skipped,
            seq=prep.seq,
            message=prep.message,
        )

    async def aclose(self) -> None:
        """Close the result channel and fail pending `set_power` waiters."""
        prepared, self._prepared = self._prepared, None
        if isinstance(prepared, _Prepared) and prepared.started:
            for call in prepared.started:  # started but never collected
                call.cancel()
        for fut in self._waiters.values():
            if not fut.done():
                fut.cancel()
        await self._result_sender.aclose()
