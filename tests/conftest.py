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


@pytest.fixture
def another_site() -> SiteConfig:
    """Another site whose ids overlap the default site's: microgrid id 2, id 10 is a PV
    inverter, 20 → 21 the only battery group, no 30, 31, 40 (a server restarted with
    another site on the same port)."""
    import tomllib
    from importlib import resources

    from simulator.config import site_from_dict

    data = tomllib.loads(resources.files("simulator.sites").joinpath("default.toml").read_text())
    data["microgrid"]["id"] = 2
    data["microgrid"]["name"] = "another site"
    drop = {11, 30, 31, 32, 40, 41, 42}
    comps = [c for c in data["component"] if c["id"] not in drop]
    for i, c in enumerate(comps):
        if c["id"] == 10:
            comps[i] = {"id": 10, "category": "inverter", "type": "pv", "name": "PV inverter B",
                        "rated_lower_w": -80_000.0}
    data["component"] = comps
    data["connection"] = [
        c for c in data["connection"] if c["source"] not in drop and c["destination"] not in drop
    ]
    return site_from_dict(data)
