"""The power manager's merge rule: stack the strategies' wishes by priority.

Pure module: no asyncio, no clock, no I/O. It lives in ``actors/`` because the
actor layer runs it, and actors must not import ``controller``.

Offers :class:`Wish`, :class:`MergeResult` and :func:`merge`. :func:`merge` never
raises: a control loop must degrade, not crash.

Units and signs: watts, passive sign convention (positive = the battery fleet
charging, negative = discharging).

The rule
--------
Every strategy sends a :class:`Wish`: the *contribution* it wants to add to the
battery fleet's power (``preferred_w``) and the range of contributions it can
live with (``lower_w`` ≤ contribution ≤ ``upper_w``). Contributions stack
additively; the fleet's target is their sum.

1. **Validation.** A wish with a NaN or infinite number, or with
   ``lower_w > upper_w``, is ignored and reported in
   :attr:`MergeResult.rejected` with the reason; so is a second wish from a
   source already seen (the first one, in input order, counts). Invalid fleet
   bounds (non-finite, or lower > upper) mean nothing is known about the fleet:
   they are replaced by ``[0, 0]`` (0 W is always allowed), so every wish is
   granted 0 W, and :attr:`MergeResult.fleet_error` says why. (A duplicate is reported under the key
   ``"source[i]"``, ``i`` its index in the input, so it never collides with
   the grant of the first wish.)
2. **Order.** Wishes are served by descending ``priority``. Ties are broken
   by ``source`` name (ascending), so the result never depends on the order
   the wishes arrived in.
3. **Room.** Before the first wish, the room is the fleet's bounds
   ``[fleet_lower_w, fleet_upper_w]``. After granting ``g`` to a wish, the room
   for the following ones shifts by ``g``: ``[room_lo − g, room_hi − g]``
   (the fleet bounds minus everything the higher priorities took).
4. **Grant.** Each wish gets its preferred power clipped to its own bounds,
   then clipped to the room::

       g = clip(clip(preferred_w, lower_w, upper_w), room_lo, room_hi)

   When the wish's own bounds overlap the room, ``g`` lies in both. When they
   do not (say frequency response needs exactly −120 kW and only −100 kW of
   discharge is left), ``g`` is the edge of the room nearest to what the wish
   asked for: the fleet bounds are never exceeded, and the shortfall is
   visible as ``granted[source] != preferred_w``.
5. **Target.** ``target_w = Σ g``; it always lies within the fleet bounds
   (each grant stays in the room that remains, by induction).

So a lower priority can never take power a higher one was granted, and a
lower priority's wish that points the other way (one charges while the other
discharges) simply nets out in the sum: the higher one's contribution is
unchanged, the lower one is limited to what the fleet can still absorb on top.
Exclusion bands of single inverters are *not* considered here; the
distributor handles them.

Worked example
--------------
Fleet bounds ``[−300 kW, +200 kW]``. Frequency response (priority 20) wants
exactly −250 kW (bounds ``[−250 kW, −250 kW]``); peak shaving (priority 10)
wants −80 kW and can live with ``[−80 kW, +40 kW]``::

    FR : clip(clip(−250, −250, −250), −300, 200)          = −250 kW
         room for the rest: [−300 + 250, 200 + 250]        = [−50, +450] kW
    PS : clip(clip(−80, −80, 40), −50, 450)                = −50 kW
    target = −250 − 50                                     = −300 kW

Peak shaving only gets −50 kW (the fleet has no more discharge power), and
the frequency-response share is untouched.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["MergeResult", "Wish", "merge"]


@dataclass(frozen=True, slots=True)
class Wish:
    """A strategy's desired contribution to the battery fleet's power, in W (+ = charging)."""

    source: str
    """Name of the strategy that sent the wish (unique per merge)."""
    priority: int
    """Higher is served first."""
    preferred_w: float
    """The contribution the strategy would like (+ = charge, − = discharge)."""
    lower_w: float
    """Smallest contribution the strategy can live with."""
    upper_w: float
    """Largest contribution the strategy can live with."""


@dataclass(frozen=True, slots=True)
class MergeResult:
    """Outcome of :func:`merge`."""

    target_w: float
    """Sum of the granted contributions; within the fleet bounds (+ = charging)."""
    granted: dict[str, float] = field(default_factory=dict)
    """Source → granted contribution in W, for every accepted wish."""
    rejected: dict[str, str] = field(default_factory=dict)
    """Source → why its wish was ignored (non-finite number, lower > upper).

    A duplicate wish is reported as ``"source[i]"`` (``i`` = its index in the input).
    """
    fleet_error: str | None = None
    """Why the fleet bounds were unusable (then replaced by [0, 0]); None when fine."""

    def shortfall_w(self, wish: Wish) -> float:
        """How far the grant of ``wish`` is from its preferred power (granted − preferred).

        Args:
            wish: One of the wishes passed to :func:`merge`.

        Returns:
            ``granted − preferred`` in W; 0 when fully served; nan when rejected.
        """
        granted = self.granted.get(wish.source)
        if granted is None:
            return math.nan
        return granted - wish.preferred_w


def _clip(value: float, lower: float, upper: float) -> float:
    return lower if value < lower else upper if value > upper else value


def _why_invalid(wish: Wish) -> str | None:
    for name in ("preferred_w", "lower_w", "upper_w"):
        value = getattr(wish, name)
        if not math.isfinite(value):
            return f"{name} = {value!r} is not finite"
    if wish.lower_w > wish.upper_w:
        return f"lower_w = {wish.lower_w!r} > upper_w = {wish.upper_w!r}"
    return None


def merge(wishes: Sequence[Wish], fleet_lower_w: float, fleet_upper_w: float) -> MergeResult:
    """Stack the wishes by priority within the fleet bounds (rule in the module doc).

    Args:
        wishes: The current wish of every active strategy.
        fleet_lower_w: Most negative power the fleet can take now (≤ 0 normally).
        fleet_upper_w: Most positive power the fleet can take now (≥ 0 normally).

    Returns:
        The combined target, the grant of every accepted wish and the reason
        for every ignored one.

    Never raises: unusable fleet bounds give a 0 W target and ``fleet_error``.
    """
    fleet_error: str | None = None
    if not (math.isfinite(fleet_lower_w) and math.isfinite(fleet_upper_w)):
        fleet_error = (
            f"fleet bounds [{fleet_lower_w!r}, {fleet_upper_w!r}] W are not finite; using [0, 0]"
        )
    elif fleet_lower_w > fleet_upper_w:
        fleet_error = (
            f"fleet_lower_w = {fleet_lower_w!r} > fleet_upper_w = {fleet_upper_w!r}; using [0, 0]"
        )
    if fleet_error is not None:
        fleet_lower_w = fleet_upper_w = 0.0

    rejected: dict[str, str] = {}
    accepted: list[Wish] = []
    seen: set[str] = set()
    for index, wish in enumerate(wishes):
        if wish.source in seen:
            rejected[f"{wish.source}[{index}]"] = "duplicate source: only the first wish counts"
            continue
        seen.add(wish.source)
        reason = _why_invalid(wish)
        if reason is not None:
            rejected[wish.source] = reason
            continue
        accepted.append(wish)

    accepted.sort(key=lambda w: (-w.priority, w.source))
    room_lo, room_hi = fleet_lower_w, fleet_upper_w
    granted: dict[str, float] = {}
    total = 0.0
    for wish in accepted:
        own = _clip(wish.preferred_w, wish.lower_w, wish.upper_w)
        grant = _clip(own, room_lo, room_hi)
        granted[wish.source] = grant
        total += grant
        room_lo -= grant
        room_hi -= grant
    # Guard against rounding drift of the running sums.
    total = _clip(total, fleet_lower_w, fleet_upper_w)
    return MergeResult(target_w=total, granted=granted, rejected=rejected, fleet_error=fleet_error)
