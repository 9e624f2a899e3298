"""``--metrics-port N``: Prometheus metrics of a run.

Offers :class:`MetricsExporter` (own ``CollectorRegistry``, HTTP ``/metrics``
server thread, start/stop or context manager) and :class:`MetricsError`.

The exporter is fed by the service, never reads the site:

- :meth:`MetricsExporter.observe_cycle` once per control cycle with the
  :class:`~controller.runtime.records.CycleRecord` and the cycle's duration;
- :meth:`MetricsExporter.observe_dispatch` once per dispatch with its latency
  (optional: until it is first called, a record whose ``setpoints_sent`` rose
  since the previous one adds its ``dispatch_latency_ms`` to the histogram);
- :meth:`MetricsExporter.count_setpoints` per dispatch with the number of
  setpoint calls sent and the failures by reason (optional: until it is first
  called, the sent/failed counters follow the record's cumulative counts, with
  failures under ``reason="unknown"``).

Metrics (all prefixed ``gridloop_``; SI units, passive sign convention:
+ = into the component, the site importing, a battery charging):

============================================  =========  ==========================================
name                                          type       meaning
============================================  =========  ==========================================
gridloop_cycle_duration_seconds               histogram  control cycle duration
gridloop_dispatch_latency_seconds             histogram  request → all setpoints acknowledged
gridloop_dispatch_latency_p50_seconds         gauge      run median, from the record
gridloop_dispatch_latency_p99_seconds         gauge      run 99th percentile, from the record
gridloop_setpoints_sent_total                 counter    setpoint calls sent
gridloop_setpoints_failed_total{reason}       counter    setpoint calls failed, by reason
gridloop_cycle_overruns_total                 counter    cycles that started late
gridloop_grid_power_watts                     gauge      grid meter active power (+ import)
gridloop_uncontrolled_power_watts             gauge      grid power without the batteries
gridloop_battery_power_watts                  gauge      battery fleet AC power (+ charging)
gridloop_battery_target_watts                 gauge      combined target sent to the distributor
gridloop_import_limit_watts                   gauge      peak-shaving import limit (NaN if off)
gridloop_effective_import_limit_watts         gauge      max(import limit, billed peak) (NaN if off)
gridloop_interval_projected_mean_watts        gauge      billing interval's mean, projected
gridloop_billed_peak_watts                    gauge      the period's billed peak so far
gridloop_grid_frequency_hertz                 gauge      grid frequency
gridloop_fr_required_watts                    gauge      frequency-response power required
gridloop_fr_delivered_watts                   gauge      frequency-response power delivered
gridloop_group_soc_percent{group}             gauge      SoC per battery group
gridloop_group_setpoint_watts{group}          gauge      setpoint per battery group
gridloop_group_power_watts{group}             gauge      measured power per battery group
gridloop_group_healthy{group}                 gauge      1 in allocation, 0 excluded
gridloop_component_excluded{component_id}     gauge      1 while excluded, 0 after recovery
gridloop_components_excluded                  gauge      number of components excluded now
gridloop_setpoints_overridden_total           counter    setpoints overridden by another client
gridloop_another_client                       gauge      1 once another client controls the site
gridloop_site_changed                         gauge      1 once the server is another site
gridloop_api_info{version}                    gauge      1 for the Microgrid API version in use
gridloop_pv_curtailed_watts                   gauge      PV production our caps take off now
gridloop_pv_capped_inverters                  gauge      PV inverters under a cap of ours
gridloop_ev_power_watts                       gauge      EV chargers' charging power
gridloop_ev_limited_chargers                  gauge      EV chargers under a limit (or paused)
gridloop_component_cap_watts{component_id}    gauge      PV cap / EV limit in force (NaN: none)
============================================  =========  ==========================================
"""

from __future__ import annotations

import math
import socket
import threading
from collections.abc import Mapping, Sequence
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app

from controller.errors import MetricsError
from controller.runtime.records import CycleRecord, RecordObserver

__all__ = ["LATENCY_BUCKETS_S", "MetricsError", "MetricsExporter"]

LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.0005,
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.2,
    0.5,
    1.0,
    2.0,
    math.inf,
)
"""Histogram buckets (seconds) for cycle and dispatch latencies: ms resolution up to 2 s."""


def _valid(value: float) -> bool:
    return math.isfinite(value)


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    """One thread per scrape, so a slow scraper does not block the next."""

    daemon_threads = True


class _IPv6ThreadingWSGIServer(_ThreadingWSGIServer):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr (it would break the dashboard)."""

    def log_message(self, format: str, *args: object) -> None:
        pass


class MetricsExporter(RecordObserver):
    """Prometheus metrics of a run, served over HTTP at ``http://host:port/metrics``.

    Usage::

        with MetricsExporter(9100) as metrics:
            metrics.observe_cycle(record, cycle_duration_s)  # per cycle
            metrics.observe_dispatch(latency_s)  # per dispatch

    Metrics live in the exporter's own :attr:`registry`, not the global one, so
    several exporters (tests) can coexist. Observing is thread-safe and cheap;
    serving happens in a daemon thread.
    """

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        """Create the metrics (nothing is served until :meth:`start`).

        Args:
            port: TCP port, 0..65535 (0: any free port, see :attr:`port` after start).
            host: address to bind; the default serves only this machine.

        Raises:
            MetricsError: ``port`` is out of range.
        """
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise MetricsError(f"metrics port must be an integer in 0..65535, got {port!r}")
        self._host = host
        """Address to bind."""
        self._requested_port = port
        """Port asked for (0 = any)."""
        self._server: WSGIServer | None = None
        """The HTTP server, while serving."""
        self._thread: threading.Thread | None = None
        """The thread running the server, while serving."""
        self._lock = threading.Lock()
        """Guards the record-derived counter bookkeeping."""
        self._explicit_setpoint_counts = False
        """Set once :meth:`count_setpoints` is used; records then stop driving those counters."""
        self._sent_seen = 0
        """Cumulative setpoints sent already counted from records."""
        self._failed_seen = 0
        """Cumulative setpoints failed already counted from records."""
        self._overruns_seen = 0
        """Cumulative overruns already counted."""
        self._overridden_seen = 0
        """Cumulative overridden setpoints already counted."""
        self._explicit_dispatch = False
        """Set once :meth:`observe_dispatch` is used; records then stop feeding the histogram."""
        self._record_sent = 0
        """``setpoints_sent`` of the previous record (a rise means a dispatch completed)."""
        self._excluded_ids: set[int] = set()
        """Components ever reported as excluded (their gauge is kept at 0 after recovery)."""
        self._capped_ids: set[int] = set()
        """Components ever capped (their gauge is NaN while uncapped)."""

        self.registry = CollectorRegistry(auto_describe=True)
        """The registry served at ``/metrics``."""
        self._add_latency_metrics()
        self._add_setpoint_counters()
        self._add_site_gauges()
        self._add_group_gauges()
        self._add_health_metrics()
        for gauge in (
            self.latency_p50,
            self.latency_p99,
            self.grid_power,
            self.uncontrolled_power,
            self.battery_power,
            self.battery_target,
            self.import_limit,
            self.effective_import_limit,
            self.interval_projected_mean,
            self.billed_peak,
            self.frequency,
            self.fr_required,
            self.fr_delivered,
        ):
            gauge.set(math.nan)  # unknown until the first cycle, not a 0 W reading

    def _gauge(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Gauge:
        """A gauge in this exporter's registry (label names, if any, in ``labels``)."""
        return Gauge(name, documentation, labels, registry=self.registry)

    def _counter(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Counter:
        """A counter in this exporter's registry."""
        return Counter(name, documentation, labels, registry=self.registry)

    def _histogram(self, name: str, documentation: str) -> Histogram:
        """A latency histogram (seconds, :data:`LATENCY_BUCKETS_S`) in this exporter's registry."""
        return Histogram(name, documentation, buckets=LATENCY_BUCKETS_S, registry=self.registry)

    def _add_latency_metrics(self) -> None:
        """Cycle and dispatch latencies: histograms and the run's percentiles."""
        self.cycle_duration = self._histogram(
            "gridloop_cycle_duration_seconds", "Duration of a control cycle (seconds)."
        )
        """Control cycle durations."""
        self.dispatch_latency = self._histogram(
            "gridloop_dispatch_latency_seconds",
            "Dispatch latency: request until all setpoints are acknowledged (seconds).",
        )
        """Dispatch latencies."""
        self.latency_p50 = self._gauge(
            "gridloop_dispatch_latency_p50_seconds",
            "Median dispatch latency over the run so far (seconds).",
        )
        """Run median dispatch latency."""
        self.latency_p99 = self._gauge(
            "gridloop_dispatch_latency_p99_seconds",
            "99th-percentile dispatch latency over the run so far (seconds).",
        )
        """Run 99th-percentile dispatch latency."""

    def _add_setpoint_counters(self) -> None:
        """Setpoint calls sent and failed, and overrun cycles."""
        self.setpoints_sent = self._counter("gridloop_setpoints_sent", "Setpoint calls sent.")
        """Setpoint calls sent."""
        self.setpoints_failed = self._counter(
            "gridloop_setpoints_failed", "Setpoint calls that failed, by reason.", ["reason"]
        )
        """Setpoint calls failed, by reason."""
        self.cycle_overruns = self._counter(
            "gridloop_cycle_overruns",
            "Control cycles that started late because the previous one overran.",
        )
        """Overrun cycles."""

    def _add_site_gauges(self) -> None:
        """The site's powers (W, + = import / charging), limit and frequency of the last cycle."""
        self.grid_power = self._gauge(
            "gridloop_grid_power_watts", "Grid meter active power (W, + = import)."
        )
        """Grid power."""
        self.uncontrolled_power = self._gauge(
            "gridloop_uncontrolled_power_watts",
            "Grid power the site would have without the batteries (W, + = import).",
        )
        """Uncontrolled grid power."""
        self.battery_power = self._gauge(
            "gridloop_battery_power_watts", "Battery fleet AC power (W, + = charging)."
        )
        """Battery fleet power."""
        self.battery_target = self._gauge(
            "gridloop_battery_target_watts",
            "Combined battery target sent to the distributor (W, + = charging).",
        )
        """Battery fleet target."""
        self.import_limit = self._gauge(
            "gridloop_import_limit_watts", "Peak-shaving import limit (W)."
        )
        """Import limit."""
        self.effective_import_limit = self._gauge(
            "gridloop_effective_import_limit_watts",
            "Limit the billing-interval means are held to: max(import limit, billed peak) (W).",
        )
        """Effective import limit."""
        self.interval_projected_mean = self._gauge(
            "gridloop_interval_projected_mean_watts",
            "Current billing interval's mean grid import if the grid power now held (W).",
        )
        """Projected interval mean."""
        self.billed_peak = self._gauge(
            "gridloop_billed_peak_watts",
            "The billing period's billed peak so far: highest closed interval mean (W).",
        )
        """Billed peak."""
        self.frequency = self._gauge("gridloop_grid_frequency_hertz", "Grid frequency (Hz).")
        """Grid frequency."""
        self.fr_required = self._gauge(
            "gridloop_fr_required_watts",
            "Frequency-response power required by the droop (W, + = charging).",
        )
        """Frequency-response power required."""
        self.fr_delivered = self._gauge(
            "gridloop_fr_delivered_watts", "Frequency-response power delivered (W, + = charging)."
        )
        """Frequency-response power delivered."""
        self.fr_reserve = self._gauge(
            "gridloop_fr_reserve_watts",
            "Frequency-response reserve in force (W; 0 = not sold now, e.g. outside the"
            " schedule's windows).",
        )
        """Frequency-response reserve in force."""
        self.pv_curtailed = self._gauge(
            "gridloop_pv_curtailed_watts", "PV production our caps take off now (W, >= 0)."
        )
        """PV curtailment in effect."""
        self.pv_capped = self._gauge(
            "gridloop_pv_capped_inverters", "PV inverters under a production cap of ours."
        )
        """PV inverters capped."""
        self.ev_power = self._gauge(
            "gridloop_ev_power_watts", "Charging power of the EV chargers (W, >= 0)."
        )
        """EV charging power."""
        self.ev_limited = self._gauge(
            "gridloop_ev_limited_chargers",
            "EV chargers under a charge limit of ours (paused ones included).",
        )
        """EV chargers limited."""
        self.component_cap = self._gauge(
            "gridloop_component_cap_watts",
            "PV cap (W, <= 0) or EV charge limit (W, >= 0; 0 = paused) in force (NaN: none).",
            ["component_id"],
        )
        """Cap or limit per PV inverter / EV charger."""
        self.fr_band_unreachable = self._gauge(
            "gridloop_fr_band_unreachable",
            "1 while the SoC band of the next frequency-response window is projected out of"
            " reach by its start, else 0.",
        )
        """Preparation cannot reach the band."""
        self.fr_band_warnings = self._gauge(
            "gridloop_fr_band_warnings",
            "Frequency-response windows whose SoC band was projected out of reach (run total).",
        )
        """Windows warned about."""

    def _add_group_gauges(self) -> None:
        """Per battery group: SoC, setpoint, measured power and health."""
        self.group_soc = self._gauge(
            "gridloop_group_soc_percent", "SoC of a battery group (%).", ["group"]
        )
        """SoC per group."""
        self.group_setpoint = self._gauge(
            "gridloop_group_setpoint_watts",
            "Setpoint sent to a battery group (W, + = charging).",
            ["group"],
        )
        """Setpoint per group."""
        self.group_power = self._gauge(
            "gridloop_group_power_watts",
            "Measured AC power of a battery group (W, + = charging).",
            ["group"],
        )
        """Measured power per group."""
        self.group_healthy = self._gauge(
            "gridloop_group_healthy",
            "1 while the battery group is in allocation, 0 while (part of) it is excluded.",
            ["group"],
        )
        """Health per group."""

    def _add_health_metrics(self) -> None:
        """Excluded components, overridden setpoints, another client, a changed site."""
        self.component_excluded = self._gauge(
            "gridloop_component_excluded",
            "1 while the component is excluded from allocation, 0 after it recovered.",
            ["component_id"],
        )
        """Exclusion per component."""
        self.components_excluded = self._gauge(
            "gridloop_components_excluded", "Number of components excluded from allocation now."
        )
        """Number of excluded components."""
        self.setpoints_overridden = self._counter(
            "gridloop_setpoints_overridden",
            "Setpoints of gridloop overridden by setpoints of another client.",
        )
        """Setpoints overridden by another client."""
        self.another_client = self._gauge(
            "gridloop_another_client",
            "1 once gridloop concluded that another client controls the site (it stopped).",
        )
        """Another client controls the site."""
        self.site_changed = self._gauge(
            "gridloop_site_changed",
            "1 once the server turned out to be another site after a reconnect (it stopped).",
        )
        """The site changed."""
        self.api_info = self._gauge(
            "gridloop_api_info",
            "1 for the Microgrid API version the server is spoken to in.",
            ("version",),
        )
        """The API version in use."""

    # ----------------------------------------------------------------- serving

    @property
    def host(self) -> str:
        """The address served on."""
        return self._host

    @property
    def port(self) -> int:
        """The port served on (the real one once started, even when 0 was asked)."""
        if self._server is not None:
            return int(self._server.server_port)
        return self._requested_port

    @property
    def url(self) -> str:
        """The scrape URL."""
        return f"http://{self._host}:{self.port}/metrics"

    @property
    def serving(self) -> bool:
        """Whether the HTTP server is running."""
        return self._server is not None

    def start(self) -> None:
        """Serve ``/metrics`` in a daemon thread.

        Raises:
            MetricsError: the address cannot be bound (in use, bad host), naming host and port.
        """
        if self._server is not None:
            return
        server_class = _IPv6ThreadingWSGIServer if ":" in self._host else _ThreadingWSGIServer
        try:
            server = make_server(
                self._host,
                self._requested_port,
                make_wsgi_app(self.registry),
                server_class,
                handler_class=_QuietHandler,
            )
        except OSError as err:
            raise MetricsError(
                f"cannot serve metrics on {self._host}:{self._requested_port}: "
                f"{err.strerror or err}"
            ) from err
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"gridloop-metrics-{server.server_port}",
            daemon=True,
        )
        thread.start()
        self._server, self._thread = server, thread

    def stop(self) -> None:
        """Stop serving and wait for the server thread (idempotent)."""
        server, thread = self._server, self._thread
        self._server, self._thread = None, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5.0)

    # ----------------------------------------------------------------- observing

    def observe_cycle(self, record: CycleRecord, cycle_duration_s: float) -> None:
        """Update the gauges and counters from one cycle.

        Args:
            record: the cycle.
            cycle_duration_s: how long the cycle took, seconds (ignored if not a
                finite number >= 0).
        """
        if _valid(cycle_duration_s) and cycle_duration_s >= 0.0:
            self.cycle_duration.observe(cycle_duration_s)
        for gauge, value in (
            (self.grid_power, record.grid_power_w),
            (self.uncontrolled_power, record.uncontrolled_power_w),
            (self.battery_power, record.battery_power_w),
            (self.battery_target, record.battery_target_w),
            (self.import_limit, record.import_limit_w),
            (self.effective_import_limit, record.effective_import_limit_w),
            (self.interval_projected_mean, record.interval_projected_mean_w),
            (self.billed_peak, record.billed_peak_w),
            (self.frequency, record.frequency_hz),
            (self.fr_required, record.fr_required_w),
            (self.fr_delivered, record.fr_delivered_w),
            (self.fr_reserve, record.fr_reserve_w),
            (self.fr_band_unreachable, 1.0 if record.fr_band_unreachable else 0.0),
            (self.fr_band_warnings, float(record.fr_band_warnings)),
            (self.latency_p50, record.latency_p50_ms / 1000.0),
            (self.latency_p99, record.latency_p99_ms / 1000.0),
            (self.pv_curtailed, record.pv_curtailed_w),
            (self.pv_capped, float(record.pv_capped)),
            (self.ev_power, record.ev_power_w),
            (self.ev_limited, float(record.ev_limited)),
        ):
            gauge.set(value)  # nan is a valid Prometheus sample ("unknown")
        for group in record.groups:
            self.group_soc.labels(group.name).set(group.soc_pct)
            self.group_setpoint.labels(group.name).set(group.setpoint_w)
            self.group_power.labels(group.name).set(group.power_w)
            self.group_healthy.labels(group.name).set(1.0 if group.healthy else 0.0)
        with self._lock:
            for component_id in record.excluded:
                self._excluded_ids.add(component_id)
            for component_id in self._excluded_ids:
                self.component_excluded.labels(str(component_id)).set(
                    1.0 if component_id in record.excluded else 0.0
                )
            self.components_excluded.set(len(record.excluded))
            self._capped_ids.update(record.caps_w)
            for component_id in self._capped_ids:
                self.component_cap.labels(str(component_id)).set(
                    record.caps_w.get(component_id, math.nan)
                )
            self.another_client.set(1.0 if record.another_client else 0.0)
            self.site_changed.set(1.0 if record.site_changed else 0.0)
            if record.api_version:
                self.api_info.labels(version=record.api_version).set(1.0)
            if record.setpoints_overridden > self._overridden_seen:
                self.setpoints_overridden.inc(record.setpoints_overridden - self._overridden_seen)
                self._overridden_seen = record.setpoints_overridden
            if record.cycle_overruns > self._overruns_seen:
                self.cycle_overruns.inc(record.cycle_overruns - self._overruns_seen)
                self._overruns_seen = record.cycle_overruns
            if (
                not self._explicit_dispatch
                and record.setpoints_sent > self._record_sent
                and _valid(record.dispatch_latency_ms)
                and record.dispatch_latency_ms >= 0.0
            ):
                self.dispatch_latency.observe(record.dispatch_latency_ms / 1000.0)
            self._record_sent = max(self._record_sent, record.setpoints_sent)
            if not self._explicit_setpoint_counts:
                if record.setpoints_sent > self._sent_seen:
                    self.setpoints_sent.inc(record.setpoints_sent - self._sent_seen)
                    self._sent_seen = record.setpoints_sent
                if record.setpoints_failed > self._failed_seen:
                    self.setpoints_failed.labels("unknown").inc(
                        record.setpoints_failed - self._failed_seen
                    )
                    self._failed_seen = record.setpoints_failed

    def observe_dispatch(self, latency_s: float) -> None:
        """Record one dispatch latency, seconds (ignored if not a finite number >= 0).

        From the first call on, records no longer feed the latency histogram.
        """
        with self._lock:
            self._explicit_dispatch = True
        if _valid(latency_s) and latency_s >= 0.0:
            self.dispatch_latency.observe(latency_s)

    def count_setpoints(self, sent: int, failed_by_reason: Mapping[str, int]) -> None:
        """Count setpoint calls of one dispatch: ``sent`` calls, failures per reason.

        From the first call on, records no longer drive the sent/failed counters.
        Negative counts are ignored.
        """
        with self._lock:
            self._explicit_setpoint_counts = True
        if sent > 0:
            self.setpoints_sent.inc(sent)
        for reason, count in failed_by_reason.items():
            if count > 0:
                self.setpoints_failed.labels(reason).inc(count)
