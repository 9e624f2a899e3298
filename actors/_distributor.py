"""The power distributor: target W for the battery fleet (+ PV / EV caps) → allocation → dispatch.

A request may carry ``must_w``, what the strategies' bounds require of batteries,
PV curtailment and EV limits together (`RoundPlanner.plan`); without it PV
inverters and EV chargers run uncapped.

`request_power(target_w)` is non-blocking: it stores the request in a one-slot
mailbox and wakes the distributor, so while a dispatch is in flight a newer request
replaces an older pending one (latest wins). For every processed request the
distributor plans the round with its `RoundPlanner` (synchronous, clock-free, the
same code the replay runs: snapshot the `StateTable` into a `distribution.Fleet`,
health deciding availability; `distribution.allocate`; an independent re-check of
every setpoint against the snapshot's bounds; the deadband/renewal rule
`needs_send`), dispatches what the plan says, and publishes a `DistributionOutcome`.
Every `reallocate_interval_s` (and right after a partial failure) it re-runs the
last target without publishing, which renews lifetimes and moves power away from /
back to components whose health changed.

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

from ._actor import Actor, new_broadcast_channel
from ._dispatch import Dispatcher
from ._errors import OptionsError
from ._graph import ComponentGraph
from ._health import Health
from ._plan import FleetIndex, PlannedRound, RoundPlanner
from ._state import BoolArray, IntArray, StateTable

_logger = logging.getLogger(__name__)

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
    """Sum of the setpoints now in effect on healthy battery inverters (W)."""
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
    caps_w: dict[int, float] = field(default_factory=dict)
    """PV caps and EV charge limits of this round by component id (W; uncapped ones
    are not listed)."""

    @property
    def latency_ms(self) -> float:
        """Request → all acknowledgements, in ms."""
        return (self.done_time_ns - self.request_time_ns) / 1e6


@dataclass
class _Prepared:
    """A planned round, ready to send (or its first calls already started)."""

    req_ns: int
    seq: int
    round: PlannedRound
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
        planner: RoundPlanner | None = None,
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
            planner: The round planner (`SiteCore.planner`); None builds one from
                `graph`, `table`, `health` and the three settings above.
            name: Actor name.
        """
        super().__init__(name)
        self.dispatcher: Dispatcher = dispatcher
        """The dispatcher."""
        self._realloc_s = reallocate_interval_s
        self.planner: RoundPlanner = planner or RoundPlanner(
            FleetIndex.of(graph, table),
            table,
            health,
            soc_exponent=soc_exponent,
            deadband_w=deadband_w,
            renew_after_s=renew_after_s,
        )
        """Plans each round (allocation, bounds re-check, deadband/renewal rule)."""
        ix = self.planner.index
        self.inverter_ids: list[int] = ix.inverter_ids
        """Battery inverter ids, group by group (index of the Fleet's inverter arrays)."""
        self.inv_rows: IntArray = ix.inv_rows
        """State-table rows of the inverters."""
        self._pending: tuple[float, int, int, float] | None = None
        self._prepared: _Prepared | DistributionOutcome | None = None
        self._idle = False
        self._seq = 0
        self._wake = asyncio.Event()
        self._refresh_due = False
        self._last_target: float | None = None
        self._last_must = math.nan
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
    def request_power(self, target_w: float, must_w: float = math.nan) -> int:
        """Ask for `target_w` (W, + = charging) for the battery fleet; latest wins.

        Args:
            target_w: Fleet target power in W.
            must_w: What the strategies' bounds require of batteries + PV + EV (W;
                nan = nothing: PV inverters and EV chargers run uncapped;
                `RoundPlanner.plan`).

        Returns:
            The request's sequence number.

        Raises:
            OptionsError: If `target_w` is not a finite number, or `must_w` is infinite.
        """
        if isinstance(target_w, bool) or not isinstance(target_w, (int, float, np.floating)):
            raise OptionsError("target_w", target_w, "must be a number of watts")
        if not math.isfinite(target_w):
            raise OptionsError("target_w", target_w, "must be finite")
        if math.isinf(must_w):
            raise OptionsError("must_w", must_w, "must be finite or nan")
        self._seq += 1
        req = (float(target_w), time.monotonic_ns(), self._seq, float(must_w))
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

    async def set_power(self, target_w: float, must_w: float = math.nan) -> DistributionOutcome:
        """Request `target_w` and wait for the outcome that covers it.

        Args:
            target_w: Fleet target power in W.
            must_w: As in `request_power`.

        Returns:
            The outcome (of this request or of a newer one that superseded it).
        """
        seq = self.request_power(target_w, must_w)
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
                                self._prepare(self._last_target, time.monotonic_ns(), 0,
                                              self._last_must), tails
                            )
                            if out.kind is OutcomeKind.PARTIAL_FAILURE:
                                schedule(min(0.05, self._realloc_s))
        finally:
            if handle is not None:
                handle.cancel()

    def build_fleet(self, now_ns: int) -> tuple[Any, BoolArray, BoolArray]:
        """Snapshot the state table into a `distribution.Fleet` (`RoundPlanner.build_fleet`).

        Args:
            now_ns: Current monotonic time (health rules).

        Returns:
            (fleet, inverter usable mask, battery usable mask).
        """
        return self.planner.build_fleet(now_ns)

    def _error(self, target_w: float, req_ns: int, seq: int, message: str) -> DistributionOutcome:
        disp = self.dispatcher
        return DistributionOutcome(
            kind=OutcomeKind.ERROR,
            target_w=target_w,
            achieved_w=float(np.nansum(np.where(disp.last_ok, disp.last_w, 0.0))),
            setpoints_w={},
            request_time_ns=req_ns,
            done_time_ns=time.monotonic_ns(),
            seq=seq,
            message=message,
        )

    def _prepare(
        self, target_w: float, req_ns: int, seq: int, must_w: float = math.nan, *,
        inline: bool = False,
    ) -> _Prepared | DistributionOutcome:
        """Plan `target_w` (`RoundPlanner.plan`) and, with `inline`, start its first calls.

        Returns an ERROR outcome when the setpoints are held or the allocation
        failed (nothing is sent then).
        """
        self._last_target = target_w
        self._last_must = must_w
        disp = self.dispatcher
        if disp.held is not None:
            # The site holds every setpoint (an unchecked reconnect, another site,
            # another client): nothing is allocated or sent; the last target is
            # re-run by the refresh timer once the hold is lifted.
            return self._error(target_w, req_ns, seq, f"setpoints held: {disp.held}")
        try:
            planned = self.planner.plan(target_w, time.monotonic_ns(), disp, must_w)
        except Exception as exc:
            _logger.exception("allocation for %.1f W failed", target_w)
            return self._error(
                target_w, req_ns, seq, f"allocation failed: {type(exc).__name__}: {exc}"
            )
        self.allocations += 1
        disp.stats.setpoints_skipped_deadband += planned.skipped
        idx = planned.indices
        started = disp.start_calls(idx, planned.powers_w) if inline and idx else None
        return _Prepared(req_ns=req_ns, seq=seq, round=planned, started=started)

    async def _finish(
        self, prep: _Prepared | DistributionOutcome, tails: asyncio.TaskGroup
    ) -> DistributionOutcome:
        """Send (or collect) the prepared round's calls; build the outcome."""
        if isinstance(prep, DistributionOutcome):
            return prep
        disp = self.dispatcher
        planned = prep.round
        result = await disp.send(planned.indices, planned.powers_w, tails, started=prep.started)
        inv_ok, res, target_w = planned.inverter_ok, planned.result, planned.target_w
        nb = self.planner.index.n_battery
        achieved = float(np.sum(np.where(disp.last_ok[:nb] & inv_ok[:nb],
                                         np.nan_to_num(disp.last_w[:nb]), 0.0)))
        f_lo = float(getattr(res, "fleet_lower_w", math.nan))
        f_hi = float(getattr(res, "fleet_upper_w", math.nan))
        feasible = min(max(target_w, f_lo), f_hi) if math.isfinite(f_lo + f_hi) else target_w
        if result.failed:
            kind = OutcomeKind.PARTIAL_FAILURE
        elif planned.bad:
            kind = OutcomeKind.ERROR
        elif math.isfinite(f_lo + f_hi) and not (f_lo - 1e-3 <= target_w <= f_hi + 1e-3):
            kind = OutcomeKind.OUT_OF_BOUNDS
        else:
            kind = OutcomeKind.SUCCESS
        return DistributionOutcome(
            kind=kind,
            target_w=target_w,
            achieved_w=achieved,
            setpoints_w=dict(zip(self.inverter_ids[:nb], planned.setpoints_w[:nb].tolist(),
                                 strict=True)),
            failed=result.failed,
            missing_w=feasible - achieved if result.failed else 0.0,
            fleet_lower_w=f_lo,
            fleet_upper_w=f_hi,
            request_time_ns=prep.req_ns,
            done_time_ns=result.done_ns,
            sent=result.sent,
            skipped=planned.skipped,
            seq=prep.seq,
            message=planned.message,
            caps_w=({} if planned.capped is None else
                    {self.inverter_ids[i]: float(planned.setpoints_w[i])
                     for i in np.flatnonzero(planned.capped).tolist()}),
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
