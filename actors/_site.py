"""`Site`: the facade the controller uses (connect, telemetry, requests, outcomes, stats).

    site = await Site.connect("grpc://127.0.0.1:50051")
    async with site:                        # starts telemetry + distributor
        outcome = await site.set_power(100_000.0)   # W, + = charging
        m = site.measurements()
    # leaving the block sends 0 W to every commanded battery inverter, stops all tasks

If the server refuses this client while the site runs (UNAUTHENTICATED or
PERMISSION_DENIED on a telemetry stream or a setpoint), retrying cannot help:
`Site.fatal_error` is set and `Site.wait_fatal_error()` returns it, so the owner
can stop the run with that one error.

Two more conditions stop commanding for good, each with one ERROR line, and
`Site.wait_halted()` returns that line so the owner can stop the run:

* the server after a reconnect is another site (`SiteGuard`: microgrid id,
  components or connections differ from what the graph was built from):
  `Site.site_changed`; nothing at all is sent to that server, not even 0 W;
* another client commands the site (`ContentionRule`: `contention_overrides`
  setpoints of ours overridden by setpoints we did not send within
  `contention_window_s`): `Site.another_client`; no further setpoint goes out
  except, when the site is left, 0 W to the inverters still holding ours.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

import numpy as np
from frequenz.channels import Receiver

from ._actor import Supervisor
from ._api import MicrogridInfo
from ._client import MicrogridApiClient
from ._contention import ContentionRule
from ._core import RuntimeOptions, SiteCore, SiteMeasurements
from ._dispatch import Dispatcher
from ._distributor import DistributionOutcome, PowerDistributor
from ._errors import ApiError, OptionsError
from ._graph import ComponentGraph
from ._health import Health, stale_mask
from ._identity import HOLD_ANOTHER_CLIENT, SiteGuard, SiteIdentity, read_site
from ._recovery import RecoveryActor
from ._state import StateTable
from ._telemetry import FreshNotifier, TelemetryActor

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RuntimeStats:
    """Counters of the runtime."""

    setpoints_sent: int
    """Setpoint calls started."""
    setpoints_ok: int
    """Setpoint calls acknowledged (ACCEPTED/SUCCESS)."""
    setpoints_failed: dict[str, int]
    """Failed setpoint calls by reason."""
    setpoints_skipped_deadband: int
    """Setpoints not re-sent (deadband, lifetime not due)."""
    dispatch_latency_ms: list[float]
    """Request → all acks of the last 4096 published outcomes (ms)."""
    reconnects: int
    """Telemetry streams re-opened."""
    excluded: dict[int, str]
    """Components excluded from allocation now, with the reason."""
    actor_restarts: dict[str, int] = field(default_factory=dict)
    """Restarts per actor."""
    recovery: dict[str, int] = field(default_factory=dict)
    """Error recovery calls: ``acks_sent``, ``starts_sent``, ``failures``."""
    overridden_by_others: dict[int, int] = field(default_factory=dict)
    """Setpoints of ours overridden by another client's, by inverter id."""
    another_client: str | None = None
    """The line saying another client controls the site, once concluded (commanding stopped)."""
    site_changed: str | None = None
    """The line saying the server is another site since a reconnect (commanding stopped)."""
    reactive_setpoints_sent: int = 0
    """Reactive setpoint calls started (0 with reactive control off)."""
    reactive_setpoints_failed: dict[str, int] = field(default_factory=dict)
    """Failed reactive setpoint calls by reason."""
    reactive_out_of_bounds: int = 0
    """Reactive setpoints the planner's re-check replaced by 0 VAr."""

    def latency_percentile_ms(self, q: float) -> float:
        """A percentile of `dispatch_latency_ms` (NaN when empty).

        Args:
            q: Percentile in 0..100.

        Returns:
            The value in ms.
        """
        if not self.dispatch_latency_ms:
            return math.nan
        return float(np.percentile(self.dispatch_latency_ms, q))

    @property
    def latency_p50_ms(self) -> float:
        """Median dispatch latency (ms)."""
        return self.latency_percentile_ms(50)

    @property
    def latency_p99_ms(self) -> float:
        """99th percentile dispatch latency (ms)."""
        return self.latency_percentile_ms(99)

    @property
    def latency_max_ms(self) -> float:
        """Maximum dispatch latency (ms)."""
        return max(self.dispatch_latency_ms) if self.dispatch_latency_ms else math.nan


@dataclass(frozen=True)
class SafeStopResult:
    """What the 0 W round of the safe stop (`Site.aclose`) achieved.

    A failure here is a result, not an exception: the site is left either way,
    and the owner decides how to report it (``gridloop run`` exits non-zero).
    """

    commanded: int
    """Battery inverters sent 0 W: those holding a non-zero setpoint of ours."""
    failed: dict[int, str] = field(default_factory=dict)
    """Inverters that did not acknowledge the 0 W, with the reason (gRPC status,
    response status, or SHUTDOWN_TIMEOUT when the round's bound ran out)."""
    withheld: str | None = None
    """The hold that kept the 0 W from going out at all (e.g. the server turned out
    to be another site), or None. The `commanded` inverters then got nothing."""

    @property
    def ok(self) -> bool:
        """Whether every commanded inverter acknowledged 0 W."""
        return not self.failed and self.withheld is None

    def describe(self, max_ids: int = 10) -> str:
        """One line for logs and summaries: how many failed, which, and why.

        A site with thousands of inverters gets the count, the first `max_ids`
        ids (ascending) and how many more, so the line stays short.

        Args:
            max_ids: Ids named at most.

        Returns:
            E.g. ``0 W not confirmed by 2 of 5 inverters: 10, 20 (DEADLINE_EXCEEDED 2)``.
        """
        if self.withheld is not None:
            return (
                f"0 W withheld from the {self.commanded} inverters holding a setpoint of ours"
                f" (setpoints held: {self.withheld}); their setpoints end with their lifetimes"
            )
        if not self.failed:
            return f"0 W confirmed by all {self.commanded} commanded inverters"
        ids = sorted(self.failed)
        named = ", ".join(str(i) for i in ids[:max_ids])
        if len(ids) > max_ids:
            named += f" and {len(ids) - max_ids} more"
        reasons = collections.Counter(self.failed.values())
        by_reason = ", ".join(
            f"{r} {n}" for r, n in sorted(reasons.items(), key=lambda rn: (-rn[1], rn[0]))
        )
        return (
            f"0 W not confirmed by {len(ids)} of {self.commanded} inverters: {named} ({by_reason})"
        )


class Site:
    """A connected microgrid: telemetry in, battery fleet power requests out."""

    def __init__(
        self,
        client: MicrogridApiClient,
        graph: ComponentGraph,
        options: RuntimeOptions,
        identity: SiteIdentity | None = None,
        microgrid: MicrogridInfo | None = None,
    ) -> None:
        """Wire the runtime (use `Site.connect`).

        The shared core first, then the stop conditions, then the actors in data
        order: telemetry in, the dispatcher, the guard over it, the distributor
        that plans rounds for it, and error recovery.

        Args:
            client: A connected API client.
            graph: The component graph.
            options: Runtime options.
            identity: What `graph` was built from; when given, the site is checked
                against it after every reconnect (`SiteGuard`).
            microgrid: What the server said of the microgrid (id, location), if anything.
        """
        self.client: MicrogridApiClient = client
        """The API client."""
        self.microgrid: MicrogridInfo | None = microgrid
        """The microgrid's id and location as the server gave them (None: not served);
        ``microgrid.timezone`` is the site's IANA time zone when it has a location."""
        self.graph: ComponentGraph = graph
        """The component graph."""
        self.options: RuntimeOptions = options
        """Runtime options."""
        self.core: SiteCore = SiteCore(graph, options, client.wire)
        """State table, health, measurements and round planning (shared with the replay)."""
        self.state: StateTable = self.core.state
        """Columnar latest-value state of every streamed component."""
        self.health: Health = self.core.health
        """Exclusion rules and the setpoint-failure book."""
        self._init_stop_conditions()
        self._notifier = FreshNotifier()
        self.telemetry: TelemetryActor = self._new_telemetry()
        """The telemetry actor."""
        self._inv_index = {c: k for k, c in enumerate(self.core.index.inverter_ids)}
        self.dispatcher: Dispatcher = self._new_dispatcher()
        """Sends the setpoints."""
        self.q_dispatcher: Dispatcher | None = (
            self._new_dispatcher(reactive=True) if self.core.reactive else None
        )
        """Sends the reactive setpoints (None = reactive control off)."""
        self.guard: SiteGuard | None = self._new_guard(identity) if identity is not None else None
        """Checks the site after every reconnect (None: built without an identity)."""
        self.distributor: PowerDistributor = PowerDistributor(
            graph,
            self.state,
            self.health,
            self.dispatcher,
            reallocate_interval_s=options.reallocate_interval_s,
            planner=self.core.planner,
            q_dispatcher=self.q_dispatcher,
        )
        """The power distributor."""
        self.recovery: RecoveryActor = self._new_recovery()
        """Acknowledges errors and restarts battery inverters and batteries."""
        self._supervisor: Supervisor | None = None
        self._fleet_cache: SiteMeasurements | None = None
        self._fleet_cache_ns = 0
        self.safe_stop: SafeStopResult | None = None
        """The safe stop's 0 W round, once the site has been left (None before)."""

    def _init_stop_conditions(self) -> None:
        """The conditions that stop the run: a refusal by the server, a halt."""
        self.fatal_error: ApiError | None = None
        """The first refusal by the server (UNAUTHENTICATED / PERMISSION_DENIED), if any."""
        self._fatal = asyncio.Event()
        self.site_changed: str | None = None
        """Set when the server after a reconnect is another site (see the module docstring)."""
        self.another_client: str | None = None
        """Set when another client controls the site (see the module docstring)."""
        self._halt_line: str | None = None
        self._halted = asyncio.Event()
        self._contention = ContentionRule(
            int(self.options.contention_overrides), self.options.contention_window_s
        )

    def _new_telemetry(self) -> TelemetryActor:
        """The telemetry actor: one stream per streamed component, into the state table."""
        o = self.options
        return TelemetryActor(
            self.client,
            self.state,
            self._notifier,
            list(self.graph.streamed_ids),
            reconnect_min_s=o.reconnect_min_s,
            reconnect_max_s=o.reconnect_max_s,
            on_reconnected=self._on_reconnected,
            on_fatal=self._on_fatal,
        )

    def _new_dispatcher(self, reactive: bool = False) -> Dispatcher:
        """The dispatcher of every controlled component's active setpoints (`FleetIndex`
        order), or of the battery inverters' reactive ones."""
        ix = self.core.index
        ids, rows = ix.inverter_ids, ix.inv_rows
        if reactive:
            ids, rows = ix.battery_inverter_ids, ix.bat_inv_rows
        return Dispatcher(
            self.client,
            self.health,
            ids,
            rows,
            lifetime_s=int(self.options.setpoint_lifetime_s),
            timeout_s=self.options.call_timeout_s,
            on_fatal=self._on_fatal,
            on_overridden=self._on_overridden,
            reactive=reactive,
        )

    def _new_guard(self, identity: SiteIdentity) -> SiteGuard:
        """The guard that holds the dispatcher until a reconnected server is this site."""
        o = self.options
        return SiteGuard(
            self.client,
            self.dispatcher,
            identity,
            retry_min_s=o.reconnect_min_s,
            retry_max_s=o.reconnect_max_s,
            on_changed=self._on_site_changed,
            on_fatal=self._on_fatal,
        )

    def _new_recovery(self) -> RecoveryActor:
        """Error recovery of the controlled components (inverters, EV chargers) and batteries."""
        o = self.options
        return RecoveryActor(
            self.client,
            self.state,
            [*self.graph.controlled_ids, *self.graph.battery_ids],
            stale_after_s=o.stale_after_s,
            min_s=o.recovery_min_s,
            max_s=o.recovery_max_s,
            on_fatal=self._on_fatal,
        )

    def _on_reconnected(self, component_id: int) -> None:
        # A stream came back after a failure (e.g. the server restarted): setpoint
        # failures seen while it was unreachable say nothing about the component,
        # and the setpoint it holds now is unknown (a restarted server has none).
        # The server may be another site: hold setpoints until that is checked
        # (before this sample reaches any listener).
        if self.guard is not None:
            self.guard.check()
        self.health.on_success(self.state.row_of[component_id])
        idx = self._inv_index.get(component_id)
        if idx is not None:
            self.dispatcher.mark_unknown(idx)

    def _on_fatal(self, error: ApiError) -> None:
        if self.fatal_error is None:
            _logger.debug("the server refused us: %s", error)
            self.fatal_error = error
            self._fatal.set()

    def _halt(self, line: str) -> None:
        if self._halt_line is None:
            _logger.error("%s", line)
            self._halt_line = line
            self._halted.set()

    def _on_site_changed(self, changes: str) -> None:
        # The guard holds the dispatcher for good: nothing reaches the new site.
        self.site_changed = changes
        self._halt(
            f"site changed after reconnect: {changes}; stopping: no setpoint goes to it,"
            " not even 0 W"
        )

    def _on_overridden(self, component_id: int) -> None:
        if self.another_client is not None:
            return
        rule = self._contention
        if not rule.record(component_id, time.monotonic_ns()):
            return
        ids = ", ".join(map(str, rule.components()))
        self.another_client = (
            f"another client controls this site: {rule.in_window()} setpoints of ours to"
            f" inverter(s) {ids} were overridden by setpoints we did not send within"
            f" {self.options.contention_window_s:g} s"
        )
        self.dispatcher.hold(HOLD_ANOTHER_CLIENT, zero_ok=True)
        self._halt(
            f"{self.another_client}; stopping: no further setpoints, 0 W only to inverters"
            " still holding ours"
        )

    async def wait_halted(self) -> str:
        """Wait until the site stops commanding for good (site changed, another client).

        Returns:
            The one line that says why (also logged as an ERROR).
        """
        await self._halted.wait()
        assert self._halt_line is not None
        return self._halt_line

    async def wait_fatal_error(self) -> ApiError:
        """Wait until the server refuses this client (wrong key, no permission).

        Returns:
            The first such error (also in `fatal_error`); the runtime cannot recover.
        """
        await self._fatal.wait()
        assert self.fatal_error is not None
        return self.fatal_error

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        api_key: str | None = None,
        root_cert: bytes | None = None,
        options: RuntimeOptions | None = None,
        api_version: str | None = None,
    ) -> Site:
        """Connect, read the microgrid id, components and connections, build the graph.

        Args:
            url: `grpc://host:port?ssl=true|false` (ssl defaults to false on loopback,
                true elsewhere).
            api_key: Sent as `key` metadata.
            root_cert: PEM root certificate(s) for TLS.
            options: Runtime options (defaults when None).
            api_version: The server's Microgrid API version (`API_VERSIONS`); None =
                find it (newest first).

        Returns:
            The site (enter it with `async with` to start the runtime).

        Raises:
            ApiError: The server is unreachable or refused a call (names URL and status).
            GraphError: The graph is unusable (e.g. no battery behind an inverter).
            OptionsError: A bad URL or option.
        """
        opts = options if options is not None else RuntimeOptions()
        client = MicrogridApiClient(
            url,
            api_key=api_key,
            root_cert=root_cert,
            call_timeout_s=opts.call_timeout_s,
            api_version=api_version,
        )
        try:
            microgrid, components, connections = await read_site(client)
            graph = ComponentGraph.from_protos(components, connections)
        except BaseException:
            await client.close()
            raise
        identity = SiteIdentity.from_protos(
            None if microgrid is None else microgrid.id, components, connections
        )
        return cls(client, graph, opts, identity, microgrid)

    # ----------------------------------------------------------------- lifecycle
    async def __aenter__(self) -> Site:
        """Start telemetry streams and the distributor under a supervisor.

        Returns:
            self
        """
        actors = [self.telemetry, self.distributor, self.recovery]
        self._supervisor = Supervisor(
            [*actors, self.guard] if self.guard is not None else actors,
            name="site",
            restart_min_s=self.options.reconnect_min_s,
            restart_max_s=self.options.reconnect_max_s,
        )
        await self._supervisor.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Send 0 W to every commanded inverter (bounded), stop all tasks, close."""
        await self.aclose()

    async def aclose(self) -> None:
        """Safe stop (idempotent): 0 W to commanded inverters, stop tasks, close the channel.

        The 0 W round is bounded (`RuntimeOptions.shutdown_timeout_s`); what it
        achieved is in `safe_stop` afterwards.
        """
        sup, self._supervisor = self._supervisor, None
        try:
            if sup is not None:
                # Stop the distributor first so it cannot send after the 0 W round.
                await self._stop_distributor(sup)
                await self._send_zero()
                await self._send_zero_reactive()
                await sup.__aexit__(None, None, None)
        finally:
            await self.distributor.aclose()
            await self._notifier.aclose()
            await self.client.close(0)

    async def _stop_distributor(self, sup: Supervisor) -> None:
        for task in sup._tasks:
            if task.get_name() == self.distributor.name:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    async def _send_zero(self) -> None:
        # Every battery inverter holding a non-zero setpoint of ours gets 0 W, even one
        # whose telemetry is stale (0 W is the one command that is always safe to try),
        # except those whose fresh telemetry says they are not running (error, off):
        # they hold no power and would refuse the call. PV caps and EV limits are not
        # touched (0 W would stop production / charging): they lapse with their
        # finite lifetime, as if the controller had died.
        d = self.dispatcher
        nb = self.core.index.n_battery
        t = self.state
        now = time.monotonic_ns()
        rows = d.inverter_rows
        fresh = ~stale_mask(now, t.received_ns[rows], self.health.stale_after_ns)
        down = fresh & ~t.state_ok[rows]
        idx = [i for i in range(nb) if not math.isnan(d.last_w[i])
               and d.last_w[i] != 0.0 and not down[i]]
        if not idx:
            self.safe_stop = SafeStopResult(commanded=0)
            return
        if (why := d.zero_held) is not None:
            # Nothing may reach this server, not even 0 W: say so, never "confirmed".
            self.safe_stop = SafeStopResult(commanded=len(idx), withheld=why)
            _logger.warning("safe stop: %s", self.safe_stop.describe())
            return
        failed = await self._send_zeros(d, idx)
        self.safe_stop = result = SafeStopResult(commanded=len(idx), failed=failed)
        if result.ok:
            _logger.info("safe stop: %s", result.describe())
        else:
            # After a refusal by the server this failure is expected (and reported).
            log = _logger.info if self.fatal_error is not None else _logger.warning
            log("safe stop: %s", result.describe())

    async def _send_zero_reactive(self) -> None:
        """The safe stop's reactive part: 0 VAr to every inverter holding a non-zero
        reactive setpoint of ours (bounded like the 0 W round; failures are logged,
        the finite lifetime ends the setpoint anyway)."""
        d = self.q_dispatcher
        if d is None or d.zero_held is not None or self.dispatcher.zero_held is not None:
            return
        idx = [i for i in range(len(d.inverter_ids))
               if not math.isnan(d.last_w[i]) and d.last_w[i] != 0.0]
        if not idx:
            return
        if failed := await self._send_zeros(d, idx):
            _logger.warning("safe stop: 0 VAr not confirmed by %s", sorted(failed))

    async def _send_zeros(self, d: Dispatcher, idx: list[int]) -> dict[int, str]:
        """The safe stop's round: 0 to the indices ``idx`` of ``d`` within the shutdown
        bound; returns what failed (id → reason). Unconfirmed until acknowledged: if the
        bound runs out, what is still unknown is what failed."""
        sent = np.zeros(len(d.inverter_ids), dtype=np.bool_)
        sent[idx] = True
        d.mark_unknown(sent)
        try:
            async with asyncio.timeout(self.options.shutdown_timeout_s + 0.5):
                res = await d.send(idx, [0.0] * len(idx), None,
                                   timeout_s=self.options.shutdown_timeout_s,
                                   log_failures=False)
            return res.failed
        except (TimeoutError, Exception) as exc:
            reason = "SHUTDOWN_TIMEOUT" if isinstance(exc, TimeoutError) else type(exc).__name__
            return {d.inverter_ids[i]: reason for i in idx if not d.last_ok[i]}

    # ----------------------------------------------------------------- requests
    def request_reactive(self, target_var: float) -> None:
        """Set the battery fleet's reactive target (VAr, + = absorbing); planned with every
        round from now on (the next `request_power` or renewal sends it).

        Args:
            target_var: Fleet reactive target in VAr.

        Raises:
            OptionsError: Reactive control is off, or `target_var` is not finite.
        """
        if self.q_dispatcher is None:
            raise OptionsError("reactive", self.options.reactive,
                               "reactive control is off: no reactive target")
        if isinstance(target_var, bool) or not isinstance(target_var, (int, float)) or (
            not math.isfinite(target_var)
        ):
            raise OptionsError("target_var", target_var, "must be a finite number of VAr")
        self.core.planner.reactive_target_var = float(target_var)

    def request_power(self, target_w: float, must_w: float = math.nan, *,
                      raise_now: bool = False) -> None:
        """Ask for `target_w` W (+ = charging) for the battery fleet; non-blocking, latest wins.

        Args:
            target_w: Fleet target in W.
            must_w: What the strategies' bounds require of batteries, PV curtailment
                and EV limits together (W; nan = PV and EV run uncapped).
            raise_now: The site is past a limit that needs more import now (the grid
                exports more than the export limit): no deadband holds back a raise
                (`RoundPlanner.raise_now`), in this round and until the next request.
        """
        self.core.planner.raise_now = bool(raise_now)
        self.distributor.request_power(target_w, must_w)

    async def set_power(self, target_w: float, must_w: float = math.nan) -> DistributionOutcome:
        """Request `target_w` and wait for its outcome.

        Args:
            target_w: Fleet target in W.
            must_w: As in `request_power`.

        Returns:
            The outcome.
        """
        return await self.distributor.set_power(target_w, must_w)

    def new_result_receiver(self) -> Receiver[DistributionOutcome]:
        """Receive one `DistributionOutcome` per processed request.

        Returns:
            The receiver.
        """
        return self.distributor.new_result_receiver()

    def new_fresh_receiver(self, component_ids: Collection[int] | None = None) -> Receiver[int]:
        """Receive a component id each time a fresh sample of it was decoded.

        Args:
            component_ids: Only these components (all when None).

        Returns:
            The receiver.
        """
        return self._notifier.new_receiver(component_ids)

    def add_fresh_listener(
        self, component_ids: Collection[int], listener: Callable[[int], None]
    ) -> Callable[[], None]:
        """Call `listener(component_id)` synchronously right after each decoded sample.

        The low-latency alternative to `new_fresh_receiver`: the listener runs on
        the telemetry task before any other task, so a control step it makes (e.g.
        `measurements()` then `request_power()`) is not queued behind the decoding
        of other streams. It must be quick; its exceptions are logged.

        Args:
            component_ids: The components to listen to.
            listener: The callback.

        Returns:
            A function that removes the listener.
        """
        return self._notifier.add_listener(component_ids, listener)

    # ----------------------------------------------------------------- snapshots
    def measurements(self, fleet_max_age_s: float = 0.0) -> SiteMeasurements:
        """A cheap snapshot of the site (plain floats and small arrays).

        The grid fields are always current. The fleet fields (powers, SoC, limits,
        bounds, health per group) come from a snapshot at most `fleet_max_age_s`
        old when one exists: a caller on a latency-critical path (a control step
        per grid sample) can then skip the numpy work, and refresh the snapshot
        off that path with a plain `measurements()` call, which always computes
        everything and stores it.

        Args:
            fleet_max_age_s: How old the fleet fields may be (0 = compute now).

        Returns:
            The measurements.
        """
        now = time.monotonic_ns()
        cached = self._fleet_cache
        if (
            cached is not None
            and fleet_max_age_s > 0.0
            and now - self._fleet_cache_ns <= fleet_max_age_s * 1e9
        ):
            power, freq, sample_ns = self.core.grid(now)
            return dataclasses.replace(
                cached,
                grid_power_w=power,
                grid_frequency_hz=freq,
                grid_sample_time_ns=sample_ns,
            )
        m = self.core.measurements(now)
        self._fleet_cache, self._fleet_cache_ns = m, now
        return m

    def stats(self) -> RuntimeStats:
        """Runtime counters.

        Returns:
            The stats.
        """
        ds = self.dispatcher.stats
        qs = self.q_dispatcher.stats if self.q_dispatcher is not None else None
        return RuntimeStats(
            setpoints_sent=ds.setpoints_sent,
            setpoints_ok=ds.setpoints_ok,
            setpoints_failed=dict(ds.setpoints_failed),
            setpoints_skipped_deadband=ds.setpoints_skipped_deadband,
            dispatch_latency_ms=list(self.distributor.latencies_ms),
            reconnects=self.telemetry.reconnects,
            excluded=self.health.reasons(time.monotonic_ns()),
            actor_restarts={
                a.name: a.restarts for a in (self.telemetry, self.distributor, self.recovery)
            },
            recovery=dataclasses.asdict(self.recovery.stats),
            overridden_by_others=dict(ds.overridden_by_others),
            another_client=self.another_client,
            site_changed=self.site_changed,
            reactive_setpoints_sent=qs.setpoints_sent if qs is not None else 0,
            reactive_setpoints_failed=dict(qs.setpoints_failed) if qs is not None else {},
            reactive_out_of_bounds=self.core.planner.reactive_out_of_bounds,
        )



