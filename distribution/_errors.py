"""Errors raised by the distribution package."""

from __future__ import annotations

__all__ = ["AllocationInvariantError", "DistributionError"]


class DistributionError(ValueError):
    """Root error of `distribution`: a structural input problem at the boundary.

    Raised for problems that cannot be blamed on one component's live data:
    arrays of the wrong shape, link indices out of range, a negative capacity,
    a non-finite target or exponent. Per-component live-data problems never
    raise; they exclude the component (see `ExclusionReason`).

    Attributes:
        field: name of the offending keyword argument.
        value: a short description of the offending value.
    """

    def __init__(self, field: str, value: object, problem: str) -> None:
        """Create the error.

        Args:
            field: name of the offending keyword argument.
            value: the offending value (or a short description of it).
            problem: what is wrong with it.
        """
        self.field: str = field
        """Name of the offending keyword argument."""
        self.value: object = value
        """The offending value (or a short description of it)."""
        super().__init__(f"{field}: {problem} (got {value!r})")


class AllocationInvariantError(AssertionError):
    """An allocation violated the original bounds: a bug in `distribution`.

    Raised by the final, independent re-check of every setpoint. It is an
    `AssertionError` on purpose: it must never be caught as "bad input".
    """
