"""The schedule file: service windows in TOML, a live :class:`ScheduleSource` (issue 17).

Format (``examples/fcr_day.toml``; one ``[[window]]`` table per window, every
key but ``start`` and ``end`` optional; units in the names; W of interval mean
for the peak limit)::

    [[window]]                  # window[1]: FCR block 1, every day
    start = "00:00"             # a time of day (HH:MM[:SS], local): recurs daily
    end = "04:00"               # "24:00" = midnight; end < start crosses midnight
    reserved_power_w = 100_000  # frequency response sold (0 = not sold: 0 W)
    curve = "linear"            # or "knee"; deadband_hz, full_activation_hz, knee_hz,
                                # knee_fraction as in [frequency_response]
    hold_duration_s = 900       # full reserve held this long either way
    peak_limit_w = 250_000      # peak-shaving target limit in the window

    [[window]]                  # window[2]: a one-off window
    start = 2026-12-01T18:00:00+01:00   # ISO-8601 date-time, TOML's or as text;
    end = "2026-12-01T20:00:00"         # without an offset: local time
    peak_limit_w = 200_000

*Local time* is the billing zone: ``[billing] timezone``, else the site's, else
UTC (the zone the billing meter counts in). A window sets frequency response
(``reserved_power_w``, with the curve keys and ``hold_duration_s``), the peak
limit (``peak_limit_w``), or both; what it leaves out takes the config's value
(``[frequency_response]``, ``[peak_shaving]``). Outside every window that sets
it, frequency response outputs exactly 0 W; outside every window that sets a
peak limit, ``[peak_shaving] limit`` applies. Overlaps follow
:mod:`controller.runtime.schedule` (the window that started last wins).

Validation is the config's (:func:`controller.runtime.config.read_window`):
an unknown key, a wrong type, a negative power, a bad time raises
:class:`~controller.errors.ConfigError`, one line naming the file, the window
(``window[N]``, counted from 1) with its field, and the value.

:class:`FileScheduleSource` watches the file: it polls its modification time
and size about once a second and reloads on a change or when :meth:`reload` is
called (SIGHUP in ``gridloop run --schedule``). An invalid edit is logged as one
line and the last good windows stay. Daily windows are expanded from the day
before today to :data:`HORIZON_DAYS` days ahead (local days), and re-delivered
when the local date changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import math
import os
import re
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.errors import ConfigError
from controller.runtime.config import read_toml, read_window
from controller.runtime.schedule import Deliver, FrequencyWindow, Window

__all__ = [
    "HORIZON_DAYS",
    "FileScheduleSource",
    "ScheduleFile",
    "load_schedule",
    "parse_schedule",
]

_LOG = logging.getLogger("gridloop.controller.schedule")

HORIZON_DAYS = 2
"""Daily windows are delivered this many local days ahead of today (besides today and
yesterday), so that preparation sees the next window whatever the hour."""
_DAY_S = 86_400
_TIME_OF_DAY = re.compile(r"^(\d{2}):(\d{2})(?::(\d{2}))?$")


@dataclass(frozen=True, slots=True)
class _Entry:
    """One ``[[window]]``: daily (seconds of the local day) or absolute (unix seconds)."""

    index: int
    daily: bool
    start: float
    end: float
    frequency: FrequencyWindow | None
    peak_limit_w: float | None


@dataclass(frozen=True, slots=True)
class ScheduleFile:
    """A parsed schedule file: its windows, daily ones not yet placed on days."""

    source: str
    """The file as named (for logs and the windows' ``source``)."""
    zone: zoneinfo.ZoneInfo
    """The local zone of times without an offset and of daily windows."""
    entries: tuple[_Entry, ...]
    """The ``[[window]]`` tables in file order."""

    def windows(self, from_s: float, to_s: float) -> tuple[Window, ...]:
        """Every window that overlaps ``[from_s, to_s)`` (site unix time, s), in file order,
        daily ones once per local day (``source`` ``file:NAME#N@DATE``).

        Args:
            from_s: Start of the span, unix s.
            to_s: End of the span, unix s.

        Returns:
            The windows.
        """
        first = dt.datetime.fromtimestamp(from_s, self.zone).date() - dt.timedelta(days=1)
        last = dt.datetime.fromtimestamp(to_s, self.zone).date()
        days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
        out: list[Window] = []
        for e in self.entries:
            spans = ([(self._on(d, e.start), self._on(d, e.end, e.end <= e.start), f"@{d}")
                      for d in days] if e.daily else [(e.start, e.end, "")])
            for start, end, day in spans:
                if end > from_s and start < to_s:
                    out.append(Window(start, end, f"file:{self.source}#{e.index}{day}",
                                      e.frequency, e.peak_limit_w))
        return tuple(out)

    def around(self, t_s: float) -> tuple[Window, ...]:
        """The windows a source delivers at ``t_s``: those overlapping today (local) up to
        the end of :data:`HORIZON_DAYS` days after today; changes only at local midnight."""
        today = dt.datetime.fromtimestamp(t_s, self.zone).date()
        return self.windows(self._on(today, 0.0),
                            self._on(today + dt.timedelta(days=HORIZON_DAYS + 1), 0.0))

    def _on(self, day: dt.date, second: float, next_day: bool = False) -> float:
        """Unix time of ``second`` of the local ``day`` (the next day's if ``next_day``)."""
        if next_day:
            day += dt.timedelta(days=1)
        whole = int(second)
        if whole >= _DAY_S:
            day, whole = day + dt.timedelta(days=1), whole - _DAY_S
        local = dt.datetime(day.year, day.month, day.day, whole // 3600, whole // 60 % 60,
                            whole % 60, tzinfo=self.zone)
        return local.timestamp() + (second - int(second))


def _when(source: str, name: str, value: object, zone: zoneinfo.ZoneInfo,
          end: bool) -> tuple[bool, float]:
    """``(daily, seconds)``: a time of day (seconds of the day) or a date-time (unix s)."""
    if isinstance(value, str):
        m = _TIME_OF_DAY.match(value.strip())
        if m is not None:
            h, mi, sec = int(m[1]), int(m[2]), int(m[3] or 0)
            if (h, mi, sec) == (24, 0, 0) and end:
                return True, float(_DAY_S)
            if h > 23 or mi > 59 or sec > 59:
                raise ConfigError(source, name, value, "not a time of day (00:00..23:59"
                                  + (", or 24:00" if end else "") + ")")
            return True, float(h * 3600 + mi * 60 + sec)
        try:
            value = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise ConfigError(source, name, value, 'must be a time ("HH:MM") or an ISO-8601'
                              ' date-time ("2026-12-01T18:00:00+01:00")') from None
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=zone)
        return False, aware.timestamp()
    assert isinstance(value, dt.time)  # read_window lets only these through
    if value.tzinfo is not None:
        raise ConfigError(source, name, value, "a time of day is local: no offset")
    return True, value.hour * 3600.0 + value.minute * 60.0 + value.second \
        + value.microsecond / 1e6


def _entry(source: str, index: int, raw: object, zone: zoneinfo.ZoneInfo) -> _Entry:
    name = f"window[{index}]"
    w = read_window(source, name, raw)
    daily, start = _when(source, f"{name}.start", w["start"], zone, end=False)
    end_daily, end = _when(source, f"{name}.end", w["end"], zone, end=True)
    if end_daily != daily:
        raise ConfigError(source, f"{name}.end", w["end"],
                          "must be a time of day like start" if daily
                          else "must be a date-time like start")
    if end == start or (not daily and end < start):
        raise ConfigError(source, f"{name}.end", w["end"], "must be after start")
    frequency = None
    if w["reserved_power_w"] is not None:
        frequency = FrequencyWindow(w["reserved_power_w"], w["curve"], w["hold_duration_s"])
    return _Entry(index, daily, start, end, frequency, w["peak_limit_w"])


def parse_schedule(data: Mapping[str, Any], source: str,
                   zone: zoneinfo.ZoneInfo) -> ScheduleFile:
    """Validate a parsed schedule file (module docstring).

    Args:
        data: The TOML document as ``tomllib`` returns it.
        source: The file's name, for errors and the windows' ``source``.
        zone: The local zone (billing zone).

    Returns:
        The schedule.

    Raises:
        ConfigError: one line naming ``source``, the field and the value.
    """
    for key, value in data.items():
        if key != "window":
            raise ConfigError(source, str(key), value, "unknown key (expected: [[window]])")
    tables = data.get("window", [])
    if not isinstance(tables, list):
        raise ConfigError(source, "window", tables, "must be an array of tables: [[window]]")
    return ScheduleFile(source, zone, tuple(
        _entry(source, i, raw, zone) for i, raw in enumerate(tables, start=1)))


def load_schedule(path: str | os.PathLike[str], zone: zoneinfo.ZoneInfo) -> ScheduleFile:
    """Read and validate a schedule file.

    Raises:
        ConfigError: unreadable file, bad TOML or a bad value (one line).
    """
    return parse_schedule(read_toml(path, "schedule"), os.fspath(path), zone)


class FileScheduleSource:
    """A schedule file as a live :class:`~controller.runtime.schedule.ScheduleSource`."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        zone: zoneinfo.ZoneInfo,
        clock: Callable[[], float],
        poll_s: float = 1.0,
    ) -> None:
        """Watch ``path``.

        Args:
            path: The schedule file.
            zone: The local zone (the billing zone).
            clock: The site's unix time now (s; the control cycle's ``site_time_s``).
            poll_s: How often the file's modification time and size are compared (s).
        """
        self.path = Path(path)
        """The file."""
        self.zone = zone
        self.clock = clock
        self.poll_s = poll_s
        self._reload = asyncio.Event()
        self.schedule: ScheduleFile | None = None
        """The last good schedule (None before the first good read)."""

    @property
    def name(self) -> str:
        """``file:PATH``: the source's name in logs and in the book."""
        return f"file:{self.path}"

    def reload(self) -> None:
        """Read the file again at once (SIGHUP), changed or not."""
        self._reload.set()

    def _signature(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def _read(self) -> None:
        try:
            self.schedule = load_schedule(self.path, self.zone)
        except ConfigError as exc:
            kept = "no windows" if self.schedule is None else "the last good windows"
            _LOG.warning("schedule %s: %s; keeping %s", self.name, exc, kept)

    async def run(self, deliver: Deliver) -> None:
        """Deliver the windows now and after every change of the file or the local date,
        until cancelled; never raises (a failure is logged, the last windows stay)."""
        seen: tuple[int, int] | float | None = math.nan  # nothing read yet
        delivered: tuple[Window, ...] | None = None
        while True:
            try:
                signature = self._signature()
                if self._reload.is_set() or signature != seen:
                    self._reload.clear()
                    seen = signature
                    self._read()
                if self.schedule is not None:
                    windows = self.schedule.around(self.clock())
                    if windows != delivered:
                        deliver(self.name, windows)
                        delivered = windows
            except Exception:  # a bug here must not stop the run
                _LOG.exception("schedule %s: update failed; keeping the last windows", self.name)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._reload.wait(), self.poll_s)
