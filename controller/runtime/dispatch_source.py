"""Schedule windows from the Frequenz Dispatch API (issue 17).

:class:`DispatchScheduleSource` is a
:class:`~controller.runtime.schedule.ScheduleSource`: with the official client
(``frequenz-client-dispatch``'s ``DispatchApiClient``) it lists the microgrid's
dispatches, follows the stream of changes (create / update / delete), expands
every usable dispatch into :class:`~controller.runtime.schedule.Window` s over
a horizon and delivers the complete list whenever it changes.

Dispatch types and payloads (the payload is the dispatch's JSON object):

* ``FREQUENCY_RESPONSE``: ``{"reserved_power_w": 100000, "curve": "linear",
  "deadband_hz": 0.01, "full_activation_hz": 0.2, "hold_duration_s": 900}`` —
  the keys of ``[frequency_response]`` a window may set (``reserved_power_w``
  required, W ≥ 0, 0 = not sold; ``curve`` ``"linear"`` or ``"knee"`` with
  ``knee_hz`` / ``knee_fraction``; no curve key = the config's curve), checked
  by the config's own validator
  (:func:`~controller.runtime.config.frequency_window_from_dict`).
* ``PEAK_SHAVING``: ``{"limit_w": 250000}`` — the peak-shaving target limit
  (W of billing-interval mean, ≥ 0) in the window.

A dispatch gives windows ``[start, start + duration)`` at its start and, with a
recurrence rule, at every recurrence the library computes
(``Dispatch.next_run_after``, an RFC 5545 rule evaluated in UTC: a daily block
at 22:00 UTC stays at 22:00 UTC across a daylight-saving change). A dispatch
without a duration runs from its start until it is deleted (its window ends at
the horizon's end). The dispatch's ``target`` is not used: a window applies to
the whole battery fleet. Times are UTC unix seconds (the site's clock).

Not every dispatch gives windows: ``active = false`` gives none; ``dry_run =
true`` gives none and is logged once (info); an unknown type is ignored (debug
log); an invalid payload or recurrence is one warning line naming the dispatch
id, the field and the value, e.g. ``dispatch 3: payload.deadband_hz = -1.0:
must be >= 0 (dispatch ignored)``, and the dispatch is ignored while the others
stay.

Horizon: from the start of the previous UTC day to the end of the day after
tomorrow (so at least now − 1 day … now + 2 days), re-expanded every
``refresh_s`` (the list is read again then too, so a missed event is caught
up). Connection: a failed list, a broken stream or a refused key is one warning
line; the source reconnects with the runtime's capped exponential backoff
(:func:`actors.backoff_delay_s`), reads the whole list again and keeps
delivering the last good windows meanwhile. It never raises out of :meth:`run`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import grpc.aio
from frequenz.api.dispatch.v1.dispatch_pb2 import StreamMicrogridDispatchesRequest

from actors import backoff_delay_s
from controller.errors import ConfigError, UserError
from controller.runtime.config import (
    DispatchConfig,
    dispatch_url_problem,
    frequency_window_from_dict,
    peak_limit_from_dict,
)
from controller.runtime.schedule import Deliver, Window

# frequenz-client-common defines two id classes with the prefix "CID" (ComponentId and
# ElectricalComponentId) and frequenz-core logs a warning about it when the dispatch
# client is imported (frequenz-repo-config-python#421): a library quirk, not news for
# an operator, so that one record is dropped.
logging.getLogger("frequenz.core.id").addFilter(lambda record: record.args != ("CID",))

from frequenz.client.common.microgrid import MicrogridId  # noqa: E402
from frequenz.client.common.streaming import Event  # noqa: E402
from frequenz.client.dispatch import DispatchApiClient  # noqa: E402
from frequenz.client.dispatch.recurrence import Frequency  # noqa: E402
from frequenz.client.dispatch.types import Dispatch, DispatchEvent  # noqa: E402

__all__ = [
    "DISPATCH_TYPES",
    "DispatchScheduleSource",
    "DispatchSettings",
    "dispatch_windows",
    "horizon_s",
]

_logger = logging.getLogger(__name__)

DISPATCH_TYPES = ("FREQUENCY_RESPONSE", "PEAK_SHAVING")
"""The dispatch types gridloop turns into windows (see the module for their payloads)."""

_DAY_S = 86_400.0
MAX_OCCURRENCES = 2_000
"""Most windows one dispatch gives in a horizon (a minutely rule is cut there, logged)."""


def horizon_s(now_s: float) -> tuple[float, float]:
    """The expansion horizon at ``now_s``: the previous UTC day's start to the end of the
    day after tomorrow (UTC unix seconds). Whole days, so an open-ended dispatch's
    window changes once a day, not at every re-expansion."""
    today = math.floor(now_s / _DAY_S) * _DAY_S
    return today - _DAY_S, today + 3 * _DAY_S


def _unix_s(t: datetime) -> float:
    return t.timestamp()


def _content(dispatch: Dispatch) -> dict[str, Any]:
    """The window fields a dispatch's payload sets.

    Raises:
        ConfigError: naming ``dispatch N``, the payload field and the value.
    """
    where = f"dispatch {int(dispatch.id)}"
    if dispatch.type == "FREQUENCY_RESPONSE":
        fr = frequency_window_from_dict(dispatch.payload, where, "payload")
        return {"frequency_response": fr}
    return {"peak_limit_w": peak_limit_from_dict(dispatch.payload, where, "payload")}


def _occurrences(dispatch: Dispatch, lo_s: float, hi_s: float) -> list[tuple[float, float]]:
    """``(start_s, end_s)`` of every run of ``dispatch`` that overlaps ``[lo_s, hi_s)``.

    Raises:
        ConfigError: the recurrence cannot be evaluated (naming the field and value).
    """
    start_s = _unix_s(dispatch.start_time)
    if dispatch.duration is None:  # runs until deleted
        return [(start_s, hi_s)] if start_s < hi_s else []
    duration = dispatch.duration
    if duration <= timedelta(0):
        raise ConfigError(f"dispatch {int(dispatch.id)}", "duration", duration.total_seconds(),
                          "must be > 0 s")
    rule = dispatch.recurrence
    if rule.frequency != Frequency.UNSPECIFIED and rule.interval < 1:
        raise ConfigError(f"dispatch {int(dispatch.id)}", "recurrence.interval", rule.interval,
                          f"must be >= 1 with frequency {rule.frequency.name}")
    lo = datetime.fromtimestamp(lo_s, UTC) - duration
    runs: list[tuple[float, float]] = []
    t = dispatch.next_run_after(lo)
    while t is not None and _unix_s(t) < hi_s:
        if len(runs) == MAX_OCCURRENCES:
            _logger.warning("dispatch %d: more than %d runs in the horizon; the rest ignored",
                            int(dispatch.id), MAX_OCCURRENCES)
            break
        run_start = _unix_s(t)
        if run_start + duration.total_seconds() > lo_s:
            runs.append((run_start, run_start + duration.total_seconds()))
        t = dispatch.next_run_after(t + timedelta(microseconds=1))
    return runs


def dispatch_windows(dispatch: Dispatch, lo_s: float, hi_s: float) -> list[Window]:
    """The windows one dispatch gives in the horizon ``[lo_s, hi_s)`` (UTC unix seconds).

    Pure: no clock, no I/O. Inactive, dry-run and unknown-type dispatches give none.

    Args:
        dispatch: The dispatch as the client library decodes it.
        lo_s: Horizon start (runs that end by then are left out).
        hi_s: Horizon end (runs that start from then are left out; an open-ended
            dispatch's window ends here).

    Returns:
        The windows, in start order, with source ``"dispatch:<id>"``.

    Raises:
        ConfigError: the payload or the recurrence is invalid (one line naming
            ``dispatch <id>``, the field and the value).
    """
    if not dispatch.active or dispatch.dry_run or dispatch.type not in DISPATCH_TYPES:
        return []
    content = _content(dispatch)
    source = f"dispatch:{int(dispatch.id)}"
    return [Window(start_s=a, end_s=b, source=source, **content)
            for a, b in _occurrences(dispatch, lo_s, hi_s)]


class DispatchScheduleSource:
    """Windows from the Dispatch API of one microgrid (see the module)."""

    def __init__(
        self,
        url: str,
        *,
        auth_key: str,
        microgrid_id: int,
        clock: Callable[[], float] = time.time,
        refresh_s: float = 300.0,
        backoff_min_s: float = 0.5,
        backoff_max_s: float = 30.0,
        call_timeout_s: float = 10.0,
    ) -> None:
        """Create the source (nothing connects until :meth:`run`).

        Args:
            url: The Dispatch API, as ``dispatch-cli --url`` takes it
                (``grpc://HOST[:PORT][?ssl=false]``; TLS and port 443 by default).
            auth_key: Sent as metadata ``key`` on every call.
            microgrid_id: The microgrid whose dispatches apply.
            clock: UTC unix time now (s); the horizon is placed around it.
            refresh_s: Re-read the list and re-expand every this many seconds (> 0).
            backoff_min_s: First reconnect delay after a failure (s, > 0).
            backoff_max_s: Longest reconnect delay (s, ≥ ``backoff_min_s``).
            call_timeout_s: Timeout of one list call (s, > 0).
        """
        self.url = url
        """The Dispatch API URL."""
        self.microgrid_id = microgrid_id
        """The microgrid whose dispatches apply."""
        self._auth_key = auth_key
        self._clock = clock
        self._refresh_s = refresh_s
        self._backoff = (backoff_min_s, backoff_max_s)
        self._call_timeout = timedelta(seconds=call_timeout_s)
        self._dispatches: dict[int, Dispatch] = {}
        self._delivered: list[Window] | None = None
        self._reported: set[tuple[int, datetime]] = set()
        self._session_listed = False
        self.connects = 0
        """Sessions that listed the dispatches successfully (1 + reconnects)."""

    @property
    def name(self) -> str:
        """``"dispatch"``: the source's name in the schedule book and in logs."""
        return "dispatch"

    async def run(self, deliver: Deliver) -> None:
        """Deliver the windows now and after every change, until cancelled (never raises)."""
        failures = 0
        delay = 0.0
        while True:
            client = DispatchApiClient(
                server_url=self.url, auth_key=self._auth_key, call_timeout=self._call_timeout
            )
            why: str | None = None
            try:
                await self._session(client, deliver)
                why = "the server ended the stream"  # it never should
            except grpc.aio.AioRpcError as exc:
                why = f"{exc.code().name}: {exc.details()}"
            except Exception as exc:  # a bug or a library surprise: log, retry, never raise
                failures += 1
                delay = backoff_delay_s(failures, *self._backoff)
                _logger.exception("dispatch source %s: %s; reconnecting in %.3g s",
                                  self.url, exc, delay)
            finally:
                with contextlib.suppress(Exception):
                    await client.disconnect()
            if why is not None:
                failures = 1 if self._session_listed else failures + 1
                delay = backoff_delay_s(failures, *self._backoff)
                _logger.warning("dispatch source %s (microgrid %d): %s; reconnecting in %.3g s",
                                self.url, self.microgrid_id, why, delay)
            await asyncio.sleep(delay)

    async def _session(self, client: DispatchApiClient, deliver: Deliver) -> None:
        """List, deliver, then follow the stream and re-read the list every ``refresh_s``."""
        self._session_listed = False
        request = StreamMicrogridDispatchesRequest(microgrid_id=self.microgrid_id)
        # Open the stream before listing: changes made meanwhile are not lost.
        call = client.stub.StreamMicrogridDispatches(request)
        read: asyncio.Future[Any] | None = None
        try:
            await self._relist(client)
            self._session_listed = True
            self.connects += 1
            _logger.info("dispatch source %s: %d dispatches of microgrid %d",
                         self.url, len(self._dispatches), self.microgrid_id)
            self._deliver(deliver)
            next_refresh = time.monotonic() + self._refresh_s
            read = asyncio.ensure_future(call.read())
            while True:
                await asyncio.wait([read], timeout=max(0.0, next_refresh - time.monotonic()))
                if read.done():
                    message = read.result()
                    if message is grpc.aio.EOF:  # type: ignore[attr-defined]
                        return
                    self._apply(DispatchEvent.from_protobuf(message))
                    read = asyncio.ensure_future(call.read())
                else:
                    await self._relist(client)
                    next_refresh = time.monotonic() + self._refresh_s
                self._deliver(deliver)
        finally:
            if read is not None and not read.done():
                read.cancel()
            call.cancel()

    async def _relist(self, client: DispatchApiClient) -> None:
        """Replace the known dispatches by the server's list."""
        dispatches: dict[int, Dispatch] = {}
        async for page in client.list(MicrogridId(self.microgrid_id)):
            for d in page:
                dispatches[int(d.id)] = d
        self._dispatches = dispatches

    def _apply(self, event: DispatchEvent) -> None:
        """One change from the stream."""
        d = event.dispatch
        if event.event == Event.DELETED:
            self._dispatches.pop(int(d.id), None)
        else:
            self._dispatches[int(d.id)] = d
        _logger.debug("dispatch %d %s (type %s)", int(d.id), event.event.name.lower(), d.type)

    def windows(self) -> list[Window]:
        """The windows of every known dispatch over the horizon around the clock's now.

        A dispatch whose payload or recurrence is invalid is logged once per version
        (warning) and left out; a dry run is logged once per version (info).
        """
        lo, hi = horizon_s(self._clock())
        out: list[Window] = []
        for key, d in sorted(self._dispatches.items()):
            version = (key, d.update_time)
            if d.type not in DISPATCH_TYPES:
                _logger.debug("dispatch %d: type %r is not one of %s; ignored",
                              key, d.type, ", ".join(DISPATCH_TYPES))
                continue
            if d.active and d.dry_run and version not in self._reported:
                self._reported.add(version)
                _logger.info("dispatch %d (%s) is a dry run: no window", key, d.type)
            try:
                out.extend(dispatch_windows(d, lo, hi))
            except ConfigError as exc:
                if version not in self._reported:
                    self._reported.add(version)
                    _logger.warning("%s (dispatch ignored)", exc)
        return out

    def _deliver(self, deliver: Deliver) -> None:
        """Deliver the windows if they differ from the last delivery (always the first time)."""
        windows = self.windows()
        if windows != self._delivered:
            self._delivered = windows
            deliver(self.name, windows)



@dataclass(frozen=True, slots=True)
class DispatchSettings:
    """Where a run reads dispatches: ``--dispatch-url`` / ``--dispatch-key`` over ``[dispatch]``."""

    url: str
    """The Dispatch API URL."""
    auth_key: str
    """The auth key."""
    microgrid_id: int | None
    """The configured microgrid id; None = the site's."""

    @classmethod
    def resolve(
        cls, config: DispatchConfig, config_source: str, url: str | None, key: str | None
    ) -> DispatchSettings | None:
        """The run's settings (None: no Dispatch API). Checked before anything starts.

        Args:
            config: The ``[dispatch]`` section.
            config_source: The config file, for errors about its fields.
            url: ``--dispatch-url`` (None = the config's).
            key: ``--dispatch-key`` or ``DISPATCH_API_AUTH_KEY`` (None = the config's).

        Raises:
            UserError: one line naming the flag and value (a bad URL, no key).
        """
        url_name = "--dispatch-url"
        if url is None:
            url, url_name = config.url, f"{config_source}: dispatch.url"
        if url is None:
            return None
        if (problem := dispatch_url_problem(url)) is not None:
            raise UserError(f"{url_name} = {url!r}: {problem}")
        key = key if key is not None else config.api_key
        if key is None:
            raise UserError(
                f"{url_name} = {url!r}: needs an auth key (--dispatch-key, DISPATCH_API_AUTH_KEY"
                " or [dispatch] api_key; the Dispatch API client always sends one)"
            )
        return cls(url, key, config.microgrid_id)

    def source(
        self, site_microgrid_id: int | None, clock: Callable[[], float] = time.time
    ) -> DispatchScheduleSource:
        """The source for the site whose Microgrid API says ``site_microgrid_id``; its
        horizon is placed around ``clock()`` (the site's unix time).

        Raises:
            UserError: neither ``[dispatch] microgrid_id`` nor the site gives an id.
        """
        microgrid_id = self.microgrid_id if self.microgrid_id is not None else site_microgrid_id
        if microgrid_id is None:
            raise UserError(
                f"--dispatch-url = {self.url!r}: the site's Microgrid API gives no microgrid id;"
                " set [dispatch] microgrid_id"
            )
        return DispatchScheduleSource(self.url, auth_key=self.auth_key, microgrid_id=microgrid_id,
                                      clock=clock)
