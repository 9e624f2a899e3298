"""Service windows: when strategies run and with which parameters (issue 17).

Reserve is sold in time blocks and peak-shaving limits change with tariffs, so
the strategies' parameters are not fixed for a run: a :class:`Schedule` of
:class:`Window` s says, at any site time, whether frequency response is sold
(and with which reserve, curve and hold duration) and which peak-shaving target
limit applies.

Windows come from *sources* (a schedule file, the Frequenz Dispatch API). Each
source delivers its complete current list of windows whenever it changes;
:class:`ScheduleBook` keeps the latest list per source and answers the merged
:class:`Schedule`. :meth:`ScheduleBook.replace` returns what changed, so every
change can be logged with its source, time and content.

Times are the site's unix time in seconds (the same clock as the billing
meter's ``site_time_s``); a window is active for ``start_s <= t < end_s``.

Overlaps: where windows of one kind overlap (in one source or across sources),
the one that started last wins; at equal starts, the later one in the book
(sources in the order they first delivered, windows in source order). So a
dispatch can override one block of a schedule file without editing the file.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from controller.runtime.strategies import DroopCurve

__all__ = [
    "Deliver",
    "FrequencyWindow",
    "Schedule",
    "ScheduleBook",
    "ScheduleChange",
    "ScheduleSource",
    "Window",
]


@dataclass(frozen=True, slots=True)
class FrequencyWindow:
    """Frequency response as sold in one window. ``None`` fields take the config's value."""

    reserved_power_w: float
    """Contracted reserve, W (≥ 0; 0 = not sold: the strategy outputs 0 W)."""
    curve: DroopCurve | None = None
    """Droop curve (FCR linear, DC/DM/DR knee) with its deadband; None = the config's."""
    hold_duration_s: float | None = None
    """Full reserve must be sustainable this long in either direction (s); None = the
    config's ``hold_duration_s``."""


@dataclass(frozen=True, slots=True)
class Window:
    """One time window of a schedule: ``[start_s, end_s)`` in site unix time."""

    start_s: float
    """Start, site unix time (s), inclusive."""
    end_s: float
    """End, site unix time (s), exclusive; > ``start_s``."""
    source: str
    """Where it came from, for logs: e.g. ``"file:examples/fcr_day.toml#3"``,
    ``"dispatch:42"``."""
    frequency_response: FrequencyWindow | None = None
    """Frequency response in this window (None = the window says nothing about it)."""
    peak_limit_w: float | None = None
    """Peak-shaving target limit in this window (W of interval mean; None = the config's)."""

    def __post_init__(self) -> None:
        """Check the times.

        Raises:
            ValueError: naming the field and value.
        """
        if not (math.isfinite(self.start_s) and math.isfinite(self.end_s)):
            raise ValueError(f"Window {self.source}: start_s = {self.start_s!r}, end_s = "
                             f"{self.end_s!r}: must be finite")
        if self.end_s <= self.start_s:
            raise ValueError(f"Window {self.source}: end_s = {self.end_s!r}: must be > "
                             f"start_s = {self.start_s!r}")

    def active(self, t_s: float) -> bool:
        """Whether the window is in force at site time ``t_s``."""
        return self.start_s <= t_s < self.end_s

    def describe(self) -> str:
        """One line for logs: source, times (UTC) and what the window sets."""
        parts = []
        fw = self.frequency_response
        if fw is not None:
            curve = "config's curve" if fw.curve is None else (
                f"curve {'/'.join(f'{x * 1e3:g}' for x in fw.curve.df_hz)} mHz")
            hold = "config's hold" if fw.hold_duration_s is None else (
                f"hold {fw.hold_duration_s:g} s")
            parts.append(f"frequency response {fw.reserved_power_w:g} W ({curve}, {hold})")
        if self.peak_limit_w is not None:
            parts.append(f"peak limit {self.peak_limit_w:g} W")
        return f"{self.source} [{_utc(self.start_s)}, {_utc(self.end_s)}): {'; '.join(parts)}"


def _utc(t_s: float) -> str:
    """``t_s`` (unix s) as ISO-8601 UTC, to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t_s))


@dataclass(frozen=True, slots=True)
class Schedule:
    """An ordered set of windows (see the module for overlaps)."""

    windows: tuple[Window, ...] = ()
    """Every window, in book order."""

    def _latest(self, t_s: float, frequency: bool) -> Window | None:
        best: Window | None = None
        for w in self.windows:
            has = w.frequency_response is not None if frequency else w.peak_limit_w is not None
            if has and w.active(t_s) and (best is None or w.start_s >= best.start_s):
                best = w
        return best

    def frequency_window(self, t_s: float) -> Window | None:
        """The window that sets frequency response at ``t_s`` (None = not sold now)."""
        return self._latest(t_s, frequency=True)

    def peak_window(self, t_s: float) -> Window | None:
        """The window that sets the peak-shaving limit at ``t_s`` (None = the config's)."""
        return self._latest(t_s, frequency=False)

    def next_frequency_window(self, t_s: float) -> Window | None:
        """The first frequency-response window with a reserve > 0 starting after ``t_s``."""
        later = [w for w in self.windows if w.frequency_response is not None
                 and w.frequency_response.reserved_power_w > 0 and w.start_s > t_s]
        return min(later, key=lambda w: w.start_s, default=None)


@dataclass(frozen=True, slots=True)
class ScheduleChange:
    """What one :meth:`ScheduleBook.replace` changed."""

    source: str
    """The source that delivered."""
    added: tuple[Window, ...] = ()
    """Windows that are new."""
    removed: tuple[Window, ...] = ()
    """Windows that are gone."""

    @property
    def empty(self) -> bool:
        """Nothing changed."""
        return not self.added and not self.removed


@dataclass(slots=True)
class ScheduleBook:
    """The latest windows of every source, merged into one :class:`Schedule`."""

    _by_source: dict[str, tuple[Window, ...]] = field(default_factory=dict)
    _merged: Schedule = field(default_factory=Schedule)  # rebuilt by replace() only

    def replace(self, source: str, windows: Sequence[Window]) -> ScheduleChange:
        """Make ``windows`` the complete current list of ``source``.

        Args:
            source: The source's name (e.g. ``"file:plan.toml"``, ``"dispatch"``).
            windows: All its windows now (an empty list withdraws them all).

        Returns:
            What changed (windows added and removed, by value).
        """
        old = self._by_source.get(source, ())
        new = tuple(windows)
        self._by_source[source] = new
        self._merged = Schedule(tuple(w for ws in self._by_source.values() for w in ws))
        return ScheduleChange(
            source,
            added=tuple(w for w in new if w not in old),
            removed=tuple(w for w in old if w not in new),
        )

    @property
    def schedule(self) -> Schedule:
        """Every source's windows, sources in the order they first delivered (merged once
        per :meth:`replace`: the control cycle reads it every step)."""
        return self._merged


Deliver = Callable[[str, Sequence[Window]], None]
"""``deliver(source, windows)``: a source's complete current list of windows."""


class ScheduleSource(Protocol):
    """A live source of windows (the schedule file, the Dispatch API)."""

    @property
    def name(self) -> str:
        """The source's name in logs and in the :class:`ScheduleBook` (e.g. ``"file:x.toml"``)."""
        ...

    async def run(self, deliver: Deliver) -> None:
        """Deliver the windows now and after every change, until cancelled.

        Bad input from the source (an invalid file, an unusable dispatch) is logged
        as one line naming the field and value and the last good windows stay; it
        never raises out of here and never stops the control loop.
        """
        ...
