"""Recovery: bring battery inverters and batteries that report ERROR back into service.

The API's way out of an error is ERROR --AckElectricalComponentError--> OFF
--StartElectricalComponent--> running. Every `check_interval_s` the actor looks at
the state table; for each managed component whose latest telemetry reports ERROR
it sends AckError and then Start, at most once per backoff step
(`backoff_delay_s(attempts, min_s, max_s)`, per component). A component that
reports OFF or STANDBY is started only when this actor acknowledged its error and
the Start has not succeeded yet: components an operator stopped stay stopped.
Health keeps the component excluded until its telemetry says it runs again; the
distributor then uses it again. A refusal of this client (UNAUTHENTICATED,
PERMISSION_DENIED) goes to `on_fatal` and the actor stops acting.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

import numpy as np
from frequenz.api.common.v1alpha8.microgrid.electrical_components import (
    electrical_components_pb2 as ec_pb2,
)

from ._actor import Actor, backoff_delay_s
from ._client import MicrogridApiClient
from ._errors import ApiError
from ._health import stale_mask
from ._state import StateTable

_logger = logging.getLogger(__name__)

STATE_ERROR: int = ec_pb2.ELECTRICAL_COMPONENT_STATE_CODE_ERROR
_STARTABLE: frozenset[int] = frozenset(
    {
        ec_pb2.ELECTRICAL_COMPONENT_STATE_CODE_OFF,
        ec_pb2.ELECTRICAL_COMPONENT_STATE_CODE_STANDBY,
    }
)


@dataclass
class RecoveryStats:
    """Counters of the recovery actor."""

    acks_sent: int = 0
    """AckElectricalComponentError calls that succeeded."""
    starts_sent: int = 0
    """StartElectricalComponent calls that succeeded."""
    failures: int = 0
    """Calls that failed (retried after the backoff)."""


class RecoveryActor(Actor):
    """Acknowledges errors and restarts components (see the module docstring)."""

    def __init__(
        self,
        client: MicrogridApiClient,
        table: StateTable,
        component_ids: Collection[int],
        *,
        stale_after_s: float,
        min_s: float = 1.0,
        max_s: float = 30.0,
        check_interval_s: float = 0.25,
        on_fatal: Callable[[ApiError], None] | None = None,
        name: str = "recovery",
    ) -> None:
        """Create the actor.

        Args:
            client: The API client.
            table: The state table (state codes and receive times).
            component_ids: Components to recover (battery inverters and batteries).
            stale_after_s: Only fresh telemetry (younger than this) is acted on.
            min_s: First delay between attempts on one component.
            max_s: Maximum delay between attempts.
            check_interval_s: Period of the state check.
            on_fatal: Called when the server refuses this client.
            name: Actor name.
        """
        super().__init__(name)
        self._client = client
        self._table = table
        self.component_ids: list[int] = [int(c) for c in component_ids]
        """Managed components."""
        self._rows = np.array([table.row_of[c] for c in self.component_ids], dtype=np.int64)
        self._stale_ns = int(stale_after_s * 1e9)
        self._min_s = min_s
        self._max_s = max_s
        self._interval_s = check_interval_s
        self._on_fatal = on_fatal
        n = len(self.component_ids)
        self._attempts = np.zeros(n, dtype=np.int64)
        self._next_ns = np.zeros(n, dtype=np.int64)
        self._start_pending = np.zeros(n, dtype=np.bool_)
        self.stats: RecoveryStats = RecoveryStats()
        """Counters."""
        self.refused: bool = False
        """Whether the server refused a call (the actor then stops acting)."""

    def due(self, now_ns: int) -> tuple[list[int], list[int]]:
        """Which components need an AckError+Start and which only a Start now.

        Args:
            now_ns: Current monotonic time.

        Returns:
            (indices to acknowledge and start, indices to start), into `component_ids`.
        """
        t = self._table
        rows = self._rows
        code = t.state_code[rows]
        fresh = ~stale_mask(now_ns, t.received_ns[rows], self._stale_ns)
        ready = fresh & (now_ns >= self._next_ns)
        in_error = code == STATE_ERROR
        startable = np.isin(code, list(_STARTABLE))
        # A component running again needs nothing more: forget its history.
        running = fresh & ~in_error & ~startable
        self._start_pending &= ~running
        self._attempts[running & (self._attempts > 0)] = 0
        ack = np.flatnonzero(ready & in_error)
        start = np.flatnonzero(ready & startable & self._start_pending)
        return ack.tolist(), start.tolist()

    async def _run(self) -> None:
        while not self.refused:
            now = time.monotonic_ns()
            ack, start = self.due(now)
            if ack or start:
                await asyncio.gather(
                    *(self._recover(i, ack=True) for i in ack),
                    *(self._recover(i, ack=False) for i in start),
                )
            await asyncio.sleep(self._interval_s)
        await asyncio.Event().wait()  # refused: stay down until cancelled

    async def _recover(self, i: int, *, ack: bool) -> None:
        cid = self.component_ids[i]
        self._attempts[i] += 1
        delay = backoff_delay_s(int(self._attempts[i]), self._min_s, self._max_s)
        self._next_ns[i] = time.monotonic_ns() + int(delay * 1e9)
        try:
            if ack:
                await self._client.ack_error(cid)
                self.stats.acks_sent += 1
                self._start_pending[i] = True
                _logger.info("component %d reported ERROR: acknowledged", cid)
            await self._client.start_component(cid)
            self.stats.starts_sent += 1
            self._start_pending[i] = False
            _logger.info("component %d started again", cid)
        except ApiError as exc:
            self.stats.failures += 1
            if exc.refused and self._on_fatal is not None:
                self.refused = True
                self._on_fatal(exc)
                return
            _logger.warning("recovering component %d failed: %s; retry in %.1f s", cid, exc, delay)
