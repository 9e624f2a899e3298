"""What an operator sees while ``gridloop run`` controls a site.

Offers:

- :func:`render_dashboard` — one :class:`~controller.runtime.records.CycleRecord` (plus,
  optionally, the recent ones for the trend line) in, a ``rich`` renderable out:
  grid power against the import limit and against the uncontrolled load, grid
  frequency and frequency-response power (required vs delivered), one row per
  battery group, dispatch latency, setpoint counters, overruns and the
  components excluded from allocation. Pure: it reads nothing but its arguments.
- :class:`LiveDashboard` — the terminal view. The service calls
  :meth:`LiveDashboard.update` once per cycle (it only stores the record);
  drawing happens in ``rich.live.Live``'s own refresh thread a few times a
  second, never in the control cycle.
- :func:`summary_line` and :class:`LogLine` — the concise periodic log line
  used instead of the dashboard when stdout is not a terminal or with
  ``--no-dashboard``.

Units and signs: watts (shown as kW), percent, hertz, milliseconds; passive
sign convention (+ = into the component: the site importing, a battery
charging; − = the site exporting, a battery discharging).
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime

from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from controller.errors import DashboardError
from controller.runtime.records import CycleRecord, GroupRecord, RecordObserver

__all__ = [
    "DashboardError",
    "LiveDashboard",
    "LogLine",
    "render_dashboard",
    "summary_line",
]

_log = logging.getLogger("gridloop.controller.dashboard")

_SPARK_CHARS = "▁▂▃▄▅▆▇█"
_BAR_WIDTH_WIDE = 32
_BAR_WIDTH_NARROW = 16
_AT_LIMIT_TOLERANCE_PCT = 2.0
"""Grid import up to this far above the limit shows as "at limit", beyond as "ABOVE LIMIT"."""
_WIDE_CONSOLE = 100
"""From this many columns on, frequency and dispatch sit side by side and bars are wider."""
_NO_VALUE = "—"


# --------------------------------------------------------------------------- formatting


def _finite(value: float) -> bool:
    return not math.isnan(value) and not math.isinf(value)


def _kw(power_w: float, *, signed: bool = True) -> str:
    """Format watts as kilowatts, ``—`` when unknown."""
    if not _finite(power_w):
        return _NO_VALUE
    power_kw = power_w / 1000.0
    if abs(power_kw) < 0.05:
        power_kw = 0.0  # no "-0.0"
    return f"{power_kw:+.1f} kW" if signed else f"{power_kw:.1f} kW"


def _ms(latency_ms: float) -> str:
    return f"{latency_ms:.1f} ms" if _finite(latency_ms) else _NO_VALUE


def _num(value: float) -> str:
    return f"{value:.1f}" if _finite(value) else _NO_VALUE


def _pct(value_pct: float) -> str:
    return f"{value_pct:.1f} %" if _finite(value_pct) else _NO_VALUE


def _nominal_hz(frequency_hz: float) -> float:
    """The nominal frequency nearest to a measurement (50 Hz or 60 Hz grids)."""
    return 60.0 if abs(frequency_hz - 60.0) < abs(frequency_hz - 50.0) else 50.0


def _bar(value: float, scale: float, limit: float, style: str, width: int) -> Text:
    """A horizontal bar of ``value`` on ``[0, scale]`` with a ``│`` marker at ``limit``.

    Negative values (export) draw an empty bar; the number next to it tells the sign.
    """
    text = Text()
    filled = 0
    if _finite(value) and scale > 0:
        filled = max(0, min(width, round(value / scale * width)))
    marker = -1
    if _finite(limit) and scale > 0 and limit >= 0:
        marker = max(0, min(width - 1, round(limit / scale * width)))
    # Runs of equal characters, one span each (cheaper to render than per-character spans).
    cells = ["│" if i == marker else "█" if i < filled else "░" for i in range(width)]
    styles = {"│": "bold yellow", "█": style, "░": "grey37"}
    start = 0
    for i in range(1, width + 1):
        if i == width or cells[i] != cells[start]:
            text.append(cells[start] * (i - start), style=styles[cells[start]])
            start = i
    return text


def _sparkline(values: Sequence[float], low: float, high: float) -> str:
    """Map values to block characters on the shared range ``[low, high]``."""
    span = high - low
    out = []
    for value in values:
        if not _finite(value):
            out.append(" ")
        elif span <= 0:
            out.append(_SPARK_CHARS[len(_SPARK_CHARS) // 2])
        else:
            index = round((value - low) / span * (len(_SPARK_CHARS) - 1))
            out.append(_SPARK_CHARS[max(0, min(len(_SPARK_CHARS) - 1, index))])
    return "".join(out)


# --------------------------------------------------------------------------- sections


def _header(record: CycleRecord) -> Text:
    when = (
        datetime.fromtimestamp(record.unix_time_s, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        if _finite(record.unix_time_s)
        else _NO_VALUE
    )
    api = f"  ·  Microgrid API {record.api_version}" if record.api_version else ""
    return Text.assemble(
        ("gridloop", "bold cyan"),
        f"  t = {record.time_s:.1f} s  ·  {when}{api}",
    )


def _grid_section(record: CycleRecord, history: Sequence[CycleRecord], bar_width: int) -> Panel:
    limit = record.import_limit_w
    magnitudes = [
        abs(v) for v in (record.grid_power_w, record.uncontrolled_power_w, limit) if _finite(v)
    ]
    scale = max(magnitudes, default=0.0) * 1.1

    if _finite(limit) and _finite(record.grid_power_w):
        excess_pct = (record.grid_power_w - limit) / limit * 100.0 if limit > 0 else math.inf
        if record.grid_power_w <= limit:
            status, grid_style = Text("within limit", style="green"), "green"
        elif excess_pct <= _AT_LIMIT_TOLERANCE_PCT:
            status, grid_style = Text(f"at limit (+{excess_pct:.1f} %)", style="yellow"), "yellow"
        else:
            status = Text(
                "ABOVE LIMIT" + (f" (+{excess_pct:.0f} %)" if math.isfinite(excess_pct) else ""),
                style="bold red",
            )
            grid_style = "red"
    else:
        status = Text("no import limit" if not _finite(limit) else "", style="dim")
        grid_style = "green"
    if (
        _finite(record.export_limit_w)
        and _finite(record.grid_power_w)
        and -record.grid_power_w > record.export_limit_w * 1.001
    ):
        status = Text("ABOVE EXPORT LIMIT", style="bold red")

    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_column()
    table.add_column()
    table.add_row(
        "grid power",
        _kw(record.grid_power_w),
        _bar(record.grid_power_w, scale, limit, grid_style, bar_width),
        status,
    )
    limits = f"import limit {_kw(limit, signed=False)}"
    if _finite(record.export_limit_w):
        limits += f"  ·  export limit {_kw(record.export_limit_w, signed=False)}"
    table.add_row(
        "uncontrolled",
        _kw(record.uncontrolled_power_w),
        _bar(record.uncontrolled_power_w, scale, limit, "grey62", bar_width),
        Text(limits, style="yellow"),
    )
    if _finite(record.interval_projected_mean_w) or _finite(record.billed_peak_w):
        table.add_row(
            "interval mean",
            _kw(record.interval_projected_mean_w),
            Text("projected to the interval's end", style="dim"),
            Text(
                f"effective limit {_kw(record.effective_import_limit_w, signed=False)}  ·  "
                f"billed peak {_kw(record.billed_peak_w, signed=False)}",
                style="yellow",
            ),
        )
    table.add_row(
        "battery fleet",
        _kw(record.battery_power_w),
        Text(f"target {_kw(record.battery_target_w)}", style="dim"),
        Text("+ charging / − discharging", style="dim"),
    )
    recent = list(history[-bar_width:])
    if len(recent) >= 2:
        values = [r.grid_power_w for r in recent] + [r.uncontrolled_power_w for r in recent]
        finite = [v for v in values if _finite(v)]
        if _finite(limit):
            finite.append(limit)
        low, high = (min(finite), max(finite)) if finite else (0.0, 0.0)
        table.add_row(
            "trend grid",
            "",
            Text(_sparkline([r.grid_power_w for r in recent], low, high), style="green"),
            Text(f"last {len(recent)} cycles", style="dim"),
        )
        table.add_row(
            "trend uncontrolled",
            "",
            Text(_sparkline([r.uncontrolled_power_w for r in recent], low, high), style="grey62"),
            "",
        )
    return Panel(table, title="grid (+ import / − export)", title_align="left")


def _frequency_section(record: CycleRecord) -> Panel:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_column()
    if _finite(record.frequency_hz):
        nominal = _nominal_hz(record.frequency_hz)
        deviation_mhz = (record.frequency_hz - nominal) * 1000.0
        freq = f"{record.frequency_hz:.3f} Hz"
        dev = Text(
            f"{deviation_mhz:+.0f} mHz" if round(deviation_mhz) != 0 else "±0 mHz",
            style="yellow" if abs(deviation_mhz) >= 10.0 else "dim",
        )
    else:
        freq, dev = _NO_VALUE, Text("")
    table.add_row("frequency", freq, dev)
    required, delivered = record.fr_required_w, record.fr_delivered_w
    share = Text(_NO_VALUE if abs(required) < 1.0 or not _finite(required) else "", style="dim")
    if _finite(required) and _finite(delivered) and abs(required) >= 1.0:
        ratio = delivered / required * 100.0
        share = Text(f"{ratio:.0f} %", style="green" if 95.0 <= ratio <= 105.0 else "red")
    table.add_row("FR required", _kw(required), "")
    table.add_row("FR delivered", _kw(delivered), "")
    table.add_row("delivered share", share, Text("of required", style="dim"))
    return Panel(table, title="frequency response", title_align="left")


def _health(group: GroupRecord) -> Text:
    if group.healthy:
        return Text("✔ ok", style="green")
    reason = f": {group.reason}" if group.reason else ""
    return Text(f"✘ EXCLUDED{reason}", style="bold red")


def _soc_cell(soc_pct: float, width: int) -> Text:
    if not _finite(soc_pct):
        return Text(_NO_VALUE)
    filled = max(0, min(width, round(soc_pct / 100.0 * width)))
    style = "red" if soc_pct < 10.0 or soc_pct > 90.0 else "cyan"
    text = Text(f"{soc_pct:5.1f} % ")
    text.append("■" * filled, style=style)
    text.append("·" * (width - filled), style="grey37")
    return text


def _groups_section(record: CycleRecord, wide: bool) -> Panel:
    table = Table(box=None, padding=(0, 1), header_style="bold")
    table.add_column("battery group", no_wrap=True, overflow="ellipsis")
    table.add_column("SoC", no_wrap=True)
    table.add_column("setpoint", justify="right")
    table.add_column("measured", justify="right")
    table.add_column("health", overflow="fold")
    for group in record.groups:
        table.add_row(
            group.name,
            _soc_cell(group.soc_pct, 10 if wide else 5),
            _kw(group.setpoint_w),
            _kw(group.power_w),
            _health(group),
        )
    if not record.groups:
        table.add_row(Text("no battery groups", style="dim"), "", "", "", "")
    return Panel(table, title="batteries (+ charging / − discharging)", title_align="left")


def _dispatch_section(record: CycleRecord) -> Panel:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row(
        "latency (ms)",
        f"p50 {_num(record.latency_p50_ms)} · p99 {_num(record.latency_p99_ms)}"
        f" · last {_num(record.dispatch_latency_ms)}",
    )
    failed_style = "bold red" if record.setpoints_failed else "green"
    table.add_row(
        "setpoints",
        Text.assemble(
            f"{record.setpoints_sent} sent  ·  ",
            (f"{record.setpoints_failed} failed", failed_style),
        ),
    )
    table.add_row(
        "cycle overruns",
        Text(str(record.cycle_overruns), style="yellow" if record.cycle_overruns else "green"),
    )
    if record.excluded:
        excluded = Text()
        for i, (component_id, reason) in enumerate(sorted(record.excluded.items())):
            if i:
                excluded.append("  ·  ")
            excluded.append(f"#{component_id}", style="bold red")
            excluded.append(f" {reason}" if reason else "")
        table.add_row("excluded", excluded)
    else:
        table.add_row("excluded", Text("none", style="green"))
    if record.caps_w or record.pv_curtailed_w or record.ev_power_w:
        table.add_row("PV / EV caps", _caps_text(record))
    if record.setpoints_overridden:
        table.add_row(
            "overridden",
            Text(f"{record.setpoints_overridden} by another client", style="bold red"),
        )
    for label, why in (("ANOTHER CLIENT", record.another_client),
                       ("SITE CHANGED", record.site_changed)):
        if why:
            table.add_row(Text(label, style="bold red"), Text(f"stopped: {why}", style="red"))
    return Panel(table, title="dispatch", title_align="left")


def render_dashboard(
    record: CycleRecord, history: Sequence[CycleRecord] | None = None
) -> RenderableType:
    """Render one cycle of the run as a ``rich`` renderable.

    Args:
        record: the cycle to show.
        history: recent cycles, oldest first (may include ``record``); the last
            few dozen are drawn as trend lines of grid and uncontrolled power.

    Returns:
        A renderable to print on a console or hand to ``rich.live.Live``.
    """
    return _Dashboard(record, tuple(history) if history is not None else ())


class _Dashboard:
    """The dashboard as a renderable that lays itself out for the console width."""

    def __init__(self, record: CycleRecord, history: tuple[CycleRecord, ...]) -> None:
        self.record = record
        """The cycle shown."""
        self.history = history
        """Recent cycles for the trend lines, oldest first."""

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        wide = options.max_width >= _WIDE_CONSOLE
        record = self.record
        yield _header(record)
        yield _grid_section(record, self.history, _BAR_WIDTH_WIDE if wide else _BAR_WIDTH_NARROW)
        if wide:
            side_by_side = Table.grid(expand=True)
            side_by_side.add_column(ratio=1)
            side_by_side.add_column(ratio=1)
            side_by_side.add_row(_frequency_section(record), _dispatch_section(record))
            yield side_by_side
        else:
            yield _frequency_section(record)
            yield _dispatch_section(record)
        yield _groups_section(record, wide)


# --------------------------------------------------------------------------- live view


class LiveDashboard(RecordObserver):
    """The live terminal view of a run, drawn off the control loop.

    :meth:`update` only stores the record (and appends it to a bounded
    history); ``rich.live.Live`` redraws from its own refresh thread
    ``refresh_per_second`` times a second. Use as a context manager::

        with LiveDashboard(console) as dash:
            ...
            dash.update(record)  # once per control cycle
    """

    def __init__(
        self,
        console: Console | None = None,
        *,
        refresh_per_second: float = 4.0,
        history_len: int = 240,
        transient: bool = False,
    ) -> None:
        """Create the view (nothing is drawn until it is entered or started).

        Args:
            console: where to draw (default: rich's global console on stdout).
            refresh_per_second: redraws per second, > 0 and at most 30.
            history_len: cycles kept for the trend lines, >= 1.
            transient: erase the view when it stops instead of leaving the last frame.

        Raises:
            DashboardError: a parameter is out of range (the message names it).
        """
        if not (_finite(refresh_per_second) and 0.0 < refresh_per_second <= 30.0):
            raise DashboardError(
                f"refresh_per_second must be in (0, 30], got {refresh_per_second!r}"
            )
        if history_len < 1:
            raise DashboardError(f"history_len must be >= 1, got {history_len!r}")
        self._lock = threading.Lock()
        """Guards ``_latest`` and ``_history`` between the control loop and the refresh thread."""
        self._latest: CycleRecord | None = None
        """The most recent record passed to :meth:`update`."""
        self._history: deque[CycleRecord] = deque(maxlen=history_len)
        """The last ``history_len`` records, oldest first."""
        self._render_failed = False
        """Set after a render error was logged once (the view then shows the error)."""
        self._live = Live(
            console=console,
            auto_refresh=True,
            refresh_per_second=refresh_per_second,
            transient=transient,
            get_renderable=self.renderable,
        )
        """The rich live display owning the refresh thread."""

    @property
    def console(self) -> Console:
        """The console the view draws on."""
        return self._live.console

    @property
    def latest(self) -> CycleRecord | None:
        """The most recent record, ``None`` before the first cycle."""
        return self._latest

    @property
    def history(self) -> tuple[CycleRecord, ...]:
        """The records kept for the trend lines, oldest first (at most ``history_len``)."""
        with self._lock:
            return tuple(self._history)

    def update(self, record: CycleRecord) -> None:
        """Store the latest cycle; cheap enough for the control loop (no drawing here)."""
        with self._lock:
            self._latest = record
            self._history.append(record)

    def renderable(self) -> RenderableType:
        """What the refresh thread draws now (also usable for a one-off print)."""
        with self._lock:
            latest = self._latest
            history = tuple(self._history)
        if latest is None:
            return Text("gridloop: waiting for the first control cycle…", style="dim")
        try:
            return render_dashboard(latest, history)
        except Exception as err:  # a drawing bug must not kill the refresh thread
            if not self._render_failed:
                self._render_failed = True
                _log.exception("dashboard rendering failed; showing the error instead")
            return Text(f"dashboard rendering failed: {err!r}", style="bold red")

    def start(self) -> None:
        """Start drawing (the refresh thread)."""
        self._live.start(refresh=True)

    def stop(self) -> None:
        """Draw a final frame and stop the refresh thread."""
        self._live.stop()


# --------------------------------------------------------------------------- log line


def _caps_text(record: CycleRecord) -> Text:
    """PV curtailment and EV limits: counts, powers and every cap in force."""
    text = Text(
        f"PV {record.pv_capped} capped, {_kw(record.pv_curtailed_w, signed=False)} curtailed"
        f"  ·  EV {record.ev_limited} limited, {_kw(record.ev_power_w, signed=False)} charging"
    )
    for component_id, cap_w in sorted(record.caps_w.items()):
        text.append("  ·  ")
        text.append(f"#{component_id}", style="bold yellow")
        text.append(" paused" if cap_w == 0.0 else f" {_kw(cap_w)}")
    return text


def summary_line(record: CycleRecord) -> str:
    """One concise line describing a cycle, for logs when there is no dashboard.

    Example::

        t=12.0s api=v1alpha19 grid=+48.2kW limit=50.0kW eff_limit=52.3kW
        interval_mean=+49.1kW billed_peak=52.3kW uncontrolled=+61.0kW battery=-12.8kW
        target=-13.0kW f=49.912Hz fr=-5.0/-4.9kW soc=41.0..63.5% lat_p50=2.9ms
        lat_p99=8.1ms sent=1234 failed=2 overruns=0 excluded=0

    (on one line).
    """

    def num(power_w: float) -> str:
        return f"{power_w / 1000.0:+.1f}" if _finite(power_w) else "nan"

    def kw(power_w: float) -> str:
        return num(power_w) + "kW"

    def ms(latency_ms: float) -> str:
        return f"{latency_ms:.1f}ms" if _finite(latency_ms) else "nan"

    parts = [f"t={record.time_s:.1f}s"]
    if record.api_version:
        parts.append(f"api={record.api_version}")
    parts.append(f"grid={kw(record.grid_power_w)}")
    if _finite(record.import_limit_w):
        parts.append(f"limit={record.import_limit_w / 1000.0:.1f}kW")
    if _finite(record.effective_import_limit_w):
        parts.append(f"eff_limit={record.effective_import_limit_w / 1000.0:.1f}kW")
    if _finite(record.interval_projected_mean_w):
        parts.append(f"interval_mean={kw(record.interval_projected_mean_w)}")
    if _finite(record.billed_peak_w):
        parts.append(f"billed_peak={record.billed_peak_w / 1000.0:.1f}kW")
    parts += [
        f"uncontrolled={kw(record.uncontrolled_power_w)}",
        f"battery={kw(record.battery_power_w)}",
        f"target={kw(record.battery_target_w)}",
        f"f={record.frequency_hz:.3f}Hz" if _finite(record.frequency_hz) else "f=nan",
        f"fr={num(record.fr_required_w)}/{kw(record.fr_delivered_w)}",
    ]
    socs = [g.soc_pct for g in record.groups if _finite(g.soc_pct)]
    if socs:
        parts.append(f"soc={min(socs):.1f}..{max(socs):.1f}%")
    parts += [
        f"lat_p50={ms(record.latency_p50_ms)}",
        f"lat_p99={ms(record.latency_p99_ms)}",
        f"sent={record.setpoints_sent}",
        f"failed={record.setpoints_failed}",
        f"overruns={record.cycle_overruns}",
        f"excluded={len(record.excluded)}",
    ]
    if record.excluded:
        parts.append(
            "("
            + ", ".join(f"#{cid} {why}".strip() for cid, why in sorted(record.excluded.items()))
            + ")"
        )
    if record.caps_w or record.pv_curtailed_w or record.ev_power_w:
        parts += [
            f"pv_curtailed={kw(record.pv_curtailed_w)}",
            f"pv_capped={record.pv_capped}",
            f"ev={kw(record.ev_power_w)}",
            f"ev_limited={record.ev_limited}",
        ]
    if record.setpoints_overridden:
        parts.append(f"overridden={record.setpoints_overridden}")
    if record.another_client:
        parts.append("STOPPED: another client controls the site")
    if record.site_changed:
        parts.append("STOPPED: the site changed")
    return " ".join(parts)


class LogLine:
    """Logs :func:`summary_line` at most once per ``interval_s`` of run time.

    Feed it every record; it decides by the record's own ``time_s`` (no clock),
    so it is deterministic in tests. The first record is always logged.
    """

    def __init__(
        self,
        logger: logging.Logger | None = None,
        *,
        interval_s: float = 5.0,
        level: int = logging.INFO,
    ) -> None:
        """Create the emitter.

        Args:
            logger: where to log (default ``gridloop.controller.status``).
            interval_s: minimum run time between two lines, seconds, >= 0.
            level: the logging level of the lines.

        Raises:
            DashboardError: ``interval_s`` is negative or not finite.
        """
        if not (_finite(interval_s) and interval_s >= 0.0):
            raise DashboardError(f"interval_s must be a finite number >= 0, got {interval_s!r}")
        self._logger = (
            logger if logger is not None else logging.getLogger("gridloop.controller.status")
        )
        """The logger the lines go to."""
        self._interval_s = interval_s
        """Minimum run time between two lines."""
        self._level = level
        """Logging level of the lines."""
        self._last_s: float | None = None
        """``time_s`` of the last record logged."""

    def update(self, record: CycleRecord) -> bool:
        """Log the record's summary if ``interval_s`` has passed; return whether it did."""
        if self._last_s is not None and record.time_s - self._last_s < self._interval_s:
            return False
        self._last_s = record.time_s
        self._logger.log(self._level, "%s", summary_line(record))
        return True
