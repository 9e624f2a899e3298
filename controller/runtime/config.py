"""gridloop's configuration: typed sections, TOML loading, strict validation.

Offers :func:`load_config` (a TOML file, or the defaults), :func:`config_from_dict`
(the same from an already-parsed mapping), :class:`GridloopConfig` and its
sections :class:`ApiConfig`, :class:`ControlConfig`, :class:`SimulatorConfig`,
:class:`RunConfig` (peak shaving and frequency response use the strategies'
own :class:`~controller.runtime.strategies.PeakShavingConfig` and
:class:`~controller.runtime.strategies.FrequencyResponseConfig`), and :class:`ConfigError`.

File format (every key optional; units in the names; + = import / charging)::

    [api]                      # omit url to run against the embedded simulator
    url = "grpc://site.example.com:443?ssl=true"
    api_key = "..."            # sent as metadata: printable ASCII only
    root_cert = "ca.pem"       # PEM; relative to the config file
    call_timeout_s = 1.0
    version = "v1"             # Microgrid API version (v1, v1alpha18, v1alpha19);
                               # omit it to find it (newest first)

    [control]
    setpoint_lifetime_s = 10   # request_lifetime of every setpoint, 10..900 s
    deadband_w = 100.0         # don't resend a setpoint that changed less than this
    stale_after_s = 2.0        # telemetry older than this excludes the component
    soc_exponent = 1.0         # distribution weight ~ SoC headroom ** soc_exponent
    kind_order = ["battery_inverter", "pv_inverter", "ev_charger"]
                               # which kind meets the strategies' limits first: PV
                               # curtailment / EV limits after (default) or before
                               # the batteries (distribution.allocate_kinds)

    [peak_shaving]             # see controller.runtime.strategies.PeakShavingConfig
    enabled = true
    priority = 10
    limit = 250_000.0          # W of billing-interval mean, or "auto" (alias: import_limit_w)
    hard_import_limit_w = 400_000.0  # optional instantaneous limit of the connection
    export_limit_w = 250_000.0
    export_margin_w = 0.0      # aim the export this far inside its limit (zero export: ~300)
    export_lead_s = 1.0        # s: a control interval + the inverters' response delay; the
                               # export bound follows a falling load this far ahead (0 = off)
    target_soc_pct = 60.0
    recharge_power_w = 50_000.0
    recharge_margin_w = 10_000.0
    interval_s = 0.2
    # limit = "auto" (issue 16) plans the limit; its knobs (controller.runtime.planning):
    auto_horizon_h = 48.0      # planning horizon, 1..168 h
    auto_margin_pct = 0.0      # the limit is the planned peak + this %, 0..50
    auto_forecaster = "shape_level"  # or naive_day, naive_week, week_max, week_mean,
                               # day_quantile, week_ewma, week_max_day_q
    auto_end_energy_pct = 0.0  # end each plan with this share of the energy window
    auto_persist_h = 2.0       # forecast at least the latest interval mean this long
    auto_weeks = 3             # weeks the weekly forecasters look back, 1..8
    auto_days = 14             # days day_quantile looks back, 1..56
    auto_quantile = 0.9        # day_quantile's quantile, 0..1
    auto_shape_days = 3        # shape_level: past days of the day's class, 1..56
    auto_shape_q = 1.0         # shape_level: their quantile per time of day, 0..1
    auto_day_classes = "weekday"  # shape_level: or "workday" (Mon-Fri alike)

    [frequency_response]       # see controller.runtime.strategies.FrequencyResponseConfig
    enabled = true
    priority = 20
    curve = "linear"           # or "knee"
    f0_hz = 50.0
    deadband_hz = 0.010        # default per curve: linear 0.010, knee 0.015
    full_activation_hz = 0.200 # default per curve: linear 0.200, knee 0.500
    knee_hz = 0.200            # knee curve only
    knee_fraction = 0.05       # knee curve only
    reserved_power_w = 100_000.0
    hold_duration_s = 900.0
    soc_management_power_w = 10_000.0
    interval_s = 0.0           # 0 = every grid-meter sample

    [reactive_power]           # see controller.runtime.strategies.ReactivePowerConfig
    enabled = true             # off: no reactive metric streamed, no reactive setpoint sent
    mode = "q_u"               # or "fixed_q", "cos_phi", "cos_phi_p"
    priority = "p_first"       # or "q_first" (P limited to sqrt(S² − Q²))
    q_var = -20_000.0          # fixed_q: the FLEET's Q (VAr; + = absorbing, under-excited)
    cos_phi = 0.95             # cos_phi: power factor in (0, 1]
    excitation = "under"       # cos_phi, cos_phi_p: "under" (absorb, +) or "over" (deliver, −)
    cos_phi_p_points = [[50.0, 1.0], [100.0, 0.95]]  # cos_phi_p: (|P| % of rating, cos φ)
    nominal_voltage_v = 230.0  # q_u and the band
    deadband_pct = 1.0         # q_u: no Q within ± this % of nominal
    slope_pct_per_pct = 20.0   # q_u: % of Q_ref per % of U beyond the deadband
    q_limit_pct = 100.0        # q_u: |Q| at most this % of Q_ref
    q_ref_var = 0.0            # q_u: Q_ref (VAr); 0 = the fleet's apparent rating
    time_constant_s = 3.33     # q_u: first-order filter τ (s of site time; 3 τ ≈ 10 s)
    voltage_band_pct = 5.0     # the band voltage_in_band_pct counts (± % of nominal)

    [billing]                  # see controller.runtime.billing.BillingConfig
    interval_s = 900           # billing interval, 60..3600 s, divides a day
    period = "month"           # or "week", "day": the billed peak resets at its start
    timezone = "Europe/Berlin" # IANA name; default: the site's, else UTC
    state_file = "gridloop-state.json"  # relative to the config file

    [simulator]                # the embedded simulator (when api.url is not set)
    site = "my_site.toml"      # default: the bundled default site
    time_scale = 30.0
    telemetry_hz = 10.0

    [schedule]                 # service windows (controller.runtime.schedule_file)
    file = "fcr_day.toml"      # relative to the config file; --schedule overrides it

    [run]
    duration_s = 60.0

    [dispatch]                 # schedules from the Frequenz Dispatch API (issue 17)
    url = "grpc://dispatch.example.com"  # as for dispatch-cli: TLS and port 443 unless
                               # the URL says otherwise ("grpc://127.0.0.1:50052?ssl=false")
    api_key = "..."            # sent as metadata "key"
    microgrid_id = 1           # default: the site's id from the Microgrid API

Validation is strict: an unknown section or key, a wrong type, NaN or
infinity, a negative limit or an out-of-range value raises :class:`ConfigError`
whose ``str()`` is one line naming the file, the dotted field and the value,
e.g. ``examples/x.toml: peak_shaving.import_limit_w = -5.0: must be >= 0``.
Integers are accepted where floats are expected; booleans never are.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import os
import tomllib
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from actors import API_VERSIONS, api_key_problem
from controller.errors import ConfigError
from controller.runtime.billing import PERIODS, BillingConfig, zone_problem
from controller.runtime.planning import FORECASTERS, AutoLimitConfig
from controller.runtime.schedule import FrequencyWindow
from controller.runtime.strategies import (
    Q_MODES,
    DroopCurve,
    FrequencyResponseConfig,
    PeakShavingConfig,
    ReactivePowerConfig,
)
from distribution import DEFAULT_KIND_ORDER, KINDS

__all__ = [
    "ApiConfig",
    "BillingConfig",
    "ConfigError",
    "ControlConfig",
    "DispatchConfig",
    "GridloopConfig",
    "RunConfig",
    "ScheduleConfig",
    "SimulatorConfig",
    "config_from_dict",
    "dispatch_url_problem",
    "frequency_window_from_dict",
    "load_config",
    "peak_limit_from_dict",
    "read_toml",
    "read_window",
]


# --------------------------------------------------------------------------- sections


@dataclass(frozen=True, slots=True)
class ApiConfig:
    """Where the Microgrid API server is and how to talk to it."""

    url: str | None = None
    """``grpc://HOST:PORT[?ssl=true]``; None = start the embedded simulator."""
    api_key: str | None = None
    """API key sent as call metadata; None = none."""
    root_cert: Path | None = None
    """PEM root certificate to verify the server's TLS (resolved against the config file)."""
    call_timeout_s: float = 1.0
    """Timeout of one unary call (setpoints), seconds (> 0)."""
    version: str | None = None
    """Microgrid API version of the server (``v1``, ``v1alpha18``, ``v1alpha19``);
    None = find it at connect time (newest first)."""


@dataclass(frozen=True, slots=True)
class ControlConfig:
    """Settings of the control loop shared by all strategies."""

    setpoint_lifetime_s: int = 10
    """``request_lifetime`` of every setpoint, seconds (the API allows 10..900)."""
    deadband_w: float = 100.0
    """Don't resend a component setpoint that changed by less than this, W (≥ 0); the
    changes held back are all sent once together they exceed it."""
    stale_after_s: float = 2.0
    """Telemetry older than this excludes the component from allocation, seconds (> 0)."""
    soc_exponent: float = 1.0
    """Distribution weighting exponent on SoC headroom (≥ 0; 0 = by power only)."""
    kind_order: tuple[str, ...] = DEFAULT_KIND_ORDER
    """Which kind meets what the strategies' limits require first, each of
    ``battery_inverter``, ``pv_inverter``, ``ev_charger`` once: PV curtailment (more
    import / less export) and EV limits (less import) after the batteries by default;
    put ``pv_inverter`` / ``ev_charger`` before ``battery_inverter`` to curtail PV
    before charging the batteries / slow the cars before discharging them. PV and EV
    never compete (they act in opposite directions)."""


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """The embedded simulator (used when ``api.url`` is not set)."""

    site: Path | None = None
    """Site TOML (resolved against the config file); None = the bundled default site."""
    time_scale: float = 30.0
    """Simulated seconds per wall-clock second (> 0): 30 puts the default site's
    load peak and frequency events into a one-minute run."""
    telemetry_hz: float = 10.0
    """Telemetry samples per second per component stream (> 0)."""


@dataclass(frozen=True, slots=True)
class ScheduleConfig:
    """Where the strategies' service windows come from (issue 17)."""

    file: Path | None = None
    """Schedule file (resolved against the config file; see
    :mod:`controller.runtime.schedule_file`); None = none (``--schedule`` may give one)."""


@dataclass(frozen=True, slots=True)
class RunConfig:
    """How long ``gridloop run`` runs."""

    duration_s: float = 60.0
    """Wall-clock run time, seconds (> 0)."""


@dataclass(frozen=True, slots=True)
class DispatchConfig:
    """Where the Frequenz Dispatch API is (schedule windows from dispatches, issue 17)."""

    url: str | None = None
    """``grpc://HOST[:PORT][?ssl=false]`` as ``dispatch-cli --url`` takes it (TLS and port
    443 unless the URL says otherwise); None = no dispatches."""
    api_key: str | None = None
    """Auth key sent as metadata ``key``; None = none (the client then sends an empty key)."""
    microgrid_id: int | None = None
    """The microgrid whose dispatches apply; None = the site's id from the Microgrid API."""


@dataclass(frozen=True, slots=True)
class GridloopConfig:
    """The whole configuration. ``GridloopConfig()`` is the default (suits the default site)."""

    api: ApiConfig = field(default_factory=ApiConfig)
    """The Microgrid API connection."""
    control: ControlConfig = field(default_factory=ControlConfig)
    """Control-loop settings."""
    peak_shaving: PeakShavingConfig = field(default_factory=PeakShavingConfig)
    """Peak-shaving strategy."""
    auto_limit: AutoLimitConfig = field(default_factory=AutoLimitConfig)
    """The auto limit's planner (the ``auto_*`` keys of ``[peak_shaving]``)."""
    frequency_response: FrequencyResponseConfig = field(default_factory=FrequencyResponseConfig)
    """Frequency-response strategy."""
    reactive_power: ReactivePowerConfig = field(default_factory=ReactivePowerConfig)
    """Reactive-power strategy (``[reactive_power]``)."""
    billing: BillingConfig = field(default_factory=BillingConfig)
    """How the site's demand is billed (interval, period, zone, state file)."""
    simulator: SimulatorConfig = field(default_factory=SimulatorConfig)
    """The embedded simulator."""
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    """Service windows (the ``[schedule]`` section)."""
    run: RunConfig = field(default_factory=RunConfig)
    """Run duration."""
    dispatch: DispatchConfig = field(default_factory=DispatchConfig)
    """The Frequenz Dispatch API (schedule windows)."""
    source: str = "<defaults>"
    """Where the configuration came from (file path, ``"<defaults>"`` or ``"<config>"``)."""


# --------------------------------------------------------------------------- validation

_Check = Callable[[Any], str | None]


def _ge(bound: float) -> _Check:
    return lambda v: None if v >= bound else f"must be >= {bound:g}"


def _gt(bound: float) -> _Check:
    return lambda v: None if v > bound else f"must be > {bound:g}"


def _le(bound: float) -> _Check:
    return lambda v: None if v <= bound else f"must be <= {bound:g}"


def _between(low: float, high: float) -> _Check:
    return lambda v: None if low <= v <= high else f"must be in [{low:g}, {high:g}]"


def _nonempty(v: str) -> str | None:
    return None if v.strip() else "must not be empty"


def _divides_a_day(v: int) -> str | None:
    return None if 86_400 % v == 0 else "must divide a day (86400 s) evenly"


@dataclass(frozen=True, slots=True)
class _Field:
    kind: str  # "float" | "int" | "bool" | "str" | "path" | "outpath" | "limit" | "when"
    # | "points" (a characteristic: [[x, y], ...], x strictly ascending; y checked by `checks`)
    # | "order" (a list naming each of `choices` once)
    checks: tuple[_Check, ...] = ()
    choices: tuple[str, ...] = ()


class _NotShown:
    """Stands for a secret value (an API key) in an error message."""

    def __repr__(self) -> str:
        return "(not shown)"


_API: dict[str, _Field] = {
    "url": _Field("str", (_nonempty,)),
    "api_key": _Field("str", (_nonempty,)),
    "root_cert": _Field("path"),
    "call_timeout_s": _Field("float", (_gt(0), _le(60))),
    "version": _Field("str", choices=API_VERSIONS),
}
_CONTROL: dict[str, _Field] = {
    "setpoint_lifetime_s": _Field("int", (_between(10, 900),)),
    "deadband_w": _Field("float", (_ge(0),)),
    "stale_after_s": _Field("float", (_gt(0),)),
    "soc_exponent": _Field("float", (_between(0, 10),)),
    "kind_order": _Field("order", choices=KINDS),
}
_PEAK: dict[str, _Field] = {
    "enabled": _Field("bool"),
    "priority": _Field("int"),
    "limit": _Field("limit", (_ge(0),)),
    "import_limit_w": _Field("float", (_ge(0),)),
    "hard_import_limit_w": _Field("float", (_ge(0),)),
    "export_limit_w": _Field("float", (_ge(0),)),
    "export_margin_w": _Field("float", (_ge(0),)),
    "export_lead_s": _Field("float", (_ge(0), _le(10))),
    "target_soc_pct": _Field("float", (_between(0, 100),)),
    "recharge_power_w": _Field("float", (_ge(0),)),
    "recharge_margin_w": _Field("float", (_ge(0),)),
    "interval_s": _Field("float", (_ge(0), _le(3600))),
    "auto_horizon_h": _Field("float", (_between(1, 168),)),
    "auto_margin_pct": _Field("float", (_between(0, 50),)),
    "auto_forecaster": _Field("str", choices=tuple(FORECASTERS)),
    "auto_end_energy_pct": _Field("float", (_between(0, 100),)),
    "auto_persist_h": _Field("float", (_between(0, 168),)),
    "auto_weeks": _Field("int", (_between(1, 8),)),
    "auto_days": _Field("int", (_between(1, 56),)),
    "auto_quantile": _Field("float", (_between(0, 1),)),
    "auto_shape_days": _Field("int", (_between(1, 56),)),
    "auto_shape_q": _Field("float", (_between(0, 1),)),
    "auto_day_classes": _Field("str", choices=("weekday", "workday")),
}
_AUTO_PREFIX = "auto_"
_FREQ: dict[str, _Field] = {
    "enabled": _Field("bool"),
    "priority": _Field("int"),
    "curve": _Field("str", choices=("linear", "knee")),
    "f0_hz": _Field("float", (_gt(0),)),
    "deadband_hz": _Field("float", (_ge(0), _le(5))),
    "full_activation_hz": _Field("float", (_gt(0), _le(5))),
    "knee_hz": _Field("float", (_gt(0), _le(5))),
    "knee_fraction": _Field("float", (_gt(0), lambda v: None if v < 1 else "must be < 1")),
    "reserved_power_w": _Field("float", (_ge(0),)),
    "hold_duration_s": _Field("float", (_ge(0),)),
    "soc_management_power_w": _Field("float", (_ge(0),)),
    "interval_s": _Field("float", (_ge(0), _le(3600))),
}
_REACTIVE: dict[str, _Field] = {
    "enabled": _Field("bool"),
    "mode": _Field("str", choices=Q_MODES),
    "priority": _Field("str", choices=("p_first", "q_first")),
    "q_var": _Field("float"),
    "cos_phi": _Field("float", (_gt(0), _le(1))),
    "excitation": _Field("str", choices=("under", "over")),
    "cos_phi_p_points": _Field("points"),
    "nominal_voltage_v": _Field("float", (_gt(0), _le(100_000))),
    "deadband_pct": _Field("float", (_between(0, 20),)),
    "slope_pct_per_pct": _Field("float", (_gt(0), _le(1000))),
    "q_limit_pct": _Field("float", (_gt(0), _le(100))),
    "q_ref_var": _Field("float", (_ge(0),)),
    "time_constant_s": _Field("float", (_gt(0), _le(600))),
    "voltage_band_pct": _Field("float", (_gt(0), _le(50))),
}
_REACTIVE_MODE_KEYS: dict[str, tuple[str, ...]] = {
    "q_var": ("fixed_q",),
    "cos_phi": ("cos_phi",),
    "excitation": ("cos_phi", "cos_phi_p"),
    "cos_phi_p_points": ("cos_phi_p",),
    "deadband_pct": ("q_u",),
    "slope_pct_per_pct": ("q_u",),
    "q_limit_pct": ("q_u",),
    "q_ref_var": ("q_u",),
    "time_constant_s": ("q_u",),
}
"""The ``[reactive_power]`` keys that belong to some modes only (given with another: an error)."""
_BILLING: dict[str, _Field] = {
    "interval_s": _Field("int", (_between(60, 3600), _divides_a_day)),
    "period": _Field("str", choices=PERIODS),
    "timezone": _Field("str", (zone_problem,)),
    "state_file": _Field("outpath"),
}
_SIM: dict[str, _Field] = {
    "site": _Field("path"),
    "time_scale": _Field("float", (_gt(0), _le(100_000))),
    "telemetry_hz": _Field("float", (_gt(0), _le(10_000))),
}
_RUN: dict[str, _Field] = {
    "duration_s": _Field("float", (_gt(0),)),
}
_SCHEDULE: dict[str, _Field] = {
    "file": _Field("path"),
}
_CURVE_KEYS = ("curve", "deadband_hz", "full_activation_hz", "knee_hz", "knee_fraction")
_WINDOW: dict[str, _Field] = {
    "start": _Field("when"),
    "end": _Field("when"),
    "reserved_power_w": _FREQ["reserved_power_w"],
    "hold_duration_s": _FREQ["hold_duration_s"],
    **{key: _FREQ[key] for key in _CURVE_KEYS},
    "peak_limit_w": _PEAK["import_limit_w"],
}
"""One ``[[window]]`` of a schedule file (:mod:`controller.runtime.schedule_file`): the
frequency-response keys are checked as in ``[frequency_response]``."""
_DISPATCH: dict[str, _Field] = {
    "url": _Field("str", (_nonempty,)),
    "api_key": _Field("str", (_nonempty,)),
    "microgrid_id": _Field("int", (_ge(0),)),
}
_SECTIONS: dict[str, dict[str, _Field]] = {
    "api": _API,
    "control": _CONTROL,
    "peak_shaving": _PEAK,
    "frequency_response": _FREQ,
    "reactive_power": _REACTIVE,
    "billing": _BILLING,
    "simulator": _SIM,
    "schedule": _SCHEDULE,
    "run": _RUN,
    "dispatch": _DISPATCH,
}


class _Reader:
    """Validates one section's raw mapping against its field table."""

    def __init__(self, source: str, base_dir: Path | None) -> None:
        self.source = source
        self.base_dir = base_dir

    def fail(self, name: str, value: object, reason: str) -> ConfigError:
        return ConfigError(self.source, name, value, reason)

    def section(
        self, name: str, raw: object, spec: Mapping[str, _Field] | None = None
    ) -> dict[str, Any]:
        """Validate the table ``name`` against ``spec`` (None = the config section's)."""
        if not isinstance(raw, Mapping):
            raise self.fail(name, raw, "must be a table")
        spec = _SECTIONS[name] if spec is None else spec
        out: dict[str, Any] = {}
        for key, value in raw.items():
            dotted = f"{name}.{key}"
            if key not in spec:
                raise self.fail(dotted, value, f"unknown key (expected one of: {', '.join(spec)})")
            out[key] = self.value(dotted, spec[key], value)
        return out

    def points(self, dotted: str, value: object) -> tuple[tuple[float, float], ...]:
        return _points(self, dotted, value)

    def value(self, dotted: str, spec: _Field, value: object) -> Any:
        kind = spec.kind
        result: Any
        if kind == "limit":  # a number of watts, or "auto"
            if value == "auto":
                return value
            kind = "float"
            if isinstance(value, str):
                raise self.fail(dotted, value, 'must be a number of watts or "auto"')
        if kind == "when":  # a time of day or a date-time: text, or TOML's own types
            if not isinstance(value, str | datetime.datetime | datetime.time):
                raise self.fail(dotted, value, 'must be a time ("HH:MM") or an ISO-8601 date-time')
            return value
        if kind == "points":
            return self.points(dotted, value)
        if kind == "order":  # a permutation of the choices
            names = spec.choices
            if (not isinstance(value, list) or not all(isinstance(v, str) for v in value)
                    or sorted(value) != sorted(names)):
                raise self.fail(dotted, value, f"must be a list naming each of {', '.join(names)} "
                                               "once")
            return tuple(value)
        if kind == "bool":
            if not isinstance(value, bool):
                raise self.fail(dotted, value, "must be true or false")
            return value
        if kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise self.fail(dotted, value, "must be an integer")
            result = value
        elif kind == "float":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise self.fail(dotted, value, "must be a number")
            result = float(value)
            if not math.isfinite(result):
                raise self.fail(dotted, value, "must be a finite number")
        else:  # str, path
            if not isinstance(value, str):
                raise self.fail(dotted, value, "must be a string")
            if "\x00" in value:
                raise self.fail(dotted, value, "must not contain NUL characters")
            result = value
        if spec.choices and result not in spec.choices:
            raise self.fail(dotted, value, f"must be one of: {', '.join(spec.choices)}")
        for check in spec.checks:
            reason = check(result)
            if reason is not None:
                raise self.fail(dotted, value, reason)
        if kind == "outpath":
            try:
                return resolve_output_path(result, self.base_dir)
            except ValueError as exc:
                raise self.fail(dotted, value, str(exc)) from None
        if kind == "path":
            try:
                path = Path(result).expanduser()
                if not path.is_absolute() and self.base_dir is not None:
                    path = self.base_dir / path
                is_file = path.is_file()
            except (OSError, ValueError, RuntimeError) as exc:
                raise self.fail(dotted, value, f"unusable path: {exc}") from exc
            if not is_file:
                raise self.fail(dotted, value, f"no such file: {path}")
            return path
        return result


def _points(reader: _Reader, dotted: str, value: object) -> tuple[tuple[float, float], ...]:
    """A cos φ(P) characteristic: ``[[p_pct, cos_phi], ...]``, p_pct >= 0 strictly ascending,
    cos_phi in (0, 1]; errors name the point (``dotted[k]``)."""
    if not isinstance(value, list) or not value:
        raise reader.fail(dotted, value, "must be a non-empty list of [p_pct, cos_phi] pairs")
    out: list[tuple[float, float]] = []
    for k, pair in enumerate(value):
        name = f"{dotted}[{k}]"
        if not (isinstance(pair, list) and len(pair) == 2 and all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            for v in pair
        )):
            raise reader.fail(name, pair, "must be a pair of finite numbers [p_pct, cos_phi]")
        p, cp = float(pair[0]), float(pair[1])
        if p < 0:
            raise reader.fail(name, pair, "p_pct must be >= 0")
        if out and p <= out[-1][0]:
            raise reader.fail(name, pair, f"p_pct must be > the previous point's {out[-1][0]:g}")
        if not 0 < cp <= 1:
            raise reader.fail(name, pair, "cos_phi must be in (0, 1]")
        out.append((p, cp))
    return tuple(out)


def _reactive_power(reader: _Reader, rp: dict[str, Any]) -> ReactivePowerConfig:
    """``[reactive_power]``: the mode-specific keys must belong to the mode."""
    mode = rp.get("mode", ReactivePowerConfig().mode)
    for key, modes in _REACTIVE_MODE_KEYS.items():
        if key in rp and mode not in modes:
            raise reader.fail(
                f"reactive_power.{key}", rp[key],
                f"only valid with mode = {' or '.join(repr(m) for m in modes)} (mode is {mode!r})",
            )
    return ReactivePowerConfig(**rp)


def resolve_output_path(text: str | os.PathLike[str], base_dir: Path | None = None) -> Path:
    """A file gridloop will write: ``text`` resolved against ``base_dir`` (None = the current
    directory), in an existing directory, not a directory itself.

    Raises:
        ValueError: the path is unusable (the reason, for a one-line error).
    """
    try:
        path = Path(text).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        if path.is_dir():
            raise ValueError("is a directory")
        parent = path.parent if str(path.parent) else Path(".")
        if not parent.is_dir():
            raise ValueError(f"no such directory: {parent}")
    except (OSError, RuntimeError) as exc:
        raise ValueError(f"unusable path: {exc}") from None
    return path


def _peak_shaving(reader: _Reader, ps: dict[str, Any]) -> dict[str, Any]:
    """``limit`` (watts or "auto") into ``import_limit_w`` / ``limit_mode``."""
    if "limit" not in ps:
        return ps
    if "import_limit_w" in ps:
        raise reader.fail(
            "peak_shaving.limit", ps["limit"],
            f"give either limit or import_limit_w (= {ps['import_limit_w']:g}), not both",
        )
    out = dict(ps)
    limit = out.pop("limit")
    if limit == "auto":
        out["limit_mode"] = "auto"
    else:
        out["import_limit_w"] = limit
    return out


def _check_url(reader: _Reader, url: str) -> None:
    try:
        parsed = urllib.parse.urlsplit(url)
    except ValueError as exc:  # e.g. "Invalid IPv6 URL" for an unclosed [
        raise reader.fail("api.url", url, f"not a URL ({exc})") from None
    if parsed.scheme != "grpc":
        raise reader.fail("api.url", url, "must look like grpc://HOST:PORT[?ssl=true]")
    try:
        port = parsed.port
    except ValueError:
        raise reader.fail("api.url", url, "port must be 1..65535") from None
    if not parsed.hostname or port is None or port == 0:
        raise reader.fail("api.url", url, "must look like grpc://HOST:PORT[?ssl=true]")
    query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
    for key, values in query.items():
        if key != "ssl":
            raise reader.fail("api.url", url, f"unknown query parameter {key!r} (only ssl)")
        if values[-1].lower() not in ("true", "false"):
            raise reader.fail("api.url", url, "ssl must be true or false")


def dispatch_url_problem(url: str) -> str | None:
    """Why ``url`` cannot name a Dispatch API server (None: it can).

    The URL is given to ``DispatchApiClient`` as it is, so it reads like
    ``dispatch-cli --url``: ``grpc://HOST[:PORT][?ssl=false]``.
    """
    try:
        parsed = urllib.parse.urlsplit(url)
        port = parsed.port
    except ValueError as exc:  # an unclosed [, a port out of range
        return f"not a URL ({exc})"
    if parsed.scheme != "grpc" or not parsed.hostname or port == 0:
        return "must look like grpc://HOST[:PORT][?ssl=false]"
    return None


def _order(
    reader: _Reader, fr: Mapping[str, Any], low_key: str, low: float, high_key: str, high: float,
    prefix: str = "frequency_response",
) -> None:
    """Require low < high; blame the key the user set (the later one if both)."""
    if low < high:
        return
    if high_key in fr or low_key not in fr:
        raise reader.fail(f"{prefix}.{high_key}", high, f"must be > {low_key} = {low:g}")
    raise reader.fail(f"{prefix}.{low_key}", low, f"must be < {high_key} = {high:g}")


def _droop_curve(
    reader: _Reader, fr: dict[str, Any], prefix: str = "frequency_response"
) -> DroopCurve:
    """The curve keys of ``fr`` (popped) as a curve; errors name ``prefix.key``."""
    given = dict(fr)
    curve = fr.pop("curve", "linear")
    if curve == "linear":
        for key in ("knee_hz", "knee_fraction"):
            if key in fr:
                raise reader.fail(f"{prefix}.{key}", fr[key], 'only valid with curve = "knee"')
        deadband = fr.pop("deadband_hz", 0.010)
        full = fr.pop("full_activation_hz", 0.200)
        _order(reader, given, "deadband_hz", deadband, "full_activation_hz", full, prefix)
        return DroopCurve.linear(deadband, full)
    deadband = fr.pop("deadband_hz", 0.015)
    knee = fr.pop("knee_hz", 0.200)
    frac = fr.pop("knee_fraction", 0.05)
    full = fr.pop("full_activation_hz", 0.500)
    _order(reader, given, "deadband_hz", deadband, "knee_hz", knee, prefix)
    _order(reader, given, "knee_hz", knee, "full_activation_hz", full, prefix)
    return DroopCurve.knee(deadband, knee, frac, full)


def read_window(source: str, name: str, raw: object) -> dict[str, Any]:
    """Validate one ``[[window]]`` table of a schedule file, with the config's checks.

    Args:
        source: The schedule file, for error messages.
        name: The table's dotted name (``"window[2]"``), for error messages.
        raw: The table as ``tomllib`` returns it.

    Returns:
        ``start`` and ``end`` as given (text, ``datetime.datetime`` or
        ``datetime.time``; the caller reads the clock times), ``reserved_power_w``,
        ``hold_duration_s``, ``peak_limit_w`` (float or None when not given) and
        ``curve`` (a :class:`DroopCurve`, None when no curve key is given).

    Raises:
        ConfigError: one line naming ``source``, ``name.field`` and the value.
    """
    reader = _Reader(source, None)
    table = reader.section(name, raw, _WINDOW)
    for key in ("start", "end"):
        if key not in table:
            raise reader.fail(f"{name}.{key}", None, "missing: every window has a start and an end")
    curve_given = [key for key in _CURVE_KEYS if key in table]
    if "reserved_power_w" not in table:
        for key in (*curve_given, "hold_duration_s"):
            if key in table:
                raise reader.fail(f"{name}.{key}", table[key], "only valid with reserved_power_w")
        if "peak_limit_w" not in table:
            raise reader.fail(name, raw, "sets nothing: give reserved_power_w and/or peak_limit_w")
    curve_keys = {key: table.pop(key) for key in curve_given}
    table["curve"] = _droop_curve(reader, curve_keys, name) if curve_given else None
    for key in ("reserved_power_w", "hold_duration_s", "peak_limit_w"):
        table.setdefault(key, None)
    return table


_WINDOW_FR_KEYS = ("reserved_power_w", *_CURVE_KEYS, "hold_duration_s")
"""The ``[frequency_response]`` keys a schedule window may set."""


def frequency_window_from_dict(data: object, source: str, prefix: str) -> FrequencyWindow:
    """Frequency response as a dispatch's payload sells it, checked as ``[frequency_response]``
    and a schedule file's ``[[window]]`` are (the same field table and curve rules).

    The keys: ``reserved_power_w`` (required, W ≥ 0; 0 = not sold), ``hold_duration_s``
    and the curve keys ``curve``, ``deadband_hz``, ``full_activation_hz``, ``knee_hz``,
    ``knee_fraction`` with the same ranges, defaults per curve and order rules as the
    config. No curve key = the config's curve.

    Args:
        data: The payload mapping.
        source: Where it came from, first in the error (e.g. ``"dispatch 42"``).
        prefix: The dotted name of ``data`` in errors (e.g. ``"payload"``).

    Returns:
        The window's frequency response (None fields = the config's).

    Raises:
        ConfigError: one line naming ``source``, ``prefix.key`` and the value.
    """
    reader = _Reader(source, None)
    fr = reader.section(prefix, data, {key: _WINDOW[key] for key in _WINDOW_FR_KEYS})
    if "reserved_power_w" not in fr:
        raise reader.fail(prefix, data, "reserved_power_w (W, >= 0) is required")
    curve_keys = {key: fr[key] for key in _CURVE_KEYS if key in fr}
    return FrequencyWindow(
        reserved_power_w=fr["reserved_power_w"],
        curve=_droop_curve(reader, curve_keys, prefix) if curve_keys else None,
        hold_duration_s=fr.get("hold_duration_s"),
    )


def peak_limit_from_dict(data: object, source: str, prefix: str) -> float:
    """A dispatch's peak-shaving target ``{"limit_w": W}`` (W ≥ 0, as a window's
    ``peak_limit_w``).

    Raises:
        ConfigError: one line naming ``source``, ``prefix.key`` and the value.
    """
    reader = _Reader(source, None)
    ps = reader.section(prefix, data, {"limit_w": _WINDOW["peak_limit_w"]})
    if "limit_w" not in ps:
        raise reader.fail(prefix, data, "limit_w (W, >= 0) is required")
    return float(ps["limit_w"])


def config_from_dict(
    data: Mapping[str, Any],
    source: str = "<config>",
    base_dir: str | os.PathLike[str] | None = None,
) -> GridloopConfig:
    """Validate an already-parsed mapping (e.g. from TOML) into a :class:`GridloopConfig`.

    Args:
        data: Sections → keys → values, as ``tomllib`` returns them.
        source: Name of where the data came from, used in error messages.
        base_dir: Directory relative paths (``api.root_cert``, ``simulator.site``)
            are resolved against; None = the current directory.

    Returns:
        The validated configuration; missing keys take their defaults.

    Raises:
        ConfigError: one line naming ``source``, the dotted field and the value.
    """
    reader = _Reader(source, Path(base_dir) if base_dir is not None else None)
    if not isinstance(data, Mapping):
        raise ConfigError(source, "", data, "the configuration must be a table")
    sections: dict[str, dict[str, Any]] = {}
    for name, raw in data.items():
        if name not in _SECTIONS:
            raise reader.fail(
                str(name), raw, f"unknown section (expected one of: {', '.join(_SECTIONS)})"
            )
        sections[name] = reader.section(name, raw)

    defaults = GridloopConfig()
    api = sections.get("api", {})
    if "url" in api:
        _check_url(reader, api["url"])
    if "api_key" in api and (problem := api_key_problem(api["api_key"])) is not None:
        raise reader.fail("api.api_key", _NotShown(), problem)
    disp = sections.get("dispatch", {})
    if "url" in disp and (problem := dispatch_url_problem(disp["url"])) is not None:
        raise reader.fail("dispatch.url", disp["url"], problem)
    if "api_key" in disp and (problem := api_key_problem(disp["api_key"])) is not None:
        raise reader.fail("dispatch.api_key", _NotShown(), problem)
    fr = dict(sections.get("frequency_response", {}))
    curve = _droop_curve(reader, fr)
    ps = _peak_shaving(reader, sections.get("peak_shaving", {}))
    auto = {k.removeprefix(_AUTO_PREFIX): ps.pop(k) for k in list(ps)
            if k.startswith(_AUTO_PREFIX)}
    auto_cfg = dataclasses.replace(defaults.auto_limit, **auto)
    ps_cfg = dataclasses.replace(defaults.peak_shaving, **ps)
    fr_cfg = dataclasses.replace(defaults.frequency_response, **fr, curve=curve)
    if ps_cfg.enabled and fr_cfg.enabled and ps_cfg.priority == fr_cfg.priority:
        raise reader.fail(
            "peak_shaving.priority",
            ps_cfg.priority,
            f"must differ from frequency_response.priority = {fr_cfg.priority}",
        )
    return GridloopConfig(
        api=ApiConfig(**api),
        control=ControlConfig(**sections.get("control", {})),
        peak_shaving=ps_cfg,
        auto_limit=auto_cfg,
        frequency_response=fr_cfg,
        reactive_power=_reactive_power(reader, sections.get("reactive_power", {})),
        billing=BillingConfig(**sections.get("billing", {})),
        simulator=SimulatorConfig(**sections.get("simulator", {})),
        schedule=ScheduleConfig(**sections.get("schedule", {})),
        run=RunConfig(**sections.get("run", {})),
        dispatch=DispatchConfig(**sections.get("dispatch", {})),
        source=source,
    )


def load_config(path: str | os.PathLike[str] | None) -> GridloopConfig:
    """Load and validate a gridloop TOML config file; None gives the defaults.

    Relative paths inside the file are resolved against the file's directory.

    Args:
        path: The TOML file, or None.

    Returns:
        The validated configuration.

    Raises:
        ConfigError: unreadable file, bad TOML, unknown key, wrong type, NaN,
            out-of-range value; ``str()`` is one line naming file, field and value.
    """
    if path is None:
        return GridloopConfig()
    source = os.fspath(path)
    return config_from_dict(read_toml(path, "config"), source, Path(source).resolve().parent)


def read_toml(path: str | os.PathLike[str], what: str) -> dict[str, Any]:
    """Parse a TOML file of gridloop's (the config, a schedule).

    Args:
        path: The file.
        what: What it is, for the error (``"config"``, ``"schedule"``).

    Returns:
        The parsed tables.

    Raises:
        ConfigError: unreadable file or bad TOML, one line naming the file.
    """
    source = os.fspath(path)
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, "", None, f"invalid TOML: {exc}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(source, "", None, f"cannot read the {what} file: {reason}") from exc
