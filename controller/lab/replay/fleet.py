"""A site's battery groups as LP models (:class:`~controller.runtime.planning.FleetModel`).

* :func:`fleet_models` — one model per battery group (connected inverters and batteries).
* :func:`aggregate_model` — the fleet as one battery, how SoC-balancing distribution
  makes it behave: the reference optimum of the peak-shaving replay.

Units: W, Wh; + = charging.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from controller.lab.replay.transport import site_graph
from controller.runtime.planning import FleetModel
from simulator.config import BatteryConfig, InverterConfig, SiteConfig

__all__ = ["aggregate_model", "fleet_models"]


def fleet_models(site: SiteConfig) -> list[FleetModel]:
    """One LP model per battery group (connected inverters + batteries) of the site.

    A group's charge (discharge) limit is the smaller of its inverters' summed
    rating and its batteries' summed DC limit; its energy window is the sum of
    ``capacity × soc_min/max``; its efficiencies are capacity-weighted means
    (exact when the group's batteries share them, as on the default site).

    Raises:
        ReplayError: the site has no battery behind an inverter.
    """
    graph = site_graph(site)
    by_id = {c.id: c for c in site.components}
    out: list[FleetModel] = []
    for group in graph.groups:
        gi_c = [cast(InverterConfig, by_id[i]) for i in group.inverter_ids]
        gb_c = [cast(BatteryConfig, by_id[b]) for b in group.battery_ids]
        cap = sum(b.capacity_wh for b in gb_c)
        out.append(FleetModel(
            charge_max_w=min(sum(c.rated_upper_w for c in gi_c),
                             sum(b.max_charge_w for b in gb_c)),
            discharge_max_w=min(sum(-c.rated_lower_w for c in gi_c),
                                sum(b.max_discharge_w for b in gb_c)),
            energy_min_wh=sum(b.capacity_wh * b.soc_min_pct / 100 for b in gb_c),
            energy_max_wh=sum(b.capacity_wh * b.soc_max_pct / 100 for b in gb_c),
            energy_init_wh=sum(b.capacity_wh * b.soc_pct / 100 for b in gb_c),
            charge_efficiency=sum(b.capacity_wh * b.charge_efficiency for b in gb_c) / cap,
            discharge_efficiency=sum(b.capacity_wh * b.discharge_efficiency for b in gb_c) / cap,
        ))
    return out


def aggregate_model(models: Sequence[FleetModel]) -> FleetModel:
    """The fleet as one battery: summed limits and energies, capacity-weighted efficiencies.

    This is how SoC-balancing distribution makes the fleet behave (every group
    moves toward the same relative SoC), so it is the reference optimum of
    :func:`~controller.lab.replay.peak.run_peak_shaving`; the energy window's width
    stands in for capacity when weighting the efficiencies.
    """
    width = [max(m.energy_max_wh - m.energy_min_wh, 1e-9) for m in models]
    total = sum(width)
    return FleetModel(
        charge_max_w=sum(m.charge_max_w for m in models),
        discharge_max_w=sum(m.discharge_max_w for m in models),
        energy_min_wh=sum(m.energy_min_wh for m in models),
        energy_max_wh=sum(m.energy_max_wh for m in models),
        energy_init_wh=sum(m.energy_init_wh for m in models),
        charge_efficiency=sum(w * m.charge_efficiency for w, m in zip(width, models, strict=True))
        / total,
        discharge_efficiency=sum(w * m.discharge_efficiency
                                 for w, m in zip(width, models, strict=True)) / total,
    )
