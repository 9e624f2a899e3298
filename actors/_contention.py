"""Another client controls the site: the rule that concludes it (pure, fake-clock testable).

The Microgrid API answers OVERRIDDEN when a newer setpoint replaced one before it
took effect. The dispatcher tells apart our own newer setpoint from someone else's;
each setpoint of ours overridden by someone else's is one *foreign override*. One
can be a fluke (e.g. an operator's one-off command); `overrides` of them within
`window_s` seconds mean another client is commanding the same inverters, and two
controllers fighting over a battery is not safe: the site then stops commanding
(see `Site`).
"""

from __future__ import annotations

import collections

from ._actor import validate_positive
from ._errors import OptionsError


class ContentionRule:
    """Counts foreign overrides in a sliding window; says when they mean contention."""

    def __init__(self, overrides: int, window_s: float) -> None:
        """Create the rule.

        Args:
            overrides: Foreign overrides within the window that mean contention (>= 1).
            window_s: The window (s, > 0).

        Raises:
            OptionsError: Naming the bad argument.
        """
        if isinstance(overrides, bool) or not isinstance(overrides, int) or overrides < 1:
            raise OptionsError("contention_overrides", overrides, "must be a whole number >= 1")
        self.overrides: int = overrides
        """Foreign overrides within the window that mean contention."""
        self.window_ns: int = int(validate_positive("contention_window_s", window_s) * 1e9)
        """The window (ns)."""
        self._recent: collections.deque[tuple[int, int]] = collections.deque()
        self.total: int = 0
        """Foreign overrides recorded so far."""

    def record(self, component_id: int, now_ns: int) -> bool:
        """Record one foreign override and say whether the rule now concludes contention.

        Args:
            component_id: The inverter whose setpoint was overridden.
            now_ns: Monotonic time (ns).

        Returns:
            Whether at least `overrides` foreign overrides fall within the window.
        """
        self.total += 1
        recent = self._recent
        recent.append((now_ns, component_id))
        while recent and recent[0][0] <= now_ns - self.window_ns:
            recent.popleft()
        return len(recent) >= self.overrides

    def components(self) -> list[int]:
        """The inverters overridden within the current window, sorted."""
        return sorted({cid for _, cid in self._recent})

    def in_window(self) -> int:
        """Foreign overrides within the current window (as of the last `record`)."""
        return len(self._recent)
