"""The replay's error: :class:`ReplayError`, in the project's error tree.

Defined in :mod:`controller.errors` with every other user-facing error of the
controller and re-exported here, where the replay modules have always found it.
A bad site file (the simulator's ``SiteConfigError``, which stands outside the
tree) reaches the user as a :class:`ReplayError` with the same one-line message.
"""

from __future__ import annotations

from controller.errors import ReplayError

__all__ = ["ReplayError"]
