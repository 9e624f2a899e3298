"""Component health: pure exclusion rules plus the setpoint-failure backoff book.

A component is excluded from allocation while any of these holds (checked in this
order, the first one is the reported reason):

* ``"no data"``: no telemetry decoded yet;
* ``"stale"``: its last telemetry is older than `stale_after_ns`;
* ``"error state"``: it reports an error / off / unavailable state or errors;
* ``"bad data"``: its last message lacked a required metric or carried NaN/inf;
* ``"unusable bounds"``: power bounds of an unusable shape (inverters only);
* ``"setpoint failed"``: its last setpoint failed and the retry time has not come.

A failed component is retried after `backoff_delay_s(failures, retry_min_s,
retry_max_s)` (1 s, 2 s, 4 s ... 30 s by default): at the retry time it becomes
eligible again, the next allocation sends it a setpoint, and a success resets its
failure count. Fresh healthy telemetry ends the first five reasons by itself.
All rules are functions of `now_ns` so tests use a fake clock.
"""

from __future__ import annotations

import numpy as np

from ._actor import backoff_delay_s
from ._state import BoolArray, IntArray, StateTable

REASON_NO_DATA = "no data"
REASON_STALE = "stale"
REASON_ERROR_STATE = "error state"
REASON_BAD_DATA = "bad data"
REASON_BOUNDS = "unusable bounds"
REASON_SETPOINT = "setpoint failed"


def stale_mask(now_ns: int, received_ns: IntArray, stale_after_ns: int) -> BoolArray:
    """Rows whose telemetry is missing or older than `stale_after_ns`.

    Args:
        now_ns: Current monotonic time.
        received_ns: Last receive time per row (0 = never).
        stale_after_ns: Maximum age.

    Returns:
        Boolean mask, True = stale or never received.
    """
    result: BoolArray = (received_ns == 0) | (now_ns - received_ns > stale_after_ns)
    return result


def failed_mask(now_ns: int, retry_at_ns: IntArray) -> BoolArray:
    """Rows excluded because a setpoint failed and the retry time has not come.

    Args:
        now_ns: Current monotonic time.
        retry_at_ns: Retry time per row (0 = not failed).

    Returns:
        Boolean mask.
    """
    result: BoolArray = (retry_at_ns != 0) & (now_ns < retry_at_ns)
    return result


class Health:
    """Exclusion state for every row of a `StateTable`."""

    def __init__(
        self,
        table: StateTable,
        *,
        stale_after_s: float,
        retry_min_s: float,
        retry_max_s: float,
        bounds_required: BoolArray | None = None,
    ) -> None:
        """Create the book.

        Args:
            table: The state table (rows).
            stale_after_s: Telemetry older than this excludes the component.
            retry_min_s: First retry delay after a failed setpoint.
            retry_max_s: Maximum retry delay.
            bounds_required: Rows whose power bounds must be usable (inverters).
        """
        self.table: StateTable = table
        """The state table."""
        self.stale_after_ns: int = int(stale_after_s * 1e9)
        """Staleness limit in ns."""
        self.retry_min_s: float = retry_min_s
        """First retry delay."""
        self.retry_max_s: float = retry_max_s
        """Maximum retry delay."""
        n = table.n
        self.failures: IntArray = np.zeros(n, dtype=np.int64)
        """Consecutive failed setpoints per row."""
        self.retry_at_ns: IntArray = np.zeros(n, dtype=np.int64)
        """When a failed row may be retried (0 = not failed)."""
        self.last_failure: dict[int, str] = {}
        """Last failure reason by component id."""
        self.bounds_required: BoolArray = (
            bounds_required if bounds_required is not None else np.zeros(n, dtype=np.bool_)
        )
        """Rows whose bounds must be usable."""

    def on_failure(self, row: int, now_ns: int, reason: str) -> float:
        """Record a failed setpoint; return the retry delay in s.

        Args:
            row: The row.
            now_ns: Current monotonic time.
            reason: Why it failed (gRPC status or response status name).

        Returns:
            The delay until the component is retried.
        """
        self.failures[row] += 1
        delay = backoff_delay_s(int(self.failures[row]), self.retry_min_s, self.retry_max_s)
        self.retry_at_ns[row] = now_ns + int(delay * 1e9)
        self.last_failure[int(self.table.ids[row])] = reason
        return delay

    def on_success(self, row: int) -> None:
        """Record a successful setpoint: the row is no longer failed.

        Args:
            row: The row.
        """
        if self.failures[row]:
            self.failures[row] = 0
            self.retry_at_ns[row] = 0
            self.last_failure.pop(int(self.table.ids[row]), None)

    def measured_mask(self, now_ns: int, rows: IntArray | None = None) -> BoolArray:
        """Rows whose last telemetry is a valid measurement right now.

        The first four exclusion rules: fresh, complete, no error state. Unusable
        bounds and failed setpoints say nothing about what a component measures.

        Args:
            now_ns: Current monotonic time.
            rows: Only these rows, in this order (all rows when None).

        Returns:
            Boolean mask, True = valid.
        """
        t = self.table
        sel = slice(None) if rows is None else rows
        bad = stale_mask(now_ns, t.received_ns[sel], self.stale_after_ns)
        bad |= ~t.state_ok[sel]
        bad |= ~t.data_ok[sel]
        result: BoolArray = ~bad
        return result

    def ok_mask(self, now_ns: int, rows: IntArray | None = None) -> BoolArray:
        """Rows usable for allocation right now.

        Args:
            now_ns: Current monotonic time.
            rows: Only these rows, in this order (all rows when None).

        Returns:
            Boolean mask, True = usable: a valid measurement (`measured_mask`),
            usable bounds where they are required, and no failed setpoint
            waiting for its retry.
        """
        sel = slice(None) if rows is None else rows
        usable = self.measured_mask(now_ns, rows)
        usable &= ~(self.bounds_required[sel] & ~self.table.bounds_ok[sel])
        usable &= ~failed_mask(now_ns, self.retry_at_ns[sel])
        return usable

    def reasons(self, now_ns: int) -> dict[int, str]:
        """Excluded components and why (first matching rule).

        Args:
            now_ns: Current monotonic time.

        Returns:
            Reason by component id, for excluded components only.
        """
        t = self.table
        out: dict[int, str] = {}
        never = t.received_ns == 0
        stale = stale_mask(now_ns, t.received_ns, self.stale_after_ns)
        failed = failed_mask(now_ns, self.retry_at_ns)
        bad_bounds = self.bounds_required & ~t.bounds_ok
        for row in np.flatnonzero(stale | ~t.state_ok | ~t.data_ok | bad_bounds | failed):
            cid = int(t.ids[row])
            if never[row]:
                out[cid] = REASON_NO_DATA
            elif stale[row]:
                out[cid] = REASON_STALE
            elif not t.state_ok[row]:
                out[cid] = REASON_ERROR_STATE
            elif not t.data_ok[row]:
                out[cid] = REASON_BAD_DATA
            elif bad_bounds[row]:
                out[cid] = REASON_BOUNDS
            else:
                out[cid] = f"{REASON_SETPOINT} ({self.last_failure.get(cid, '?')})"
        return out
