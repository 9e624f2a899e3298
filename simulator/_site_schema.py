"""Components and connections of a site: their dataclasses, reading and topology checks.

Offers the frozen component dataclasses (`GridConfig`, `MeterConfig`,
`InverterConfig`, `BatteryConfig`, `EvChargerConfig`, `SensorConfig`, the union
`ComponentConfig`),
`read_component` (one ``[[component]]`` table) and `validate_topology` (the
component graph a site may have: one grid connection point, batteries directly
behind inverters, every component reachable from the grid, no cycles).
"""

from __future__ import annotations

from dataclasses import dataclass

from ._toml_kit import INT64_MAX, SiteConfigError, Table

__all__ = [
    "BatteryConfig",
    "ComponentConfig",
    "EvChargerConfig",
    "GridConfig",
    "InverterConfig",
    "MeterConfig",
    "SensorConfig",
    "read_component",
    "validate_topology",
]


@dataclass(frozen=True)
class GridConfig:
    """The grid connection point (root of the component graph)."""

    id: int
    name: str
    rated_fuse_current_a: int = 0


@dataclass(frozen=True)
class MeterConfig:
    """A meter. It measures everything connected below it.

    ``load_share`` is the fraction (0..1) of the site's load profile that is
    attached directly below this meter (the load meter has 1.0). The rest of the
    load hangs below the first meter (lowest id) on the grid connection point.
    """

    id: int
    name: str
    load_share: float = 0.0


@dataclass(frozen=True)
class InverterConfig:
    """A battery or PV inverter.

    Active power bounds ``[rated_lower_w, rated_upper_w]`` (passive sign:
    lower < 0 = max discharge/production, upper > 0 = max charge) with an
    optional exclusion band ``(-exclusion_w, +exclusion_w)`` around zero
    (0 W itself is always allowed). The actual AC power follows an accepted
    setpoint after ``response_delay_s`` at ``ramp_w_per_s``.

    Reactive power (VAr, passive sign: + = absorbing, inductive) is limited to
    ``rated_reactive_var`` and, with an apparent-power rating
    ``rated_apparent_va`` (VA; None = no such limit), to the circle
    ``P^2 + Q^2 <= S^2`` left by the active power (P has priority). It follows
    a reactive setpoint after ``response_delay_s`` at ``ramp_var_per_s``.
    """

    id: int
    name: str
    inverter_type: str  # "battery" | "pv"
    rated_lower_w: float
    rated_upper_w: float
    exclusion_w: float = 0.0
    rated_reactive_var: float = 0.0
    ramp_w_per_s: float = 0.0  # 0 = derived: full rated span in 0.2 s
    response_delay_s: float = 0.1
    rated_apparent_va: float | None = None
    ramp_var_per_s: float = 0.0  # 0 = the active ramp (VAr/s = W/s)


@dataclass(frozen=True)
class BatteryConfig:
    """A battery (DC side).

    ``max_charge_w`` (> 0) and ``max_discharge_w`` (> 0, a magnitude) are the
    battery's own DC power limits; charging stops at ``soc_max_pct`` and
    discharging at ``soc_min_pct``. Stored energy changes by
    ``P * charge_efficiency`` when charging and ``P / discharge_efficiency``
    when discharging.
    """

    id: int
    name: str
    capacity_wh: float
    soc_pct: float
    soc_min_pct: float = 10.0
    soc_max_pct: float = 90.0
    max_charge_w: float = 0.0
    max_discharge_w: float = 0.0
    charge_efficiency: float = 0.95
    discharge_efficiency: float = 0.95
    nominal_voltage_v: float = 800.0
    temperature_c: float = 25.0


@dataclass(frozen=True)
class EvChargerConfig:
    """An AC EV charger (one charging point).

    Rated power = ``phases * voltage_v * rated_current_a`` (e.g. 3 x 230 V x 16 A
    = 11.04 kW, x 32 A = 22.08 kW); the lowest current a car can be charged with
    is ``min_current_a`` (IEC 61851: 6 A), so while a car is connected the
    allowed active power is 0 W or ``[min_power_w, rated_power_w]`` (consumed,
    positive). An active-power setpoint is a charge *limit*; without one (or
    when it lapses) the charger lets the car draw its full power. The power
    follows a limit after ``response_delay_s`` at ``ramp_w_per_s``, as an
    inverter's does.
    """

    id: int
    name: str
    rated_current_a: float = 32.0
    min_current_a: float = 6.0
    phases: int = 3
    voltage_v: float = 230.0
    ramp_w_per_s: float = 0.0  # 0 = derived: full rated power in 1 s
    response_delay_s: float = 0.5

    @property
    def rated_power_w(self) -> float:
        """Most power the charger delivers (W)."""
        return self.phases * self.voltage_v * self.rated_current_a

    @property
    def min_power_w(self) -> float:
        """Least non-zero power the charger delivers (W): the minimum current on every phase."""
        return self.phases * self.voltage_v * self.min_current_a


@dataclass(frozen=True)
class SensorConfig:
    """A weather sensor reporting irradiance (W/m²) and ambient temperature (°C)."""

    id: int
    name: str


ComponentConfig = GridConfig | MeterConfig | InverterConfig | BatteryConfig | EvChargerConfig

_CATEGORIES = ("grid", "meter", "inverter", "battery", "ev_charger")


def read_component(t: Table) -> ComponentConfig:
    """One ``[[component]]`` table, validated field by field (not yet its connections)."""
    cid = t.int_("id", minimum=1, maximum=INT64_MAX)
    category = t.str_("category", choices=_CATEGORIES)
    name = t.str_("name", f"{category}-{cid}")
    comp: ComponentConfig
    if category == "grid":
        comp = GridConfig(cid, name, t.int_("rated_fuse_current_a", 0, minimum=0))
    elif category == "meter":
        comp = MeterConfig(cid, name, t.float_("load_share", 0.0, minimum=0.0, maximum=1.0))
    elif category == "inverter":
        comp = _read_inverter(t, cid, name)
    elif category == "ev_charger":
        comp = _read_ev_charger(t, cid, name)
    else:
        comp = _read_battery(t, cid, name)
    t.check_unknown()
    return comp


def _read_inverter(t: Table, cid: int, name: str) -> InverterConfig:
    inv_type = t.str_("type", choices=("battery", "pv"))
    lower = t.float_("rated_lower_w", maximum=0.0)
    upper = t.float_("rated_upper_w", 0.0 if inv_type == "pv" else None, minimum=0.0)
    if inv_type == "pv" and upper != 0.0:
        raise t.error("rated_upper_w", upper, "a PV inverter cannot consume power")
    excl = t.float_("exclusion_w", 0.0, minimum=0.0)
    if excl > 0 and ((excl >= upper and upper > 0) or excl >= -lower):
        raise t.error("exclusion_w", excl, "the exclusion band covers the rated range")
    ramp = t.float_("ramp_w_per_s", 0.0, minimum=0.0)
    if ramp == 0.0:
        ramp = max(upper - lower, 1.0) / 0.2
    apparent = None
    if t.has("rated_apparent_va"):
        apparent = t.float_("rated_apparent_va", positive=True)
        if apparent < max(upper, -lower):
            raise t.error(
                "rated_apparent_va",
                apparent,
                f"must be >= the active power rating ({max(upper, -lower):g} W)",
            )
    return InverterConfig(
        id=cid,
        name=name,
        inverter_type=inv_type,
        rated_lower_w=lower,
        rated_upper_w=upper,
        exclusion_w=excl,
        rated_reactive_var=t.float_("rated_reactive_var", 0.0, minimum=0.0),
        ramp_w_per_s=ramp,
        response_delay_s=t.float_("response_delay_s", 0.1, minimum=0.0),
        rated_apparent_va=apparent,
        ramp_var_per_s=t.float_("ramp_var_per_s", 0.0, minimum=0.0) or ramp,
    )


def _read_ev_charger(t: Table, cid: int, name: str) -> EvChargerConfig:
    rated = t.float_("rated_current_a", 32.0, positive=True)
    min_a = t.float_("min_current_a", 6.0, positive=True)
    if min_a > rated:
        raise t.error("min_current_a", min_a, f"must be <= rated_current_a ({rated:g})")
    phases = t.int_("phases", 3, minimum=1)
    if phases > 3:
        raise t.error("phases", phases, "must be 1, 2 or 3")
    volt = t.float_("voltage_v", 230.0, positive=True)
    ramp = t.float_("ramp_w_per_s", 0.0, minimum=0.0)
    if ramp == 0.0:
        ramp = phases * volt * rated
    return EvChargerConfig(
        id=cid,
        name=name,
        rated_current_a=rated,
        min_current_a=min_a,
        phases=phases,
        voltage_v=volt,
        ramp_w_per_s=ramp,
        response_delay_s=t.float_("response_delay_s", 0.5, minimum=0.0),
    )


def _read_battery(t: Table, cid: int, name: str) -> BatteryConfig:
    soc_min = t.float_("soc_min_pct", 10.0, minimum=0.0, maximum=100.0)
    soc_max = t.float_("soc_max_pct", 90.0, minimum=0.0, maximum=100.0)
    if soc_min >= soc_max:
        raise t.error("soc_max_pct", soc_max, f"must be > soc_min_pct ({soc_min:g})")
    return BatteryConfig(
        id=cid,
        name=name,
        capacity_wh=t.float_("capacity_wh", positive=True),
        soc_pct=t.float_("soc_pct", minimum=0.0, maximum=100.0),
        soc_min_pct=soc_min,
        soc_max_pct=soc_max,
        max_charge_w=t.float_("max_charge_w", positive=True),
        max_discharge_w=t.float_("max_discharge_w", positive=True),
        charge_efficiency=t.float_("charge_efficiency", 0.95, positive=True, maximum=1.0),
        discharge_efficiency=t.float_("discharge_efficiency", 0.95, positive=True, maximum=1.0),
        nominal_voltage_v=t.float_("nominal_voltage_v", 800.0, positive=True),
        temperature_c=t.float_("temperature_c", 25.0),
    )


@dataclass
class _Graph:
    """The connections read so far: by endpoint, with the table each came from."""

    by_id: dict[int, ComponentConfig]
    tables: dict[tuple[int, int], Table]
    parents: dict[int, list[int]]
    children: dict[int, list[int]]


def validate_topology(
    source: str,
    comps: list[tuple[Table, ComponentConfig]],
    conns: list[tuple[Table, int, int]],
) -> None:
    """Check the component graph; the first problem raises `SiteConfigError` naming the
    component or connection table, the field and its value."""
    by_id: dict[int, ComponentConfig] = {}
    for t, comp in comps:
        if comp.id in by_id:
            raise t.error("id", comp.id, "duplicate component id")
        by_id[comp.id] = comp
    grids = [c for _, c in comps if isinstance(c, GridConfig)]
    if len(grids) != 1:
        categories = sorted({type(c).__name__.removesuffix("Config").lower() for _, c in comps})
        raise SiteConfigError(
            source,
            "component",
            categories,
            f"need exactly one component with category 'grid', got {len(grids)}",
        )
    graph = _connect(by_id, conns)
    # batteries first, so "battery with no inverter" is reported as such
    for t, comp in sorted(comps, key=lambda tc: not isinstance(tc[1], BatteryConfig)):
        _check_place(t, comp, graph)
    # Every component must be reachable from the grid (no cycles / islands).
    root = grids[0].id
    reach = {root}
    stack = [root]
    while stack:
        for k in graph.children.get(stack.pop(), []):
            if k not in reach:
                reach.add(k)
                stack.append(k)
    for t, comp in comps:
        if comp.id not in reach:
            raise t.error("id", comp.id, f"component {comp.id} is not reachable from the grid")


def _connect(by_id: dict[int, ComponentConfig], conns: list[tuple[Table, int, int]]) -> _Graph:
    """Index the connections, refusing dangling, self, duplicate and into-the-grid ones."""
    graph = _Graph(by_id, {}, {}, {})
    for t, src, dst in conns:
        for key, cid in (("source", src), ("destination", dst)):
            if cid not in by_id:
                raise t.error(key, cid, "dangling connection: no component with this id")
        if src == dst:
            raise t.error("destination", dst, f"connection from component {src} to itself")
        if (src, dst) in graph.tables:
            raise t.error("destination", dst, f"duplicate connection {src} -> {dst}")
        if isinstance(by_id[dst], GridConfig):
            raise t.error("destination", dst, "the grid connection point cannot have a parent")
        graph.tables[(src, dst)] = t
        graph.parents.setdefault(dst, []).append(src)
        graph.children.setdefault(src, []).append(dst)
    return graph


def _check_place(t: Table, comp: ComponentConfig, graph: _Graph) -> None:
    """Check what ``comp`` sits behind and what hangs below it."""
    kids = [graph.by_id[k] for k in graph.children.get(comp.id, [])]
    ups = [graph.by_id[p] for p in graph.parents.get(comp.id, [])]
    if isinstance(comp, BatteryConfig):
        if not any(isinstance(u, InverterConfig) for u in ups):
            raise t.error("id", comp.id, f"battery {comp.id} has no inverter connected to it")
        for up in ups:  # a battery sits directly behind inverters, and only behind them
            if not isinstance(up, InverterConfig):
                above = {GridConfig: "the grid connection point", MeterConfig: "meter"}
                raise graph.tables[(up.id, comp.id)].error(
                    "destination",
                    comp.id,
                    f"connection {up.id} -> {comp.id}: battery {comp.id} must sit directly"
                    f" behind an inverter, not behind {above.get(type(up), 'battery')} {up.id}",
                )
        if kids:
            raise t.error("id", comp.id, f"battery {comp.id} cannot have downstream components")
    elif isinstance(comp, InverterConfig):
        bats = [k for k in kids if isinstance(k, BatteryConfig)]
        if comp.inverter_type == "battery" and not bats:
            raise t.error("id", comp.id, f"battery inverter {comp.id} has no battery connected")
        if len(kids) != len(bats):
            raise t.error("id", comp.id, f"inverter {comp.id} may only have batteries downstream")
        if comp.inverter_type == "pv" and bats:
            raise t.error("type", "pv", f"PV inverter {comp.id} cannot have batteries")
        if any(isinstance(u, InverterConfig | BatteryConfig) for u in ups):
            raise t.error("id", comp.id, f"inverter {comp.id} must sit below a meter or the grid")
    elif isinstance(comp, EvChargerConfig):
        if kids:
            raise t.error("id", comp.id, f"EV charger {comp.id} cannot have downstream components")
        if any(not isinstance(u, GridConfig | MeterConfig) for u in ups):
            raise t.error("id", comp.id, f"EV charger {comp.id} must sit below a meter or the grid")
    if not isinstance(comp, GridConfig) and not ups:
        raise t.error("id", comp.id, f"component {comp.id} is not connected to anything upstream")
    if not isinstance(comp, BatteryConfig | GridConfig) and len(ups) > 1:
        parent_ids = sorted(p.id for p in ups)
        raise t.error("id", comp.id, f"component {comp.id} has several parents {parent_ids}")
