"""The step-test analysis of ``gridloop bench site``: telemetry traces in, step figures out.

Pure functions on numpy arrays (no clock, no I/O), so every rule is tested
with made-up traces:

* :func:`clock_offset` — how far the site's sample timestamps are from the
  client's clock (estimated, never assumed zero).
* :func:`sample_times` — each sample's timestamp mapped onto the client's
  monotonic clock with that estimate.
* :func:`analyse_step` — one step of one inverter: dead time, T90, time to
  full power, overshoot, steady-state error.
* :func:`telemetry_stats` — the telemetry period and jitter the site delivers.
* :func:`percentiles`, :func:`grid_code` — summaries and the grid-code verdicts.

Clocks. The client has one clock, ``time.monotonic_ns`` (command sent, ack
read, sample received). The site stamps each sample with its own wall clock
(ns since the Unix epoch). For every sample, ``receive − timestamp`` (receive
mapped onto the client's wall clock) is the clock offset plus that sample's
delivery delay; the minimum over the run is the offset plus the smallest delay,
and it is the estimate: a sample's time on the client clock is its timestamp
plus that estimate (never later than when it was received, at most the
smallest delivery delay after it was taken). Its spread (typical and p99
excess over the minimum) is reported with it. Dead time, T90 and time to full
power are measured from the command to those mapped sample times (the site's
response as it happened, without the telemetry's own delivery delay);
``dead_time_rx_ms`` is the same figure on receive times (what a client
reacting to telemetry sees). A site whose samples carry no timestamps is
measured on receive times (``ClockOffset.source`` says which).

Response rule. The pre-step band is the mean of the samples received in the
last ``pre_window`` before the command; noise is their standard deviation.
A sample *shows the response* when it leaves that band towards the target by
more than ``max(2 % of the step, 3 σ)`` (the detection threshold). T90 is the
first sample at 90 % of the step, full power the first within the threshold
of the target. Overshoot is how far the samples of the hold went beyond the
target (% of the step, 0 when never); the steady-state error is the mean of
the last quarter of the hold's samples against the target (% of the step).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from controller.lab.bench import _pct

__all__ = [
    "DETECT_FRACTION",
    "GRID_CODE_LIMITS_MS",
    "ClockOffset",
    "StepFigures",
    "analyse_step",
    "clock_offset",
    "grid_code",
    "percentiles",
    "sample_times",
    "telemetry_stats",
]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

DETECT_FRACTION = 0.02
"""A response shows once it is more than this share of the step outside the pre-step band."""
NOISE_SIGMAS = 3.0
"""... or more than this many standard deviations of the pre-step samples, if larger."""
GRID_CODE_LIMITS_MS: dict[str, float] = {"start": 500.0, "full": 1000.0}
"""GB Dynamic Containment: response starts within 0.5 s, full delivery within 1 s."""


@dataclass(frozen=True)
class ClockOffset:
    """The offset of the site's sample timestamps from the client's clock."""

    offset_ns: int
    """Estimate: min over the run of (receive on the client's wall clock − sample timestamp)."""
    spread_p50_ms: float
    """Median excess of a sample's (receive − timestamp) over the estimate (ms)."""
    spread_p99_ms: float
    """99th percentile of that excess (ms)."""
    samples: int
    """Samples the estimate is made from."""
    source: str
    """``"sample timestamps"``, or ``"receive times"`` when the samples carry none."""

    def to_json(self) -> dict[str, Any]:
        """The estimate for the JSON result (offset in ms: + = the site's clock is behind)."""
        return {
            "offset_ms": self.offset_ns / 1e6,
            "spread_p50_ms": self.spread_p50_ms,
            "spread_p99_ms": self.spread_p99_ms,
            "samples": self.samples,
            "figures_use": self.source,
        }


def clock_offset(
    rx_ns: Sequence[IntArray], ts_ns: Sequence[IntArray], mono_to_wall_ns: int
) -> ClockOffset:
    """Estimate the site clock's offset from the client's (see the module docstring).

    Args:
        rx_ns: Per trace, client monotonic receive times (ns).
        ts_ns: Per trace, the site's sample timestamps (ns since the Unix epoch; 0 = none).
        mono_to_wall_ns: Client wall clock − client monotonic clock (ns), read once.

    Returns:
        The estimate; ``source`` is ``"receive times"`` when no sample has a timestamp.
    """
    rx = np.concatenate([np.asarray(a, dtype=np.int64) for a in rx_ns]) if rx_ns else np.zeros(0)
    ts = np.concatenate([np.asarray(a, dtype=np.int64) for a in ts_ns]) if ts_ns else np.zeros(0)
    stamped = ts > 0
    if not stamped.any():
        return ClockOffset(0, math.nan, math.nan, 0, "receive times")
    d = (rx[stamped] + mono_to_wall_ns) - ts[stamped]
    low = int(d.min())
    excess = (d - low) / 1e6
    p50, p99 = np.percentile(excess, [50.0, 99.0])
    return ClockOffset(low, float(p50), float(p99), int(d.size), "sample timestamps")


def sample_times(
    rx_ns: IntArray, ts_ns: IntArray, offset: ClockOffset, mono_to_wall_ns: int
) -> IntArray:
    """Each sample's time on the client's monotonic clock (receive time when unstamped).

    Args:
        rx_ns: Client monotonic receive times (ns).
        ts_ns: The site's sample timestamps (ns since the Unix epoch; 0 = none).
        offset: The clock offset estimate.
        mono_to_wall_ns: Client wall clock − client monotonic clock (ns).

    Returns:
        ``ts + offset − mono_to_wall`` per stamped sample, ``rx`` otherwise.
    """
    if offset.source != "sample timestamps":
        return np.asarray(rx_ns, dtype=np.int64)
    mapped = np.asarray(ts_ns, dtype=np.int64) + (offset.offset_ns - mono_to_wall_ns)
    out: IntArray = np.where(np.asarray(ts_ns) > 0, mapped, rx_ns)
    return out


@dataclass(frozen=True)
class StepFigures:
    """What one step of one inverter showed (times in ms from the command; NaN = not seen)."""

    baseline_w: float
    """Mean power of the pre-step samples (W)."""
    noise_w: float
    """Their standard deviation (W; NaN with fewer than 2)."""
    threshold_w: float
    """The detection threshold: max(2 % of the step, 3 σ) (W)."""
    dead_time_ms: float
    """Command → first sample showing the response, on mapped sample times."""
    dead_time_rx_ms: float
    """The same sample, on its receive time."""
    t90_ms: float
    """Command → first sample at 90 % of the step."""
    t_full_ms: float
    """Command → first sample within the threshold of the target."""
    overshoot_pct: float
    """Largest excursion beyond the target during the hold (% of the step, >= 0)."""
    steady_state_error_pct: float
    """|mean of the last quarter of the hold − target| (% of the step)."""
    samples: int
    """Samples received during the hold."""


def analyse_step(
    at_ns: IntArray,
    rx_ns: IntArray,
    power_w: FloatArray,
    command_ns: int,
    end_ns: int,
    target_w: float,
    pre_window_ns: int,
) -> StepFigures:
    """The figures of one step (see the module docstring for every rule).

    Args:
        at_ns: Sample times on the client's monotonic clock (`sample_times`).
        rx_ns: Receive times (client monotonic); they decide which samples belong to
            the pre-step window and the hold.
        power_w: Measured active power of the samples (W, + = charging).
        command_ns: When the step's command went out (client monotonic).
        end_ns: When the hold ended (the next command; client monotonic).
        target_w: The step's setpoint (W).
        pre_window_ns: How far back before the command the pre-step band looks.

    Returns:
        The figures; NaN where the response was not seen (e.g. a rejected setpoint
        or a stalled stream).
    """
    rx = np.asarray(rx_ns, dtype=np.int64)
    at = np.asarray(at_ns, dtype=np.int64)
    p = np.asarray(power_w, dtype=np.float64)
    pre = p[(rx >= command_ns - pre_window_ns) & (rx <= command_ns) & np.isfinite(p)]
    nan = math.nan
    baseline = float(pre.mean()) if pre.size else 0.0
    noise = float(pre.std(ddof=1)) if pre.size >= 2 else nan
    step = target_w - baseline
    size = abs(step)
    threshold = max(DETECT_FRACTION * size, NOISE_SIGMAS * noise if math.isfinite(noise) else 0.0)
    hold = (rx > command_ns) & (rx <= end_ns) & np.isfinite(p)
    hp, hat, hrx = p[hold], at[hold], rx[hold]
    if size == 0.0 or not hp.size:
        return StepFigures(baseline, noise, threshold, nan, nan, nan, nan, nan, nan, int(hp.size))
    sign = 1.0 if step > 0 else -1.0
    moved = (hp - baseline) * sign  # progress towards the target (W)

    def first(mask: npt.NDArray[np.bool_], times: IntArray) -> float:
        hits = np.flatnonzero(mask)
        return float((times[hits[0]] - command_ns) / 1e6) if hits.size else nan

    shows = moved > threshold
    over = float(max(moved.max() - size, 0.0)) / size * 100.0
    tail = hp[len(hp) - max(1, len(hp) // 4):]
    return StepFigures(
        baseline_w=baseline,
        noise_w=noise,
        threshold_w=threshold,
        dead_time_ms=first(shows, hat),
        dead_time_rx_ms=first(shows, hrx),
        t90_ms=first(moved >= 0.9 * size, hat),
        t_full_ms=first(moved >= size - threshold, hat),
        overshoot_pct=over,
        steady_state_error_pct=abs(float(tail.mean()) - target_w) / size * 100.0,
        samples=int(hp.size),
    )


def percentiles(values: Sequence[float]) -> dict[str, float | None]:
    """p50/p99/max of the finite values (None each when there are none)."""
    return _pct(values)


def telemetry_stats(rx_ns: IntArray, ts_ns: IntArray) -> dict[str, float | None]:
    """The telemetry period and jitter of one stream.

    Args:
        rx_ns: Client monotonic receive times (ns).
        ts_ns: The site's sample timestamps (ns since the Unix epoch; 0 = none).

    Returns:
        ``period_ms`` (median interval of the site's timestamps; of the receive
        times when unstamped), ``jitter_ms`` (standard deviation of the receive
        intervals: what the client sees), ``max_gap_ms`` (longest receive interval:
        a stalled stream shows here) and ``samples``; None where undefined.
    """
    rx = np.asarray(rx_ns, dtype=np.int64)
    ts = np.asarray(ts_ns, dtype=np.int64)
    if rx.size < 2:
        return {"period_ms": None, "jitter_ms": None, "max_gap_ms": None, "samples": rx.size}
    drx = np.diff(rx) / 1e6
    dts = np.diff(ts[ts > 0]) / 1e6
    period = float(np.median(dts)) if dts.size else float(np.median(drx))
    return {
        "period_ms": period,
        "jitter_ms": float(drx.std()),
        "max_gap_ms": float(drx.max()),
        "samples": int(rx.size),
    }


def grid_code(dead_time_max_ms: float | None, full_max_ms: float | None) -> dict[str, Any]:
    """Pass/fail against GB Dynamic Containment per limit (worst step counts).

    Args:
        dead_time_max_ms: The largest dead time (None = never seen).
        full_max_ms: The largest time to full power (None = never seen).

    Returns:
        ``{"start_ms_max": limit, "start": "pass"|"fail"|None, "full_ms_max": ..., "full": ...}``:
        None when the figure was never measured (a step that never responded fails).
    """

    def verdict(value: float | None, limit: float) -> str | None:
        if value is None:
            return None
        return "pass" if value <= limit else "fail"

    return {
        "code": "GB Dynamic Containment",
        "start_limit_ms": GRID_CODE_LIMITS_MS["start"],
        "start": verdict(dead_time_max_ms, GRID_CODE_LIMITS_MS["start"]),
        "full_limit_ms": GRID_CODE_LIMITS_MS["full"],
        "full": verdict(full_max_ms, GRID_CODE_LIMITS_MS["full"]),
    }
