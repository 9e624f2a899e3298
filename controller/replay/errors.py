"""The root error of the replay package."""

from __future__ import annotations

__all__ = ["ReplayError"]


class ReplayError(Exception):
    """Bad replay input (CSV, flags, site config) or an unusable result.

    The message is always one line naming the file, line, column or field and
    the offending value, so the CLI can print it as is (no traceback).
    """

    def __init__(self, message: str, *, source: str = "") -> None:
        """Create the error.

        Args:
            message: One line describing the problem (newlines are flattened).
            source: The file, flag or field the problem came from (may be empty).
        """
        flat = " ".join(message.split())
        super().__init__(flat)
        self.source: str = source
        """The file, flag or field the problem came from."""
