"""Site identity: is the server behind the channel still the site the graph was built from?

`SiteIdentity` is what the runtime's component graph rests on: the microgrid id
(GetMicrogrid), every component's id, category and inverter type
(ListElectricalComponents) and every connection (ListElectricalComponentConnections).
`SiteIdentity.differences` compares two of them and says, one phrase per change,
what is different (pure, no I/O).

`SiteGuard` re-reads the identity after every reconnect and, until it matches,
keeps the dispatcher from sending anything. A reconnect is either the gRPC channel
leaving READY (the server restarted or the connection dropped: the guard notices the
loss before the channel can reconnect, so nothing is sent to a new server before it
was checked) or a telemetry stream delivering again after it had failed (`check`,
from the telemetry actor, before that sample reaches any listener). If the identity
differs, the dispatcher stays held for good and `on_changed` gets one line saying
what changed; the owner stops the run. A failed check (server gone again) is retried
with backoff while the hold stays; UNAUTHENTICATED / PERMISSION_DENIED go to
`on_fatal`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import grpc
from frequenz.api.common.v1alpha8.microgrid.electrical_components import (
    electrical_components_pb2 as ec_pb2,
)

from ._actor import Actor, backoff_delay_s
from ._api import MicrogridInfo
from ._client import MicrogridApiClient
from ._dispatch import Dispatcher
from ._errors import ApiError
from ._graph import CAT_INVERTER, ComponentInfo
from ._grid import category_label

_logger = logging.getLogger(__name__)

_MAX_LISTED = 6
"""Differences named in one line; the rest are counted."""

HOLD_UNVERIFIED = "unverified-site"
"""Dispatcher hold reason while the site after a reconnect is not checked yet."""
HOLD_SITE_CHANGED = "site-changed"
"""Dispatcher hold reason once the server turned out to be another site (never released)."""
HOLD_ANOTHER_CLIENT = "another-client"
"""Dispatcher hold reason once another client commands the site (0 W still allowed)."""


def describe_component(category: int, inverter_type: int = 0) -> str:
    """A component kind in words ("battery inverter", "meter", ...).

    Args:
        category: `ElectricalComponentCategory` value.
        inverter_type: `InverterType` value (inverters only).

    Returns:
        The words.
    """
    if category != CAT_INVERTER:
        return category_label(category)
    try:
        kind = ec_pb2.InverterType.Name(inverter_type)  # type: ignore[arg-type]
        kind = kind.removeprefix("INVERTER_TYPE_").lower()
    except ValueError:
        kind = f"type {inverter_type}"
    if kind == "unspecified":
        return "inverter of unspecified type"
    return f"{'PV' if kind == 'pv' else kind} inverter"


@dataclass(frozen=True)
class SiteIdentity:
    """What the component graph was built from (compared after every reconnect)."""

    microgrid_id: int | None
    """GetMicrogrid's microgrid id (None: the server does not implement GetMicrogrid)."""
    components: dict[int, tuple[int, int]]
    """(category, inverter type) by component id."""
    connections: frozenset[tuple[int, int]]
    """(source id, destination id) pairs."""

    @classmethod
    def from_protos(
        cls,
        microgrid_id: int | None,
        components: Iterable[ec_pb2.ElectricalComponent],
        connections: Iterable[ec_pb2.ElectricalComponentConnection],
    ) -> SiteIdentity:
        """Build the identity from API messages.

        Args:
            microgrid_id: The microgrid id (None if unknown).
            components: ListElectricalComponents result.
            connections: ListElectricalComponentConnections result.

        Returns:
            The identity.
        """
        infos = [ComponentInfo.from_proto(c) for c in components]
        return cls(
            microgrid_id=microgrid_id,
            components={c.id: (c.category, c.inverter_type) for c in infos},
            connections=frozenset(
                (int(c.source_electrical_component_id), int(c.destination_electrical_component_id))
                for c in connections
            ),
        )

    def differences(self, now: SiteIdentity) -> list[str]:
        """What differs in `now` from this (the expected) identity, one phrase per change.

        Args:
            now: The identity read from the server after a reconnect.

        Returns:
            The changes (empty when the site is the same).
        """
        out: list[str] = []
        if (
            self.microgrid_id is not None or now.microgrid_id is not None
        ) and self.microgrid_id != now.microgrid_id:
            out.append(f"microgrid id {self.microgrid_id} → {now.microgrid_id}")
        old_c, new_c = self.components, now.components
        # Most telling first: a component whose kind changed under the same id.
        for cid in sorted(old_c.keys() & new_c.keys()):
            if old_c[cid] != new_c[cid]:
                out.append(
                    f"component {cid} was a {describe_component(*old_c[cid])}"
                    f" and is now a {describe_component(*new_c[cid])}"
                )
        for cid in sorted(old_c.keys() - new_c.keys()):
            out.append(f"component {cid} ({describe_component(*old_c[cid])}) is gone")
        for cid in sorted(new_c.keys() - old_c.keys()):
            out.append(f"component {cid} ({describe_component(*new_c[cid])}) is new")
        for src, dst in sorted(self.connections - now.connections):
            out.append(f"connection {src} → {dst} is gone")
        for src, dst in sorted(now.connections - self.connections):
            out.append(f"connection {src} → {dst} is new")
        return out


def summarize(changes: list[str]) -> str:
    """The first few changes in one line, the rest counted.

    Args:
        changes: From `SiteIdentity.differences` (not empty).

    Returns:
        The line.
    """
    head = ", ".join(changes[:_MAX_LISTED])
    more = len(changes) - _MAX_LISTED
    return head + (f" and {more} more change(s)" if more > 0 else "")


async def read_site(
    client: MicrogridApiClient,
) -> tuple[
    MicrogridInfo | None,
    list[ec_pb2.ElectricalComponent],
    list[ec_pb2.ElectricalComponentConnection],
]:
    """Read the microgrid (id, location), the components and the connections (concurrently).

    Args:
        client: The API client.

    Returns:
        (microgrid, components, connections); the microgrid is None when the server
        answers GetMicrogrid with UNIMPLEMENTED.

    Raises:
        ApiError: A call failed.
    """

    await client.negotiate()

    async def microgrid() -> MicrogridInfo | None:
        try:
            return await client.microgrid()
        except ApiError as exc:
            if exc.status == grpc.StatusCode.UNIMPLEMENTED.name:
                return None
            raise

    return await asyncio.gather(microgrid(), client.list_components(), client.list_connections())


async def fetch_identity(client: MicrogridApiClient) -> SiteIdentity:
    """Read the site's identity (`read_site`).

    Args:
        client: The API client.

    Returns:
        The identity.

    Raises:
        ApiError: A call failed.
    """
    info, components, connections = await read_site(client)
    return SiteIdentity.from_protos(
        None if info is None else info.id, components, connections
    )


class SiteGuard(Actor):
    """Holds the dispatcher after every reconnect until the site is checked (module docstring)."""

    def __init__(
        self,
        client: MicrogridApiClient,
        dispatcher: Dispatcher,
        expected: SiteIdentity,
        *,
        retry_min_s: float,
        retry_max_s: float,
        on_changed: Callable[[str], None],
        on_fatal: Callable[[ApiError], None],
        name: str = "site-guard",
    ) -> None:
        """Create the guard.

        Args:
            client: The API client (its channel is watched).
            dispatcher: Held while the site is unverified, for good once it changed.
            expected: The identity the component graph was built from.
            retry_min_s: First delay before a failed check is retried.
            retry_max_s: Maximum such delay.
            on_changed: Called once with the line saying what changed.
            on_fatal: Called when the server refuses this client during a check.
            name: Actor name.
        """
        super().__init__(name)
        self._client = client
        self._dispatcher = dispatcher
        self.expected: SiteIdentity = expected
        """The identity the component graph was built from."""
        self._min_s = retry_min_s
        self._max_s = retry_max_s
        self._on_changed = on_changed
        self._on_fatal = on_fatal
        self._wanted = asyncio.Event()
        self.checks: int = 0
        """Completed checks of the site's identity (matching or not)."""
        self.changed: str | None = None
        """What changed, once the server turned out to be another site."""

    def check(self) -> None:
        """Hold the dispatcher now and re-read the site's identity soon (idempotent)."""
        if self.changed is not None:
            return
        self._dispatcher.hold(HOLD_UNVERIFIED)
        self._wanted.set()

    async def _run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._watch_channel(), name=f"{self.name}-channel")
            tg.create_task(self._verify(), name=f"{self.name}-verify")

    async def _watch_channel(self) -> None:
        ready = grpc.ChannelConnectivity.READY
        channel = self._client.channel
        while True:
            state = channel.get_state()
            if state == ready:
                # Any change away from READY means the connection was lost (a
                # restarted server, a dropped link): the next READY may be another
                # server. Hold before the channel can possibly reconnect.
                await channel.wait_for_state_change(state)
                self.check()
            else:
                self.check()
                await channel.wait_for_state_change(state)

    async def _verify(self) -> None:
        failures = 0
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            if failures:
                await asyncio.sleep(backoff_delay_s(failures, self._min_s, self._max_s))
            while not await self._client.wait_until_ready(self._max_s):
                pass  # the server is away: the hold stays, nothing to check yet
            try:
                now = await fetch_identity(self._client)
            except ApiError as exc:
                if exc.refused:
                    self._on_fatal(exc)
                    return
                failures += 1
                (_logger.warning if failures == 1 else _logger.debug)(
                    "cannot check the site after a reconnect (%s); no setpoints until it"
                    " answers",
                    exc,
                )
                self._wanted.set()
                continue
            failures = 0
            self.checks += 1
            changes = self.expected.differences(now)
            if changes:
                self.changed = summarize(changes)
                self._dispatcher.hold(HOLD_SITE_CHANGED)
                # Checked: not unverified any more, but changed (still no setpoint).
                self._dispatcher.release(HOLD_UNVERIFIED)
                self._on_changed(self.changed)
                return
            if not self._wanted.is_set():
                # Nothing was lost meanwhile: this check covers every reconnect so far.
                self._dispatcher.release(HOLD_UNVERIFIED)
                _logger.info("site checked after a reconnect: unchanged")
