"""Groups: the connected components of the inverter–battery link graph.

`group_links` is the one grouping function of the project (the component
graph of `actors` and the allocator's `Fleet` both use it). `_topology` adds
what `Fleet` precomputes per group on top of it and caches the result by the
bytes of ``links``, so rebuilding a fleet each cycle with the same links
costs one dictionary lookup.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ._errors import DistributionError

__all__ = ["MAX_GROUP_INVERTERS", "group_links"]

_I = npt.NDArray[np.intp]
_B = npt.NDArray[np.bool_]

MAX_GROUP_INVERTERS = 12
"""Largest number of inverters in one group (the AC set is enumerated exactly)."""


def group_links(n_inverters: int, n_batteries: int, links: npt.ArrayLike) -> tuple[_I, _I, int]:
    """Group inverters and batteries into the connected components of their links.

    Inverter ``i`` and battery ``b`` are in one group if a chain of links
    joins them (a shared DC bus: 1:1, n:1, 1:n or mixed). A component that
    appears in no link is a group of its own. Groups are numbered in the
    order of their lowest member, inverters before batteries: group 0 holds
    inverter 0, and a group with an inverter comes before any group without
    one.

    Args:
        n_inverters: number of inverters (indices ``0 .. n_inverters - 1``).
        n_batteries: number of batteries (indices ``0 .. n_batteries - 1``).
        links: integer ``(k, 2)`` array of ``(inverter index, battery index)``.

    Returns:
        ``(inverter_group, battery_group, n_groups)``: the group of every
        inverter (``(n_inverters,)``) and every battery (``(n_batteries,)``),
        and the number of groups.

    Raises:
        DistributionError: ``links`` is not an integer ``(k, 2)`` array or
            names an index out of range (or a count is negative).
    """
    n_inv = _count("n_inverters", n_inverters)
    n_bat = _count("n_batteries", n_batteries)
    return _components(n_inv, n_bat, check_links(links, n_inv, n_bat))


def _count(name: str, value: Any) -> int:
    """``value`` as an integer ``>= 0``, or raise naming ``name``."""
    try:
        n = operator.index(value)
    except TypeError as exc:
        raise DistributionError(name, value, "must be an integer >= 0") from exc
    if n < 0:
        raise DistributionError(name, value, "must be an integer >= 0")
    return n


def check_links(links: Any, n_inv: int, n_bat: int) -> _I:
    """Return ``links`` as an ``(k, 2)`` index array, or raise naming the bad entry."""
    arr = np.asarray(links)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise DistributionError("links", f"shape {arr.shape}", "must have shape (k, 2)")
    if arr.dtype.kind not in "iu":
        raise DistributionError("links", f"dtype {arr.dtype}", "must be an integer array")
    if arr.shape[0]:
        col_inv = arr[:, 0]
        col_bat = arr[:, 1]
        if int(arr.min()) < 0 or int(col_inv.max()) >= n_inv or int(col_bat.max()) >= n_bat:
            bad_inv = np.flatnonzero((col_inv < 0) | (col_inv >= n_inv))
            if bad_inv.size:
                j, what, n = int(bad_inv[0]), "inverter", n_inv
            else:
                j = int(np.flatnonzero((col_bat < 0) | (col_bat >= n_bat))[0])
                what, n = "battery", n_bat
            raise DistributionError(
                "links",
                f"links[{j}] = ({arr[j, 0]}, {arr[j, 1]})",
                f"{what} index out of range [0, {n})",
            )
    out: _I = arr.astype(np.intp, copy=False)
    return out


def _components(n_inv: int, n_bat: int, links: _I) -> tuple[_I, _I, int]:
    """`group_links` on validated input."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = n_inv + n_bat
    graph = coo_matrix(
        (np.ones(links.shape[0]), (links[:, 0], n_inv + links[:, 1])), shape=(n, n)
    )
    n_groups, labels = connected_components(graph, directed=False)
    labels = labels.astype(np.intp)
    # Number the groups by their lowest node (scipy does so today; the
    # contract should not depend on it).
    first = np.unique(labels, return_index=True)[1]
    if (np.diff(first) < 0).any():
        rank = np.empty(n_groups, dtype=np.intp)
        rank[np.argsort(first, kind="stable")] = np.arange(n_groups)
        labels = rank[labels]
    return labels[:n_inv], labels[n_inv:], int(n_groups)


@dataclass(frozen=True, slots=True)
class _Topology:
    """Static structure derived from ``links`` (cached)."""

    n_groups: int
    inv_group: _I
    bat_group: _I
    inv_degree_zero: _B
    bat_degree_zero: _B
    single_inv_groups: _I  # groups with exactly one inverter
    single_inv_index: _I  # that inverter
    classes: tuple[tuple[_I, _I, _B], ...]  # (groups, inverter matrix (G_m, m), masks (m, S))
    has_battery: _B
    multi_battery: bool


_TOPOLOGY_CACHE: dict[tuple[int, int, bytes], _Topology] = {}
_TOPOLOGY_CACHE_SIZE = 8
_SUBSET_MASKS: dict[int, _B] = {}
_IDENTITY_LINKS: dict[int, _I] = {}


def _subset_masks(m: int) -> _B:
    """Return the ``(m, 2**m - 1)`` membership matrix of non-empty subsets."""
    masks = _SUBSET_MASKS.get(m)
    if masks is None:
        codes = np.arange(1, 2**m)
        masks = ((codes[None, :] >> np.arange(m)[:, None]) & 1).astype(bool)
        _SUBSET_MASKS[m] = masks
    return masks


def links_topology(links: Any, n_inv: int, n_bat: int) -> _Topology | None:
    """Validate ``links``; return its topology, or None for the identity 1:1 links."""
    if links is None:
        if n_inv != n_bat:
            raise DistributionError(
                "links",
                None,
                f"None (1:1) needs as many inverters ({n_inv}) as batteries ({n_bat})",
            )
        return None
    arr = np.asarray(links)
    if arr.ndim == 2 and arr.shape == (n_inv, 2) and n_inv == n_bat and arr.dtype.kind in "iu":
        ident = _IDENTITY_LINKS.get(n_inv)
        if ident is None:
            ident = np.repeat(np.arange(n_inv)[:, None], 2, axis=1)
            if len(_IDENTITY_LINKS) > 16:
                _IDENTITY_LINKS.clear()
            _IDENTITY_LINKS[n_inv] = ident
        if np.count_nonzero(arr == ident) == 2 * n_inv:  # exactly [(i, i)]: 1:1
            return None
    return _topology(n_inv, n_bat, check_links(arr, n_inv, n_bat))


def _topology(n_inv: int, n_bat: int, links: _I) -> _Topology:
    """Derive (or fetch from the cache) the groups of a validated link array."""
    key = (n_inv, n_bat, links.tobytes())
    topo = _TOPOLOGY_CACHE.get(key)
    if topo is not None:
        return topo
    inv_group, bat_group, n_groups = _components(n_inv, n_bat, links)
    n_in_group = np.bincount(inv_group, minlength=n_groups)
    n_bat_in_group = np.bincount(bat_group, minlength=n_groups)
    order = np.argsort(inv_group, kind="stable")
    starts = np.concatenate(([0], np.cumsum(n_in_group)[:-1]))
    single = np.flatnonzero(n_in_group == 1)
    classes: list[tuple[_I, _I, _B]] = []
    for m in np.unique(n_in_group[n_in_group >= 2]):
        m = int(m)
        if m > MAX_GROUP_INVERTERS:
            raise DistributionError(
                "links",
                f"a group with {m} inverters",
                f"at most {MAX_GROUP_INVERTERS} inverters per group are supported",
            )
        groups = np.flatnonzero(n_in_group == m)
        mat = order[starts[groups][:, None] + np.arange(m)[None, :]]
        classes.append((groups, mat, _subset_masks(m)))
    topo = _Topology(
        n_groups, inv_group, bat_group,
        np.bincount(links[:, 0], minlength=n_inv) == 0,
        np.bincount(links[:, 1], minlength=n_bat) == 0,
        single, order[starts[single]], tuple(classes),
        n_bat_in_group > 0, bool((n_bat_in_group > 1).any()),
    )
    if len(_TOPOLOGY_CACHE) >= _TOPOLOGY_CACHE_SIZE:
        _TOPOLOGY_CACHE.pop(next(iter(_TOPOLOGY_CACHE)))
    _TOPOLOGY_CACHE[key] = topo
    return topo
