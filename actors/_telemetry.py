"""Telemetry: one stream per component, decoded straight into the `StateTable`.

Each stream reconnects with capped exponential backoff (`reconnect_min_s` ..
`reconnect_max_s`) when it ends or fails; the backoff resets after a message
arrives. When the connection itself was down, a stream retries as soon as the
channel is READY again, within the same backoff. A stream refused with
UNAUTHENTICATED or PERMISSION_DENIED is not retried when an `on_fatal` callback
is given: it gets the `ApiError` and the stream stops. After every decoded
message, the synchronous listeners and then the channel subscribers registered
for that component get its id (`FreshNotifier`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection

import grpc
from frequenz.channels import BroadcastReceiver, BroadcastSender, Receiver, Sender, SenderError

from ._actor import Actor, backoff_delay_s, new_broadcast_channel
from ._client import MicrogridApiClient, is_fatal
from ._errors import ApiError
from ._state import StateTable

_logger = logging.getLogger(__name__)


class FreshNotifier:
    """Fans out "fresh sample for component X" events to subscribers.

    Two kinds of subscribers: channel receivers (`new_receiver`, woken as tasks, in
    loop order) and synchronous listeners (`add_listener`, called inside the
    telemetry task right after the sample is decoded, before anything else runs:
    the low-latency path for control loops that react to every grid sample).
    """

    def __init__(self) -> None:
        """Create a notifier without subscribers."""
        self._by_id: dict[int, list[Sender[int]]] = {}
        self._all: list[Sender[int]] = []
        self._listeners: dict[int, list[Callable[[int], None]]] = {}

    def add_listener(
        self, component_ids: Collection[int], listener: Callable[[int], None]
    ) -> Callable[[], None]:
        """Call `listener(component_id)` synchronously after each decoded sample.

        The listener runs on the telemetry task: it must be quick and must not
        block. An exception it raises is logged and does not affect the stream.

        Args:
            component_ids: The components to listen to.
            listener: The callback.

        Returns:
            A function that removes the listener.
        """
        ids = {int(c) for c in component_ids}
        for cid in ids:
            self._listeners.setdefault(cid, []).append(listener)

        def remove() -> None:
            for cid in ids:
                lst = self._listeners.get(cid, [])
                if listener in lst:
                    lst.remove(listener)
                if not lst:
                    self._listeners.pop(cid, None)

        return remove

    def has_receivers(self, component_id: int) -> bool:
        """Whether `notify(component_id)` has any channel receiver to wake."""
        return bool(self._all) or bool(self._by_id.get(component_id))

    def call_listeners(self, component_id: int) -> None:
        """Call the synchronous listeners of `component_id` (exceptions are logged).

        Args:
            component_id: The component whose sample was just decoded.
        """
        for listener in self._listeners.get(component_id, ()):
            try:
                listener(component_id)
            except Exception:  # a listener bug must not end the telemetry stream
                _logger.exception("fresh-sample listener %r failed", listener)

    def new_receiver(
        self, component_ids: Collection[int] | None = None, *, limit: int = 256
    ) -> Receiver[int]:
        """Subscribe to fresh-sample events.

        Args:
            component_ids: Only these components (all when None).
            limit: Receiver buffer; the oldest events are dropped when full.

        Returns:
            A receiver of component ids.
        """
        sender: BroadcastSender[int]
        receiver: BroadcastReceiver[int]
        sender, receiver = new_broadcast_channel(
            "fresh-samples", limit=limit, warn_on_overflow=False
        )
        if component_ids is None:
            self._all.append(sender)
        else:
            for cid in set(component_ids):
                self._by_id.setdefault(int(cid), []).append(sender)
        return receiver

    async def notify(self, component_id: int) -> None:
        """Tell the subscribers of `component_id` that a fresh sample arrived.

        Subscriptions whose receiver was dropped are removed.

        Args:
            component_id: The component.
        """
        for senders in (self._by_id.get(component_id), self._all):
            if not senders:
                continue
            for s in senders:
                try:
                    await s.send(component_id)
                except SenderError:
                    self._drop(s)

    def _drop(self, sender: Sender[int]) -> None:
        for lst in [self._all, *self._by_id.values()]:
            while sender in lst:
                lst.remove(sender)

    async def aclose(self) -> None:
        """Close every subscription channel (receivers stop)."""
        senders = {id(s): s for lst in [self._all, *self._by_id.values()] for s in lst}
        self._all = []
        self._by_id = {}
        for s in senders.values():
            await s.aclose()


class TelemetryActor(Actor):
    """Streams telemetry of a set of components into a `StateTable`."""

    def __init__(
        self,
        client: MicrogridApiClient,
        table: StateTable,
        notifier: FreshNotifier,
        component_ids: Collection[int],
        *,
        reconnect_min_s: float = 0.1,
        reconnect_max_s: float = 5.0,
        name: str = "telemetry",
        on_reconnected: Callable[[int], None] | None = None,
        on_fatal: Callable[[ApiError], None] | None = None,
    ) -> None:
        """Create the actor.

        Args:
            client: The API client.
            table: Where samples are decoded.
            notifier: Who is told about fresh samples.
            component_ids: Components to stream (each must have a row in `table`).
            reconnect_min_s: First reconnect delay.
            reconnect_max_s: Maximum reconnect delay.
            name: Actor name.
            on_reconnected: Called with the component id when a stream that had
                failed delivers its first message again.
            on_fatal: Called when the server refuses this client (UNAUTHENTICATED,
                PERMISSION_DENIED); the stream then stops instead of retrying.
        """
        super().__init__(name)
        self._on_reconnected = on_reconnected
        self._on_fatal = on_fatal
        self._client = client
        self._table = table
        self._notifier = notifier
        self._ids = list(component_ids)
        self._min_s = reconnect_min_s
        self._max_s = reconnect_max_s
        self.reconnects: int = 0
        """Streams re-opened after they ended or failed."""
        self.last_error: dict[int, str] = {}
        """Last stream error by component id."""
        self.refused: bool = False
        """Whether the server refused a stream (UNAUTHENTICATED / PERMISSION_DENIED)."""

    async def _run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            for cid in self._ids:
                tg.create_task(self._stream(cid), name=f"{self.name}-{cid}")
        if self.refused:
            # Every stream was refused and `on_fatal` told the owner: stay down
            # until cancelled rather than being restarted into the same refusal.
            await asyncio.Event().wait()

    async def _stream(self, cid: int) -> None:
        row = self._table.row_of[cid]
        decode = self._table.decode
        unwrap = self._table.wire.unwrap
        notifier = self._notifier
        failures = 0
        first = True
        was_ready = True
        while True:
            if not first:
                failures += 1
                self.reconnects += 1
                delay = backoff_delay_s(failures, self._min_s, self._max_s)
                if was_ready:
                    await asyncio.sleep(delay)
                else:
                    # The connection itself was down (e.g. the server restarts):
                    # retry as soon as it is back instead of sleeping blindly.
                    await self._client.wait_until_ready(delay)
            first = False
            call = self._client.telemetry_stream(cid, self._table.metrics[row])
            try:
                async for msg in call:
                    decode(row, unwrap(msg), time.monotonic_ns())
                    if failures:
                        failures = 0
                        if self._on_reconnected is not None:
                            self._on_reconnected(cid)
                    notifier.call_listeners(cid)
                    if notifier.has_receivers(cid):
                        await notifier.notify(cid)
                self.last_error[cid] = "stream ended"
                was_ready = self._client.is_ready()
                _logger.info("%s: telemetry stream of component %d ended", self.name, cid)
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                self.last_error[cid] = code.name if code is not None else "UNKNOWN"
                was_ready = self._client.is_ready()
                if self._on_fatal is not None and is_fatal(exc):
                    self.refused = True
                    self._on_fatal(
                        self._client.error(exc, self._client.api.telemetry_method, cid)
                    )
                    return
                if failures == 0:
                    _logger.warning(
                        "%s: telemetry stream of component %d failed [%s]: %s",
                        self.name,
                        cid,
                        self.last_error[cid],
                        exc.details(),
                    )
            finally:
                call.cancel()
