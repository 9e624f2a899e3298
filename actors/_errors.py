"""The error tree of the actor layer.

`GridloopError` is the root; every error carries the object (URL, component id,
field, actor) it came from, and chains its cause with `raise ... from`.
"""

from __future__ import annotations


class GridloopError(Exception):
    """Root of every error raised by `actors`."""


class OptionsError(GridloopError, ValueError):
    """A bad option or argument value; names the field and the value."""

    def __init__(self, field: str, value: object, reason: str) -> None:
        """Create the error.

        Args:
            field: Name of the offending field or argument.
            value: The offending value.
            reason: What is wrong with it.
        """
        super().__init__(f"invalid {field}={value!r}: {reason}")
        self.field: str = field
        """Name of the offending field or argument."""
        self.value: object = value
        """The offending value."""
        self.reason: str = reason
        """What is wrong with it."""


REFUSED_STATUSES: frozenset[str] = frozenset({"UNAUTHENTICATED", "PERMISSION_DENIED"})
"""gRPC status names after which retrying cannot help: the server refuses this client
(wrong or missing API key, no permission). The runtime stops on them."""


class ApiError(GridloopError):
    """A Microgrid API call failed (unreachable, UNAUTHENTICATED, deadline, ...)."""

    @property
    def refused(self) -> bool:
        """Whether the server refuses this client (a status in `REFUSED_STATUSES`)."""
        return self.status in REFUSED_STATUSES

    def __init__(
        self,
        message: str,
        *,
        url: str,
        method: str,
        status: str | None = None,
        component_id: int | None = None,
    ) -> None:
        """Create the error.

        Args:
            message: Human readable description (server details included).
            url: The API URL the call went to.
            method: The gRPC method name.
            status: The gRPC status code name (e.g. "UNAVAILABLE"), if any.
            component_id: The component the call was about, if any.
        """
        where = f" for component {component_id}" if component_id is not None else ""
        code = f" [{status}]" if status else ""
        super().__init__(f"{method}{where} at {url} failed{code}: {message}")
        self.url: str = url
        """The API URL."""
        self.method: str = method
        """The gRPC method name."""
        self.status: str | None = status
        """The gRPC status code name, or None when the failure was not a gRPC status."""
        self.component_id: int | None = component_id
        """The component the call concerned, if any."""


class GraphError(GridloopError):
    """The component graph reported by the API is unusable for battery control."""

    def __init__(self, message: str, *, component_id: int | None = None) -> None:
        """Create the error.

        Args:
            message: What is wrong with the graph.
            component_id: The component at fault, if one can be named.
        """
        where = f" (component {component_id})" if component_id is not None else ""
        super().__init__(f"unusable component graph{where}: {message}")
        self.component_id: int | None = component_id
        """The component at fault, if one can be named."""


class ActorError(GridloopError):
    """An actor failed; carries the actor's name."""

    def __init__(self, actor: str, message: str) -> None:
        """Create the error.

        Args:
            actor: The actor's name.
            message: What went wrong.
        """
        super().__init__(f"actor {actor!r}: {message}")
        self.actor: str = actor
        """The actor's name."""
