"""`group_links`: the one grouping function, against an independent flood fill."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distribution import DistributionError, Fleet, group_links


def _reference(n_inv: int, n_bat: int, links: list[tuple[int, int]]) -> list[set[tuple[str, int]]]:
    """Groups as sets of ("i", index) / ("b", index), in order of their lowest member."""
    adj: dict[tuple[str, int], set[tuple[str, int]]] = {
        **{("i", i): set() for i in range(n_inv)},
        **{("b", b): set() for b in range(n_bat)},
    }
    for i, b in links:
        adj[("i", i)].add(("b", b))
        adj[("b", b)].add(("i", i))
    seen: set[tuple[str, int]] = set()
    groups = []
    for node in adj:  # inverters 0.., then batteries 0..: the documented order
        if node in seen:
            continue
        group, todo = set(), [node]
        while todo:
            x = todo.pop()
            if x not in group:
                group.add(x)
                todo.extend(adj[x] - group)
        seen |= group
        groups.append(group)
    return groups


@st.composite
def _graphs(draw: Any) -> tuple[int, int, list[tuple[int, int]]]:
    n_inv = draw(st.integers(0, 12))
    n_bat = draw(st.integers(0, 12))
    if not (n_inv and n_bat):
        return n_inv, n_bat, []
    pair = st.tuples(st.integers(0, n_inv - 1), st.integers(0, n_bat - 1))
    return n_inv, n_bat, draw(st.lists(pair, max_size=20))


@settings(max_examples=300, derandomize=True, deadline=None)
@given(_graphs())
def test_group_links_matches_a_flood_fill(graph: tuple[int, int, list[tuple[int, int]]]) -> None:
    n_inv, n_bat, links = graph
    inv_group, bat_group, n_groups = group_links(
        n_inv, n_bat, np.array(links, dtype=np.int64).reshape(-1, 2)
    )
    ref = _reference(n_inv, n_bat, links)
    assert n_groups == len(ref)
    got: list[set[tuple[str, int]]] = [set() for _ in range(n_groups)]
    for i, g in enumerate(inv_group.tolist()):
        got[g].add(("i", i))
    for b, g in enumerate(bat_group.tolist()):
        got[g].add(("b", b))
    assert got == ref  # same groups, same numbering
    assert inv_group.shape == (n_inv,)
    assert bat_group.shape == (n_bat,)


def test_group_links_is_the_grouping_of_fleet() -> None:
    links = np.array([[2, 0], [0, 1], [1, 1], [3, 2]])
    fleet = Fleet(
        inverter_lower_w=np.full(4, -1e3), inverter_upper_w=np.full(4, 1e3),
        battery_soc_pct=np.full(3, 50.0), battery_soc_lower_pct=np.full(3, 10.0),
        battery_soc_upper_pct=np.full(3, 90.0), battery_capacity_wh=np.full(3, 1e4),
        battery_lower_w=np.full(3, -1e3), battery_upper_w=np.full(3, 1e3), links=links,
    )
    inv_group, bat_group, n_groups = group_links(4, 3, links)
    assert (inv_group.tolist(), bat_group.tolist(), n_groups) == ([0, 0, 1, 2], [1, 0, 2], 3)
    assert fleet.inverter_group.tolist() == inv_group.tolist()
    assert fleet.battery_group.tolist() == bat_group.tolist()
    assert fleet.n_groups == n_groups


@pytest.mark.parametrize(
    ("args", "field", "text"),
    [
        ((2, 2, [[0, 2]]), "links", "links[0] = (0, 2)"),
        ((2, 2, [[0, 0], [-1, 1]]), "links", "inverter index out of range"),
        ((2, 2, [[0.0, 0.0]]), "links", "integer"),
        ((2, 2, [0, 0]), "links", "(k, 2)"),
        ((-1, 2, [[0, 0]]), "n_inverters", "-1"),
        ((2, 1.5, [[0, 0]]), "n_batteries", "1.5"),
    ],
)
def test_group_links_names_the_bad_argument(
    args: tuple[Any, Any, Any], field: str, text: str
) -> None:
    with pytest.raises(DistributionError) as info:
        group_links(*args)
    assert info.value.field == field
    assert text in str(info.value)
