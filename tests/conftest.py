"""Shared fixtures: a running simulator on loopback.

* ``sim``: a started `simulator.server.SimulatorServer` on the default site
  (port 0, time_scale 1, telemetry 10 Hz); stopped at teardown.
* ``sim_factory``: ``await sim_factory(site=None, **kwargs)`` starts another
  server (``site`` = a `SiteConfig`, a path, or None for the default site;
  kwargs go to `SimulatorServer`), all stopped at teardown.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from simulator.config import SiteConfig, load_site
from simulator.server import SimulatorServer

SimFactory = Callable[..., Awaitable[SimulatorServer]]


@pytest.fixture
async def sim_factory() -> AsyncIterator[SimFactory]:
    """Start simulators on demand; all are stopped at teardown."""
    started: list[SimulatorServer] = []

    async def factory(
        site: SiteConfig | str | os.PathLike[str] | None = None, **kwargs: Any
    ) -> SimulatorServer:
        cfg = site if isinstance(site, SiteConfig) else load_site(site)
        kwargs.setdefault("host", "127.0.0.1")
        kwargs.setdefault("port", 0)
        server = SimulatorServer(cfg, **kwargs)
        await server.start()
        started.append(server)
        return server

    yield factory
    for server in reversed(started):
        await server.stop(grace=0)


@pytest.fixture
async def sim(sim_factory: SimFactory) -> SimulatorServer:
    """A running simulator on the default site (port 0, time_scale 1)."""
    return await sim_factory()
