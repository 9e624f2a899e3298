"""The async Microgrid API client: one gRPC channel, the version the server speaks.

The client owns the channel, the URL, the API key and the deadlines; what is
said on the channel is up to the adapter of the server's API version
(`actors._api`): given (``api_version``) or found by `negotiate`, which tries
`API_VERSIONS` newest first (a version the server does not implement answers
UNIMPLEMENTED). Nothing above the client knows versions.

URL form (like the official client): `grpc://host:port?ssl=true|false`. `ssl`
defaults to false for loopback hosts (127.0.0.1, ::1, localhost) and true otherwise.
The API key (if any) is sent as the `key` metadata entry (the header used by
frequenz-client-base); a warning is logged when it would go out in plaintext to a
host that is not loopback. Every unary call has a deadline (`call_timeout_s`); errors are
`ApiError` naming the URL, method, component and gRPC status.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlparse

import grpc
from frequenz.api.common.v1alpha8.microgrid.electrical_components import (
    electrical_components_pb2 as ec_pb2,
)

from ._api import (
    API_VERSIONS,
    STATUS_ACCEPTED,
    STATUS_FAILED,
    STATUS_OVERRIDDEN,
    STATUS_REJECTED,
    STATUS_SUCCESS,
    ApiAdapter,
    MicrogridInfo,
    SetpointCall,
    TelemetryWire,
)
from ._api_v1 import V1Api
from ._api_v1alpha import V1alphaApi
from ._errors import REFUSED_STATUSES, ApiError, OptionsError

_logger = logging.getLogger(__name__)

_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost", "[::1]"})
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})

__all__ = [
    "API_VERSIONS",
    "STATUS_ACCEPTED",
    "STATUS_FAILED",
    "STATUS_OVERRIDDEN",
    "STATUS_REJECTED",
    "STATUS_SUCCESS",
    "ApiUrl",
    "MicrogridApiClient",
    "api_key_problem",
    "check_api_version",
    "is_fatal",
]


def check_api_version(version: object) -> str | None:
    """Validate an API version option (None = find it at connect time).

    Args:
        version: The option's value.

    Returns:
        The version, or None.

    Raises:
        OptionsError: Naming `api_version`, the value and the versions known.
    """
    if version is None or version in API_VERSIONS:
        return version
    raise OptionsError(
        "api_version", version, f"must be one of {', '.join(API_VERSIONS)}"
    )


def _adapter(version: str, transport: MicrogridApiClient) -> ApiAdapter:
    return V1Api(transport) if version == "v1" else V1alphaApi(version, transport)


@dataclass(frozen=True)
class ApiUrl:
    """A parsed `grpc://host:port?ssl=true|false` URL."""

    host: str
    """Host name or address."""
    port: int
    """TCP port."""
    ssl: bool
    """Whether TLS is used."""

    @property
    def target(self) -> str:
        """The `host:port` target for grpc."""
        return f"{self.host}:{self.port}"

    def __str__(self) -> str:
        """Return the URL in its canonical form."""
        return f"grpc://{self.host}:{self.port}?ssl={'true' if self.ssl else 'false'}"

    @classmethod
    def parse(cls, url: str) -> ApiUrl:
        """Parse and validate a URL.

        Args:
            url: `grpc://host:port[?ssl=true|false]`.

        Returns:
            The parsed URL.

        Raises:
            OptionsError: Naming `url` and what is wrong (scheme, host, port, query).
        """
        if not isinstance(url, str):
            raise OptionsError("url", url, "must be a string like grpc://host:port")
        try:
            parsed = urlparse(url)
        except ValueError as exc:  # e.g. "Invalid IPv6 URL" for an unclosed [
            raise OptionsError("url", url, f"not a URL ({exc})") from None
        if parsed.scheme != "grpc":
            raise OptionsError("url", url, "scheme must be grpc:// (grpc://host:port?ssl=...)")
        host = parsed.hostname
        if not host:
            raise OptionsError("url", url, "missing host")
        try:
            port = parsed.port
        except ValueError as exc:
            raise OptionsError("url", url, f"bad port: {exc}") from exc
        if port is None:
            raise OptionsError("url", url, "missing port")
        query = parse_qs(parsed.query, keep_blank_values=True)
        unknown = set(query) - {"ssl"}
        if unknown:
            raise OptionsError("url", url, f"unknown query parameter(s) {sorted(unknown)}")
        ssl = host not in _LOOPBACK
        if "ssl" in query:
            raw = query["ssl"][-1].lower()
            if raw in _TRUE:
                ssl = True
            elif raw in _FALSE:
                ssl = False
            else:
                raise OptionsError("url", url, f"ssl must be true or false, got {raw!r}")
        if ":" in host:
            host = f"[{host}]"
        return cls(host=host, port=port, ssl=ssl)


def api_key_problem(key: str) -> str | None:
    """Why ``key`` cannot be sent as the ``key`` metadata entry, or None if it can.

    A gRPC metadata value (an HTTP/2 header) may hold printable ASCII only
    (0x20..0x7e); gRPC fails every call on anything else. The answer never
    contains the key itself, so it can be shown to the user.

    Args:
        key: The API key.

    Returns:
        None, or what is wrong (the first bad character's kind and position).
    """
    for position, char in enumerate(key, start=1):
        if " " <= char <= "~":
            continue
        if char in "\r\n":
            kind = "a line break"
        elif char.isascii():
            kind = "a control character"
        else:
            kind = "a non-ASCII character"
        return (
            f"contains {kind} (character {position}); an API key must be printable ASCII"
            " (gRPC metadata)"
        )
    return None


#: gRPC status codes after which retrying cannot help: the server refuses this client
#: (wrong or missing API key, no permission). The runtime stops on them.
FATAL_STATUS_CODES: frozenset[grpc.StatusCode] = frozenset(
    grpc.StatusCode[name] for name in REFUSED_STATUSES
)


def is_fatal(exc: grpc.aio.AioRpcError) -> bool:
    """Whether a failed call means the server refuses this client (see `FATAL_STATUS_CODES`).

    Args:
        exc: The failed call.

    Returns:
        True for UNAUTHENTICATED and PERMISSION_DENIED.
    """
    return exc.code() in FATAL_STATUS_CODES


def _status_name(exc: grpc.aio.AioRpcError) -> str:
    code = exc.code()
    return code.name if code is not None else "UNKNOWN"


class MicrogridApiClient:
    """Async client for the Microgrid API on one gRPC channel, in the server's version."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        root_cert: bytes | None = None,
        call_timeout_s: float = 2.0,
        api_version: str | None = None,
    ) -> None:
        """Create the client (the channel connects lazily).

        Args:
            url: `grpc://host:port?ssl=true|false`.
            api_key: Sent as `key` metadata on every call when given.
            root_cert: PEM root certificate(s) for TLS (system roots when None).
            call_timeout_s: Deadline of every unary call and setpoint call, in seconds.
            api_version: The server's API version (one of `API_VERSIONS`); None =
                find it (`negotiate`, done by the first listing call).

        Raises:
            OptionsError: On a bad URL, timeout, API key (the key is not shown) or
                API version.
        """
        self.url: ApiUrl = ApiUrl.parse(url)
        """The parsed URL."""
        if not (isinstance(call_timeout_s, (int, float)) and math.isfinite(call_timeout_s)) or (
            call_timeout_s <= 0
        ):
            raise OptionsError("call_timeout_s", call_timeout_s, "must be a finite number > 0")
        self.call_timeout_s: float = float(call_timeout_s)
        """Deadline of every unary call, in seconds."""
        version = check_api_version(api_version)
        if api_key and (problem := api_key_problem(api_key)) is not None:
            raise OptionsError("api_key", "(not shown)", problem)
        self.metadata: tuple[tuple[str, str], ...] = (("key", api_key),) if api_key else ()
        """Metadata sent with every call."""
        if api_key and not self.url.ssl and self.url.host not in _LOOPBACK:
            _logger.warning(
                "the API key for %s goes out in plaintext (ssl=false to a host that is"
                " not loopback); anyone on the path can read it",
                self.url,
            )
        options = [
            ("grpc.keepalive_time_ms", 60_000),
            ("grpc.keepalive_timeout_ms", 20_000),
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            # Reconnect quickly after the server comes back (gRPC's default backoff
            # grows to 120 s; a control loop must resume within seconds).
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 1000),
        ]
        if self.url.ssl:
            creds = grpc.ssl_channel_credentials(root_certificates=root_cert)
            self.channel: grpc.aio.Channel = grpc.aio.secure_channel(
                self.url.target, creds, options=options
            )
        else:
            self.channel = grpc.aio.insecure_channel(self.url.target, options=options)
        self._api: ApiAdapter | None = None if version is None else _adapter(version, self)
        self._checked: ApiAdapter | None = None  # the version the server answered in
        # The component list the version check received: the first `list_components`
        # returns it instead of asking again (later ones, e.g. after a reconnect, ask).
        self._probed: list[ec_pb2.ElectricalComponent] | None = None

    @property
    def api(self) -> ApiAdapter:
        """The adapter of the server's API version.

        Raises:
            RuntimeError: The version is not known yet (call `negotiate` first).
        """
        if self._api is None:
            raise RuntimeError("the API version is not known yet: await negotiate() first")
        return self._api

    @property
    def api_version(self) -> str | None:
        """The API version in use (None until found)."""
        return None if self._api is None else self._api.version

    @property
    def wire(self) -> TelemetryWire:
        """How the version's telemetry messages are read (see `api`)."""
        return self.api.wire

    async def negotiate(self) -> str:
        """Find the server's API version, or check the one given (once).

        Each version of `API_VERSIONS`, newest first, is asked for its component
        list; the first that does not answer UNIMPLEMENTED is the server's. A
        version given to the constructor is asked the same way, so that a server
        without it fails here, in one way, naming it.

        Returns:
            The version.

        Raises:
            ApiError: A call failed otherwise (unreachable, refused, ...), or the
                server implements none of the versions tried (UNIMPLEMENTED,
                naming them).
        """
        if self._checked is not None:
            return self._checked.version
        tried = [self._api] if self._api is not None else [
            _adapter(version, self) for version in API_VERSIONS
        ]
        for api in tried:
            try:
                components = await api.components()
            except ApiError as exc:
                if exc.status == grpc.StatusCode.UNIMPLEMENTED.name:
                    continue
                raise
            self._api = self._checked = api
            self._probed = components
            _logger.info("%s speaks Microgrid API %s", self.url, api.version)
            return api.version
        names = ", ".join(api.version for api in tried)
        what = f"any of the Microgrid API versions {names}" if len(tried) > 1 else (
            f"Microgrid API {names}"
        )
        raise ApiError(
            f"the server does not implement {what}",
            url=str(self.url),
            method=tried[-1].list_method,
            status=grpc.StatusCode.UNIMPLEMENTED.name,
        )

    def error(
        self, exc: grpc.aio.AioRpcError, method: str, component_id: int | None = None
    ) -> ApiError:
        """The `ApiError` for a failed call (names this URL, the method and the status).

        Args:
            exc: The failed call.
            method: The gRPC method name.
            component_id: The component the call was about, if any.

        Returns:
            The error (not raised).
        """
        return ApiError(
            exc.details() or "no details",
            url=str(self.url),
            method=method,
            status=_status_name(exc),
            component_id=component_id,
        )

    async def microgrid(self) -> MicrogridInfo:
        """The microgrid's id and location (GetMicrogrid; GetMicrogridMetadata in v1).

        Returns:
            What the server says of the microgrid.

        Raises:
            ApiError: On any gRPC failure (UNIMPLEMENTED included).
        """
        await self.negotiate()
        return await self.api.microgrid()

    async def list_components(self) -> list[ec_pb2.ElectricalComponent]:
        """Every component (no filter), as the runtime's model.

        Returns:
            All components.

        Raises:
            ApiError: On any gRPC failure.
        """
        await self.negotiate()
        if self._probed is not None:
            probed, self._probed = self._probed, None
            return probed
        return await self.api.components()

    async def list_connections(self) -> list[ec_pb2.ElectricalComponentConnection]:
        """Every connection (no filter), as the runtime's model.

        Returns:
            All connections.

        Raises:
            ApiError: On any gRPC failure.
        """
        await self.negotiate()
        return await self.api.connections()

    def telemetry_stream(
        self, component_id: int, metrics: Sequence[int] | None = None
    ) -> grpc.aio.UnaryStreamCall[Any, Any]:
        """Open one component's telemetry stream (no deadline).

        Args:
            component_id: The component.
            metrics: Only these metrics, in the version's numbers (`wire`; all when
                None). Filtering shrinks every message and its decoding on both ends.

        Returns:
            The streaming call (iterate it; `AioRpcError` on failure); `wire.unwrap`
            gives a response's telemetry.
        """
        return self.api.telemetry_stream(component_id, metrics)

    def set_power_call(
        self, component_id: int, power_w: float, lifetime_s: int, timeout_s: float | None = None
    ) -> SetpointCall:
        """Start an active-power setpoint call and return it at once.

        The request goes on the wire without awaiting; read its answers with
        `await call.read()` (a ``STATUS_*``, None when no more come).

        Args:
            component_id: The inverter.
            power_w: Active power setpoint in W (positive = charging).
            lifetime_s: request_lifetime in s (API accepts 10..900).
            timeout_s: Deadline of the whole call; `call_timeout_s` when None.

        Returns:
            The call.
        """
        timeout = self.call_timeout_s if timeout_s is None else timeout_s
        return self.api.set_power_call(component_id, power_w, lifetime_s, timeout)

    def set_reactive_call(
        self, component_id: int, reactive_var: float, lifetime_s: int,
        timeout_s: float | None = None,
    ) -> SetpointCall:
        """Start a reactive-power setpoint call (VAr, + = absorbing) and return it at once.

        As `set_power_call` (v1: SetComponentPowerReactive; v1alpha18/19:
        SetElectricalComponentPower with the reactive power type).

        Args:
            component_id: The inverter.
            reactive_var: Reactive power setpoint in VAr (passive sign convention).
            lifetime_s: request_lifetime in s (API accepts 10..900).
            timeout_s: Deadline of the whole call; `call_timeout_s` when None.

        Returns:
            The call.
        """
        timeout = self.call_timeout_s if timeout_s is None else timeout_s
        return self.api.set_reactive_call(component_id, reactive_var, lifetime_s, timeout)

    async def set_power(self, component_id: int, power_w: float, lifetime_s: int = 60) -> int:
        """Send one active-power setpoint and return the first answer.

        Args:
            component_id: The inverter.
            power_w: Setpoint in W (positive = charging).
            lifetime_s: request_lifetime in seconds.

        Returns:
            The first status (e.g. `STATUS_ACCEPTED`).

        Raises:
            ApiError: On a gRPC failure or a call that ends without an answer.
        """
        await self.negotiate()
        call = self.set_power_call(component_id, power_w, lifetime_s)
        method = self.api.setpoint_method
        try:
            status = await call.read()
        except grpc.aio.AioRpcError as exc:
            raise self.error(exc, method, component_id) from exc
        finally:
            call.cancel()
        if status is None:
            raise ApiError(
                "response stream ended without a status",
                url=str(self.url),
                method=method,
                component_id=component_id,
            )
        return status

    async def start_component(self, component_id: int) -> None:
        """Start a component (OFF/STANDBY -> running).

        Args:
            component_id: The component.

        Raises:
            ApiError: On any gRPC failure (e.g. FAILED_PRECONDITION while in ERROR).
        """
        await self.api.start(component_id)

    async def ack_error(self, component_id: int) -> None:
        """Acknowledge a component's error (ERROR -> OFF).

        Args:
            component_id: The component.

        Raises:
            ApiError: On any gRPC failure.
        """
        await self.api.ack_error(component_id)

    async def unary(
        self,
        method: str,
        call: Any,
        request: object,
        component_id: int | None = None,
    ) -> Any:
        """Await a unary call with the deadline and metadata of every call.

        Args:
            method: The gRPC method name (named in the error).
            call: The stub's method.
            request: Its request message.
            component_id: The component the call is about, if any (named in the error).

        Returns:
            The response message.

        Raises:
            ApiError: On any gRPC failure.
        """
        try:
            return await call(request, timeout=self.call_timeout_s, metadata=self.metadata)
        except grpc.aio.AioRpcError as exc:
            raise self.error(exc, method, component_id) from exc

    async def wait_until_ready(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s` for the channel to (re)connect, asking it to try.

        Args:
            timeout_s: The longest wait.

        Returns:
            Whether the channel is READY.
        """
        ready = grpc.ChannelConnectivity.READY
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        state = self.channel.get_state(try_to_connect=True)
        while state != ready:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            try:
                async with asyncio.timeout(remaining):
                    await self.channel.wait_for_state_change(state)
            except TimeoutError:
                return False
            state = self.channel.get_state(try_to_connect=True)
        return True

    def is_ready(self) -> bool:
        """Whether the channel is connected right now (does not try to connect)."""
        return self.channel.get_state() == grpc.ChannelConnectivity.READY

    async def close(self, grace_s: float | None = None) -> None:
        """Close the channel (cancels any open call).

        Args:
            grace_s: Grace period for open calls.
        """
        await self.channel.close(grace_s)
