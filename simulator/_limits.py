"""What the simulator server admits: request sizes, bounds augmentations, stream caps.

Offers the limits as constants (re-exported by `simulator.server`), the
defaults derived from a site (`default_stream_caps`, `default_telemetry_phases`),
`StreamCaps` (the count of open telemetry streams per client connection and on
the whole server, and why one more is refused), `pending_call_limits` (how many
arriving calls gRPC holds for the server's loop before it sheds them) and
`check_server_args` (the validation of the server constructor's numeric
arguments, naming the argument).
"""

from __future__ import annotations

import math
from collections import Counter

from .config import SiteConfig

__all__ = [
    "CLIENTS_PER_SERVER",
    "MAX_BOUNDS_INTERVALS",
    "MAX_BOUNDS_PER_COMPONENT",
    "MAX_BOUNDS_TOKEN_BYTES",
    "MAX_REQUEST_BYTES",
    "MIN_STREAMS_PER_CLIENT",
    "STREAMS_PER_COMPONENT",
    "StreamCaps",
    "check_server_args",
    "default_stream_caps",
    "default_telemetry_phases",
    "pending_call_limits",
]

_PHASE_HZ = 100.0
"""At most this many telemetry publications per second by default (all phases)."""

MAX_REQUEST_BYTES = 64 * 1024
"""Largest request message the server receives; gRPC itself refuses a larger one
with RESOURCE_EXHAUSTED before it is decoded. Every request of the API is small:
the largest legitimate ones are List* filters naming component ids (a few bytes
each), so 64 KiB still lists ~15 000 ids in one request."""
MAX_BOUNDS_INTERVALS = 8
"""Most intervals in one AugmentElectricalComponentBounds request (INVALID_ARGUMENT beyond)."""
MAX_BOUNDS_TOKEN_BYTES = 128
"""Longest ``bounds_token`` (UTF-8 bytes) accepted (INVALID_ARGUMENT beyond)."""
MAX_BOUNDS_PER_COMPONENT = 16
"""Most bounds augmentations (distinct tokens) in force on one component at a time.
A new token beyond it is RESOURCE_EXHAUSTED until one is cleared or lapses; lapsed
ones no longer count."""
STREAMS_PER_COMPONENT = 4
"""Default per-connection telemetry stream cap: this many streams per component and
sensor of the site (a client reads one per component; a few metric filters fit)."""
MIN_STREAMS_PER_CLIENT = 64
"""The default per-connection cap is never below this."""
CLIENTS_PER_SERVER = 8
"""Default server-wide telemetry stream cap: this many full per-connection caps."""


def default_telemetry_phases(telemetry_hz: float) -> int:
    """Phases of the telemetry period: 10, fewer when that would publish more
    often than every ~10 ms (``round(100 / telemetry_hz)``): 10 at 10 Hz and
    below, 2 at 50 Hz, 1 at 100 Hz and above.

    More phases than 10 cost more than they spread: at 1 Hz and 1 000 pairs,
    100 phases of 20 frames each made every client slower (event → last
    setpoint p99 563 ms for gridloop) than 10 phases of 200 (248 ms).
    """
    return min(10, max(1, round(_PHASE_HZ / telemetry_hz)))


def default_stream_caps(site: SiteConfig) -> tuple[int, int]:
    """Default telemetry stream caps of a site: (per client connection, whole server).

    Per connection: `STREAMS_PER_COMPONENT` streams per component and sensor, at
    least `MIN_STREAMS_PER_CLIENT`; whole server: `CLIENTS_PER_SERVER` times that.
    A real client (gridloop, the SDK) opens one stream per component, so it never
    meets the cap; a client opening thousands of streams it never reads would
    otherwise take the server's time from every other client.
    """
    per_client = max(
        MIN_STREAMS_PER_CLIENT, STREAMS_PER_COMPONENT * (len(site.components) + len(site.sensors))
    )
    return per_client, CLIENTS_PER_SERVER * per_client


GRPC_PENDING_CALLS = (1_000, 3_000)
"""gRPC core's default backlog limits (``grpc.server.max_pending_requests`` and
``grpc.server.max_pending_requests_hard_limit``): see `pending_call_limits`."""


def pending_call_limits(per_client: int) -> tuple[int, int]:
    """The backlog limits of calls that arrived before the server's loop took them:
    (soft, hard), the ``grpc.server.max_pending_requests[_hard_limit]`` options.

    A ``grpc.aio`` server takes arriving calls one at a time from its event loop;
    the calls it has not taken yet wait in gRPC core's backlog. Above the soft
    limit gRPC sheds each new call with a probability growing linearly to 1 at
    the hard limit, before any handler runs: the client sees CANCELLED and the
    simulator never knows. With gRPC's defaults (`GRPC_PENDING_CALLS`) a client
    that opens one stream per component of a 1 000-pair site (2 001 at once)
    while the loop is busy gets a share of them cancelled. The simulator refuses
    streams itself, under `StreamCaps`, with a status naming the cap, so the
    backlog must hold one connection's full cap (``per_client``) at once: soft =
    the larger of that and gRPC's default, hard = 3 × soft (gRPC's ratio).

    Args:
        per_client: The per-connection telemetry stream cap.

    Returns:
        (soft, hard) backlog limits, in calls.
    """
    soft = max(GRPC_PENDING_CALLS[0], per_client)
    return soft, 3 * soft


def _positive_int(name: str, value: object, default: int) -> int:
    """``value`` if a positive integer (None = ``default``), else ValueError naming ``name``."""
    if value is None:
        return default
    if isinstance(value, bool) or not (isinstance(value, int) and value >= 1):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def check_server_args(
    *,
    site: SiteConfig,
    port: int,
    rates: dict[str, float],
    telemetry_phases: int | None,
    max_streams_per_client: int | None,
    max_streams: int | None,
) -> tuple[int, int, int]:
    """Validate the server's numeric arguments; return (phases, per-client cap, server cap).

    Args:
        site: the site (its size sets the default stream caps).
        port: TCP port, 0..65535.
        rates: by argument name, values that must be positive and finite
            (``time_scale``, ``telemetry_hz``, ``physics_hz``).
        telemetry_phases: 1..1000, None = `default_telemetry_phases` of
            ``rates["telemetry_hz"]``.
        max_streams_per_client: positive, None = the default (`default_stream_caps`).
        max_streams: positive, None = the default (`default_stream_caps`).

    Raises:
        ValueError: naming the first bad argument and its value.
    """
    for name, value in rates.items():
        if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be in 0..65535, got {port!r}")
    if telemetry_phases is None:
        telemetry_phases = default_telemetry_phases(rates["telemetry_hz"])
    elif isinstance(telemetry_phases, bool) or not (
        isinstance(telemetry_phases, int) and 1 <= telemetry_phases <= 1000
    ):
        raise ValueError(f"telemetry_phases must be an integer 1..1000, got {telemetry_phases!r}")
    per_client, total = default_stream_caps(site)
    return (
        telemetry_phases,
        _positive_int("max_streams_per_client", max_streams_per_client, per_client),
        _positive_int("max_streams", max_streams, total),
    )


class StreamCaps:
    """Open telemetry streams per client connection (gRPC peer) and their caps.

    Every open stream costs the server a write per publication whether or not
    its client reads it, so one client holding thousands of streams would slow
    the telemetry of every other client: the caps bound that work.
    """

    def __init__(self, per_client: int, total: int) -> None:
        """Admit at most ``per_client`` streams per connection, ``total`` in all."""
        self.per_client = per_client
        """Most telemetry streams open at once on one client connection."""
        self.total = total
        """Most telemetry streams open at once on the whole server."""
        self.refused = 0
        """Streams refused so far (RESOURCE_EXHAUSTED)."""
        self._open_of: Counter[str] = Counter()

    @property
    def open(self) -> int:
        """Telemetry streams open now."""
        return self._open_of.total()

    def problem(self, peer: str) -> str | None:
        """Why one more telemetry stream from ``peer`` is refused (None = admitted)."""
        if self._open_of[peer] >= self.per_client:
            return (
                f"telemetry streams: this connection already has {self._open_of[peer]}"
                f" open, the limit is max_streams_per_client={self.per_client}"
            )
        if self.open >= self.total:
            return (
                f"telemetry streams: the server already has {self.open} open,"
                f" the limit is max_streams={self.total}"
            )
        return None

    def opened(self, peer: str) -> None:
        """A stream of ``peer`` was admitted."""
        self._open_of[peer] += 1

    def closed(self, peer: str) -> None:
        """A stream of ``peer`` ended."""
        self._open_of[peer] -= 1
        if self._open_of[peer] <= 0:
            del self._open_of[peer]
