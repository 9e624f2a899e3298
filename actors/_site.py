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
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, fields
from types import TracebackType

import numpy as np
from frequenz.channels import Receiver

from ._actor import Supervisor, validate_positive
from ._client import MicrogridApiClient
from ._contention import ContentionRule
from ._dispatch import Dispatcher
from ._distributor import DistributionOutcome, PowerDistributor, fleet_bounds
from ._errors import ApiError, OptionsError
from ._graph import ComponentGraph
from ._health import Health, stale_mask
from ._identity import SiteGuard, SiteIdentity, read_site
from ._recovery import RecoveryActor
from ._state import BoolArray, FloatArray, IntArray, StateTable, finite_or
from ._telemetry import FreshNotifier, TelemetryActor

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RuntimeOptions:
    """Tuning of the runtime; validated on creation (`OptionsError` names the field)."""

    call_timeout_s: float = 2.0
    """Deadline of every unary call and every SetElectricalComponentPower (s)."""
    setpoint_lifetime_s: float = 60.0
    """request_lifetime sent with every setpoint (s, the API accepts 10..900)."""
    renew_margin_s: float = 20.0
    """An unchanged setpoint is re-sent when it is this close to expiry (s)."""
    deadband_w: float = 50.0
    """An inverter's new setpoint within this of the last sent one is not re-sent (W)."""
    stale_after_s: float = 1.0
    """Telemetry older than this excludes the component (s)."""
    retry_min_s: float = 1.0
    """First retry delay of a component whose setpoint failed (s)."""
    retry_max_s: float = 30.0
    """Maximum retry delay (s)."""
    soc_exponent: float = 1.0
    """Passed to `distribution.allocate` (how strongly SoC skews the split)."""
    reconnect_min_s: float = 0.1
    """First telemetry stream reconnect delay (s)."""
    reconnect_max_s: float = 1.0
    """Maximum telemetry stream reconnect delay (s); it bounds how long after a
    server restart the runtime notices that the server is back."""
    reallocate_interval_s: float = 1.0
    """Period of re-running the last target (renewal, health changes) (s)."""
    shutdown_timeout_s: float = 1.0
    """Bound on the 0 W setpoints sent when the site is left (s)."""
    recovery_min_s: float = 1.0
    """First delay between two AckError+Start attempts on a component in ERROR (s)."""
    recovery_max_s: float = 30.0
    """Maximum delay between two such attempts (s)."""
    contention_overrides: int = 3
    """Setpoints of ours overridden by another client's within `contention_window_s`
    that mean another client controls the site (commanding then stops)."""
    contention_window_s: float = 60.0
    """The window of `contention_overrides` (s)."""

    def __post_init__(self) -> None:
        """Validate every field."""
        for f in fields(self):
            validate_positive(f.name, getattr(self, f.name), allow_zero=f.name == "deadband_w")
        lt = self.setpoint_lifetime_s
        if not 10 <= lt <= 900 or lt != int(lt):
            raise OptionsError("setpoint_lifetime_s", lt, "must be a whole number in 10..900")
        if self.renew_margin_s >= lt:
            raise OptionsError(
                "renew_margin_s", self.renew_margin_s, f"must be < setpoint_lifetime_s={lt}"
            )
        if self.retry_min_s > self.retry_max_s:
            raise OptionsError("retry_min_s", self.retry_min_s, "must be <= retry_max_s")
        if self.reconnect_min_s > self.reconnect_max_s:
            raise OptionsError(
                "reconnect_min_s", self.reconnect_min_s, "must be <= reconnect_max_s"
            )
        if self.recovery_min_s > self.recovery_max_s:
            raise OptionsError(
                "recovery_min_s", self.recovery_min_s, "must be <= recovery_max_s"
            )
        if self.contention_overrides != int(self.contention_overrides):
            raise OptionsError(
                "contention_overrides", self.contention_overrides, "must be a whole number"
            )


@dataclass(frozen=True)
class SiteMeasurements:
    """A cheap snapshot of the site (W, + = into the component / importing)."""

    grid_power_w: float
    """Power through the grid connection point (+ = import): the sum of the grid
    formula's terms (`ComponentGraph.grid`); NaN if any is unknown, stale or incomplete."""
    grid_frequency_hz: float
    """Grid frequency from the first valid frequency term, NaN if none is valid."""
    grid_sample_time_ns: int
    """Local monotonic time the last sample of a grid term was decoded (0 = never)."""
    battery_power_w: float
    """Sum of the battery inverters' measured AC power (+ = charging)."""
    pv_power_w: float
    """PV power (meters if any, else PV inverters; negative = producing)."""
    load_power_w: float
    """Sum of the load meters (NaN if none)."""
    group_soc_pct: FloatArray
    """Capacity-weighted SoC per battery group (%)."""
    group_capacity_wh: FloatArray
    """Capacity per battery group (Wh)."""
    group_power_w: FloatArray
    """Measured AC power per battery group (W)."""
    group_healthy: BoolArray
    """Whether each group has a usable inverter and battery right now."""
    soc_pct: float
    """Capacity-weighted SoC of the fleet (%)."""
    soc_lower_pct: float
    """Capacity-weighted lower SoC limit of the fleet (%; 0 when capacity is unknown)."""
    soc_upper_pct: float
    """Capacity-weighted upper SoC limit of the fleet (%; 100 when capacity is unknown)."""
    fleet_lower_w: float
    """AC lower bound of the healthy, usable fleet now (W, SoC-aware)."""
    fleet_upper_w: float
    """AC upper bound of the healthy, usable fleet now (W, SoC-aware)."""


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

    @property
    def ok(self) -> bool:
        """Whether every commanded inverter acknowledged 0 W."""
        return not self.failed

    def describe(self, max_ids: int = 10) -> str:
        """One line for logs and summaries: how many failed, which, and why.

        A site with thousands of inverters gets the count, the first `max_ids`
        ids (ascending) and how many more, so the line stays short.

        Args:
            max_ids: Ids named at most.

        Returns:
            E.g. ``0 W not confirmed by 2 of 5 inverters: 10, 20 (DEADLINE_EXCEEDED 2)``.
        """
        if not self.failed:
            return f"0 W confirmed by all {self.commanded} commanded inverters"
        ids = sorted(self.failed)
        named = ", ".join(str(i) for i in ids[:max_ids])
        if len(ids) > max_ids:
            named += f" and {len(ids) - max_ids} more"
        reasons: dict[str, int] = {}
        for reason in self.failed.values():
            reasons[reason] = reasons.get(reason, 0) + 1
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
    ) -> None:
        """Wire the runtime (use `Site.connect`).

        Args:
            client: A connected API client.
            graph: The component graph.
            options: Runtime options.
            identity: What `graph` was built from; when given, the site is checked
                against it after every reconnect (`SiteGuard`).
        """
        self.client: MicrogridApiClient = client
        """The API client."""
        self.graph: ComponentGraph = graph
        """The component graph."""
        self.options: RuntimeOptions = options
        """Runtime options."""
        ids = list(graph.streamed_ids)
        self.state: StateTable = StateTable(ids, [graph.components[i].category for i in ids])
        """Columnar latest-value state of every streamed component."""
        inv_rows = np.zeros(self.state.n, dtype=np.bool_)
        for cid in graph.battery_inverter_ids:
            inv_rows[self.state.row_of[cid]] = True
        self.health: Health = Health(
            self.state,
            stale_after_s=options.stale_after_s,
            retry_min_s=options.retry_min_s,
            retry_max_s=options.retry_max_s,
            bounds_required=inv_rows,
        )
        """Exclusion rules and the setpoint-failure book."""
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
            int(options.contention_overrides), options.contention_window_s
        )
        self._notifier = FreshNotifier()
        self.telemetry: TelemetryActor = TelemetryActor(
            client,
            self.state,
            self._notifier,
            ids,
            reconnect_min_s=options.reconnect_min_s,
            reconnect_max_s=options.reconnect_max_s,
            on_reconnected=self._on_reconnected,
            on_fatal=self._on_fatal,
        )
        """The telemetry actor."""
        inv_ids = list(graph.battery_inverter_ids)
        self._inv_index = {c: k for k, c in enumerate(inv_ids)}
        self.dispatcher: Dispatcher = Dispatcher(
            client,
            self.health,
            inv_ids,
            np.array([self.state.row_of[i] for i in inv_ids], dtype=np.int64),
            lifetime_s=int(options.setpoint_lifetime_s),
            timeout_s=options.call_timeout_s,
            on_fatal=self._on_fatal,
            on_overridden=self._on_overridden,
        )
        """Sends the setpoints."""
        self.guard: SiteGuard | None = (
            SiteGuard(
                client,
                self.dispatcher,
                identity,
                retry_min_s=options.reconnect_min_s,
                retry_max_s=options.reconnect_max_s,
                on_changed=self._on_site_changed,
                on_fatal=self._on_fatal,
            )
            if identity is not None
            else None
        )
        """Checks the site after every reconnect (None: built without an identity)."""
        self.distributor: PowerDistributor = PowerDistributor(
            graph,
            self.state,
            self.health,
            self.dispatcher,
            soc_exponent=options.soc_exponent,
            deadband_w=options.deadband_w,
            renew_after_s=options.setpoint_lifetime_s - options.renew_margin_s,
            reallocate_interval_s=options.reallocate_interval_s,
        )
        """The power distributor."""
        self.recovery: RecoveryActor = RecoveryActor(
            client,
            self.state,
            [*graph.battery_inverter_ids, *graph.battery_ids],
            stale_after_s=options.stale_after_s,
            min_s=options.recovery_min_s,
            max_s=options.recovery_max_s,
            on_fatal=self._on_fatal,
        )
        """Acknowledges errors and restarts battery inverters and batteries."""
        self._supervisor: Supervisor | None = None
        self._fleet_cache: SiteMeasurements | None = None
        self._fleet_cache_ns = 0
        st = self.state
        formula = graph.grid
        self._grid_rows = np.array([st.row_of[i] for i in formula.power_ids], dtype=np.int64)
        self._grid_measurable = formula.measurable
        self._grid_one_row = int(self._grid_rows[0]) if len(formula.power_ids) == 1 else -1
        # Frequency candidates as positions in `_grid_rows`, in order of preference.
        self._freq_pos = [formula.power_ids.index(i) for i in formula.frequency_ids]
        self._pv_rows = np.array(
            [st.row_of[i] for i in (graph.pv_meter_ids or graph.pv_inverter_ids)], dtype=np.int64
        )
        self._load_rows = np.array([st.row_of[i] for i in graph.load_meter_ids], dtype=np.int64)
        self.safe_stop: SafeStopResult | None = None
        """The safe stop's 0 W round, once the site has been left (None before)."""

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
        self.dispatcher.hold("another-client", zero_ok=True)
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
    ) -> Site:
        """Connect, read the microgrid id, components and connections, build the graph.

        Args:
            url: `grpc://host:port?ssl=true|false` (ssl defaults to false on loopback,
                true elsewhere).
            api_key: Sent as `key` metadata.
            root_cert: PEM root certificate(s) for TLS.
            options: Runtime options (defaults when None).

        Returns:
            The site (enter it with `async with` to start the runtime).

        Raises:
            ApiError: The server is unreachable or refused a call (names URL and status).
            GraphError: The graph is unusable (e.g. no battery behind an inverter).
            OptionsError: A bad URL or option.
        """
        opts = options if options is not None else RuntimeOptions()
        client = MicrogridApiClient(
            url, api_key=api_key, root_cert=root_cert, call_timeout_s=opts.call_timeout_s
        )
        try:
            microgrid_id, components, connections = await read_site(client)
            graph = ComponentGraph.from_protos(components, connections)
        except BaseException:
            await client.close()
            raise
        identity = SiteIdentity.from_protos(microgrid_id, components, connections)
        return cls(client, graph, opts, identity)

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

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
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
        # Every inverter holding a non-zero setpoint of ours gets 0 W, even one whose
        # telemetry is stale (0 W is the one command that is always safe to try),
        # except those whose fresh telemetry says they are not running (error, off):
        # they hold no power and would refuse the call.
        d = self.dispatcher
        t = self.state
        now = time.monotonic_ns()
        rows = d.inverter_rows
        fresh = ~stale_mask(now, t.received_ns[rows], self.health.stale_after_ns)
        down = fresh & ~t.state_ok[rows]
        idx = [i for i in range(len(d.inverter_ids)) if not math.isnan(d.last_w[i])
               and d.last_w[i] != 0.0 and not down[i]]
        if not idx:
            self.safe_stop = SafeStopResult(commanded=0)
            return
        # Unconfirmed until acknowledged: if the round's bound runs out, what is
        # still unknown is what failed.
        sent = np.zeros(len(d.inverter_ids), dtype=np.bool_)
        sent[idx] = True
        d.mark_unknown(sent)
        failed: dict[int, str]
        try:
            async with asyncio.timeout(self.options.shutdown_timeout_s + 0.5):
                res = await d.send(idx, [0.0] * len(idx), None,
                                   timeout_s=self.options.shutdown_timeout_s,
                                   log_failures=False)
            failed = res.failed
        except (TimeoutError, Exception) as exc:
            reason = "SHUTDOWN_TIMEOUT" if isinstance(exc, TimeoutError) else type(exc).__name__
            failed = {d.inverter_ids[i]: reason for i in idx if not d.last_ok[i]}
        self.safe_stop = result = SafeStopResult(commanded=len(idx), failed=failed)
        if result.ok:
            _logger.info("safe stop: %s", result.describe())
        else:
            # After a refusal by the server this failure is expected (and reported).
            log = _logger.info if self.fatal_error is not None else _logger.warning
            log("safe stop: %s", result.describe())

    # ----------------------------------------------------------------- requests
    def request_power(self, target_w: float) -> None:
        """Ask for `target_w` W (+ = charging) for the battery fleet; non-blocking, latest wins.

        Args:
            target_w: Fleet target in W.
        """
        self.distributor.request_power(target_w)

    async def set_power(self, target_w: float) -> DistributionOutcome:
        """Request `target_w` and wait for its outcome.

        Args:
            target_w: Fleet target in W.

        Returns:
            The outcome.
        """
        return await self.distributor.set_power(target_w)

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
            power, freq, sample_ns = self._grid(now)
            return dataclasses.replace(
                cached,
                grid_power_w=power,
                grid_frequency_hz=freq,
                grid_sample_time_ns=sample_ns,
            )
        m = self._measure(now)
        self._fleet_cache, self._fleet_cache_ns = m, now
        return m

    def _grid(self, now: int) -> tuple[float, float, int]:
        """Grid power, frequency and last sample time from the grid formula's terms.

        Stale, incomplete or error-state data is unknown (NaN), never an old value:
        the power needs every term, the frequency the first valid candidate. A site
        with one term (a grid meter) takes the scalar path, as fast as one row can be.
        """
        rows = self._grid_rows
        if not rows.size:
            return math.nan, math.nan, 0
        t = self.state
        valid = self.health.measured_mask(now, rows)
        g = self._grid_one_row
        if g >= 0:  # one term
            ok = bool(valid[0])
            power = float(t.power_w[g]) if ok and self._grid_measurable else math.nan
            freq = float(t.frequency_hz[g]) if ok and self._freq_pos else math.nan
            return power, freq, int(t.received_ns[g])
        power = (
            float(t.power_w[rows].sum()) if self._grid_measurable and valid.all() else math.nan
        )
        freq = math.nan
        for k in self._freq_pos:
            f = float(t.frequency_hz[rows[k]])
            if valid[k] and math.isfinite(f):
                freq = f
                break
        return power, freq, int(t.received_ns[rows].max())

    def _measure(self, now: int) -> SiteMeasurements:
        t = self.state
        d = self.distributor
        ok = self.health.ok_mask(now)
        ir, br = d.inv_rows, d.bat_rows
        soc = t.soc_pct[br]
        inv_ok, bat_ok = ok[ir], ok[br] & np.isfinite(soc)
        ng = d.n_groups
        cap = finite_or(t.capacity_wh[br], 0.0)
        soc0 = finite_or(soc, 0.0)
        inv_power = finite_or(t.power_w[ir], 0.0)
        gcap = np.bincount(d.group_of_bat, cap, ng).astype(np.float64)
        gsoc_w = np.bincount(d.group_of_bat, soc0 * cap, ng)
        with np.errstate(invalid="ignore", divide="ignore"):
            gsoc = np.where(gcap > 0, gsoc_w / gcap, np.nan)
        gpow = np.bincount(d.group_of_inv, inv_power, ng).astype(np.float64)
        ginv_ok = np.bincount(d.group_of_inv, inv_ok, ng) > 0
        gbat_ok = np.bincount(d.group_of_bat, bat_ok, ng) > 0
        lo, hi = fleet_bounds(
            d.group_of_inv, d.group_of_bat, ng,
            t.power_lower_w[ir], t.power_upper_w[ir], inv_ok,
            t.power_lower_w[br], t.power_upper_w[br], soc,
            t.soc_lower_pct[br], t.soc_upper_pct[br], bat_ok,
        )
        total_cap = float(gcap.sum())
        usable = ginv_ok & gbat_ok
        grid_power, grid_freq, grid_ns = self._grid(now)
        power = t.power_w

        def total(rows: IntArray) -> float:
            return float(finite_or(power[rows], 0.0).sum())

        def weighted(values: FloatArray, empty: float) -> float:
            if not total_cap:
                return empty
            return float(np.dot(finite_or(values, 0.0), cap) / total_cap)

        return SiteMeasurements(
            grid_power_w=grid_power,
            grid_frequency_hz=grid_freq,
            grid_sample_time_ns=grid_ns,
            battery_power_w=float(inv_power.sum()),
            pv_power_w=total(self._pv_rows) if self._pv_rows.size else 0.0,
            load_power_w=total(self._load_rows) if self._load_rows.size else math.nan,
            group_soc_pct=gsoc,
            group_capacity_wh=gcap,
            group_power_w=gpow,
            group_healthy=usable,
            soc_pct=float(gsoc_w.sum() / total_cap) if total_cap else math.nan,
            soc_lower_pct=weighted(t.soc_lower_pct[br], 0.0),
            soc_upper_pct=weighted(t.soc_upper_pct[br], 100.0),
            fleet_lower_w=float(lo[usable].sum()),
            fleet_upper_w=float(hi[usable].sum()),
        )

    def stats(self) -> RuntimeStats:
        """Runtime counters.

        Returns:
            The stats.
        """
        ds = self.dispatcher.stats
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
        )



