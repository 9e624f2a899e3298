"""What a site's connection graph means for the physics: which inverters drive which
batteries (and with what share of their capability), what each meter measures."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from .config import SiteConfig

__all__ = ["edge_shares", "inverter_battery_edges", "meter_measure_matrix"]


def _descendants(children: dict[int, list[int]], cid: int) -> set[int]:
    """Every component below ``cid`` in the connection graph."""
    out: set[int] = set()
    stack = [cid]
    while stack:
        for k in children.get(stack.pop(), []):
            if k not in out:
                out.add(k)
                stack.append(k)
    return out


def meter_measure_matrix(
    site: SiteConfig, inverter_rows: dict[int, int], meter_rows: dict[int, int]
) -> npt.NDArray[np.float64]:
    """Per meter row: 1 for each inverter (column = its row) below the meter, and in
    the last column the share of the site load below it.

    The load no meter's ``load_share`` claims hangs below the first meter on the
    grid connection point (only one: feeders must add up to the grid power).
    """
    children: dict[int, list[int]] = {}
    for src, dst in site.connections:
        children.setdefault(src, []).append(dst)
    meters = site.meters
    n_inv = len(inverter_rows)
    load_share = {m.id: m.load_share for m in meters}
    unattributed = max(0.0, 1.0 - sum(load_share.values()))
    grid_id = site.grid.id
    top_meters = sorted(d for s, d in site.connections if s == grid_id and d in load_share)[:1]
    measure = np.zeros((len(meters), n_inv + 1))
    for m in meters:
        below = _descendants(children, m.id) | {m.id}
        for cid in below:
            if cid in inverter_rows:
                measure[meter_rows[m.id], inverter_rows[cid]] = 1.0
        share_below = sum(load_share.get(cid, 0.0) for cid in below)
        if m.id in top_meters:
            share_below += unattributed
        measure[meter_rows[m.id], n_inv] = share_below
    return measure


def inverter_battery_edges(
    site: SiteConfig, inverter_rows: dict[int, int], battery_rows: dict[int, int]
) -> list[tuple[int, int]]:
    """The inverter -> battery connections as sorted (battery row, inverter row) pairs."""
    return sorted(
        {
            (battery_rows[dst], inverter_rows[src])
            for src, dst in site.connections
            if src in inverter_rows and dst in battery_rows
        }
    )


def edge_shares(
    edge_bat: npt.NDArray[np.intp],
    edge_inv: npt.NDArray[np.intp],
    inverter_rating_w: npt.NDArray[np.float64],
    n_batteries: int,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Per edge (b, i): batteries of inverter i (>= 1, for the even split of a
    zero-capability side), and the fraction of battery b's capability available
    to inverter i (in proportion to the inverters' ratings)."""
    n_inv = len(inverter_rating_w)
    n_b = np.maximum(np.bincount(edge_inv, minlength=n_inv), 1)[edge_inv].astype(np.float64)
    share = inverter_rating_w[edge_inv]
    share_sum = np.bincount(edge_bat, share, minlength=n_batteries)[edge_bat]
    return n_b, share / np.where(share_sum > 0, share_sum, 1.0)
