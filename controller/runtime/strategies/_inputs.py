"""What every strategy sees each cycle, and the protocol every strategy implements."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from actors.power_manager import Wish

__all__ = ["ConfiguredStrategy", "Strategy", "StrategyConfig", "StrategyInputs"]


@dataclass(frozen=True, slots=True)
class StrategyInputs:
    """The site as the strategies see it in one cycle: plain floats, filled by the runner.

    Units: W, Wh, %, Hz. Passive sign convention: positive = into the component
    (the site importing from the grid, the batteries charging). Unknown values
    are ``nan``; strategies handle them (they never raise on bad measurements).

    Peak shaving works on the *uncontrolled* power ``grid_power_w −
    battery_power_w`` (what the grid meter would show without batteries),
    which does not depend on any strategy's contribution, and the power
    manager (:func:`actors.power_manager.merge`) does the stacking; the only
    stacking input is ``higher_priority_w``, which bounds optional recharging.
    """

    grid_power_w: float
    """Active power through the grid connection point (+ = import, − = export), the
    sum of its branches (:class:`actors.GridFormula`)."""
    battery_power_w: float
    """Measured AC power summed over all battery inverters (+ = charging)."""
    grid_frequency_hz: float = math.nan
    """Grid frequency from a meter (or inverter) on the grid connection point (nan if
    unknown)."""
    soc_pct: float = math.nan
    """Capacity-weighted state of charge of the fleet, 0-100 %."""
    capacity_wh: float = math.nan
    """Total usable capacity of the fleet's batteries."""
    soc_lower_pct: float = 0.0
    """Fleet's lower SoC limit: no discharging at or below it."""
    soc_upper_pct: float = 100.0
    """Fleet's upper SoC limit: no charging at or above it."""
    fleet_lower_w: float = 0.0
    """Most negative power the fleet can take now (max discharge, ≤ 0)."""
    fleet_upper_w: float = 0.0
    """Most positive power the fleet can take now (max charge, ≥ 0)."""
    higher_priority_w: float = 0.0
    """Sum of what the power manager last granted to strategies above this one
    (+ = charging). Peak shaving uses its charging part to keep its optional
    recharge from pushing the grid over the import limit."""
    interval_s: float = math.nan
    """Length of the billing interval's metered part: covered so far + still to come (s;
    nan = no billing meter, or an interval it joined late: peak shaving then shaves single
    samples)."""
    interval_elapsed_s: float = math.nan
    """The part of the current billing interval measured so far (s)."""
    interval_energy_wh: float = math.nan
    """Grid energy of the interval so far, without what higher priorities drew (Wh, + =
    import): the energy peak shaving answers for."""
    billed_peak_w: float = math.nan
    """The period's billed peak so far: the highest closed interval mean (W, ≥ 0; nan if
    unknown)."""
    billed_peak_w_uncontrolled: float = math.nan
    """The same without the batteries: the highest closed interval mean of the
    uncontrolled power this period (W, ≥ 0; nan if unknown). Recharging stays under
    the higher of the two, so the batteries never raise the bill above what the load
    alone set."""
    planned_limit_w: float = math.nan
    """``limit = "auto"``: the target import limit the planner chose for this interval
    (W; inf = no plan yet, cold start; nan = no planner)."""
    plan_warm: bool = False
    """Whether the plan rests on at least a day of the site's own history (a cold
    plan only repeats the load seen so far: recharging does not bet on it)."""
    planned_soc_pct: float = math.nan
    """``limit = "auto"``: the fleet SoC the plan wants at the next interval boundary
    (pre-charge before an expected peak; %, nan = none)."""

    uncontrolled_slope_w_per_s: float = math.nan
    """Recent slope of the uncontrolled power (W/s; nan = unknown), from the control
    cycle's samples (:func:`~controller.runtime.strategies.uncontrolled_slope_w_per_s`):
    peak shaving's export lead."""

    @property
    def uncontrolled_power_w(self) -> float:
        """Grid power the site would have without its batteries: grid − battery (+ = import)."""
        return self.grid_power_w - self.battery_power_w


class StrategyConfig(Protocol):
    """What every strategy config carries: identity, priority and cadence."""

    @property
    def name(self) -> str:
        """Source name of the strategy's wishes (unique within a run)."""
        ...

    @property
    def priority(self) -> int:
        """Power-manager priority (higher is served first)."""
        ...

    @property
    def interval_s(self) -> float:
        """Cadence in seconds; 0 = on every fresh grid-meter sample."""
        ...


class Strategy(StrategyConfig, Protocol):
    """A control strategy: its config's ``name``, ``priority`` and ``interval_s``, plus a
    pure step function.

    The runner calls :meth:`step` at the strategy's cadence (``interval_s``;
    0 = on every fresh grid-meter sample) and passes the returned wish to
    :func:`actors.power_manager.merge`. A strategy never reads a clock, never
    does I/O and never raises on bad measurements.
    """

    def step(self, inputs: StrategyInputs, now: float) -> Wish:
        """Compute this cycle's wish.

        Args:
            inputs: The site as measured now.
            now: Monotonic time in seconds (from the runner's clock).

        Returns:
            The desired contribution to the fleet's power, with bounds.
        """
        ...


ConfigT = TypeVar("ConfigT", bound=StrategyConfig)


class ConfiguredStrategy(Generic[ConfigT]):
    """Base of the strategies: a config and a pure law ``(config, inputs) -> Wish``.

    A subclass names its config type (``config_type``, built with its defaults
    when no config is given) and its law (``law``, a static method); ``name``,
    ``priority`` and ``interval_s`` come from the config.
    """

    config_type: type[ConfigT]
    """The config class (called without arguments for the defaults)."""
    law: Callable[[ConfigT, StrategyInputs], Wish]
    """The strategy's law as a pure function of its config and the inputs."""

    def __init__(self, config: ConfigT | None = None) -> None:
        """Keep the (immutable) settings.

        Args:
            config: The strategy's settings; the defaults when None.
        """
        self.config: ConfigT = config if config is not None else self.config_type()
        """The settings (immutable)."""

    @property
    def name(self) -> str:
        """Source name of the wishes."""
        return self.config.name

    @property
    def priority(self) -> int:
        """Power-manager priority."""
        return self.config.priority

    @property
    def interval_s(self) -> float:
        """Cadence in seconds (0 = every grid-meter sample)."""
        return self.config.interval_s

    def step(self, inputs: StrategyInputs, now: float) -> Wish:
        """Compute this cycle's wish: the law applied to the config (stateless; ``now`` is unused).

        Args:
            inputs: The site as measured now.
            now: Monotonic time in seconds.

        Returns:
            The wish.
        """
        return self.law(self.config, inputs)
