"""The simulator's error tree.

`SimulatorError` is the root. Request errors carry the component id they came
from and the gRPC status code name the server answers with:

* `ComponentNotFoundError` -> ``NOT_FOUND``
* `InvalidRequestError` -> ``INVALID_ARGUMENT`` (NaN/inf power, bad lifetime, wrong
  power type or category)
* `PowerOutOfRangeError` -> ``OUT_OF_RANGE`` (outside the component's current bounds)
* `ComponentNotReadyError` -> ``FAILED_PRECONDITION`` (stopped or errored component)

`SiteConfigError` (bad site file) lives in `simulator.config`.
"""

from __future__ import annotations

__all__ = [
    "ComponentNotFoundError",
    "ComponentNotReadyError",
    "InvalidRequestError",
    "PowerOutOfRangeError",
    "RequestError",
    "SimulatorError",
]


class SimulatorError(Exception):
    """Root of all simulator errors."""


class RequestError(SimulatorError):
    """A request to the simulated site was refused.

    Attributes:
        component_id: the component the request addressed.
        code: the gRPC status code name the server answers with.
    """

    code: str = "UNKNOWN"

    def __init__(self, component_id: int, message: str) -> None:
        """Create the error for ``component_id`` with a human-readable ``message``."""
        self.component_id = component_id
        super().__init__(f"component {component_id}: {message}")


class ComponentNotFoundError(RequestError):
    """No component with this id exists."""

    code = "NOT_FOUND"


class InvalidRequestError(RequestError):
    """The request itself is malformed for this component."""

    code = "INVALID_ARGUMENT"


class PowerOutOfRangeError(RequestError):
    """The requested power is outside the component's current bounds."""

    code = "OUT_OF_RANGE"


class ComponentNotReadyError(RequestError):
    """The component's state does not allow the request (stopped, errored)."""

    code = "FAILED_PRECONDITION"
