"""Schedules in force: the strategies' settings at a site time, and preparation for a window.

Pure pieces the control cycle (:class:`controller.runtime.cycle.ControlCycle`) uses when
it holds a :class:`~controller.runtime.schedule.ScheduleBook` (issue 17):

* :func:`fr_config_in_force`, :func:`ps_config_in_force` — the config's strategy
  settings with a window's reserve, curve, hold duration or peak limit.
* :func:`preparation_wish` — peak shaving's wish while a frequency-response window
  approaches: the SoC goes into the window's band (:func:`soc_band_pct`).
  *Charging* is peak shaving's own recharge law (:func:`peak_shaving_wish`, with its
  interval-mean headroom and :func:`recharge_ceiling_w`) with the target raised to
  the band's lower edge and the recharge power raised to the fleet's: it never raises
  the interval mean above the recharge limit. *Discharging* takes the fleet's full
  discharge power within peak shaving's range (export limit). Inside the band,
  peak shaving's target SoC is clamped into it. The edges keep a margin of
  ``min(1 %, band width / 4)``.
* :class:`Preparation` — when to prepare and whether the band can be reached. It
  starts ``factor × energy / fleet power + margin_s`` (at most :data:`PREP_MAX_LEAD_S`)
  before the window (the energy to move the SoC to the band edge, the fleet's charge or
  discharge power), then keeps
  preparing for that window until it starts. Each step it projects the SoC at the
  start from the power the preparation wish asks for now and the time left; the
  first time the projection falls outside the band it logs one WARNING (window,
  band, projected SoC) and counts the window (:attr:`Preparation.warned`).

While a window with a reserve > 0 is in force, the reserve comes first (frequency
response is served first by priority, and its energy must last ``hold_duration_s``):
peak shaving runs as :func:`holding_wish` — preparation's wish for the window's band
(or, when the next sold window starts within its lead time, the band both windows
allow), and no discharge at or below the band's lower edge, no charging at or above
its upper edge. So peak shaving never takes the SoC out of the band of a sold window,
and back-to-back windows are prepared for as well. Frequency response's own SoC nudge
still acts in its deadband. Before that, from :data:`PREP_MAX_LEAD_S` ahead of a sold
window, peak shaving keeps the window's reserve (:func:`keep_band`: it does not discharge
the SoC below the band, nor charge it above), so a long shaving stretch just before a
window does not spend the energy the window needs when no headroom is left to recharge it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass

from actors.power_manager import Wish
from controller.runtime.schedule import FrequencyWindow, Schedule, Window
from controller.runtime.strategies import (
    FrequencyResponseConfig,
    PeakShavingConfig,
    StrategyInputs,
    peak_shaving_wish,
    soc_band_pct,
)

__all__ = [
    "PrepStatus",
    "Preparation",
    "fr_config_in_force",
    "holding_wish",
    "keep_band",
    "preparation_wish",
    "ps_config_in_force",
]

_LOG = logging.getLogger("gridloop.controller.schedule")

PREP_FACTOR = 1.5
"""Lead time = ``PREP_FACTOR ×`` the time the fleet's power needs + :data:`PREP_MARGIN_S`."""
PREP_MARGIN_S = 600.0
"""Fixed part of the lead time (s): headroom varies with the load."""
PREP_MAX_LEAD_S = 6 * 3600.0
"""The lead time is at most this (s): a fleet without power now (all of it excluded for a
moment) does not start preparing, and warning, for a window days ahead."""


def fr_config_in_force(
    base: FrequencyResponseConfig, fw: FrequencyWindow
) -> FrequencyResponseConfig:
    """``base`` with the window's reserve, and its curve and hold duration where given."""
    return dataclasses.replace(
        base,
        reserved_power_w=fw.reserved_power_w,
        curve=fw.curve if fw.curve is not None else base.curve,
        hold_duration_s=fw.hold_duration_s if fw.hold_duration_s is not None
        else base.hold_duration_s,
    )


def ps_config_in_force(base: PeakShavingConfig, window: Window | None) -> PeakShavingConfig:
    """``base`` with the window's peak limit as a fixed target (None or no limit: ``base``).

    The effective limit still never drops below the period's billed peak
    (:func:`~controller.runtime.strategies.effective_limit_w`).
    """
    if window is None or window.peak_limit_w is None:
        return base
    return dataclasses.replace(base, import_limit_w=window.peak_limit_w, limit_mode="fixed")


def _edges(band: tuple[float, float]) -> tuple[float, float]:
    """The band with its margin: where preparation aims."""
    lo, hi = band
    margin = min(1.0, (hi - lo) / 4.0)
    return lo + margin, hi - margin


def preparation_wish(
    config: PeakShavingConfig, inputs: StrategyInputs, band: tuple[float, float]
) -> Wish:
    """Peak shaving's wish while preparing for a window with SoC band ``band`` (module).

    Args:
        config: Peak shaving's settings in force.
        inputs: The site now.
        band: The window's SoC band (%), finite.

    Returns:
        The wish (peak shaving's name and priority, its range).
    """
    low, high = _edges(band)
    soc = inputs.soc_pct
    if soc < low:
        fleet_up = inputs.fleet_upper_w if math.isfinite(inputs.fleet_upper_w) else 0.0
        boosted = dataclasses.replace(config, target_soc_pct=low,
                                      recharge_power_w=max(config.recharge_power_w, fleet_up))
        return peak_shaving_wish(boosted, inputs)
    target = min(max(config.target_soc_pct, low), high)
    wish = peak_shaving_wish(dataclasses.replace(config, target_soc_pct=target), inputs)
    if soc > high and math.isfinite(inputs.fleet_lower_w):
        preferred = min(max(inputs.fleet_lower_w, wish.lower_w), wish.upper_w)
        return Wish(wish.source, wish.priority, preferred, wish.lower_w, wish.upper_w)
    return wish


def holding_wish(
    config: PeakShavingConfig, inputs: StrategyInputs, band: tuple[float, float]
) -> Wish:
    """Peak shaving's wish while a sold window is in force: :func:`preparation_wish`
    toward ``band``, with no discharge at or below its lower edge and no charging at
    or above its upper edge (the reserve's energy is not peak shaving's to use).

    Args:
        config: Peak shaving's settings in force.
        inputs: The site now.
        band: The window's SoC band (%), finite.

    Returns:
        The wish (peak shaving's name and priority).
    """
    return keep_band(preparation_wish(config, inputs, band), inputs.soc_pct, band)


def keep_band(wish: Wish, soc_pct: float, band: tuple[float, float]) -> Wish:
    """``wish`` without discharge at or below ``band``'s lower edge and without charging at
    or above its upper edge, each with preparation's margin (the reserve's energy and room
    are not peak shaving's; the margin keeps noise and frequency response's own first
    seconds from taking the SoC out of the band)."""
    low, high = _edges(band)
    if soc_pct <= low:
        return Wish(wish.source, wish.priority, max(wish.preferred_w, 0.0),
                    max(wish.lower_w, 0.0), max(wish.upper_w, 0.0))
    if soc_pct >= high:
        return Wish(wish.source, wish.priority, min(wish.preferred_w, 0.0),
                    min(wish.lower_w, 0.0), min(wish.upper_w, 0.0))
    return wish


def _band(fr: FrequencyResponseConfig, inputs: StrategyInputs) -> tuple[float, float]:
    """The SoC band that holds ``fr``'s reserve for its hold duration (nan: unknown)."""
    return soc_band_pct(inputs.capacity_wh, fr.reserved_power_w, fr.hold_duration_s,
                        inputs.soc_lower_pct, inputs.soc_upper_pct)


def _sold(window: Window | None) -> FrequencyWindow | None:
    """The window's frequency response if it sells a reserve > 0 (else None)."""
    fw = window.frequency_response if window is not None else None
    return fw if fw is not None and fw.reserved_power_w > 0 else None


@dataclass(frozen=True, slots=True)
class PrepStatus:
    """What preparation is doing now."""

    window: Window
    """The window prepared for."""
    band_pct: tuple[float, float]
    """Its SoC band (%)."""
    soc_pct: float
    """The fleet SoC now (%)."""
    projected_soc_pct: float
    """The SoC projected at the window's start from the power asked for now (%)."""

    @property
    def reachable(self) -> bool:
        """Whether the projection is inside the band."""
        lo, hi = self.band_pct
        return lo <= self.projected_soc_pct <= hi


class Preparation:
    """When to prepare for the next window, and whether its band can be reached (module)."""

    def __init__(self, factor: float = PREP_FACTOR, margin_s: float = PREP_MARGIN_S) -> None:
        """No window prepared for yet.

        Args:
            factor: Lead time factor on the time the fleet's power needs.
            margin_s: Fixed part of the lead time (s).
        """
        self.factor = factor
        self.margin_s = margin_s
        self.status: PrepStatus | None = None
        """The current preparation (None = none)."""
        self.warned: int = 0
        """Windows whose band was projected out of reach (one warning each)."""
        self._warned_for: set[Window] = set()
        self._window: Window | None = None  # the window preparation is latched on

    def lead_s(self, inputs: StrategyInputs, band: tuple[float, float]) -> float:
        """How long before a window with ``band`` preparation starts (s)."""
        low, high = _edges(band)
        soc, capacity = inputs.soc_pct, inputs.capacity_wh
        if not (math.isfinite(soc) and math.isfinite(capacity)):
            return 0.0
        if soc < low:
            gap_pct, power = low - soc, inputs.fleet_upper_w
        elif soc > high:
            gap_pct, power = soc - high, -inputs.fleet_lower_w
        else:
            return self.margin_s
        if not (math.isfinite(power) and power > 0):
            return PREP_MAX_LEAD_S
        lead = self.factor * gap_pct / 100.0 * capacity * 3600.0 / power + self.margin_s
        return min(lead, PREP_MAX_LEAD_S)

    def step(
        self,
        schedule: Schedule,
        now: Window | None,
        fr_base: FrequencyResponseConfig,
        ps_config: PeakShavingConfig,
        inputs: StrategyInputs,
        t_s: float,
    ) -> Wish | None:
        """Peak shaving's wish while preparing, or None (peak shaving's own wish then).

        Args:
            schedule: The windows.
            now: The window that sets frequency response at ``t_s``
                (``schedule.frequency_window(t_s)``, which the cycle has looked up).
            fr_base: Frequency response's config (reserve, hold where a window says none).
            ps_config: Peak shaving's settings in force.
            inputs: The site now (peak shaving's inputs).
            t_s: Site unix time (s).

        Returns:
            The wish, or None when nothing is being prepared.
        """
        nxt = schedule.next_frequency_window(t_s)
        if not math.isfinite(inputs.soc_pct):
            self.status = None
            return None
        if (sold := _sold(now)) is not None:
            return self._hold(fr_base, ps_config, inputs, t_s, sold, nxt)
        if nxt is None:
            self.status, self._window = None, None
            return None
        assert nxt.frequency_response is not None
        band = _band(fr_config_in_force(fr_base, nxt.frequency_response), inputs)
        if not all(math.isfinite(b) for b in band):
            self.status = None
            return None
        left_s = nxt.start_s - t_s
        if nxt != self._window:
            if left_s > self.lead_s(inputs, band):
                self.status = None
                if left_s > PREP_MAX_LEAD_S:
                    return None
                # Not preparing yet, but the window's reserve is kept for it.
                return keep_band(peak_shaving_wish(ps_config, inputs), inputs.soc_pct, band)
            self._window = nxt
        wish = preparation_wish(ps_config, inputs, band)
        self.status = PrepStatus(nxt, band, inputs.soc_pct,
                                 _projected(inputs, band, wish.preferred_w, left_s))
        if not self.status.reachable and nxt not in self._warned_for:
            self._warned_for.add(nxt)
            self.warned += 1
            _LOG.warning(
                "schedule: window %s starting %s: SoC band %.1f-%.1f %% cannot be reached by"
                " its start: projected %.1f %% (now %.1f %%, %.0f s left)",
                nxt.source, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(nxt.start_s)),
                band[0], band[1], self.status.projected_soc_pct, inputs.soc_pct, left_s,
            )
        return wish


    def _hold(self, fr_base: FrequencyResponseConfig, ps_config: PeakShavingConfig,
              inputs: StrategyInputs, t_s: float, now: FrequencyWindow,
              nxt: Window | None) -> Wish | None:
        """Peak shaving's wish while a sold window is in force (:func:`holding_wish`)."""
        self.status = None
        band = _band(fr_config_in_force(fr_base, now), inputs)
        if not all(math.isfinite(b) for b in band):
            return None
        if nxt is not None and nxt.frequency_response is not None:
            nb = _band(fr_config_in_force(fr_base, nxt.frequency_response), inputs)
            if (all(math.isfinite(b) for b in nb)
                    and nxt.start_s - t_s <= self.lead_s(inputs, nb)):
                both = (max(band[0], nb[0]), min(band[1], nb[1]))
                band = both if both[0] <= both[1] else nb
        return holding_wish(ps_config, inputs, band)


def _projected(inputs: StrategyInputs, band: tuple[float, float], power_w: float,
               left_s: float) -> float:
    """The SoC at the window's start if ``power_w`` held until then, not past the aim."""
    low, high = _edges(band)
    soc = inputs.soc_pct
    rate = 100.0 * power_w / 3600.0 / inputs.capacity_wh  # % per s
    end = soc + rate * max(left_s, 0.0)
    if soc < low and rate > 0:
        return min(end, low)
    if soc > high and rate < 0:
        return max(end, high)
    if low <= soc <= high:
        return soc
    return end
