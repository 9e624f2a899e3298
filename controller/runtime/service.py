"""The service: one run of the controller against a site, from config to summary.

:func:`run_service` starts the embedded simulator unless ``--api`` names a
server, connects (:class:`actors.Site`), refuses a site it cannot control
(:func:`grid_refusal`), runs the :class:`~controller.runtime.control.Controller`
for the run's duration or until SIGINT, SIGTERM or SIGHUP, brings the fleet to
0 W and returns the :class:`~controller.runtime.summary.RunSummary`.

With a schedule (``--schedule FILE`` or ``[schedule] file``) the controller follows a
:class:`~controller.runtime.schedule.ScheduleBook`: every source of
:func:`schedule_sources` (the one hook: the schedule file now, the Dispatch API
next to it) runs as a task beside the control loop and delivers its windows into
the book; every change is logged with its source, the site time and one line per
window added or removed. SIGHUP then asks the sources to reload (those with a
``reload()``) instead of stopping the run.
:func:`runtime_options` maps the config (and a site's time scale) to the actor
runtime's options.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import time
import zoneinfo
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from actors import (
    ApiError,
    ApiUrl,
    GraphError,
    GridFormula,
    OptionsError,
    RuntimeOptions,
    RuntimeStats,
    SafeStopResult,
    Site,
)
from controller.errors import (
    EmbeddedSimulatorError,
    UserError,
)
from controller.runtime.billing import SiteKey, billing_zone
from controller.runtime.config import GridloopConfig
from controller.runtime.control import Controller, Observer, OutcomeObserver
from controller.runtime.dispatch_source import DispatchSettings
from controller.runtime.embedded import EmbeddedSimulator
from controller.runtime.process import stop_on_signals
from controller.runtime.schedule import Deliver, ScheduleBook, ScheduleSource, Window
from controller.runtime.schedule_file import FileScheduleSource
from controller.runtime.strategies import target_limit_w
from controller.runtime.summary import (
    ReactiveAccumulator,
    RunSummary,
    out_of_bounds_by_kind,
    percentiles,
    refused_as_out_of_bounds,
)

_STATUS_LOG = logging.getLogger("gridloop.controller.status")
"""Lines an operator should see at the default level (start-up facts, status)."""


@dataclass(frozen=True, slots=True)
class RunOptions:
    """What ``gridloop run`` was asked for on the command line (None = config/default)."""

    api_url: str | None = None
    """``grpc://HOST:PORT[?ssl=true]``; None = the config's, else the embedded simulator."""
    api_key: str | None = None
    """API key (flag or GRIDLOOP_API_KEY); None = the config's."""
    root_cert_path: str | None = None
    """PEM root certificate for TLS; None = the config's."""
    api_version: str | None = None
    """Microgrid API version of the server; None = the config's, else found."""
    config_path: str | None = None
    """gridloop TOML config; None = defaults."""
    dispatch_url: str | None = None
    """Frequenz Dispatch API with schedule windows; None = the config's ``[dispatch] url``."""
    dispatch_key: str | None = None
    """Its auth key (``--dispatch-key`` or DISPATCH_API_AUTH_KEY); None = the config's."""
    duration_s: float | None = None
    """Wall-clock run time; None = the config's ``run.duration_s``."""
    time_scale: float | None = None
    """Site seconds per wall second: of the embedded simulator (None = the config's),
    or of a time-scaled server given by ``api_url`` (None = 1)."""
    site_path: str | None = None
    """Embedded simulator site TOML; None = the config's (default site)."""
    summary_json: str | None = None
    """Write the summary here as JSON."""
    state_file: str | None = None
    """Keep the billing state here (``--state``); None = the config's, else the default
    (:func:`state_file`)."""
    record_csv: str | None = None
    """Write one CSV row per record interval here."""
    metrics_port: int | None = None
    """Serve Prometheus metrics on this port."""
    dashboard: bool = False
    """Draw the live dashboard (stdout is a terminal and not --no-dashboard)."""
    log_format: Literal["text", "json"] = "text"
    """Log line format."""
    log_level: str = "WARNING"
    """Log level."""
    schedule_path: str | None = None
    """Schedule file (``--schedule``); None = the config's ``[schedule] file``, else none."""


def _read_root_cert(path: str | Path | None, field_name: str) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UserError(f"{field_name} = {str(path)!r}: cannot read: {exc.strerror}") from None


def _api_error_line(exc: ApiError) -> str:
    """One line for an API failure, with a hint when the server refused our key or cert."""
    line = str(exc)
    if exc.refused:
        line += " (check --api-key, GRIDLOOP_API_KEY or [api] api_key)"
    elif "CERTIFICATE_VERIFY_FAILED" in line or "certificate verify failed" in line.lower():
        line += " (the server's TLS certificate is not signed by the trusted root; see --root-cert)"
    return " ".join(line.split())


def grid_refusal(grid: GridFormula, config: GridloopConfig) -> str | None:
    """Why a site measured by ``grid`` cannot run the enabled strategies (None: it can).

    Peak shaving needs the grid power, frequency response the grid frequency;
    the operator may disable a strategy to run without what it needs.

    Args:
        grid: The site's grid formula.
        config: The run's configuration.

    Returns:
        One line (without the server's URL), or None.
    """
    if config.peak_shaving.enabled and grid.problem is not None:
        return (
            f"the grid power cannot be measured: {grid.problem} "
            "(set [peak_shaving] enabled = false to run without it)"
        )
    if config.frequency_response.enabled and not grid.frequency_ids:
        return (
            "the grid frequency cannot be measured: no meter or inverter on the grid "
            "connection point (set [frequency_response] enabled = false to run without it)"
        )
    return None


async def _stop_when_refused(site: Site, stop: asyncio.Event) -> None:
    # The server refusing us, or the site stopping commanding for good (another
    # site after a reconnect, another client in control), ends the run.
    async with asyncio.TaskGroup() as tg:
        waits = [tg.create_task(site.wait_fatal_error()), tg.create_task(site.wait_halted())]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        stop.set()
        for task in waits:
            task.cancel()


def _setpoint_lifetimes_s(config: GridloopConfig, time_scale: float) -> tuple[float, float]:
    """A setpoint's ``request_lifetime`` (site s, whole, 10..900) and how long it lasts (wall s)."""
    lifetime_site_s = float(
        min(900, max(10, round(config.control.setpoint_lifetime_s * time_scale)))
    )
    return lifetime_site_s, lifetime_site_s / time_scale


def _time_scale_problem(config: GridloopConfig, time_scale: float) -> str | None:
    """Why setpoints cannot be kept alive on a site running ``time_scale``× fast, or None.

    The runtime renews an unchanged setpoint ``setpoint_lifetime_s −
    renew_margin_s`` wall seconds after sending it, which must come before the
    lifetime it sent runs out by its own count (``renew_margin_s > 0``). gridloop
    renews at half the wall lifetime ``L / time_scale`` (``L`` the lifetime in site
    seconds), so ``L / (2 · time_scale) < L``: the time scale must exceed 0.5,
    whatever the configured lifetime. (Slower sites would also stretch the API's
    shortest lifetime, 10 s of site time, to more than 20 s of wall time that a
    dead controller's setpoints keep acting.)
    """
    if time_scale > 0.5:
        return None
    lifetime_site_s, lifetime_wall_s = _setpoint_lifetimes_s(config, time_scale)
    return (
        f"must be > 0.5 (site seconds per wall second): a setpoint of {lifetime_site_s:g} s"
        f" of site time lasts {lifetime_wall_s:.3g} s of wall time here, and gridloop"
        " renews setpoints after half their wall lifetime, which must come within"
        f" {lifetime_site_s:g} s"
    )


def runtime_options(config: GridloopConfig, time_scale: float = 1.0) -> RuntimeOptions:
    """The actor runtime's options for this config, on a site running ``time_scale``× fast.

    A setpoint's ``request_lifetime`` counts in the site's time. On a
    time-scaled simulator the lifetime sent is ``setpoint_lifetime_s ×
    time_scale`` (at most the API's 900 s), so that it still lasts
    ``setpoint_lifetime_s`` of wall time (or as close as the API allows): a
    killed controller leaves the site at 0 W after the configured wall time,
    and a live one renews unchanged setpoints at half of that.

    Raises:
        OptionsError: ``time_scale`` is 0.5 or less (see :func:`_time_scale_problem`).
    """
    problem = _time_scale_problem(config, time_scale)
    if problem is not None:
        raise OptionsError("time_scale", time_scale, problem)
    c = config.control
    lifetime_site_s, lifetime_wall_s = _setpoint_lifetimes_s(config, time_scale)
    return RuntimeOptions(
        call_timeout_s=config.api.call_timeout_s,
        setpoint_lifetime_s=lifetime_site_s,
        # The runtime renews when (lifetime − margin) of wall time has passed.
        renew_margin_s=lifetime_site_s - lifetime_wall_s / 2.0,
        reallocate_interval_s=min(1.0, lifetime_wall_s / 4.0),
        deadband_w=c.deadband_w,
        stale_after_s=c.stale_after_s,
        soc_exponent=c.soc_exponent,
        reactive=config.reactive_power.priority if config.reactive_power.enabled else "off",
        kind_order=c.kind_order,
    )


EMBEDDED_SITE_URL = "embedded-simulator"
"""The API URL a billing state file records for the embedded simulator (its port varies)."""
DEFAULT_STATE_FILE = "gridloop-state.json"
"""The billing state file with ``--api`` when neither ``--state`` nor the config names one."""


def state_file(config: GridloopConfig, options: RunOptions) -> tuple[str, Path] | None:
    """The billing state file of the run, with what named it (None: not kept).

    ``--state``, else ``[billing] state_file``, else with a server given
    (``--api`` or ``[api] url``) ``gridloop-state.json`` in the current directory;
    the embedded simulator's clock is time-scaled and fictional, so it keeps none
    unless asked.
    """
    if options.state_file is not None:
        return "--state", Path(options.state_file)
    if config.billing.state_file is not None:
        return f"{config.source}: billing.state_file", config.billing.state_file
    if (options.api_url or config.api.url) is not None:
        return "the default billing state file", Path(DEFAULT_STATE_FILE)
    return None


def _site_time_scale(config: GridloopConfig, options: RunOptions) -> float:
    """Site seconds per wall second: ``--time-scale``, else the embedded simulator's.

    With ``--api`` the server's clock runs at wall speed unless told otherwise (a
    time-scaled ``gridloop sim``): lifetimes and energies count in site time.
    """
    if options.time_scale:
        return options.time_scale
    return config.simulator.time_scale if (options.api_url or config.api.url) is None else 1.0


def _check_flags(config: GridloopConfig, options: RunOptions, time_scale: float) -> None:
    """Refuse, before anything starts, flags the run cannot work with (one line each).

    Raises:
        UserError: ``--api`` is not a usable URL, or the time scale is too slow
            for setpoint renewal (naming ``--time-scale`` or the config field).
    """
    if options.api_url is not None:
        try:
            ApiUrl.parse(options.api_url)
        except OptionsError as exc:
            raise UserError(f"--api: {exc}") from None
    problem = _time_scale_problem(config, time_scale)
    if problem is not None:
        name = "--time-scale" if options.time_scale else f"{config.source}: simulator.time_scale"
        raise UserError(f"{name} = {time_scale:g}: {problem}")
    DispatchSettings.resolve(config.dispatch, config.source, options.dispatch_url,
                             options.dispatch_key)


async def run_service(
    config: GridloopConfig,
    options: RunOptions,
    observers: Sequence[Observer] = (),
    *,
    outcome_observers: Sequence[OutcomeObserver] = (),
    stop: asyncio.Event | None = None,
) -> RunSummary:
    """Run the service once: (embedded simulator →) site → controller → summary.

    Args:
        config: The loaded configuration.
        options: Command-line choices (they override the config).
        observers: Called with one :class:`CycleRecord` per record interval.
        outcome_observers: Called with every distribution outcome.
        stop: Set it to end the run early (SIGINT, SIGTERM and SIGHUP do the same,
            see :mod:`controller.runtime.process`); if it is already set, the run ends as
            soon as it has started, with the same orderly stop.

    Returns:
        The run's summary.

    Raises:
        UserError: The server is unreachable or refused us, the graph is unusable
            (or cannot measure what an enabled strategy needs, see `grid_refusal`),
            the embedded simulator did not start, a file could not be read.
    """
    time_scale = _site_time_scale(config, options)
    _check_flags(config, options, time_scale)
    stop = stop if stop is not None else asyncio.Event()
    hup = asyncio.Event()  # SIGHUP with a schedule: reload it
    scheduled = schedule_path(config, options) is not None
    with stop_on_signals(asyncio.get_running_loop(), stop, hup.set if scheduled else None):
        return await _run_service(
            config, options, observers, outcome_observers, stop, time_scale, hup
        )


async def _run_service(
    config: GridloopConfig,
    options: RunOptions,
    observers: Sequence[Observer],
    outcome_observers: Sequence[OutcomeObserver],
    stop: asyncio.Event,
    time_scale: float,
    hup: asyncio.Event,
) -> RunSummary:
    api_url = options.api_url or config.api.url
    duration = options.duration_s if options.duration_s is not None else config.run.duration_s
    sim: EmbeddedSimulator | None = None
    try:
        async with contextlib.AsyncExitStack() as stack:
            if api_url is None:
                sim = EmbeddedSimulator(
                    site_path=options.site_path or config.simulator.site,
                    time_scale=time_scale,
                    telemetry_hz=config.simulator.telemetry_hz,
                )
                await stack.enter_async_context(sim)
                api_url = sim.url
            assert api_url is not None
            site = await _connect(config, options, api_url, time_scale)
            # The embedded simulator listens on a new port every run: it is one site.
            site_url = EMBEDDED_SITE_URL if sim is not None else api_url
            run = await _control(
                site, config, options, site_url, time_scale, observers, outcome_observers, stop,
                duration, hup,
            )
        # Both the site (fleet at 0 W) and the embedded simulator have stopped here.
    except EmbeddedSimulatorError as exc:
        raise UserError(str(exc)) from None
    assert api_url is not None
    return _summary(config, run, site, sim, time_scale, api_url)


async def _connect(
    config: GridloopConfig, options: RunOptions, api_url: str, time_scale: float
) -> Site:
    """Connect to the site and refuse one that cannot be controlled (one line each)."""
    if options.root_cert_path is not None:
        root_cert = _read_root_cert(options.root_cert_path, "--root-cert")
    else:
        root_cert = _read_root_cert(config.api.root_cert, f"{config.source}: api.root_cert")
    try:
        site = await Site.connect(
            api_url,
            api_key=options.api_key or config.api.api_key,
            root_cert=root_cert,
            options=runtime_options(config, time_scale),
            api_version=options.api_version or config.api.version,
        )
    except ApiError as exc:
        raise UserError(_api_error_line(exc)) from None
    except (GraphError, OptionsError) as exc:
        raise UserError(f"{api_url}: {exc}") from None
    if not site.graph.groups:
        raise UserError(f"{api_url}: the component graph has no battery behind an inverter")
    refusal = grid_refusal(site.graph.grid, config)
    if refusal is not None:
        await site.aclose()
        raise UserError(f"{api_url}: {refusal}")
    # Shown at the default level, like the status lines: which API, what "grid" means.
    _STATUS_LOG.warning("%s speaks Microgrid API %s", api_url, site.client.api_version)
    _STATUS_LOG.warning("%s", site.graph.grid.describe())
    return site


@dataclass(frozen=True, slots=True)
class _Run:
    """What the control part of a run leaves for its summary."""

    controller: Controller
    wall_s: float
    stats: RuntimeStats
    safe_stop: SafeStopResult
    schedule: _ScheduleLog | None = None


async def _control(
    site: Site,
    config: GridloopConfig,
    options: RunOptions,
    api_url: str,
    time_scale: float,
    observers: Sequence[Observer],
    outcome_observers: Sequence[OutcomeObserver],
    stop: asyncio.Event,
    duration: float | None,
    hup: asyncio.Event,
) -> _Run:
    """Run the controller on the site until ``stop`` or the duration; then the safe stop."""
    async with site:
        named = state_file(config, options)
        zone = billing_zone(
            config.billing.timezone, site.microgrid.timezone if site.microgrid else None
        )
        controller: Controller | None = None

        def clock() -> float:
            """The site's unix time now (the sources run once the controller exists)."""
            assert controller is not None
            return controller.site_time_s(time.monotonic_ns())

        sources = schedule_sources(config, options, zone, clock,
                                   site.microgrid.id if site.microgrid is not None else None)
        book = ScheduleBook() if sources else None
        if book is not None and not config.frequency_response.enabled:
            _STATUS_LOG.warning("schedule: [frequency_response] enabled = false: the windows'"
                                " reserves are not delivered (their peak limits are)")
        controller = Controller(
            site,
            config,
            time_scale=time_scale,
            observers=observers,
            outcome_observers=outcome_observers,
            state_file=named[1] if named is not None else None,
            site_key=SiteKey(site.microgrid.id if site.microgrid is not None else None, api_url),
            schedule=book,
        )
        log = _ScheduleLog(book, clock, [s.name for s in sources]) if book is not None else None
        # The server refusing us (wrong key, no permission) ends the run.
        helpers = [asyncio.create_task(_stop_when_refused(site, stop))]
        if log is not None:
            helpers += [asyncio.create_task(s.run(log.deliver), name=f"schedule {s.name}")
                        for s in sources]
            helpers.append(asyncio.create_task(_reload_on(hup, sources)))
        try:
            wall_s = await controller.run(duration, stop)
        finally:
            for task in helpers:
                task.cancel()
            # Wait for them without swallowing a cancellation of this task.
            await asyncio.wait(helpers)
        stats = site.stats()
        if stats.another_client or stats.site_changed:
            controller.observe_now()  # the dashboard and metrics show why it stopped
    # After the safe stop: its 0 W calls and their failures are counted too
    # (the exclusions stay those of the end of the run, before the stop).
    stats = dataclasses.replace(site.stats(), excluded=stats.excluded)
    if site.fatal_error is not None:
        raise UserError(_api_error_line(site.fatal_error))
    return _Run(controller, wall_s, stats, site.safe_stop or SafeStopResult(commanded=0), log)


def schedule_path(config: GridloopConfig, options: RunOptions) -> Path | None:
    """The run's schedule file: ``--schedule``, else ``[schedule] file`` (None = none)."""
    if options.schedule_path is not None:
        return Path(options.schedule_path)
    return config.schedule.file


def schedule_sources(
    config: GridloopConfig,
    options: RunOptions,
    zone: zoneinfo.ZoneInfo,
    clock: Callable[[], float],
    site_microgrid_id: int | None = None,
) -> list[ScheduleSource]:
    """Every schedule source of the run: the one place a source is added.

    Args:
        config: The run's configuration.
        options: The command line.
        zone: The billing zone (local time of the schedule file).
        clock: The site's unix time now (s).
        site_microgrid_id: The microgrid id the site's Microgrid API gives (the Dispatch
            API's default microgrid; None = unknown).

    Returns:
        The sources, in the order their windows rank at equal starts
        (:mod:`controller.runtime.schedule`): the file, then the Dispatch API (so a
        dispatch overrides the file's window that starts at the same time).

    Raises:
        UserError: a source cannot be set up (one line naming the flag or field).
    """
    sources: list[ScheduleSource] = []
    path = schedule_path(config, options)
    if path is not None:
        sources.append(FileScheduleSource(path, zone, clock))
    dispatch = DispatchSettings.resolve(
        config.dispatch, config.source, options.dispatch_url, options.dispatch_key
    )
    if dispatch is not None:
        sources.append(dispatch.source(site_microgrid_id, clock))
    return sources


class _ScheduleLog:
    """Delivers windows into the book and logs every change (source, site time, windows)."""

    def __init__(self, book: ScheduleBook, clock: Callable[[], float], sources: list[str]) -> None:
        self.book = book
        self.clock = clock
        self.changes = 0
        self.sources = sources

    @property
    def deliver(self) -> Deliver:
        """The sources' ``deliver``."""
        return self._deliver

    def _deliver(self, source: str, windows: Sequence[Window]) -> None:
        if source not in self.sources:
            self.sources.append(source)
        change = self.book.replace(source, windows)
        if change.empty:
            return
        self.changes += 1
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.clock()))
        for verb, changed in (("removed", change.removed), ("added", change.added)):
            for window in changed:
                _STATUS_LOG.warning("schedule %s at site time %s: %s %s",
                                    source, when, verb, window.describe())


async def _reload_on(hup: asyncio.Event, sources: Sequence[ScheduleSource]) -> None:
    """On every SIGHUP (``hup``), ask the sources that can reload to do so."""
    while True:
        await hup.wait()
        hup.clear()
        _STATUS_LOG.warning("SIGHUP: reloading the schedule")
        for source in sources:
            reload = getattr(source, "reload", None)
            if callable(reload):
                reload()


def _with_current(peak_w: float, current_w: float) -> float:
    """The period's billed peak with the unfinished interval counted at its mean so far."""
    if not math.isfinite(current_w):
        return peak_w
    return max(peak_w, current_w, 0.0)


def _summary(
    config: GridloopConfig,
    run: _Run,
    site: Site,
    sim: EmbeddedSimulator | None,
    time_scale: float,
    api_url: str,
) -> RunSummary:
    """The run's summary from what the controller, the site and the simulator counted."""
    acc, stats, safe_stop = run.controller.acc, run.stats, run.safe_stop
    sim_stats = sim.stats if sim is not None else {}
    oob = sim_stats.get("setpoints_out_of_bounds") if sim is not None else None
    ps = config.peak_shaving
    meter = run.controller.meter
    limit = target_limit_w(ps, run.controller.cycle.planned_limit_w)  # the config's
    return RunSummary(
        api_url=api_url,
        embedded=sim is not None,
        duration_s=run.wall_s,
        simulated_s=run.wall_s * time_scale,
        time_scale=time_scale,
        import_limit_w=limit if ps.enabled and math.isfinite(limit) else None,
        peak_import_w_uncontrolled=acc.peak_mean_uncontrolled_w,
        peak_import_w=acc.peak_mean_import_w,
        peak_import_w_instant_uncontrolled=acc.peak_uncontrolled_w,
        peak_import_w_instant=acc.peak_import_w,
        billed_peak_w=_with_current(meter.billed_peak_w, meter.current_mean_w()),
        billed_peak_w_uncontrolled=_with_current(
            meter.billed_peak_w_uncontrolled, meter.current_mean_uncontrolled_w()
        ),
        billing_period=meter.period_key or "",
        fr_energy_required_wh=acc.fr_required_wh,
        fr_energy_delivered_wh=acc.fr_delivered_wh,
        setpoints_sent=stats.setpoints_sent,
        setpoints_failed=sum(stats.setpoints_failed.values()),
        setpoints_failed_by_reason=dict(stats.setpoints_failed),
        setpoints_out_of_bounds=int(oob) if oob is not None else None,
        dispatch_latency_ms=percentiles(stats.dispatch_latency_ms),
        soc_min_pct=acc.soc_min_pct,
        soc_max_pct=acc.soc_max_pct,
        grid_samples=acc.samples,
        cycle_overruns=run.controller.overruns,
        reconnects=stats.reconnects,
        excluded_at_end={str(k): v for k, v in stats.excluded.items()},
        simulator_stats=sim_stats,
        setpoints_overridden={str(k): v for k, v in stats.overridden_by_others.items()},
        another_client=stats.another_client,
        site_changed=stats.site_changed,
        grid_formula=site.graph.grid.describe(),
        api_version=site.client.api_version or "",
        safe_stop_commanded=safe_stop.commanded,
        safe_stop_failed=len(safe_stop.failed),
        safe_stop_failed_ids={str(k): v for k, v in sorted(safe_stop.failed.items())},
        safe_stop_withheld=safe_stop.withheld,
        schedule_sources=list(run.schedule.sources) if run.schedule is not None else [],
        schedule_changes=run.schedule.changes if run.schedule is not None else 0,
        fr_band_warnings=run.controller.cycle.preparation.warned,
        **_reactive_summary(run.controller.reactive_acc, stats, sim_stats),
        setpoints_out_of_bounds_by_kind=(
            out_of_bounds_by_kind(sim_stats.get("per_component", {}),
                                  dict(zip(site.core.index.inverter_ids,
                                           site.core.index.kind_of, strict=True)))
            if sim is not None else None
        ),
        pv_curtailed_energy_wh=acc.pv_curtailed_wh,
        ev_energy_delivered_wh=acc.ev_delivered_wh,
        export_energy_wh=acc.export_wh,
    )


def _reactive_summary(
    racc: ReactiveAccumulator | None, stats: RuntimeStats, sim_stats: dict[str, Any]
) -> dict[str, Any]:
    """The summary's reactive-power keys (their defaults with reactive control off).

    Out of bounds: what the planner's re-check replaced, plus what the site found outside
    its reactive bounds: the embedded simulator's own count when there is one, else the
    reactive setpoints the server refused as out of range or invalid.
    """
    if racc is None:
        return {}
    at_site = sim_stats.get("setpoints_reactive_out_of_bounds")
    refused = (
        int(at_site) if at_site is not None
        else refused_as_out_of_bounds(stats.reactive_setpoints_failed)
    )
    return {
        "reactive_setpoints_sent": stats.reactive_setpoints_sent,
        "reactive_setpoints_out_of_bounds": stats.reactive_out_of_bounds + refused,
        "apparent_power_violations": racc.apparent_violations,
        "voltage_in_band_pct": racc.voltage_in_band_pct,
        "q_tracking_rms_pct": racc.q_tracking_rms_pct,
    }
