"""The bill's view of the grid: billing intervals, their means, the period's billed peak.

A demand charge bills the highest *billing-interval mean* of the grid import
(15 min in most tariffs) over a *billing period* (a calendar month in the
site's time zone). This module is pure (time is always an argument, the site's
unix time in seconds) except for the explicit :func:`load_state` /
:func:`save_state`:

* :class:`BillingConfig` — the ``[billing]`` section (interval, period, zone, state file).
* :func:`billing_zone` — the zone to bill in: the config's, else the site's, else UTC.
* :class:`BillingClock` — unix time → the interval's start and end (aligned to the
  local clock, DST-safe) and the period's key and start.
* :class:`BillingMeter` — fed every control cycle; integrates each interval's grid
  energy (and the uncontrolled energy, grid − battery), closes intervals into
  their means, keeps the period's billed peak with and without batteries and a
  bounded history of closed uncontrolled interval means (for forecasting).
* :class:`SiteKey`, :func:`load_state`, :func:`save_state` (:func:`state_document` +
  :func:`write_state`) — the meter's state in a JSON file, written atomically,
  restored at start; a bad file is one warning and a fresh start.
* :func:`zone_problem` — why a zone name is unusable (the config's check).

Integration rule (what one bad sample can do)
---------------------------------------------
Each sample's powers are held until the next sample (zero-order hold) for at
most ``max_gap_s`` (30 s of site time by default): a longer gap (telemetry
lost, the controller stopped, a clock jump forward) is integrated for
``max_gap_s`` only, and the rest of it is *not covered*. A NaN power is not
integrated at all (its hold time is not covered either). A sample older than
the last one (the clock went back: an NTP step, a time-scaled simulator
restarted) is ignored until the clock passes the last metered time. An
interval's mean is the mean of its covered part (energy / covered time): the
best estimate of what the utility's meter saw; an interval with no covered
time has no mean and is not recorded. So a single wrong sample weighs at most
``max_gap_s / interval_s`` (3.3 % of a 15-min interval) in a mean.

An interval the meter *joined late* (its first sample more than ``max_gap_s``
after the interval's start: the run started within it, without a restored state,
or telemetry came back after a longer gap) is not billed by the meter: its
energy before is unknown, and the mean of a few covered seconds (a start-up
transient before the first setpoint acts) is no estimate of the interval's.
It does not raise the billed peaks (its uncontrolled mean still goes into the
history), and peak shaving shaves its samples against the limit rather than
making up energy it cannot place (:attr:`BillingMeter.interval_joined_late`).

Units: W, Wh, s (site unix time); + = import. The billed demand of an interval
is ``max(0, mean grid power)``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import math
import os
import tempfile
import zoneinfo
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "PERIODS",
    "BillingClock",
    "BillingConfig",
    "BillingMeter",
    "SiteKey",
    "billing_zone",
    "load_state",
    "save_state",
    "state_document",
    "write_state",
    "zone_problem",
]

_LOG = logging.getLogger("gridloop.billing")

Period = Literal["month", "week", "day"]
PERIODS: tuple[str, ...] = ("month", "week", "day")
"""The billing periods :class:`BillingClock` knows."""
STATE_FORMAT = "gridloop-billing-state"
"""The ``format`` field of a state file."""
STATE_VERSION = 1
"""The ``version`` field of a state file this code writes and reads."""
_HISTORY_S = 9 * 7 * 86_400.0
"""How much history of closed interval means the meter keeps (≥ 8 weeks)."""


@dataclass(frozen=True, slots=True)
class BillingConfig:
    """The ``[billing]`` section: how the site's demand is billed (s; + = import)."""

    interval_s: int = 900
    """Billing interval, seconds (60..3600, divides a day); aligned to the local clock."""
    period: Period = "month"
    """Billing period: the billed peak resets at the start of each (``month``, ``week``
    (ISO, from Monday) or ``day``, in the billing zone)."""
    timezone: str | None = None
    """IANA zone of the bill (``"Europe/Berlin"``); None = the site's, else UTC."""
    state_file: Path | None = None
    """Where the meter's state is kept across restarts; None = ``gridloop run``'s default
    (``gridloop-state.json`` in the current directory with ``--api``, none on the embedded
    simulator)."""


def zone_problem(name: str) -> str | None:
    """Why ``name`` is not a usable IANA time zone (None: it is)."""
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return "not a known IANA time zone (e.g. \"Europe/Berlin\", \"UTC\")"
    return None


def billing_zone(configured: str | None, site_zone: str | None) -> zoneinfo.ZoneInfo:
    """The zone the bill is counted in: the config's, else the site's, else UTC.

    Args:
        configured: ``[billing] timezone`` (validated by the config).
        site_zone: The site's zone from the API (None when it gives none).

    Returns:
        The zone. A site zone the zone database does not know counts as none (UTC).
    """
    for name in (configured, site_zone):
        if name is not None and zone_problem(name) is None:
            return zoneinfo.ZoneInfo(name)
    return zoneinfo.ZoneInfo("UTC")


class BillingClock:
    """Billing intervals and periods on the site's local clock (pure; time is an argument).

    Interval boundaries are the instants whose local wall-clock time is a
    multiple of ``interval_s`` after local midnight, plus the instants the
    local clock jumps (DST changes) when a jump is not a multiple of the
    interval: intervals never overlap and never leave a gap, and with a
    15-min interval a 23-h spring day has 92 of them, a 25-h autumn day 100.
    """

    def __init__(self, interval_s: int, period: str, tz: dt.tzinfo) -> None:
        """Keep the settings (validated by the config: ``interval_s`` divides a day).

        Args:
            interval_s: Interval length in seconds of wall-clock time.
            period: ``"month"``, ``"week"`` or ``"day"``.
            tz: The billing zone.
        """
        if period not in PERIODS:
            raise ValueError(f"period = {period!r}: must be one of {', '.join(PERIODS)}")
        if interval_s <= 0 or 86_400 % interval_s:
            raise ValueError(f"interval_s = {interval_s!r}: must divide a day")
        self.interval_s = int(interval_s)
        """Interval length (s)."""
        self.period = period
        """The billing period."""
        self.tz = tz
        """The billing zone."""

    def _offset_s(self, t: float) -> float:
        off = dt.datetime.fromtimestamp(t, self.tz).utcoffset()
        return off.total_seconds() if off is not None else 0.0

    def _transition(self, lo: float, hi: float) -> float:
        """The instant in (lo, hi] where the zone's offset changes (to 1 ms)."""
        off_lo = self._offset_s(lo)
        while hi - lo > 1e-3:
            mid = (lo + hi) / 2.0
            if self._offset_s(mid) == off_lo:
                lo = mid
            else:
                hi = mid
        whole = float(math.floor(hi))  # zones change offset on whole seconds
        return whole if lo < whole and self._offset_s(whole) != off_lo else hi

    def interval_start(self, t: float) -> float:
        """Start (unix s) of the billing interval containing ``t``."""
        off = self._offset_s(t)
        start = t - (t + off) % self.interval_s
        if self._offset_s(start) != off:  # the clock jumped within (start, t]
            start = max(start, self._transition(start, t))
        return start

    def interval_end(self, t: float) -> float:
        """End (unix s, exclusive) of the billing interval containing ``t``."""
        start = self.interval_start(t)
        off = self._offset_s(t)
        end = t - (t + off) % self.interval_s + self.interval_s
        end = max(end, start + 1e-3)
        if self._offset_s(end) != off:  # the clock jumps within (t, end]
            end = min(end, self._transition(t, end))
        return end

    def period_key(self, t: float) -> str:
        """The billing period of ``t``: ``"2026-11"``, ``"2026-W46"`` or ``"2026-11-09"``."""
        local = dt.datetime.fromtimestamp(t, self.tz)
        if self.period == "month":
            return f"{local.year:04d}-{local.month:02d}"
        if self.period == "week":
            year, week, _ = local.isocalendar()
            return f"{year:04d}-W{week:02d}"
        return local.date().isoformat()

    def period_start(self, t: float) -> float:
        """Start (unix s) of the billing period of ``t``: local midnight of its first day."""
        day = dt.datetime.fromtimestamp(t, self.tz).date()
        if self.period == "month":
            day = day.replace(day=1)
        elif self.period == "week":
            day = day - dt.timedelta(days=day.weekday())
        return dt.datetime(day.year, day.month, day.day, tzinfo=self.tz).timestamp()


@dataclass(slots=True)
class _Interval:
    """The open interval's sums (s, Wh)."""

    start_s: float
    end_s: float
    joined_s: float
    covered_s: float = 0.0
    covered_uncontrolled_s: float = 0.0
    energy_wh: float = 0.0
    energy_uncontrolled_wh: float = 0.0
    energy_exempt_wh: float = 0.0


class BillingMeter:
    """Interval energies, the period's billed peaks and the history (rule in the module doc)."""

    def __init__(self, clock: BillingClock, max_gap_s: float = 30.0) -> None:
        """A meter with nothing measured yet.

        Args:
            clock: Intervals and periods.
            max_gap_s: Longest time a sample is held (site s, > 0).
        """
        self.clock = clock
        """Intervals and periods."""
        self.max_gap_s = max_gap_s
        """Longest time one sample is held (site s)."""
        self.period_key: str | None = None
        """The current billing period (None before the first sample)."""
        self.period_start_s: float = math.nan
        """Start of the current period (unix s)."""
        self.billed_peak_w: float = 0.0
        """Highest closed interval mean this period, with batteries (W, ≥ 0)."""
        self.billed_peak_w_uncontrolled: float = 0.0
        """The same without batteries (grid − battery)."""
        self.closed: int = 0
        """Intervals closed since this meter was made."""
        self._cur: _Interval | None = None
        self._last_t: float | None = None
        self._held: tuple[float, float, float] = (math.nan, math.nan, 0.0)
        n = math.ceil(_HISTORY_S / clock.interval_s)
        self._hist: deque[tuple[float, float]] = deque(maxlen=n)

    # ------------------------------------------------------------ feeding
    def update(
        self, t: float, grid_w: float, uncontrolled_w: float, exempt_w: float = 0.0
    ) -> bool:
        """Account one control cycle's measurement at site time ``t``.

        Args:
            t: Site unix time (s).
            grid_w: Grid power (W, + = import; nan if unknown).
            uncontrolled_w: Grid − battery power (W; nan if unknown).
            exempt_w: Power of contributions peak shaving must not make up (the
                strategies above it, e.g. frequency response; W, + = charging).

        Returns:
            Whether an interval was closed (time to save the state).
        """
        if not math.isfinite(t):
            return False
        before = self.closed
        if self._last_t is None or self._cur is None:
            self._open(t)
        elif t < self._last_t:
            return False  # the clock went back: wait until it passes the last metered time
        else:
            self._integrate(self._last_t, min(t, self._last_t + self.max_gap_s))
            if t >= self._cur.end_s:
                self._roll(t)
        self._last_t = t
        self._held = (grid_w, uncontrolled_w, exempt_w if math.isfinite(exempt_w) else 0.0)
        return self.closed != before

    def _integrate(self, a: float, b: float) -> None:
        """Hold the last sample over [a, b], splitting at interval boundaries."""
        g, u, x = self._held
        while a < b:
            assert self._cur is not None
            if a >= self._cur.end_s:
                self._roll(a)
            cur = self._cur
            seg = min(b, cur.end_s) - a
            if math.isfinite(g):
                cur.covered_s += seg
                cur.energy_wh += g * seg / 3600.0
                cur.energy_exempt_wh += x * seg / 3600.0
            if math.isfinite(u):
                cur.covered_uncontrolled_s += seg
                cur.energy_uncontrolled_wh += u * seg / 3600.0
            a += seg

    def _open(self, t: float) -> None:
        start = self.clock.interval_start(t)
        key = self.clock.period_key(start)
        if key != self.period_key:  # a new period: the peaks start again
            self.period_key = key
            self.period_start_s = self.clock.period_start(start)
            self.billed_peak_w = 0.0
            self.billed_peak_w_uncontrolled = 0.0
        self._cur = _Interval(start, self.clock.interval_end(t), t)

    def _roll(self, t: float) -> None:
        """Close the current interval and open the one containing ``t``."""
        cur = self._cur
        assert cur is not None
        key = self.clock.period_key(cur.start_s)
        if key != self.period_key:  # a restored interval of another period
            self.period_key = key
            self.period_start_s = self.clock.period_start(cur.start_s)
            self.billed_peak_w = self.billed_peak_w_uncontrolled = 0.0
        billable = not self._joined_late(cur)
        if cur.covered_s > 0 and billable:
            self.billed_peak_w = max(self.billed_peak_w, cur.energy_wh * 3600.0 / cur.covered_s)
        if cur.covered_uncontrolled_s > 0:
            mean_u = cur.energy_uncontrolled_wh * 3600.0 / cur.covered_uncontrolled_s
            if billable:
                self.billed_peak_w_uncontrolled = max(self.billed_peak_w_uncontrolled, mean_u)
            self._hist.append((cur.start_s, mean_u))
        self.closed += 1
        self._open(t)

    def _joined_late(self, cur: _Interval) -> bool:
        return cur.joined_s - cur.start_s > self.max_gap_s

    # ------------------------------------------------------------ reading
    @property
    def interval_joined_late(self) -> bool:
        """Whether the meter's first sample of the current interval came more than
        ``max_gap_s`` after its start (the run started, or telemetry came back, within it;
        module doc): its energy before is unknown (False before the first sample)."""
        return self._cur is not None and self._joined_late(self._cur)

    @property
    def interval_start_s(self) -> float:
        """Start of the current interval (unix s; nan before the first sample)."""
        return self._cur.start_s if self._cur is not None else math.nan

    @property
    def interval_end_s(self) -> float:
        """End of the current interval (unix s; nan before the first sample)."""
        return self._cur.end_s if self._cur is not None else math.nan

    @property
    def interval_covered_s(self) -> float:
        """Seconds of the current interval with a measured grid power so far."""
        return self._cur.covered_s if self._cur is not None else 0.0

    @property
    def interval_energy_wh(self) -> float:
        """Grid energy of the current interval so far (its covered part; Wh, + = import)."""
        return self._cur.energy_wh if self._cur is not None else 0.0

    @property
    def interval_energy_exempt_wh(self) -> float:
        """The part of :attr:`interval_energy_wh` that exempt contributions (frequency
        response) drew (Wh, + = charging)."""
        return self._cur.energy_exempt_wh if self._cur is not None else 0.0

    @property
    def interval_energy_uncontrolled_wh(self) -> float:
        """Uncontrolled (grid − battery) energy of the current interval so far (Wh)."""
        return self._cur.energy_uncontrolled_wh if self._cur is not None else 0.0

    def remaining_s(self, t: float) -> float:
        """Seconds from ``t`` to the end of the current interval (nan before the first sample)."""
        return self.interval_end_s - t

    def projected_mean_w(self, t: float, grid_w: float) -> float:
        """The current interval's mean if ``grid_w`` held to its end (W; nan if unknown)."""
        cur = self._cur
        if cur is None or not math.isfinite(grid_w):
            return math.nan
        rest = max(0.0, cur.end_s - t)
        total = cur.covered_s + rest
        if total <= 0:
            return math.nan
        return (cur.energy_wh * 3600.0 + grid_w * rest) / total

    def current_mean_w(self) -> float:
        """Mean grid power of the current interval's covered part so far (W; nan if none)."""
        cur = self._cur
        if cur is None or cur.covered_s <= 0:
            return math.nan
        return cur.energy_wh * 3600.0 / cur.covered_s

    def current_mean_uncontrolled_w(self) -> float:
        """Mean uncontrolled power of the current interval so far (W; nan if none)."""
        cur = self._cur
        if cur is None or cur.covered_uncontrolled_s <= 0:
            return math.nan
        return cur.energy_uncontrolled_wh * 3600.0 / cur.covered_uncontrolled_s

    def history(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Closed intervals' start times (unix s) and uncontrolled means (W, signed), oldest
        first: at least the last 8 weeks."""
        if not self._hist:
            return np.empty(0), np.empty(0)
        arr = np.asarray(self._hist, dtype=np.float64)
        return arr[:, 0].copy(), arr[:, 1].copy()

    # ------------------------------------------------------------ state
    def state(self) -> dict[str, Any]:
        """The meter's state as a JSON-able dict (see :func:`save_state`)."""
        cur = self._cur
        starts, means = self.history()
        return {
            "interval_s": self.clock.interval_s,
            "period": self.clock.period,
            "timezone": str(self.clock.tz),
            "period_key": self.period_key,
            "period_start_s": self.period_start_s if math.isfinite(self.period_start_s) else None,
            "billed_peak_w": self.billed_peak_w,
            "billed_peak_w_uncontrolled": self.billed_peak_w_uncontrolled,
            "last_time_s": self._last_t,
            "interval": None if cur is None else {
                "start_s": cur.start_s,
                "end_s": cur.end_s,
                "joined_s": cur.joined_s,
                "covered_s": cur.covered_s,
                "covered_uncontrolled_s": cur.covered_uncontrolled_s,
                "energy_wh": cur.energy_wh,
                "energy_uncontrolled_wh": cur.energy_uncontrolled_wh,
                "energy_exempt_wh": cur.energy_exempt_wh,
            },
            "history": {"start_s": starts.tolist(), "mean_uncontrolled_w": means.tolist()},
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Take over a state written by :meth:`state` (checked by :func:`load_state`).

        The next :meth:`update` closes the restored interval if it has ended (with
        what it had) and rolls the period over if it is another one.

        Raises:
            ValueError: the state does not fit this meter's clock, or a field is bad.
        """
        clock = self.clock
        made = (state["interval_s"], state["period"], state["timezone"])
        mine = (clock.interval_s, clock.period, str(clock.tz))
        if made != mine:
            raise ValueError(
                "written for interval_s, period, timezone = "
                f"{made[0]!r}, {made[1]!r}, {made[2]!r}, not {mine[0]!r}, {mine[1]!r}, {mine[2]!r}"
            )
        peaks = (_num(state, "billed_peak_w"), _num(state, "billed_peak_w_uncontrolled"))
        iv = state["interval"]
        cur = None
        if iv is not None:
            start_s, end_s = _num(iv, "start_s"), _num(iv, "end_s")
            # Written before ``joined_s`` existed: seen from its start.
            joined = _num(iv, "joined_s") if "joined_s" in iv else start_s
            cur = _Interval(start_s, end_s, joined, *(_num(iv, k) for k in (
                "covered_s", "covered_uncontrolled_s", "energy_wh",
                "energy_uncontrolled_wh", "energy_exempt_wh")))
        hist = state["history"]
        pairs = list(zip(hist["start_s"], hist["mean_uncontrolled_w"], strict=True))
        if not all(isinstance(v, int | float) for p in pairs for v in p):
            raise ValueError("history: numbers expected")
        last = state["last_time_s"]
        if last is not None and not isinstance(last, int | float):
            raise ValueError(f"last_time_s = {last!r}: a number expected")
        key = state["period_key"]
        if key is not None and not isinstance(key, str):
            raise ValueError(f"period_key = {key!r}: a string expected")
        self.period_key = key
        start = state["period_start_s"]
        self.period_start_s = float(start) if isinstance(start, int | float) else math.nan
        self.billed_peak_w, self.billed_peak_w_uncontrolled = peaks
        self._cur = cur
        self._last_t = float(last) if last is not None and cur is not None else None
        self._held = (math.nan, math.nan, 0.0)
        self._hist.clear()
        self._hist.extend((float(s), float(m)) for s, m in pairs)


def _num(d: dict[str, Any], key: str) -> float:
    value = d[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{key} = {value!r}: a finite number expected")
    return float(value)


@dataclass(frozen=True, slots=True)
class SiteKey:
    """Which site a state file belongs to."""

    microgrid_id: int | None
    """GetMicrogrid's id (None: the server gives none)."""
    api_url: str
    """The server's URL as given (``grpc://HOST:PORT``)."""


def state_document(meter: BillingMeter, site: SiteKey) -> dict[str, Any]:
    """What :func:`save_state` writes: the meter's state, the format, version and site."""
    return {
        "format": STATE_FORMAT,
        "version": STATE_VERSION,
        "microgrid_id": site.microgrid_id,
        "api_url": site.api_url,
        **meter.state(),
    }


def write_state(path: Path, document: dict[str, Any]) -> None:
    """Write a :func:`state_document` to ``path`` atomically (temp file in the same
    directory, fsync, ``os.replace``, fsync of the directory): a crash at any moment
    leaves the old file or the new one, never a torn one.

    Raises:
        OSError: the file could not be written (the caller warns and goes on).
    """
    text = json.dumps(document, allow_nan=False)
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # the rename itself survives a power cut
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def save_state(path: Path, meter: BillingMeter, site: SiteKey) -> None:
    """Write ``meter``'s state for ``site`` to ``path`` atomically (:func:`write_state`).

    Raises:
        OSError: the file could not be written.
    """
    write_state(path, state_document(meter, site))


def load_state(path: Path, meter: BillingMeter, site: SiteKey) -> bool:
    """Restore ``meter`` from ``path`` if it holds this site's state.

    A missing file is a fresh start without a word; an unreadable, corrupt,
    other-version or other-site file is ONE warning naming the file and what is
    wrong, and a fresh start (``meter`` is left as it was). Never raises.

    Returns:
        Whether the state was restored.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return False
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        _LOG.warning("billing state %s: cannot read (%s); starting fresh", path, reason)
        return False
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("format") != STATE_FORMAT:
            raise ValueError("not a gridloop billing state file")
        if data.get("version") != STATE_VERSION:
            version = data.get("version")
            raise ValueError(f"version {version!r}, this gridloop reads {STATE_VERSION}")
        other = (data.get("microgrid_id"), data.get("api_url"))
        if other != (site.microgrid_id, site.api_url):
            raise ValueError(
                f"of another site (microgrid id {other[0]!r} at {other[1]!r}, this is "
                f"{site.microgrid_id!r} at {site.api_url!r})"
            )
        fresh = BillingMeter(meter.clock, meter.max_gap_s)
        fresh.restore(data)
    except (ValueError, KeyError, TypeError) as exc:
        what = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
        _LOG.warning("billing state %s: %s; starting fresh", path, " ".join(what.split()))
        return False
    meter.restore(data)
    return True
