"""`BoundsAugmentations`: the clients' bounds on inverter active power, by token.

A client adds bounds for a token with a lifetime; an inverter's effective bounds
are its own intersected with every augmentation in force. This keeps them, drops
lapsed ones and keeps per inverter row the hull of their intersection
(`lower_w` / `upper_w`, always including 0 W) for the vectorised physics step.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ._intervals import Interval, intersect_intervals, merge_intervals

__all__ = ["BoundsAugmentations"]


@dataclass
class _Augmentation:
    intervals: list[Interval]
    expiry_s: float


class BoundsAugmentations:
    """Bounds augmentations of the inverters of one site."""

    def __init__(self, inverter_rows: dict[int, int]) -> None:
        """Keep augmentations of the inverters in ``inverter_rows`` (id -> row)."""
        self._rows = inverter_rows
        self._by_id: dict[int, dict[str, _Augmentation]] = {}
        n = len(inverter_rows)
        self.lower_w = np.full(n, -np.inf)
        """Per inverter row, the lower end of the intersection's hull (<= 0 W)."""
        self.upper_w = np.full(n, np.inf)
        """Per inverter row, the upper end of the intersection's hull (>= 0 W)."""
        self.next_expiry_s = np.inf
        """When the next augmentation lapses (simulated s; inf = none)."""

    def add(
        self,
        component_id: int,
        token: str,
        intervals: list[Interval],
        expiry_s: float,
        now_s: float,
    ) -> None:
        """Add (or replace, for the same token) an augmentation lapsing at ``expiry_s``."""
        self._by_id.setdefault(component_id, {})[token] = _Augmentation(
            merge_intervals(intervals), expiry_s
        )
        self.refresh(now_s)

    def clear(self, component_id: int, token: str, now_s: float) -> None:
        """Remove an augmentation by token (no-op if there is none)."""
        if self._by_id.get(component_id, {}).pop(token, None) is not None:
            self.refresh(now_s)

    def tokens(self, component_id: int, now_s: float) -> frozenset[str]:
        """Tokens of the augmentations of a component that have not lapsed at ``now_s``."""
        return frozenset(
            tok for tok, a in self._by_id.get(component_id, {}).items() if a.expiry_s > now_s
        )

    def intervals_of(self, component_id: int) -> Iterator[list[Interval]]:
        """The intervals of every augmentation of a component."""
        for aug in self._by_id.get(component_id, {}).values():
            yield aug.intervals

    def refresh(self, now_s: float) -> None:
        """Drop the augmentations lapsed at ``now_s``; recompute the hulls and next expiry."""
        self.lower_w.fill(-np.inf)
        self.upper_w.fill(np.inf)
        nxt = np.inf
        for cid in list(self._by_id):
            augs = self._by_id[cid]
            for tok in [t for t, a in augs.items() if a.expiry_s <= now_s]:
                del augs[tok]
            if not augs:
                del self._by_id[cid]
                continue
            merged: list[Interval] = [(-np.inf, np.inf)]
            for a in augs.values():
                merged = intersect_intervals(merged, a.intervals)
                nxt = min(nxt, a.expiry_s)
            row = self._rows[cid]
            if merged:
                self.lower_w[row] = min(0.0, merged[0][0])
                self.upper_w[row] = max(0.0, merged[-1][1])
            else:
                self.lower_w[row] = self.upper_w[row] = 0.0
        self.next_expiry_s = nxt
