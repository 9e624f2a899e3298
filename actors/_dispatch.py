"""Dispatch: concurrent SetElectricalComponentPower calls with deadline and lifetime.

A dispatcher sends active setpoints (W), or with ``reactive`` reactive ones (VAr);
with reactive control the site runs one of each over the same inverters, with the
same rules below and the same health book.

All calls of a round are put on the wire before any response is awaited. The first
response of each call is its acknowledgement: ACCEPTED and SUCCESS are success;
REJECTED, FAILED, OVERRIDDEN, a stream that ends without a status and any gRPC error
(including the deadline) are failures that feed `Health`; UNAUTHENTICATED and
PERMISSION_DENIED also go to the `on_fatal` callback (the server refuses this client).
After ACCEPTED, the rest of
the response stream is read by a task in the caller's TaskGroup: a later FAILED, or
OVERRIDDEN by someone else than this dispatcher, also feeds `Health`. OVERRIDDEN by
someone else means another client commanded the inverter: it is counted per inverter
(`DispatchStats.overridden_by_others`, logged at debug level, not per setpoint), the
inverter no longer holds our setpoint (`last_w` becomes NaN, so no 0 W goes to it at
shutdown), and `on_overridden` gets the inverter id.

Holds (`hold`, `release`): while any hold is set, nothing is sent, or only 0 W
setpoints if every hold allows them. The site holds the dispatcher while it checks
that the server after a reconnect is still the same site, for good once it is not,
and when another client controls the site.

Resend rule (`needs_send`, a pure function): a setpoint is sent when it differs from
the last one sent by more than `deadband_w`, when the last one is older than
`lifetime - renew_margin`, when the last one failed, or when it goes to exactly 0 W
from something else; and the changes held back by the deadband are all sent when
together they exceed `deadband_w` (the fleet's total never drifts from the
allocation by more than one deadband). A 0 W setpoint to an inverter never commanded
is not sent.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
import numpy as np

from ._api import (
    STATUS_ACCEPTED,
    STATUS_FAILED,
    STATUS_OVERRIDDEN,
    STATUS_REJECTED,
    STATUS_SUCCESS,
    SetpointCall,
)
from ._client import MicrogridApiClient, is_fatal
from ._errors import ApiError
from ._health import Health
from ._state import BoolArray, FloatArray, IntArray

_logger = logging.getLogger(__name__)

_YIELD_EVERY = 64
_INLINE_CALLS = 16
"""Calls `Dispatcher.start_calls` starts synchronously (the rest are left to `send`)."""

_STATUS_NAMES = {
    STATUS_ACCEPTED: "ACCEPTED",
    STATUS_REJECTED: "REJECTED",
    STATUS_FAILED: "FAILED",
    STATUS_SUCCESS: "SUCCESS",
    STATUS_OVERRIDDEN: "OVERRIDDEN",
}


def needs_send(
    new_w: FloatArray,
    last_w: FloatArray,
    last_sent_ns: IntArray,
    last_ok: BoolArray,
    now_ns: int,
    deadband_w: float,
    renew_after_ns: int,
) -> BoolArray:
    """Which setpoints must be (re-)sent (see the module docstring).

    Args:
        new_w: New setpoints (W).
        last_w: Last sent setpoints (W, NaN = never sent).
        last_sent_ns: Monotonic time of the last send.
        last_ok: Whether the last send succeeded.
        now_ns: Current monotonic time.
        deadband_w: Changes up to this are not re-sent.
        renew_after_ns: Age after which an unchanged setpoint is re-sent.

    Returns:
        Boolean mask of setpoints to send.
    """
    never = np.isnan(last_w)
    with np.errstate(invalid="ignore"):
        delta = new_w - last_w
        changed = np.abs(delta) > deadband_w
    due = (now_ns - last_sent_ns) >= renew_after_ns
    to_zero = (new_w == 0.0) & (last_w != 0.0)
    send: BoolArray = np.where(never, new_w != 0.0, changed | due | ~last_ok | to_zero)
    # The deadband is per inverter; the fleet's total must not drift by more than
    # one deadband either: when the changes held back add up to more, they go out.
    held = ~send & ~never & (delta != 0.0)
    if held.any() and abs(float(delta[held].sum())) > deadband_w:
        send |= held
    return send


class SetpointBook:
    """What each battery inverter was last sent (W, NaN = never), when, and whether acknowledged."""

    def __init__(self, n: int) -> None:
        """Create an empty book.

        Args:
            n: Number of inverters (index i of every array).
        """
        self.last_w: FloatArray = np.full(n, np.nan)
        """Last sent setpoint per inverter (W; NaN = never)."""
        self.last_sent_ns: IntArray = np.zeros(n, dtype=np.int64)
        """Monotonic time of the last send."""
        self.last_ok: BoolArray = np.ones(n, dtype=np.bool_)
        """Whether the last send was acknowledged."""

    def mark_unknown(self, which: BoolArray | int) -> None:
        """Forget that the setpoints of these inverters were acknowledged.

        Use it when what an inverter does now is unknown (it was excluded, or its
        server restarted): `needs_send` then re-sends its next setpoint even within
        the deadband.

        Args:
            which: Boolean mask over the inverters, or one inverter index.
        """
        self.last_ok[which] = False

    def acknowledged(self, i: int, health: Health, row: int) -> None:
        """Inverter `i` (state-table `row`) accepted its setpoint: it is in effect."""
        self.last_ok[i] = True
        health.on_success(row)

    def refused(self, i: int, health: Health, row: int, now_ns: int, reason: str) -> float:
        """Inverter `i` did not take its setpoint: re-send it, and back off (health).

        Returns:
            The retry delay (s) the health book set.
        """
        self.last_ok[i] = False
        return health.on_failure(row, now_ns, reason)

    def record(self, indices: list[int], powers_w: list[float], now_ns: int) -> None:
        """Note that these setpoints were sent at `now_ns`.

        Args:
            indices: Inverter indices.
            powers_w: Setpoints (W), same length.
            now_ns: Monotonic time of the send.
        """
        for i, p in zip(indices, powers_w, strict=True):
            self.last_w[i] = p
            self.last_sent_ns[i] = now_ns


@dataclass
class DispatchStats:
    """Counters of the dispatcher."""

    setpoints_sent: int = 0
    """Calls started."""
    setpoints_ok: int = 0
    """Calls acknowledged with ACCEPTED or SUCCESS."""
    setpoints_failed: collections.Counter[str] = field(default_factory=collections.Counter)
    """Failed calls by reason (response status or gRPC status name)."""
    setpoints_skipped_deadband: int = 0
    """Setpoints not re-sent because they did not change beyond the deadband."""
    overridden_by_others: collections.Counter[int] = field(default_factory=collections.Counter)
    """Setpoints of ours overridden by another client's, by inverter id."""


@dataclass(frozen=True)
class RoundResult:
    """What one dispatch round did."""

    sent: int
    """Calls made."""
    failed: dict[int, str]
    """Failed inverter ids and reasons."""
    done_ns: int
    """Monotonic time when the last acknowledgement arrived."""


class Dispatcher(SetpointBook):
    """Sends setpoints to a fixed list of inverters and remembers what was sent (its book)."""

    def __init__(
        self,
        client: MicrogridApiClient,
        health: Health,
        inverter_ids: list[int],
        inverter_rows: IntArray,
        *,
        lifetime_s: int,
        timeout_s: float,
        on_fatal: Callable[[ApiError], None] | None = None,
        on_overridden: Callable[[int], None] | None = None,
        reactive: bool = False,
    ) -> None:
        """Create the dispatcher.

        Args:
            client: The API client.
            health: Failure book (rows of the state table).
            inverter_ids: Inverter ids (index i of every array below).
            inverter_rows: State-table row of each inverter.
            lifetime_s: request_lifetime sent with every setpoint.
            timeout_s: Deadline of every call.
            on_fatal: Called with the `ApiError` when the server refuses this client
                (UNAUTHENTICATED, PERMISSION_DENIED): retrying cannot help.
            on_overridden: Called with the inverter id when a setpoint of ours was
                overridden by one this dispatcher did not send (another client).
            reactive: Send reactive-power setpoints (VAr) instead of active ones: the
                same calls, deadlines, lifetimes, health and holds, another book.
        """
        self.reactive: bool = reactive
        """Whether this dispatcher sends reactive setpoints (VAr)."""
        self._unit = "VAr" if reactive else "W"
        self._client = client
        self._health = health
        self._on_fatal = on_fatal
        self._on_overridden = on_overridden
        self._holds: dict[str, bool] = {}  # reason -> whether 0 W may still be sent
        self.inverter_ids: list[int] = inverter_ids
        """Inverter ids."""
        self._rows = [int(r) for r in inverter_rows]
        self.inverter_rows: IntArray = np.asarray(inverter_rows, dtype=np.int64)
        """State-table row of each inverter."""
        n = len(inverter_ids)
        super().__init__(n)
        self._send_seq = np.zeros(n, dtype=np.int64)
        # Open response streams (tails) by inverter index; a new setpoint to the same
        # inverter cancels the old call (its later status no longer matters).
        self._open: dict[int, SetpointCall] = {}
        self.lifetime_s: int = lifetime_s
        """request_lifetime in seconds."""
        self.timeout_s: float = timeout_s
        """Call deadline in seconds."""
        self.stats: DispatchStats = DispatchStats()
        """Counters."""
        self.last_first_ack_ns: int = 0
        """Monotonic time the first response of the last round arrived."""

    def hold(self, reason: str, *, zero_ok: bool = False) -> None:
        """Send nothing from now on until `release(reason)` (idempotent per reason).

        Calls already on the wire are not affected.

        Args:
            reason: Names the hold (several can be set at once).
            zero_ok: Whether 0 W setpoints may still be sent under this hold.
        """
        self._holds[reason] = zero_ok and self._holds.get(reason, True)

    def release(self, reason: str) -> None:
        """Lift the hold named `reason` (no-op if it is not set).

        Args:
            reason: As given to `hold`.
        """
        self._holds.pop(reason, None)

    @property
    def held(self) -> str | None:
        """The first hold set now (None: setpoints may be sent)."""
        return next(iter(self._holds), None)

    @property
    def zero_held(self) -> str | None:
        """The first hold that withholds even 0 W (None: 0 W may be sent)."""
        return next((reason for reason, zero_ok in self._holds.items() if not zero_ok), None)

    def _fail(
        self, i: int, reason: str, now_ns: int, details: str | None = None, *, log: bool = True
    ) -> None:
        self.stats.setpoints_failed[reason] += 1
        delay = self.refused(i, self._health, int(self._rows[i]), now_ns, reason)
        (_logger.warning if log else _logger.debug)(
            "setpoint %.1f %s to inverter %d failed (%s%s); retry in %.1f s",
            self.last_w[i],
            self._unit,
            self.inverter_ids[i],
            reason,
            f": {details}" if details else "",
            delay,
        )

    def start_calls(self, indices: list[int], powers_w: list[float]) -> list[SetpointCall]:
        """Start the first calls of a round synchronously (no await), for `send`.

        grpc.aio puts a call on the wire from a task of its own, so starting the
        calls right where the request is made (e.g. in a telemetry listener) lets
        them leave before tasks already queued on the loop. Only the first
        `_INLINE_CALLS` are started here: each costs ~15 µs and none leaves
        before the caller returns to the loop, so a large round started here
        would hold back its own first setpoint. `send` starts the rest.

        Args:
            indices: Inverter indices.
            powers_w: Setpoints (W), same length.

        Returns:
            The started calls: those of ``indices[:len(result)]``.
        """
        if self._holds:
            return []  # `send` applies the holds
        head, head_w = indices[:_INLINE_CALLS], powers_w[:_INLINE_CALLS]
        lifetime, ids = self.lifetime_s, self.inverter_ids
        start = self._setter()
        calls = [
            start(ids[i], p, lifetime, self.timeout_s)
            for i, p in zip(head, head_w, strict=True)
        ]
        self._record(head, head_w)
        return calls

    def _setter(self) -> Callable[[int, float, int, float], SetpointCall]:
        """The client's call that puts one of this dispatcher's setpoints on the wire."""
        client = self._client
        return client.set_reactive_call if self.reactive else client.set_power_call

    def _record(self, indices: list[int], powers_w: list[float]) -> None:
        """Bookkeeping of started calls: what each inverter was last sent, and when."""
        self.record(indices, powers_w, time.monotonic_ns())
        for i in indices:
            self._send_seq[i] += 1
            old = self._open.pop(i, None)
            if old is not None:
                old.cancel()
        self.stats.setpoints_sent += len(indices)

    async def send(
        self,
        indices: list[int],
        powers_w: list[float],
        tails: asyncio.TaskGroup | None,
        *,
        timeout_s: float | None = None,
        started: list[SetpointCall] | None = None,
        log_failures: bool = True,
    ) -> RoundResult:
        """Send setpoints concurrently and wait for every first response.

        The round in three steps: what the holds let through (`_let_through`),
        every call on the wire (`_start_rest`), then every acknowledgement read
        (`_read_acks`).

        Args:
            indices: Inverter indices.
            powers_w: Setpoints (W), same length.
            tails: TaskGroup for the readers of the rest of each response stream
                (None = do not read the tails; calls are cancelled after the ack).
            timeout_s: Deadline override (e.g. a short one at shutdown).
            started: The calls of the first ``len(started)`` indices, already
                started by `start_calls` (None = start them all here).
            log_failures: Log each failed call (False: the caller reports the round,
                e.g. the safe stop's one line; failures are still counted).

        Returns:
            The round result.
        """
        calls = list(started) if started is not None else []
        if self._holds:
            indices, powers_w = self._let_through(indices, powers_w, len(calls))
        if len(calls) < len(indices):
            timeout = self.timeout_s if timeout_s is None else timeout_s
            await self._start_rest(calls, indices, powers_w, timeout)
        failed = await self._read_acks(indices, calls, tails, log_failures)
        return RoundResult(sent=len(calls), failed=failed, done_ns=time.monotonic_ns())

    def _let_through(
        self, indices: list[int], powers_w: list[float], started: int
    ) -> tuple[list[int], list[float]]:
        """What the holds let through: the `started` calls (already on the wire),
        then only the 0 W setpoints, and those only if every hold allows them."""
        zero_ok = self.zero_held is None
        keep = [k for k in range(started, len(indices)) if zero_ok and powers_w[k] == 0.0]
        return (
            indices[:started] + [indices[k] for k in keep],
            powers_w[:started] + [powers_w[k] for k in keep],
        )

    async def _start_rest(
        self,
        calls: list[SetpointCall],
        indices: list[int],
        powers_w: list[float],
        timeout_s: float,
    ) -> None:
        """Start the calls of ``indices[len(calls):]``, appending them to `calls`.

        Every call is put on the wire before any response is awaited. grpc.aio
        starts a call from a task, so this yields to the loop after the first call
        it starts (it leaves at once) and then every `_YIELD_EVERY` calls. If
        cancelled, every call of the round is cancelled.
        """
        lifetime, ids = self.lifetime_s, self.inverter_ids
        start = self._setter()
        rest, rest_w = indices[len(calls):], powers_w[len(calls):]
        try:
            for k, (i, p) in enumerate(zip(rest, rest_w, strict=True)):
                calls.append(start(ids[i], p, lifetime, timeout_s))
                if k % _YIELD_EVERY == 0:
                    await asyncio.sleep(0)
        except asyncio.CancelledError:
            for c in calls:
                c.cancel()
            raise
        self._record(rest, rest_w)

    async def _read_acks(
        self,
        indices: list[int],
        calls: list[SetpointCall],
        tails: asyncio.TaskGroup | None,
        log_failures: bool,
    ) -> dict[int, str]:
        """Read the first response of every call, in order; book each outcome.

        An ACCEPTED call's stream is handed to a `_tail` reader in `tails` (when
        given); every other call is cancelled once read. If cancelled, every call
        of the round is cancelled.

        Returns:
            Failed inverter ids and reasons.
        """
        failed: dict[int, str] = {}
        health, rows, ids = self._health, self._rows, self.inverter_ids
        first = True
        for i, call in zip(indices, calls, strict=True):
            try:
                status = await call.read()
                if first:
                    first = False
                    self.last_first_ack_ns = time.monotonic_ns()
            except grpc.aio.AioRpcError as exc:
                failed[ids[i]] = self._call_failed(i, exc, log_failures)
                continue
            except asyncio.CancelledError:
                for c in calls:
                    c.cancel()
                raise
            if status is None:
                failed[ids[i]] = "NO_STATUS"
                self._fail(i, "NO_STATUS", time.monotonic_ns(), log=log_failures)
                continue
            if status in (STATUS_ACCEPTED, STATUS_SUCCESS):
                self.acknowledged(i, health, rows[i])
                self.stats.setpoints_ok += 1
                if status == STATUS_ACCEPTED and tails is not None:
                    self._open[i] = call
                    tails.create_task(self._tail(i, call, int(self._send_seq[i])))
                else:
                    call.cancel()
            else:
                failed[ids[i]] = self._refused(i, status, log_failures)
                call.cancel()
        return failed

    def _call_failed(self, i: int, exc: grpc.aio.AioRpcError, log: bool) -> str:
        """Book a call that ended in a gRPC error; tell `on_fatal` of a refusal.

        Returns:
            The reason (the gRPC status name).
        """
        code = exc.code()
        reason = code.name if code is not None else "UNKNOWN"
        fatal = self._on_fatal is not None and is_fatal(exc)
        self._fail(i, reason, time.monotonic_ns(), exc.details(), log=log and not fatal)
        if fatal and self._on_fatal is not None:
            self._on_fatal(
                self._client.error(exc, self._method, self.inverter_ids[i])
            )
        return reason

    @property
    def _method(self) -> str:
        api = self._client.api
        return api.reactive_method if self.reactive else api.setpoint_method

    def _refused(self, i: int, status: int, log: bool) -> str:
        """Book a first response that is neither ACCEPTED nor SUCCESS.

        Returns:
            The reason (the response status name).
        """
        reason = _STATUS_NAMES.get(status, f"STATUS_{status}")
        if status == STATUS_OVERRIDDEN:  # our calls to one inverter never overlap
            self._overridden_by_other(i)
        else:
            self._fail(i, reason, time.monotonic_ns(), log=log)
        return reason

    def _overridden_by_other(self, i: int) -> None:
        # Another client's setpoint replaced ours: the inverter no longer holds ours.
        cid = self.inverter_ids[i]
        self._fail(i, "OVERRIDDEN", time.monotonic_ns(), "by another client", log=False)
        self.last_w[i] = np.nan
        self.stats.overridden_by_others[cid] += 1
        if self._on_overridden is not None:
            self._on_overridden(cid)

    async def _tail(self, i: int, call: SetpointCall, seq: int) -> None:
        try:
            while True:
                status = await call.read()
                if status is None:
                    return
                if status in (STATUS_SUCCESS, STATUS_ACCEPTED):
                    continue
                if status == STATUS_OVERRIDDEN and self._send_seq[i] != seq:
                    return  # overridden by our own newer setpoint
                if status == STATUS_OVERRIDDEN:
                    self._overridden_by_other(i)
                elif self._send_seq[i] == seq:
                    self._fail(i, _STATUS_NAMES.get(status, f"STATUS_{status}"),
                               time.monotonic_ns())
                return
        except grpc.aio.AioRpcError:
            return  # deadline / cancel after a successful ack: not a failure
        except asyncio.CancelledError:
            if call.cancelled() and self._open.get(i) is not call:
                return  # superseded by a newer setpoint to the same inverter
            raise
        finally:
            call.cancel()
            if self._open.get(i) is call:
                del self._open[i]
