"""Vectorised physics of a simulated site, with no asyncio and no clock reads.

Offers `SitePhysics` (the model; the server drives it, and a replay harness
can drive it on a virtual clock), `ComponentState` (the per-component state
machine) and `Interval` helpers (`own_power_intervals`, `intersect_intervals`).

Model, per `step(dt_s)` (split into sub-steps of at most ``max_step_s``):

* Power rows: every component that takes an active-power setpoint has a row in
  the ``inverter_*`` arrays: the inverters in file order, then the EV chargers
  (``inverter_is_pv`` / ``inverter_is_ev`` / ``inverter_is_battery`` tell them
  apart). Delay, ramp, lifetimes, states, bounds augmentations and faults are
  one code path for all of them.
* Setpoints: an accepted active/reactive setpoint becomes effective
  ``response_delay_s`` after the request and lapses ``lifetime_s`` after it;
  then a battery inverter returns to 0 W, a PV inverter to uncurtailed
  production and an EV charger to full power (what the car takes). Battery
  inverter targets are clipped to the current (SoC-dependent, augmented)
  bounds; PV targets are ``max(available, setpoint)`` (a setpoint is a
  production cap, both negative; bounds ``[available, 0]``); EV charger
  targets are ``min(car acceptance, setpoint)`` (a setpoint is a charge limit;
  bounds 0 or ``[min power, rated power]`` while a car is connected, else 0).
* EV sessions: per charger, cars arrive and leave as `EvSessionGenerator`
  says; a connected car draws `car_acceptance_w` (full power, tapering after
  ``taper_start_pct`` of its request, nothing once it is met); the energy
  delivered is integrated per session.
* Inverter AC power moves toward its target at most ``ramp_w_per_s``.
* Reactive power (VAr, + = absorbing / inductive): an accepted reactive
  setpoint takes effect after the response delay (a newer one in flight
  replaces it) and lapses with its lifetime (then 0 VAr); Q moves toward it at
  most ``ramp_var_per_s``. Q is limited to ``±min(rated_reactive_var,
  sqrt(S² − P²))`` with ``S = rated_apparent_va`` and ``P`` the inverter's
  momentary active power: P has priority, so when P grows into the circle Q
  is clipped at once, and each start of such a clip is counted in
  ``inverter_apparent_clips``. The same momentary limit is the published
  reactive bound and what `check_reactive_power` validates against.
* Inverter DC power = AC power (lossless inverter); it is split across the
  inverter's batteries in proportion to their available power in the flow
  direction. Stored energy changes by ``P*eta_c`` (charging) or ``P/eta_d``
  (discharging); SoC = energy / capacity.
* Battery bounds: ``[-max_discharge_w, max_charge_w]`` with the charge side 0 at
  or above ``soc_max_pct`` and the discharge side 0 at or below ``soc_min_pct``.
  A battery's capability is shared among its inverters in proportion to their
  ratings; an inverter's bounds are its rating intersected with that share.
* Load: profile (W, consumed, positive) + smooth seeded noise (Ornstein-
  Uhlenbeck). PV: irradiance profile (W/m²) x rating / 1000 W/m².
* Meters measure everything below them; grid power (at the grid connection
  point) = load + battery inverter AC power + PV AC power (PV negative), i.e.
  load − PV production + battery charging power. Load that no meter's
  ``load_share`` claims hangs below the first meter (lowest id) on the grid
  connection point, so with several feeders their meters add up to the grid. Passive sign convention
  throughout: positive = into the component (charging, importing).
* Frequency: nominal (or the site's recorded / synthetic trace, nan where a
  recording is unknown) + OU noise + scripted trapezoid events.
* Voltage (``grid_voltage_v``, phase-to-neutral, balanced phases, the same at
  every meter and inverter): the background voltage minus the drop of the
  site's P and Q over the grid impedance (`simulator._grid_voltage`): importing
  P or absorbing Q lowers it.
"""

from __future__ import annotations

import enum
import math
from collections import deque

import numpy as np
import numpy.typing as npt

from ._augmentations import BoundsAugmentations
from ._ev_sessions import EvSessionGenerator, car_acceptance_w
from ._grid_voltage import BackgroundVoltage, voltage_drop_v
from ._intervals import Interval, intersect_intervals, own_power_intervals, valid_interval
from ._signals import OrnsteinUhlenbeck, Trapezoids, profile_at
from ._site_graph import edge_shares, inverter_battery_edges, meter_measure_matrix
from .config import (
    BatteryConfig,
    EvChargerConfig,
    GridConfig,
    InverterConfig,
    MeterConfig,
    SiteConfig,
)
from .errors import (
    ComponentNotFoundError,
    ComponentNotReadyError,
    InvalidRequestError,
    PowerOutOfRangeError,
)

__all__ = [
    "ComponentState",
    "Interval",
    "SetpointStatus",
    "SitePhysics",
    "intersect_intervals",
    "own_power_intervals",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_TOL_W = 1.0
_ACK_FIRST = "component is in ERROR; acknowledge the error first"
_POWER_KINDS = ("inverter", "ev_charger")
"""The kinds of component with a power row (active-power setpoints)."""


def _reactive_limit(
    rated_var: npt.ArrayLike, apparent_va: npt.ArrayLike, power_w: npt.ArrayLike
) -> FloatArray:
    """``min(rated_var, sqrt(apparent_va² − power_w²))`` (0 where |P| > S), elementwise."""
    s, p = np.asarray(apparent_va, dtype=np.float64), np.asarray(power_w, dtype=np.float64)
    room = np.sqrt(np.maximum(s * s - p * p, 0.0))
    return np.minimum(np.asarray(rated_var, dtype=np.float64), room)


class ComponentState(enum.IntEnum):
    """State machine of an inverter or battery.

    RUNNING --PutInStandby--> STANDBY --Start / setpoint--> RUNNING
    any non-error --Stop--> OFF --Start--> RUNNING
    any --fault--> ERROR --AckError--> OFF
    """

    RUNNING = 0
    STANDBY = 1
    OFF = 2
    ERROR = 3


class SetpointStatus(enum.Enum):
    """Progress of one setpoint request (see `SitePhysics.setpoint_status`)."""

    PENDING = "pending"
    APPLIED = "applied"
    OVERRIDDEN = "overridden"
    FAILED = "failed"


class SitePhysics:
    """The simulated site: state arrays plus a vectorised `step`.

    Component rows: ``inverter_ids[k]`` is row ``k`` of every ``inverter_*``
    and ``ev_*`` array (inverters, then EV chargers), likewise ``battery_ids``
    and ``meter_ids``. Signs are passive:
    positive = into the component.
    """

    def __init__(self, site: SiteConfig, *, seed: int = 0, max_step_s: float = 0.1) -> None:
        """Build the model for ``site``.

        Args:
            site: the validated site.
            seed: seed of all noise (a run with the same seed and the same
                calls is reproducible).
            max_step_s: longest sub-step `step` takes; larger values make long
                replays cheaper at the cost of ramp/delay resolution.
        """
        if not (max_step_s > 0 and math.isfinite(max_step_s)):
            raise ValueError(f"max_step_s must be a positive number, got {max_step_s!r}")
        self.site = site
        self.max_step_s = max_step_s
        self._rng = np.random.default_rng(seed)
        self._seed = seed
        self.now_s = 0.0
        """Simulated seconds since the start."""

        self._init_rows(site)
        self._init_inverters(site.inverters, site.ev_chargers)
        self._init_ev(site)
        self._init_batteries(site.batteries)
        self._init_edges(site)
        self._init_meters(site)
        self._init_environment(site)
        self._update_environment(0.0)
        self._update_bounds()
        start = np.where(self.inverter_is_ev, self.ev_accept_w, self.pv_available_w)
        self.inverter_power_w = start.copy()
        self.inverter_target_w = start.copy()
        self.inverter_reactive_limit_var = self.reactive_limit_var(self.inverter_power_w)
        """`reactive_limit_var` at each row's present active power (VAr)."""
        self._update_meters()

    def _init_rows(self, site: SiteConfig) -> None:
        """Component ids per row and the kind of every component."""
        invs: tuple[InverterConfig | EvChargerConfig, ...] = site.inverters + site.ev_chargers
        bats = site.batteries
        meters = site.meters
        self.inverter_ids: IntArray = np.array([c.id for c in invs], dtype=np.int64)
        """Ids of the power rows: the inverters, then the EV chargers."""
        self.ev_charger_ids: IntArray = np.array([c.id for c in site.ev_chargers], dtype=np.int64)
        self.battery_ids: IntArray = np.array([c.id for c in bats], dtype=np.int64)
        self.meter_ids: IntArray = np.array([c.id for c in meters], dtype=np.int64)
        self._inv_row = {c.id: k for k, c in enumerate(invs)}
        self._bat_row = {c.id: k for k, c in enumerate(bats)}
        self._meter_row = {c.id: k for k, c in enumerate(meters)}
        self._n_inv = len(invs)
        self._n_bat = len(bats)
        self._kind: dict[int, str] = {}
        for c in site.components:
            self._kind[c.id] = (
                "grid"
                if isinstance(c, GridConfig)
                else "meter"
                if isinstance(c, MeterConfig)
                else "inverter"
                if isinstance(c, InverterConfig)
                else "ev_charger"
                if isinstance(c, EvChargerConfig)
                else "battery"
            )

    def _init_inverters(
        self, inverters: tuple[InverterConfig, ...], chargers: tuple[EvChargerConfig, ...]
    ) -> None:
        """Parameters and state of the power rows (power, setpoints in flight, bounds).

        An EV charger's row: rated range ``[0, rated_power_w]`` with the exclusion
        band ``(0, min_power_w)``, no reactive power.
        """
        invs: tuple[InverterConfig | EvChargerConfig, ...] = inverters + chargers
        n_ev = len(chargers)
        self.inverter_is_pv = np.array(
            [c.inverter_type == "pv" for c in inverters] + [False] * n_ev, dtype=bool
        )
        self.inverter_is_ev = np.array([False] * len(inverters) + [True] * n_ev, dtype=bool)
        """Rows that are EV chargers."""
        self.inverter_is_battery = ~(self.inverter_is_pv | self.inverter_is_ev)
        """Rows that are battery inverters."""
        self.inverter_rated_lower_w = np.array(
            [c.rated_lower_w for c in inverters] + [0.0] * n_ev, dtype=np.float64
        )
        self.inverter_rated_upper_w = np.array(
            [c.rated_upper_w for c in inverters] + [c.rated_power_w for c in chargers],
            dtype=np.float64,
        )
        self.inverter_exclusion_w = np.array(
            [c.exclusion_w for c in inverters] + [c.min_power_w for c in chargers],
            dtype=np.float64,
        )
        self.inverter_rated_reactive_var = np.array(
            [c.rated_reactive_var for c in inverters] + [0.0] * n_ev, dtype=np.float64
        )
        self.inverter_rated_apparent_va = np.array(
            [np.inf if c.rated_apparent_va is None else c.rated_apparent_va for c in inverters]
            + [np.inf] * n_ev,
            dtype=np.float64,
        )
        """Apparent-power rating per power row (VA; inf = none)."""
        self._ramp = np.array([c.ramp_w_per_s for c in invs], dtype=np.float64)
        self._ramp_q = np.array(
            [c.ramp_var_per_s for c in inverters] + [1.0] * n_ev, dtype=np.float64
        )
        self._delay = np.array([c.response_delay_s for c in invs], dtype=np.float64)
        n_inv = len(invs)
        self.inverter_power_w = np.zeros(n_inv)
        """Actual AC active power per inverter (W, + = charging / consuming)."""
        self.inverter_reactive_var = np.zeros(n_inv)
        """Actual AC reactive power per inverter (VAr, + = absorbing / inductive)."""
        self.inverter_apparent_clips = np.zeros(n_inv, dtype=np.int64)
        """Times each inverter's reactive setpoint started being clipped by its
        apparent-power circle because of its active power (P priority)."""
        self._q_clipped = np.zeros(n_inv, dtype=bool)
        self.inverter_target_w = np.zeros(n_inv)
        """The power each inverter is currently moving toward (after clipping)."""
        self.inverter_setpoint_w = np.full(n_inv, np.nan)
        """Effective active setpoint (NaN = none)."""
        self._sp_expiry = np.full(n_inv, np.inf)
        # Setpoints in flight (transport delay): per inverter a FIFO of
        # (due time, power, expiry); _pend_at holds the head's due time (inf = none).
        self._pend_q: list[deque[tuple[float, float, float]]] = [deque() for _ in invs]
        self._pend_at = np.full(n_inv, np.inf)
        self._q_sp = np.full(n_inv, np.nan)
        self._q_expiry = np.full(n_inv, np.inf)
        self._q_pend = np.full(n_inv, np.nan)
        self._q_pend_at = np.full(n_inv, np.inf)
        self._q_pend_expiry = np.full(n_inv, np.inf)
        self._seq = np.zeros(n_inv, dtype=np.int64)
        self._next_seq = 1
        self.inverter_state = np.zeros(n_inv, dtype=np.int64)
        self.inverter_lower_w = self.inverter_rated_lower_w.copy()
        """Current lower active power bound (hull of the allowed set)."""
        self.inverter_upper_w = self.inverter_rated_upper_w.copy()
        """Current upper active power bound (hull of the allowed set)."""
        self._aug = BoundsAugmentations(self._inv_row)
        self._limit_inv_lo = np.full(n_inv, -np.inf)
        self._limit_inv_hi = np.full(n_inv, np.inf)

    def _init_ev(self, site: SiteConfig) -> None:
        """EV charger rows: session generators, the current session, the car's power."""
        n = self._n_inv
        cfg = site.ev
        self._ev_gen: dict[int, EvSessionGenerator] = {
            self._inv_row[c.id]: EvSessionGenerator(cfg, c.id) for c in site.ev_chargers
        }
        self._ev_taper_pct = cfg.taper_start_pct
        self._ev_max_w = np.minimum(self.inverter_rated_upper_w, cfg.car_max_power_w)
        self._ev_max_w = np.where(self.inverter_is_ev, self._ev_max_w, 0.0)
        self._ev_max_w = np.maximum(self._ev_max_w, self.inverter_exclusion_w * self.inverter_is_ev)
        self._ev_min_w = np.where(self.inverter_is_ev, self.inverter_exclusion_w, 0.0)
        self.ev_phases = np.array(
            [3] * (n - len(site.ev_chargers)) + [c.phases for c in site.ev_chargers],
            dtype=np.float64,
        )
        """Phases each EV charger uses (3 on the other rows)."""
        self.ev_arrive_s = np.full(n, np.inf)
        """Arrival of each EV row's current (or next) session (s; inf = none)."""
        self.ev_depart_s = np.full(n, np.inf)
        """Departure of that session (s)."""
        self.ev_request_wh = np.zeros(n)
        """Energy the session's car asks for (Wh)."""
        self.ev_delivered_wh = np.zeros(n)
        """Energy delivered in the session so far (Wh)."""
        self.ev_connected = np.zeros(n, dtype=bool)
        """Whether a car is plugged in at each EV row now."""
        self.ev_accept_w = np.zeros(n)
        """What each connected car would draw without a limit (W, >= 0)."""
        self.ev_sessions_done: list[tuple[int, float, float, float, float]] = []
        """Finished sessions: (charger id, arrive s, depart s, requested Wh, delivered Wh)."""
        for row in self._ev_gen:
            self._next_session(row)

    def _next_session(self, row: int) -> None:
        """Load the next session of EV row ``row`` (none left: arrival at infinity)."""
        sess = self._ev_gen[row].next()
        if sess is None:
            self.ev_arrive_s[row] = self.ev_depart_s[row] = np.inf
            self.ev_request_wh[row] = 0.0
        else:
            self.ev_arrive_s[row] = sess.arrive_s
            self.ev_depart_s[row] = sess.depart_s
            self.ev_request_wh[row] = sess.energy_wh
        self.ev_delivered_wh[row] = 0.0

    def _update_ev(self, t: float) -> None:
        """Advance the EV sessions to time ``t``: departures, arrivals, the cars' power."""
        if not self._ev_gen:
            return
        for row in np.flatnonzero(self.ev_depart_s <= t).tolist():
            while self.ev_depart_s[row] <= t:
                self.ev_sessions_done.append(
                    (
                        int(self.inverter_ids[row]),
                        float(self.ev_arrive_s[row]),
                        float(self.ev_depart_s[row]),
                        float(self.ev_request_wh[row]),
                        float(self.ev_delivered_wh[row]),
                    )
                )
                self._next_session(row)
        self.ev_connected = (self.ev_arrive_s <= t) & (t < self.ev_depart_s)
        accept = car_acceptance_w(
            self.ev_delivered_wh,
            self.ev_request_wh,
            self._ev_max_w,
            self._ev_min_w,
            self._ev_taper_pct,
        )
        self.ev_accept_w = np.where(self.ev_connected, accept, 0.0)

    def _init_batteries(self, bats: tuple[BatteryConfig, ...]) -> None:
        """Battery parameters and state (SoC, power, bounds)."""
        self.battery_capacity_wh = np.array([c.capacity_wh for c in bats], dtype=np.float64)
        self.battery_soc_pct = np.array([c.soc_pct for c in bats], dtype=np.float64)
        """State of charge per battery (%)."""
        self.battery_soc_min_pct = np.array([c.soc_min_pct for c in bats], dtype=np.float64)
        self.battery_soc_max_pct = np.array([c.soc_max_pct for c in bats], dtype=np.float64)
        self._max_charge = np.array([c.max_charge_w for c in bats], dtype=np.float64)
        self._max_discharge = np.array([c.max_discharge_w for c in bats], dtype=np.float64)
        self._eta_c = np.array([c.charge_efficiency for c in bats], dtype=np.float64)
        self._eta_d = np.array([c.discharge_efficiency for c in bats], dtype=np.float64)
        self.battery_voltage_v = np.array([c.nominal_voltage_v for c in bats], dtype=np.float64)
        self.battery_temperature_c = np.array([c.temperature_c for c in bats], dtype=np.float64)
        self.battery_power_w = np.zeros(len(bats))
        """DC power per battery (W, + = charging)."""
        self.battery_state = np.zeros(len(bats), dtype=np.int64)
        self.battery_lower_w = -self._max_discharge.copy()
        self.battery_upper_w = self._max_charge.copy()
        self._limit_bat_lo = np.full(len(bats), -np.inf)
        self._limit_bat_hi = np.full(len(bats), np.inf)

    def _init_edges(self, site: SiteConfig) -> None:
        """Inverter -> battery edges and each battery's capability share per inverter.

        Sparse: O(edges) per step, not O(batteries x inverters); a 1 000-pair site
        has 1 000 edges, not 10^6 cells.
        """
        n_inv, bats = self._n_inv, site.batteries
        edges = inverter_battery_edges(site, self._inv_row, self._bat_row)
        self._edge_bat = np.array([b for b, _ in edges], dtype=np.intp)
        self._edge_inv = np.array([i for _, i in edges], dtype=np.intp)
        self._bats_of_inv: list[list[int]] = [[] for _ in range(n_inv)]
        for b, i in edges:
            self._bats_of_inv[i].append(b)
        rating = np.maximum(self.inverter_rated_upper_w - self.inverter_rated_lower_w, 1.0)
        self._edge_n_b, self._edge_share = edge_shares(
            self._edge_bat, self._edge_inv, rating, len(bats)
        )

    def _init_meters(self, site: SiteConfig) -> None:
        """What each meter measures: the inverters below it and its share of the load."""
        meters = site.meters
        self._measure = meter_measure_matrix(site, self._inv_row, self._meter_row)
        self.meter_power_w = np.zeros(len(meters))
        """Active power per meter (W, + = flowing away from the grid through it)."""
        self.meter_reactive_var = np.zeros(len(meters))

    def _init_environment(self, site: SiteConfig) -> None:
        """Load, PV and frequency profiles and noise; the site-level measurements."""
        n_inv = self._n_inv
        self._load_values = site.load.profile_w.astype(np.float64)
        self._load_step = site.load.step_s
        self._irr_values = site.pv.irradiance_wm2.astype(np.float64)
        self._irr_step = site.pv.step_s
        load = site.load
        self._load_noise = OrnsteinUhlenbeck(self._rng, load.noise_w, load.noise_tau_s)
        self._pv_noise = OrnsteinUhlenbeck(self._rng, site.pv.noise_pct / 100.0, 30.0)
        freq = site.frequency
        self._freq_noise = OrnsteinUhlenbeck(self._rng, freq.noise_hz, freq.noise_tau_s)
        self._q_ratio = math.tan(math.acos(site.load.reactive_power_factor))
        ev = site.frequency.events
        self._freq_events = Trapezoids(
            [e.start_s for e in ev],
            [e.ramp_s for e in ev],
            [e.duration_s for e in ev],
            [e.delta_hz for e in ev],
        )
        self.nominal_hz = site.frequency.nominal_hz
        self._freq_series = site.frequency.series
        self.frequency_hz = self.nominal_hz
        """Grid frequency (Hz)."""
        self.load_power_w = 0.0
        """Site consumption (W, positive)."""
        self.load_reactive_var = 0.0
        self.irradiance_wm2 = 0.0
        self.pv_available_w = np.zeros(n_inv)
        self.grid_power_w = 0.0
        """Power at the grid connection point (W, + = importing)."""
        self.grid_reactive_var = 0.0
        """Reactive power at the grid connection point (VAr, + = absorbing)."""
        self._grid_model = site.grid_model
        self._background = BackgroundVoltage(site.grid_model, self._seed)
        self.background_voltage_v = site.grid_model.nominal_voltage_v
        """The grid's phase voltage without the site (V)."""
        self.grid_voltage_v = self.background_voltage_v
        """Phase-to-neutral voltage at the connection point (V; balanced phases)."""
        self._sources = np.zeros(n_inv + 1)
        self._q_sources = np.zeros(n_inv + 1)

    # ------------------------------------------------------------------ profiles

    def set_load_profile(self, values_w: npt.ArrayLike, step_s: float) -> None:
        """Replace the load profile (W consumed, >= 0) sampled every ``step_s`` seconds.

        The profile starts at simulated time 0 and repeats after its end.
        """
        arr = np.asarray(values_w, dtype=np.float64).ravel()
        if arr.size == 0 or not np.all(np.isfinite(arr)):
            raise ValueError("values_w must be a non-empty array of finite numbers")
        if not (step_s > 0 and math.isfinite(step_s)):
            raise ValueError(f"step_s must be a positive number, got {step_s!r}")
        self._load_values = arr
        self._load_step = float(step_s)

    def set_irradiance_profile(self, values_wm2: npt.ArrayLike, step_s: float) -> None:
        """Replace the irradiance profile (W/m²) sampled every ``step_s`` seconds."""
        arr = np.asarray(values_wm2, dtype=np.float64).ravel()
        if arr.size == 0 or not np.all(np.isfinite(arr)):
            raise ValueError("values_wm2 must be a non-empty array of finite numbers")
        if not (step_s > 0 and math.isfinite(step_s)):
            raise ValueError(f"step_s must be a positive number, got {step_s!r}")
        self._irr_values = arr
        self._irr_step = float(step_s)

    # ------------------------------------------------------------------ lookup

    def kind_of(self, component_id: int) -> str:
        """Category of a component: grid, meter, inverter, ev_charger or battery."""
        try:
            return self._kind[component_id]
        except KeyError:
            raise ComponentNotFoundError(component_id, "no such component") from None

    def inverter_row(self, component_id: int) -> int:
        """Row of an inverter or EV charger in the ``inverter_*`` arrays."""
        return self._inv_row[component_id]

    def battery_row(self, component_id: int) -> int:
        """Row of a battery in the ``battery_*`` arrays."""
        return self._bat_row[component_id]

    def meter_row(self, component_id: int) -> int:
        """Row of a meter in the ``meter_*`` arrays."""
        return self._meter_row[component_id]

    @property
    def pv_power_w(self) -> float:
        """Total PV AC power (W, negative = production, passive sign convention)."""
        return float(self.inverter_power_w[self.inverter_is_pv].sum())

    @property
    def battery_inverter_power_w(self) -> float:
        """Total battery inverter AC power (W, + = charging)."""
        return float(self.inverter_power_w[self.inverter_is_battery].sum())

    @property
    def ev_power_w(self) -> float:
        """Total EV charging power (W, >= 0: consumed)."""
        return float(self.inverter_power_w[self.inverter_is_ev].sum())

    def state_of(self, component_id: int) -> ComponentState:
        """State of a power row or battery (meters and the grid are always RUNNING)."""
        kind = self.kind_of(component_id)
        if kind in _POWER_KINDS:
            return ComponentState(int(self.inverter_state[self._inv_row[component_id]]))
        if kind == "battery":
            return ComponentState(int(self.battery_state[self._bat_row[component_id]]))
        return ComponentState.RUNNING

    # ------------------------------------------------------------------ bounds

    def active_power_bounds(self, component_id: int) -> list[Interval]:
        """Allowed active power of an inverter now, as sorted inclusion intervals.

        The component's own (SoC-dependent) bounds with its exclusion band,
        intersected with every active augmentation. 0 W is always allowed in
        addition (not necessarily listed).
        """
        row = self._inv_row[component_id]
        own = own_power_intervals(
            float(self.inverter_lower_w[row]),
            float(self.inverter_upper_w[row]),
            float(self.inverter_exclusion_w[row]),
        )
        for intervals in self._aug.intervals_of(component_id):
            own = intersect_intervals(own, intervals)
        return own or [(0.0, 0.0)]

    def reactive_limit_var(self, power_w: FloatArray) -> FloatArray:
        """Most reactive power (VAr, a magnitude) each power row may carry at active
        power ``power_w`` (one value per row): ``min(rated_reactive_var, sqrt(S² − P²))``,
        0 beyond S."""
        return _reactive_limit(
            self.inverter_rated_reactive_var, self.inverter_rated_apparent_va, power_w
        )

    def reactive_power_bounds(self, component_id: int) -> list[Interval]:
        """Allowed reactive power of an inverter now (VAr): ``±`` `reactive_limit_var`
        at its momentary active power; ``[0, 0]`` while it is OFF or in ERROR."""
        row = self._inv_row[component_id]
        q = float(self.inverter_reactive_limit_var[row])
        # int() first: a numpy scalar compared with an IntEnum costs ~4 µs, and this
        # runs for every inverter frame published.
        if int(self.inverter_state[row]) >= ComponentState.OFF:
            q = 0.0
        return [(-q, q)]

    def augment_bounds(
        self, component_id: int, token: str, intervals: list[Interval], lifetime_s: float
    ) -> float:
        """Add (or replace, for the same token) bounds on an inverter's active power.

        Args:
            component_id: an inverter.
            token: the client's bounds token; a new request with the same
                token replaces the previous contribution.
            intervals: inclusion intervals (W); overlapping ones are merged.
            lifetime_s: simulated seconds until the contribution lapses.

        Returns:
            The simulated time (s) at which the contribution lapses.
        """
        kind = self.kind_of(component_id)
        if kind not in _POWER_KINDS:
            raise InvalidRequestError(
                component_id,
                f"bounds can only be augmented on inverters and EV chargers, not a {kind}",
            )
        for lo, hi in intervals:
            if not valid_interval(lo, hi):
                raise InvalidRequestError(component_id, f"invalid bounds [{lo}, {hi}]")
        expiry = self.now_s + lifetime_s
        self._aug.add(component_id, token, intervals, expiry, self.now_s)
        return expiry

    def clear_bounds(self, component_id: int, token: str) -> None:
        """Remove an augmentation by token (no-op if there is none)."""
        self.kind_of(component_id)
        self._aug.clear(component_id, token, self.now_s)

    def augmentation_tokens(self, component_id: int) -> frozenset[str]:
        """Tokens of the bounds augmentations of a component that have not lapsed yet."""
        return self._aug.tokens(component_id, self.now_s)

    # ------------------------------------------------------------------ commands

    def _ready_inverter_row(self, component_id: int, what: str, power: float) -> int:
        """Row of inverter ``component_id`` if it may take a finite ``what`` setpoint now."""
        kind = self.kind_of(component_id)
        if kind not in _POWER_KINDS:
            raise InvalidRequestError(
                component_id,
                f"{what} can only be set on inverters and EV chargers, not on a {kind}",
            )
        if not math.isfinite(power):
            raise InvalidRequestError(component_id, f"power must be finite, got {power!r}")
        row = self._inv_row[component_id]
        state = ComponentState(int(self.inverter_state[row]))
        if state >= ComponentState.OFF:
            raise ComponentNotReadyError(component_id, f"inverter is {state.name}")
        return row

    def check_active_power(self, component_id: int, power_w: float) -> None:
        """Validate an active power setpoint like the API server does.

        Raises:
            ComponentNotFoundError: unknown id.
            InvalidRequestError: not an inverter, or NaN/inf power.
            ComponentNotReadyError: the inverter (or all its batteries) is stopped or errored.
            PowerOutOfRangeError: outside the current bounds (0 W is always allowed).
        """
        row = self._ready_inverter_row(component_id, "active power", power_w)
        if power_w == 0.0:
            return
        bats = self._bats_of_inv[row]
        if bats and np.all(self.battery_state[bats] >= ComponentState.OFF):
            raise ComponentNotReadyError(
                component_id, "all batteries behind the inverter are stopped"
            )
        allowed = self.active_power_bounds(component_id)
        if not any(lo - 1e-6 <= power_w <= hi + 1e-6 for lo, hi in allowed):
            shown = ", ".join(f"[{lo:g}, {hi:g}]" for lo, hi in allowed)
            raise PowerOutOfRangeError(
                component_id, f"power {power_w:g} W outside the current bounds {shown} W"
            )

    def check_reactive_power(self, component_id: int, power_var: float) -> None:
        """Validate a reactive power setpoint against the momentary bounds
        (`reactive_power_bounds`; same errors as `check_active_power`)."""
        self._ready_inverter_row(component_id, "reactive power", power_var)
        if power_var == 0.0:
            return
        ((lo, hi),) = self.reactive_power_bounds(component_id)
        if not lo - 1e-6 <= power_var <= hi + 1e-6:
            raise PowerOutOfRangeError(
                component_id,
                f"reactive power {power_var:g} VAr outside the current bounds [{lo:g}, {hi:g}] VAr",
            )

    def set_active_power(
        self, component_id: int, power_w: float, lifetime_s: float = 60.0
    ) -> int:
        """Command an inverter's active power (no bounds validation; see `check_active_power`).

        The setpoint becomes effective after the inverter's response delay and
        lapses ``lifetime_s`` simulated seconds after now. Setpoints are a
        pipeline (transport delay): each one takes effect its delay after it was
        sent, in order, so a stream of setpoints faster than the delay is
        followed with that lag rather than starving. A STANDBY inverter starts
        running. Returns a request number for `setpoint_status`.
        """
        if self.kind_of(component_id) not in _POWER_KINDS:
            raise InvalidRequestError(
                component_id, "active power can only be set on inverters and EV chargers"
            )
        if not math.isfinite(power_w):
            raise InvalidRequestError(component_id, f"power must be finite, got {power_w!r}")
        row = self._inv_row[component_id]
        if self.inverter_state[row] == ComponentState.STANDBY:
            self.inverter_state[row] = ComponentState.RUNNING
        due = self.now_s + float(self._delay[row])
        queue = self._pend_q[row]
        queue.append((due, power_w, self.now_s + lifetime_s))
        if len(queue) == 1:
            self._pend_at[row] = due
        seq = self._next_seq
        self._next_seq += 1
        self._seq[row] = seq
        return seq

    def set_reactive_power(
        self, component_id: int, power_var: float, lifetime_s: float = 60.0
    ) -> None:
        """Command an inverter's reactive power (effective after the response delay)."""
        if self.kind_of(component_id) not in _POWER_KINDS:
            raise InvalidRequestError(
                component_id, "reactive power can only be set on inverters and EV chargers"
            )
        row = self._inv_row[component_id]
        self._q_pend[row] = power_var
        self._q_pend_at[row] = self.now_s + self._delay[row]
        self._q_pend_expiry[row] = self.now_s + lifetime_s

    def setpoint_status(self, component_id: int, request: int) -> SetpointStatus:
        """Where the setpoint request ``request`` (from `set_active_power`) stands."""
        row = self._inv_row[component_id]
        if self._seq[row] != request:
            return SetpointStatus.OVERRIDDEN
        if self.inverter_state[row] >= ComponentState.OFF:
            return SetpointStatus.FAILED
        if np.isfinite(self._pend_at[row]):
            return SetpointStatus.PENDING
        if abs(self.inverter_power_w[row] - self.inverter_target_w[row]) <= max(
            _TOL_W, 1e-4 * abs(self.inverter_target_w[row])
        ):
            return SetpointStatus.APPLIED
        return SetpointStatus.PENDING

    def setpoints_in_flight(self, component_id: int) -> int:
        """Active setpoints of an inverter sent but not yet effective (transport delay)."""
        return len(self._pend_q[self._inv_row[component_id]])

    def set_ramp_rate(self, component_id: int, ramp_w_per_s: float) -> None:
        """Change how fast an inverter's AC power moves toward its target (W/s, > 0)."""
        if not (ramp_w_per_s > 0 and math.isfinite(ramp_w_per_s)):
            raise ValueError(f"ramp_w_per_s must be a positive number, got {ramp_w_per_s!r}")
        self._ramp[self._inv_row[component_id]] = ramp_w_per_s

    def _clear_setpoint(self, row: int) -> None:
        self._pend_q[row].clear()
        for arr in (self.inverter_setpoint_w, self._q_sp, self._q_pend):
            arr[row] = np.nan
        for arr in (self._sp_expiry, self._pend_at):
            arr[row] = np.inf
        for arr in (self._q_expiry, self._q_pend_at, self._q_pend_expiry):
            arr[row] = np.inf

    def start(self, component_id: int) -> None:
        """Start: OFF/STANDBY -> RUNNING (inverter at 0 W; battery relays closed)."""
        kind = self.kind_of(component_id)
        if kind in _POWER_KINDS:
            row = self._inv_row[component_id]
            if self.inverter_state[row] == ComponentState.ERROR:
                raise ComponentNotReadyError(component_id, _ACK_FIRST)
            if self.inverter_state[row] != ComponentState.RUNNING:
                self._clear_setpoint(row)
                self.inverter_state[row] = ComponentState.RUNNING
        elif kind == "battery":
            row = self._bat_row[component_id]
            if self.battery_state[row] == ComponentState.ERROR:
                raise ComponentNotReadyError(component_id, _ACK_FIRST)
            self.battery_state[row] = ComponentState.RUNNING
        self._update_bounds()

    def standby(self, component_id: int) -> None:
        """Put an inverter in standby: power to 0, AC relays open (no-op for others)."""
        kind = self.kind_of(component_id)
        if kind not in _POWER_KINDS:
            return
        row = self._inv_row[component_id]
        state = ComponentState(int(self.inverter_state[row]))
        if state >= ComponentState.OFF:
            raise ComponentNotReadyError(component_id, f"inverter is {state.name}, relays are open")
        self._clear_setpoint(row)
        self.inverter_state[row] = ComponentState.STANDBY
        self._seq[row] = 0

    def stop(self, component_id: int) -> None:
        """Stop: inverter -> OFF (0 W); battery -> OFF if its power is 0 (else refused)."""
        kind = self.kind_of(component_id)
        if kind in _POWER_KINDS:
            row = self._inv_row[component_id]
            if self.inverter_state[row] == ComponentState.ERROR:
                raise ComponentNotReadyError(component_id, _ACK_FIRST)
            self._clear_setpoint(row)
            self.inverter_state[row] = ComponentState.OFF
            self._seq[row] = 0
        elif kind == "battery":
            row = self._bat_row[component_id]
            if self.battery_state[row] == ComponentState.ERROR:
                raise ComponentNotReadyError(component_id, _ACK_FIRST)
            if abs(self.battery_power_w[row]) > _TOL_W:
                raise ComponentNotReadyError(
                    component_id,
                    f"battery power is {self.battery_power_w[row]:g} W, must be 0 to open relays",
                )
            self.battery_state[row] = ComponentState.OFF
        self._update_bounds()

    def ack_error(self, component_id: int) -> None:
        """Acknowledge an error: ERROR -> OFF (no-op otherwise)."""
        kind = self.kind_of(component_id)
        if kind in _POWER_KINDS:
            row = self._inv_row[component_id]
            if self.inverter_state[row] == ComponentState.ERROR:
                self.inverter_state[row] = ComponentState.OFF
        elif kind == "battery":
            row = self._bat_row[component_id]
            if self.battery_state[row] == ComponentState.ERROR:
                self.battery_state[row] = ComponentState.OFF

    def limit_power(self, component_id: int, lower_w: float, upper_w: float) -> None:
        """Fault injection: clamp an inverter's or battery's own power bounds.

        The component's bounds become its usual ones intersected with
        ``[lower_w, upper_w]`` (``lower_w <= 0 <= upper_w``) until
        `clear_power_limit`; for a battery the inverters above it see the
        reduced share. Bounds in telemetry and setpoint validation both follow.
        """
        kind = self.kind_of(component_id)
        if not (lower_w <= 0.0 <= upper_w) or math.isnan(lower_w) or math.isnan(upper_w):
            raise InvalidRequestError(
                component_id, f"power limit must contain 0 W, got [{lower_w}, {upper_w}]"
            )
        if kind in _POWER_KINDS:
            row = self._inv_row[component_id]
            self._limit_inv_lo[row] = lower_w
            self._limit_inv_hi[row] = upper_w
        elif kind == "battery":
            row = self._bat_row[component_id]
            self._limit_bat_lo[row] = lower_w
            self._limit_bat_hi[row] = upper_w
        else:
            raise InvalidRequestError(component_id, f"cannot limit the power of a {kind}")
        self._update_bounds()

    def clear_power_limit(self, component_id: int) -> None:
        """Remove a `limit_power` clamp (no-op if there is none)."""
        kind = self.kind_of(component_id)
        if kind in _POWER_KINDS:
            row = self._inv_row[component_id]
            self._limit_inv_lo[row] = -np.inf
            self._limit_inv_hi[row] = np.inf
        elif kind == "battery":
            row = self._bat_row[component_id]
            self._limit_bat_lo[row] = -np.inf
            self._limit_bat_hi[row] = np.inf
        self._update_bounds()

    def inject_error(self, component_id: int) -> None:
        """Fault injection: put an inverter or battery into ERROR (inverter power to 0)."""
        kind = self.kind_of(component_id)
        if kind in _POWER_KINDS:
            row = self._inv_row[component_id]
            self._clear_setpoint(row)
            self.inverter_state[row] = ComponentState.ERROR
            self._seq[row] = 0
        elif kind == "battery":
            self.battery_state[self._bat_row[component_id]] = ComponentState.ERROR
        else:
            raise InvalidRequestError(component_id, f"cannot inject an error into a {kind}")
        self._update_bounds()

    # ------------------------------------------------------------------ stepping

    def step(self, dt_s: float) -> None:
        """Advance simulated time by ``dt_s`` seconds (sub-steps of <= ``max_step_s``)."""
        if not dt_s > 0:
            if dt_s == 0:
                return
            raise ValueError(f"dt_s must be >= 0, got {dt_s!r}")
        n = max(1, math.ceil(dt_s / self.max_step_s - 1e-9))
        h = dt_s / n
        for _ in range(n):
            self._substep(h)

    def _substep(self, dt: float) -> None:
        t = self.now_s + dt
        # setpoints becoming effective / lapsing
        act = self._pend_at <= t
        ramp_dt: FloatArray | float = dt
        if act.any():
            ramp_arr = np.full(len(act), dt)
            for row in np.flatnonzero(act).tolist():
                queue = self._pend_q[row]
                while queue and queue[0][0] <= t:
                    due, power, expiry = queue.popleft()
                self.inverter_setpoint_w[row] = power
                self._sp_expiry[row] = expiry
                # ramp only for the part of the sub-step after the setpoint took effect
                ramp_arr[row] = min(max(t - due, 0.0), dt)
                self._pend_at[row] = queue[0][0] if queue else np.inf
            ramp_dt = ramp_arr
        lapse = self._sp_expiry <= t
        if lapse.any():
            self.inverter_setpoint_w[lapse] = np.nan
            self._sp_expiry[lapse] = np.inf
        qact = self._q_pend_at <= t
        if qact.any():
            self._q_sp[qact] = self._q_pend[qact]
            self._q_expiry[qact] = self._q_pend_expiry[qact]
            self._q_pend_at[qact] = np.inf
        qlapse = self._q_expiry <= t
        if qlapse.any():
            self._q_sp[qlapse] = np.nan
            self._q_expiry[qlapse] = np.inf
        self.now_s = t
        if self._aug.next_expiry_s <= t:
            self._aug.refresh(t)

        self._update_environment(dt)
        self._update_bounds()

        # targets
        sp = self.inverter_setpoint_w
        has_sp = ~np.isnan(sp)
        sp0 = np.where(has_sp, sp, 0.0)
        pv_target = np.where(has_sp, np.maximum(self.pv_available_w, sp0), self.pv_available_w)
        if self._ev_gen:  # EV chargers: a setpoint limits what the car takes
            ev_target = np.where(has_sp, np.minimum(self.ev_accept_w, sp0), self.ev_accept_w)
            sp0 = np.where(self.inverter_is_ev, ev_target, sp0)
        target = np.where(self.inverter_is_pv, pv_target, sp0)
        target = np.clip(target, self.inverter_lower_w, self.inverter_upper_w)
        target = np.clip(target, self._aug.lower_w, self._aug.upper_w)
        running = self.inverter_state == ComponentState.RUNNING
        target = np.where(running, target, 0.0)
        self.inverter_target_w = target
        step = self._ramp * ramp_dt
        self.inverter_power_w = self.inverter_power_w + np.clip(
            target - self.inverter_power_w, -step, step
        )
        self._step_reactive(dt, running)
        if self._ev_gen:
            self.ev_delivered_wh += np.where(
                self.ev_connected, np.maximum(self.inverter_power_w, 0.0), 0.0
            ) * (dt / 3600.0)

        # battery DC power split and SoC integration
        p = self.inverter_power_w
        if self._n_bat:
            # An inverter's charging (discharging) power goes to its batteries in
            # proportion to what each can take (give); evenly when none can.
            eb, ei, n_inv = self._edge_bat, self._edge_inv, self._n_inv
            up = np.maximum(self.battery_upper_w, 0.0)[eb]
            dn = np.maximum(-self.battery_lower_w, 0.0)[eb]
            up_sum = np.bincount(ei, up, minlength=n_inv)[ei]
            dn_sum = np.bincount(ei, dn, minlength=n_inv)[ei]
            even = 1.0 / self._edge_n_b
            w_up = np.where(up_sum > 0, up / np.where(up_sum > 0, up_sum, 1.0), even)
            w_dn = np.where(dn_sum > 0, dn / np.where(dn_sum > 0, dn_sum, 1.0), even)
            flow = w_up * np.maximum(p, 0.0)[ei] + w_dn * np.minimum(p, 0.0)[ei]
            bat_p = np.bincount(eb, flow, minlength=self._n_bat).astype(np.float64, copy=False)
            self.battery_power_w = bat_p
            stored = np.where(bat_p > 0, bat_p * self._eta_c, bat_p / self._eta_d)
            self.battery_soc_pct = np.clip(
                self.battery_soc_pct + stored * (dt / 3600.0) / self.battery_capacity_wh * 100.0,
                0.0,
                100.0,
            )
        self._update_meters()

    def _step_reactive(self, dt: float, running: npt.NDArray[np.bool_]) -> None:
        """Move Q toward its setpoint (0 without one) at the reactive ramp, within
        the limit the new active power leaves; count the clips that start now."""
        sp = np.where(np.isnan(self._q_sp), 0.0, self._q_sp)
        self.inverter_reactive_limit_var = self.reactive_limit_var(self.inverter_power_w)
        limit = np.where(running, self.inverter_reactive_limit_var, 0.0)
        target = np.clip(sp, -limit, limit)
        q = self.inverter_reactive_var
        step = self._ramp_q * dt
        q = np.clip(q + np.clip(target - q, -step, step), -limit, limit)
        self.inverter_reactive_var = q
        rated = np.minimum(np.abs(sp), self.inverter_rated_reactive_var)
        clipped = running & (rated > limit + _TOL_W)
        self.inverter_apparent_clips += clipped & ~self._q_clipped
        self._q_clipped = clipped

    def _update_environment(self, dt: float) -> None:
        t = self.now_s
        load = profile_at(self._load_values, self._load_step, t)
        noise = self._load_noise.step(dt) if dt > 0 else self._load_noise.x
        self.load_power_w = max(0.0, load + noise)
        self.load_reactive_var = self.load_power_w * self._q_ratio
        irr = profile_at(self._irr_values, self._irr_step, t)
        factor = 1.0 + (self._pv_noise.step(dt) if dt > 0 else 0.0)
        self.irradiance_wm2 = max(0.0, irr * factor)
        self.pv_available_w = np.where(
            self.inverter_is_pv, self.inverter_rated_lower_w * (self.irradiance_wm2 / 1000.0), 0.0
        )
        self.pv_available_w = np.maximum(self.pv_available_w, self.inverter_rated_lower_w)
        self._update_ev(t)
        base = self.nominal_hz if self._freq_series is None else self._freq_series.at_scalar(t)
        freq = base + (self._freq_noise.step(dt) if dt > 0 else 0.0)
        freq += self._freq_events.at(t)
        self.frequency_hz = freq
        self.background_voltage_v = self._background.at(t, dt)

    def _update_bounds(self) -> None:
        bat_on = self.battery_state == ComponentState.RUNNING
        self.battery_upper_w = np.where(
            bat_on & (self.battery_soc_pct < self.battery_soc_max_pct), self._max_charge, 0.0
        )
        self.battery_lower_w = np.where(
            bat_on & (self.battery_soc_pct > self.battery_soc_min_pct), -self._max_discharge, 0.0
        )
        self.battery_upper_w = np.minimum(self.battery_upper_w, self._limit_bat_hi)
        self.battery_lower_w = np.maximum(self.battery_lower_w, self._limit_bat_lo)
        eb, ei, share, n_inv = self._edge_bat, self._edge_inv, self._edge_share, self._n_inv
        inv_up = np.bincount(ei, share * self.battery_upper_w[eb], minlength=n_inv)
        inv_lo = np.bincount(ei, share * self.battery_lower_w[eb], minlength=n_inv)
        # PV: a cap between the available production and 0; EV: a limit while a
        # car is connected (the exclusion band keeps it out of (0, min power)).
        upper = np.where(
            self.inverter_is_pv,
            self.inverter_rated_upper_w,
            np.where(
                self.inverter_is_ev,
                np.where(self.ev_connected, self.inverter_rated_upper_w, 0.0),
                np.minimum(self.inverter_rated_upper_w, inv_up),
            ),
        )
        lower = np.where(
            self.inverter_is_pv,
            self.pv_available_w,
            np.where(
                self.inverter_is_ev,
                self.inverter_rated_lower_w,
                np.maximum(self.inverter_rated_lower_w, inv_lo),
            ),
        )
        upper = np.minimum(upper, self._limit_inv_hi)
        lower = np.maximum(lower, self._limit_inv_lo)
        off = self.inverter_state >= ComponentState.OFF
        self.inverter_upper_w = np.where(off, 0.0, upper)
        self.inverter_lower_w = np.where(off, 0.0, lower)

    def _update_meters(self) -> None:
        n = len(self.inverter_power_w)
        self._sources[:n] = self.inverter_power_w
        self._sources[n] = self.load_power_w
        self._q_sources[:n] = self.inverter_reactive_var
        self._q_sources[n] = self.load_reactive_var
        self.meter_power_w = self._measure @ self._sources
        self.meter_reactive_var = self._measure @ self._q_sources
        self.grid_power_w = float(self._sources.sum())
        self.grid_reactive_var = float(self._q_sources.sum())
        self.grid_voltage_v = self.background_voltage_v - voltage_drop_v(
            self._grid_model, self.grid_power_w, self.grid_reactive_var
        )
