"""A Frequenz Dispatch API server on loopback, for tests and operators (issue 17).

:class:`DispatchServer` serves the ``MicrogridDispatchService`` of
``frequenz-api-dispatch`` (v1) over ``grpc.aio`` for ONE microgrid (the
simulated site's id). The dispatch logic itself — create / list (filters) /
get / update (field masks, recurrence) / delete and the stream of changes — is
the client library's own fake service
(``frequenz.client.dispatch.test.FakeService``); this module only puts it
behind a real gRPC server and adds what a real server does at its door:

* with ``api_key`` set, every call must carry metadata ``key: <api_key>`` (what
  ``DispatchApiClient(auth_key=...)`` and ``dispatch-cli --auth-key`` send), else
  UNAUTHENTICATED;
* another microgrid id answers PERMISSION_DENIED (the key is for this site only);
* a missing dispatch answers NOT_FOUND, a request the fake cannot read (e.g. no
  target) INVALID_ARGUMENT.

The dispatches live in memory for the server object's life: :meth:`stop` then
:meth:`start` is a server restart on the same port that keeps them, as a real
server keeps its database (open streams break, clients reconnect).
``gridloop sim --dispatch-port PORT`` runs one next to the Microgrid API.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, TypeVar

import grpc
import grpc.aio
from frequenz.api.dispatch.v1 import dispatch_pb2 as pb
from frequenz.api.dispatch.v1 import dispatch_pb2_grpc as pb_grpc

# frequenz-client-common defines two id classes with the prefix "CID" (ComponentId and
# ElectricalComponentId) and frequenz-core logs a warning about it when the dispatch
# client is imported (frequenz-repo-config-python#421): a library quirk, not news for
# an operator, so that one record is dropped.
logging.getLogger("frequenz.core.id").addFilter(lambda record: record.args != ("CID",))

# The library ships its fake service for tests in a private module (its FakeClient uses it).
from frequenz.client.dispatch.test._service import FakeService  # noqa: E402

__all__ = ["DispatchServer"]

_Resp = TypeVar("_Resp")


_Context = grpc.aio.ServicerContext[Any, Any]


class _ForMicrogrid(Protocol):
    @property
    def microgrid_id(self) -> int: ...


class _Servicer(pb_grpc.MicrogridDispatchServiceServicer):
    """The door checks (key, microgrid id) in front of the library's fake service."""

    def __init__(self, fake: FakeService, microgrid_id: int, api_key: str | None) -> None:
        self.fake = fake
        self.microgrid_id = microgrid_id
        self.api_key = api_key

    async def _admit(self, request: _ForMicrogrid, context: _Context) -> None:
        if self.api_key is not None:
            sent = dict(context.invocation_metadata() or ()).get("key")
            if sent != self.api_key:
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong API key")
        if request.microgrid_id != self.microgrid_id:
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"microgrid {request.microgrid_id} is not served here "
                f"(this server serves microgrid {self.microgrid_id})",
            )

    async def _call(
        self,
        request: _ForMicrogrid,
        context: _Context,
        method: Callable[[], Awaitable[_Resp]],
    ) -> _Resp:
        await self._admit(request, context)
        try:
            return await method()
        except grpc.RpcError as exc:  # the fake raises NOT_FOUND this way
            code = getattr(exc, "_code", grpc.StatusCode.UNKNOWN)
            await context.abort(code, str(getattr(exc, "_details", exc)))
            raise  # abort raises; this keeps the type checker informed
        except ValueError as exc:  # e.g. "Invalid target components"
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise

    # The gRPC methods (their names are the API's).
    async def ListMicrogridDispatches(  # noqa: N802
        self, request: pb.ListMicrogridDispatchesRequest, context: _Context
    ) -> pb.ListMicrogridDispatchesResponse:
        fake = self.fake
        return await self._call(request, context, lambda: fake.ListMicrogridDispatches(request))

    async def StreamMicrogridDispatches(  # noqa: N802
        self, request: pb.StreamMicrogridDispatchesRequest, context: _Context
    ) -> AsyncIterator[pb.StreamMicrogridDispatchesResponse]:
        await self._admit(request, context)
        async for event in self.fake.StreamMicrogridDispatches(request):
            yield event

    async def CreateMicrogridDispatch(  # noqa: N802
        self, request: pb.CreateMicrogridDispatchRequest, context: _Context
    ) -> pb.CreateMicrogridDispatchResponse:
        fake = self.fake
        return await self._call(request, context, lambda: fake.CreateMicrogridDispatch(request))

    async def UpdateMicrogridDispatch(  # noqa: N802
        self, request: pb.UpdateMicrogridDispatchRequest, context: _Context
    ) -> pb.UpdateMicrogridDispatchResponse:
        fake = self.fake
        return await self._call(request, context, lambda: fake.UpdateMicrogridDispatch(request))

    async def GetMicrogridDispatch(  # noqa: N802
        self, request: pb.GetMicrogridDispatchRequest, context: _Context
    ) -> pb.GetMicrogridDispatchResponse:
        fake = self.fake
        return await self._call(request, context, lambda: fake.GetMicrogridDispatch(request))

    async def DeleteMicrogridDispatch(  # noqa: N802
        self, request: pb.DeleteMicrogridDispatchRequest, context: _Context
    ) -> pb.DeleteMicrogridDispatchResponse:
        fake = self.fake
        await self._call(request, context, lambda: fake.DeleteMicrogridDispatch(request))
        return pb.DeleteMicrogridDispatchResponse()  # the fake answers Empty


class DispatchServer:
    """The Dispatch API for one microgrid on a loopback port (see the module).

    Use as ``async with DispatchServer(microgrid_id) as srv:`` or call
    :meth:`start` / :meth:`stop`; ``port=0`` picks a free port, read it from
    :attr:`port` / :attr:`url` after the start.
    """

    def __init__(
        self,
        microgrid_id: int,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
    ) -> None:
        """Create the server (nothing runs until :meth:`start`).

        Args:
            microgrid_id: The one microgrid whose dispatches are served.
            host: Interface to bind (loopback by default).
            port: TCP port; 0 picks a free one (kept across a restart).
            api_key: If set, every call must carry metadata ``key`` with this value.
        """
        self.host = host
        """The interface bound."""
        self.port = port
        """The bound port (after :meth:`start`; a restart binds it again)."""
        self.service = FakeService()
        """The library's fake service that holds the dispatches (kept across restarts)."""
        self._servicer = _Servicer(self.service, microgrid_id, api_key)
        self._server: grpc.aio.Server | None = None

    @property
    def microgrid_id(self) -> int:
        """The microgrid served."""
        return self._servicer.microgrid_id

    @property
    def url(self) -> str:
        """The URL for ``DispatchApiClient`` / ``dispatch-cli --url`` (plaintext)."""
        return f"grpc://{self.host}:{self.port}?ssl=false"

    async def start(self) -> None:
        """Bind and start serving.

        Raises:
            OSError: The port cannot be bound (naming it).
        """
        if self._server is not None:
            raise RuntimeError("dispatch server already started")
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        pb_grpc.add_MicrogridDispatchServiceServicer_to_server(self._servicer, server)
        target = f"{self.host}:{self.port}"
        try:
            port = server.add_insecure_port(target)
        except RuntimeError as exc:  # grpc reports bind failures this way
            raise OSError(f"cannot bind {target} (address in use or unavailable)") from exc
        if port == 0:
            raise OSError(f"cannot bind {target}")
        await server.start()
        self.port = port
        self._server = server

    async def stop(self, grace: float | None = 0.2) -> None:
        """Stop serving (open streams are cancelled); the dispatches are kept."""
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace)

    async def __aenter__(self) -> DispatchServer:
        """Start the server."""
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Stop the server."""
        await self.stop()
