"""Worked examples and properties of the power manager's merge rule (actors.power_manager)."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.power_manager import MergeResult, Wish, merge

KW = 1_000.0


def test_docstring_example_fr_first_ps_gets_the_rest() -> None:
    # Fleet [−300, +200] kW. FR (prio 20) exactly −250 kW; PS (prio 10) −80 in [−80, +40].
    # FR: clip(−250, −300, 200) = −250; room for PS = [−300+250, 200+250] = [−50, 450].
    # PS: clip(−80, −50, 450) = −50. Target −300 kW.
    fr = Wish("fr", 20, -250 * KW, -250 * KW, -250 * KW)
    ps = Wish("ps", 10, -80 * KW, -80 * KW, 40 * KW)
    result = merge([ps, fr], -300 * KW, 200 * KW)
    assert result.granted == {"fr": -250 * KW, "ps": -50 * KW}
    assert result.target_w == -300 * KW
    assert result.rejected == {}
    assert result.shortfall_w(ps) == 30 * KW
    assert result.shortfall_w(fr) == 0.0


def test_opposite_wishes_net_out_and_higher_is_untouched() -> None:
    # Fleet [−350, +350]. FR discharges 100 (exact). PS wants to recharge +50 in [−200, +60].
    # FR −100; room [−250, 450]; PS +50 fits → target −50: PS's charge nets against FR.
    fr = Wish("fr", 20, -100 * KW, -100 * KW, -100 * KW)
    ps = Wish("ps", 10, 50 * KW, -200 * KW, 60 * KW)
    result = merge([fr, ps], -350 * KW, 350 * KW)
    assert result.granted == {"fr": -100 * KW, "ps": 50 * KW}
    assert result.target_w == -50 * KW


def test_lower_priority_cannot_take_back_room() -> None:
    # Fleet [−350, +350]. FR charges +300 (over-frequency). PS wants +100 recharge.
    # FR +300; room [−650, +50]; PS clip(100, −650, 50) = +50 → target +350 = fleet max.
    fr = Wish("fr", 20, 300 * KW, 300 * KW, 300 * KW)
    ps = Wish("ps", 10, 100 * KW, 0.0, 100 * KW)
    result = merge([fr, ps], -350 * KW, 350 * KW)
    assert result.granted == {"fr": 300 * KW, "ps": 50 * KW}
    assert result.target_w == 350 * KW


def test_high_priority_beyond_fleet_gets_the_nearest_edge() -> None:
    # FR needs exactly −400 but the fleet can only discharge 350: granted −350.
    # Nothing is left for PS's discharge: room [0, 700] → PS clip(−20, 0, 700) = 0.
    fr = Wish("fr", 20, -400 * KW, -400 * KW, -400 * KW)
    ps = Wish("ps", 10, -20 * KW, -20 * KW, 0.0)
    result = merge([fr, ps], -350 * KW, 350 * KW)
    assert result.granted == {"fr": -350 * KW, "ps": 0.0}
    assert result.target_w == -350 * KW


def test_preferred_outside_own_bounds_is_clipped_to_them_first() -> None:
    # Preferred 80 but upper bound 30 → 30; fleet room [−100, 100] → 30.
    w = Wish("a", 1, 80 * KW, -10 * KW, 30 * KW)
    result = merge([w], -100 * KW, 100 * KW)
    assert result.granted == {"a": 30 * KW}


def test_own_bounds_disjoint_from_room_gives_room_edge_nearest_own_bounds() -> None:
    # Fleet [−100, 100]; "a" (prio 5) takes 90 → room for "b" = [−190, 10].
    # "b" needs at least +20 (bounds [20, 40], prefers 30) → clip(30, 20, 40) = 30 → clip to 10.
    a = Wish("a", 5, 90 * KW, 90 * KW, 90 * KW)
    b = Wish("b", 1, 30 * KW, 20 * KW, 40 * KW)
    result = merge([a, b], -100 * KW, 100 * KW)
    assert result.granted == {"a": 90 * KW, "b": 10 * KW}
    assert result.target_w == 100 * KW


def test_ties_are_broken_by_source_name_not_input_order() -> None:
    # Same priority; fleet [0, 100]. "alpha" is served first: 70; "beta" gets the rest: 30.
    alpha = Wish("alpha", 7, 70 * KW, 0.0, 100 * KW)
    beta = Wish("beta", 7, 70 * KW, 0.0, 100 * KW)
    for order in ([alpha, beta], [beta, alpha]):
        result = merge(order, 0.0, 100 * KW)
        assert result.granted == {"alpha": 70 * KW, "beta": 30 * KW}


@pytest.mark.parametrize(
    ("wish", "reason_part"),
    [
        (Wish("bad", 9, math.nan, 0.0, 1.0), "preferred_w = nan"),
        (Wish("bad", 9, 0.0, -math.inf, 1.0), "lower_w = -inf"),
        (Wish("bad", 9, 0.0, 0.0, math.inf), "upper_w = inf"),
        (Wish("bad", 9, 0.0, 5.0, 1.0), "lower_w = 5.0 > upper_w = 1.0"),
    ],
)
def test_invalid_wish_is_ignored_and_reported(wish: Wish, reason_part: str) -> None:
    good = Wish("good", 1, -10 * KW, -10 * KW, 0.0)
    result = merge([wish, good], -50 * KW, 50 * KW)
    assert reason_part in result.rejected["bad"]
    assert result.granted == {"good": -10 * KW}  # the bad one takes no room
    assert result.target_w == -10 * KW
    assert math.isnan(result.shortfall_w(wish))


def test_duplicate_source_first_counts_second_reported_by_index() -> None:
    first = Wish("ps", 10, 5 * KW, 0.0, 10 * KW)
    second = Wish("ps", 30, -5 * KW, -10 * KW, 0.0)
    result = merge([first, second], -50 * KW, 50 * KW)
    assert result.granted == {"ps": 5 * KW}
    assert list(result.rejected) == ["ps[1]"]


def test_no_wishes_gives_zero() -> None:
    assert merge([], -10.0, 10.0) == MergeResult(target_w=0.0)


@pytest.mark.parametrize(
    ("lower", "upper", "message"),
    [
        (math.nan, 1.0, "fleet bounds [nan, 1.0] W are not finite"),
        (-1.0, math.inf, "fleet bounds [-1.0, inf] W are not finite"),
        (5.0, 1.0, "fleet_lower_w = 5.0 > fleet_upper_w = 1.0"),
    ],
)
def test_unusable_fleet_bounds_give_zero_and_say_why(
    lower: float, upper: float, message: str
) -> None:
    # Nothing is known about the fleet: only 0 W is safe (the API always allows 0 W).
    w = Wish("a", 1, -10 * KW, -20 * KW, 0.0)
    result = merge([w], lower, upper)
    assert result.target_w == 0.0
    assert result.granted == {"a": 0.0}
    assert result.fleet_error is not None
    assert message in result.fleet_error
    assert merge([w], -50 * KW, 50 * KW).fleet_error is None


# ----------------------------------------------------------------------------- properties

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@st.composite
def wishes(draw: st.DrawFn) -> list[Wish]:
    n = draw(st.integers(0, 5))
    out = []
    for i in range(n):
        a, b = sorted((draw(finite), draw(finite)))
        out.append(Wish(f"s{i}", draw(st.integers(0, 3)), draw(finite), a, b))
    return out


def _reference(ws: list[Wish], lo: float, hi: float) -> dict[str, float]:
    """Independent restatement: each grant is the point of [lo − taken, hi − taken]
    nearest to the wish's own-bounds-clipped preference."""
    taken = 0.0
    grants = {}
    for w in sorted(ws, key=lambda w: (-w.priority, w.source)):
        want = min(max(w.preferred_w, w.lower_w), w.upper_w)
        g = min(max(want, lo - taken), hi - taken)
        grants[w.source] = g
        taken += g
    return grants


@settings(max_examples=300, deadline=None)
@given(ws=wishes(), lo=st.floats(-1e6, 0.0), hi=st.floats(0.0, 1e6))
def test_properties(ws: list[Wish], lo: float, hi: float) -> None:
    result = merge(ws, lo, hi)
    # The target is the sum of the grants and lies within the fleet bounds.
    assert lo - 1e-6 <= result.target_w <= hi + 1e-6
    assert math.isclose(result.target_w, sum(result.granted.values()), abs_tol=1e-3)
    assert result.granted == pytest.approx(_reference(ws, lo, hi), abs=1e-6)
    # Running partial sums (by priority) stay within the fleet bounds too.
    order = sorted(ws, key=lambda w: (-w.priority, w.source))
    partial = list(itertools.accumulate(result.granted[w.source] for w in order))
    assert all(lo - 1e-6 <= p <= hi + 1e-6 for p in partial)
    # The result does not depend on the input order.
    assert merge(list(reversed(ws)), lo, hi) == result
    # When a wish's own bounds overlap what is left, it is served within its bounds.
    taken = 0.0
    for w in order:
        g = result.granted[w.source]
        if max(w.lower_w, lo - taken) <= min(w.upper_w, hi - taken):
            assert w.lower_w - 1e-6 <= g <= w.upper_w + 1e-6
        taken += g
