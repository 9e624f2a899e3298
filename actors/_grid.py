"""`GridFormula`: how the power through the grid connection point is measured.

The grid power is what flows through the grid connection point, which is the sum
over every branch leaving it. A meter at the head of a branch measures that
branch. A branch without a meter is measured by its head component's own
telemetry: an inverter's AC power, a battery's DC power, an EV charger's or a
CHP's AC power. When no grid connection point is listed, the graph's roots
(components without a predecessor) are the branches. A branch whose head
reports no power (a breaker, a transformer, an unknown category) makes the grid
power unmeasurable, and so does a site with no branch at all.

The grid frequency is the same everywhere on the site. It comes from the first
term, meters first and then inverters, that reports a valid frequency.

Signs follow the API: + = flowing away from the grid (importing).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from frequenz.api.common.v1alpha8.microgrid.electrical_components import (
    electrical_components_pb2 as ec_pb2,
)

_C = ec_pb2

#: Categories whose own telemetry reports the power flowing into them.
POWER_CATEGORIES: frozenset[int] = frozenset(
    {
        _C.ELECTRICAL_COMPONENT_CATEGORY_METER,
        _C.ELECTRICAL_COMPONENT_CATEGORY_INVERTER,
        _C.ELECTRICAL_COMPONENT_CATEGORY_BATTERY,
        _C.ELECTRICAL_COMPONENT_CATEGORY_EV_CHARGER,
        _C.ELECTRICAL_COMPONENT_CATEGORY_CHP,
    }
)
#: Categories whose telemetry carries the AC frequency, in order of preference.
_FREQUENCY_CATEGORIES: tuple[int, ...] = (
    _C.ELECTRICAL_COMPONENT_CATEGORY_METER,
    _C.ELECTRICAL_COMPONENT_CATEGORY_INVERTER,
)


def category_label(category: int) -> str:
    """A short lower-case name of a component category, for log lines ("meter", "EV charger").

    Args:
        category: An `ElectricalComponentCategory` value.

    Returns:
        The label.
    """
    try:
        name = _C.ElectricalComponentCategory.Name(category)  # type: ignore[arg-type]
    except ValueError:
        return f"category {category}"
    label = name.removeprefix("ELECTRICAL_COMPONENT_CATEGORY_").lower().replace("_", " ")
    return {"ev charger": "EV charger", "chp": "CHP", "plc": "PLC"}.get(label, label)


@dataclass(frozen=True)
class GridFormula:
    """Grid power = sum of `power_ids`' power, if `unmeasured` is empty."""

    power_ids: tuple[int, ...]
    """The components whose power adds up to the grid power (branch heads with telemetry)."""
    frequency_ids: tuple[int, ...]
    """The terms that may report the grid frequency, in order of preference."""
    unmeasured: tuple[int, ...]
    """Branch heads that report no power: while any exist, the grid power is unknown."""
    labels: Mapping[int, str]
    """A label per term and unmeasured head, e.g. ``"meter 2"``."""

    @property
    def measurable(self) -> bool:
        """Whether the grid power can be computed from telemetry."""
        return bool(self.power_ids) and not self.unmeasured

    @property
    def problem(self) -> str | None:
        """Why the grid power cannot be measured (None when it can)."""
        if self.unmeasured:
            heads = ", ".join(self.labels[c] for c in self.unmeasured)
            return f"no power telemetry from {heads} on the grid connection point"
        if not self.power_ids:
            return "no component is connected to the grid connection point"
        return None

    def describe(self) -> str:
        """The formula in one line, e.g. ``grid = meter 2 + meter 3; frequency from meter 2``."""
        terms = [self.labels[c] for c in self.power_ids]
        terms += [f"{self.labels[c]} (no power telemetry)" for c in self.unmeasured]
        text = "grid = " + (" + ".join(terms) if terms else "nothing")
        freq = ", ".join(self.labels[c] for c in self.frequency_ids) or "nothing"
        return f"{text}; frequency from {freq}"

    @classmethod
    def build(
        cls,
        categories: Mapping[int, int],
        successors: Mapping[int, Sequence[int]],
        predecessors: Mapping[int, Sequence[int]],
    ) -> GridFormula:
        """The formula of a component graph.

        Args:
            categories: Category by component id (every component).
            successors: Successor ids by component id (away from the grid).
            predecessors: Predecessor ids by component id.

        Returns:
            The formula (check `measurable`).
        """
        gcp = _C.ELECTRICAL_COMPONENT_CATEGORY_GRID_CONNECTION_POINT
        grid_ids = sorted(c for c, cat in categories.items() if cat == gcp)
        if grid_ids:
            heads = sorted({s for g in grid_ids for s in successors[g]} - set(grid_ids))
        else:
            heads = sorted(c for c in categories if not predecessors[c])
        power = tuple(c for c in heads if categories[c] in POWER_CATEGORIES)
        unmeasured = tuple(c for c in heads if categories[c] not in POWER_CATEGORIES)
        frequency = tuple(
            c for cat in _FREQUENCY_CATEGORIES for c in power if categories[c] == cat
        )
        labels = {c: f"{category_label(categories[c])} {c}" for c in heads}
        return cls(power, frequency, unmeasured, labels)
