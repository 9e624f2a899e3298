"""Shared fixtures: a running simulator on loopback.

* ``sim``: a started `simulator.server.SimulatorServer` on the default site
  (port 0, time_scale 1, telemetry 10 Hz); stopped at teardown.
* ``feeder_site``: ``feeder_site(load_w, inverter_on_grid=False)`` is a
  `SiteConfig` with two branches on the grid connection point (meters 2 and 3),
  or an inverter directly on it.
* ``sim_factory``: ``await sim_factory(site=None, **kwargs)`` starts another
  server (``site`` = a `SiteConfig`, a path, or None for the default site;
  kwargs go to `SimulatorServer`), all stopped at teardown.

Every test runs in its own empty current directory (``tmp_path``).

Helpers that are not fixtures live in ``tests/support/testkit.py`` (``from testkit import ...``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from simulator.config import SiteConfig, load_site, site_from_dict
from simulator.server import SimulatorServer

SimFactory = Callable[..., Awaitable[SimulatorServer]]

# Shared helper modules (``testkit``) import by name: `--import-mode=importlib` puts
# no test folder on sys.path. Only ``tests/support`` goes there: ``tests/`` itself
# would make its ``actors/``, ``controller/``… folders shadow the real packages
# (as namespace packages) wherever the project is not on sys.path.
_SUPPORT = str(Path(__file__).resolve().parent / "support")
if _SUPPORT not in sys.path:
    sys.path.insert(0, _SUPPORT)


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs in its own empty directory: files a run writes by default (the
    billing state ``gridloop-state.json`` of ``gridloop run --api``) never leak from one
    test into another, nor into the checkout."""
    monkeypatch.chdir(tmp_path)


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


def _feeder_site_dict(
    load_w: float = 100_000.0, *, inverter_on_grid: bool = False
) -> dict[str, Any]:
    """A site with two branches on the grid connection point 1 and a constant load.

    ``grid 1 -> meter 2 -> inverter 10 -> battery 11`` and ``grid 1 -> meter 3``
    (the load, ``load_w``), or with ``inverter_on_grid`` the inverter directly on
    the grid connection point (no meter 2). Inverter 10: ±100 kW, no exclusion
    band, fast; battery 11: 400 kWh at 50 %. No noise anywhere.
    """
    components: list[dict[str, Any]] = [
        {"id": 1, "category": "grid"},
        {"id": 3, "category": "meter", "name": "load feeder", "load_share": 1.0},
        {"id": 10, "category": "inverter", "type": "battery", "rated_lower_w": -100_000.0,
         "rated_upper_w": 100_000.0, "response_delay_s": 0.05, "ramp_w_per_s": 1_000_000.0},
        {"id": 11, "category": "battery", "capacity_wh": 400_000.0, "soc_pct": 50.0,
         "max_charge_w": 100_000.0, "max_discharge_w": 100_000.0},
    ]
    conns = [(1, 3), (10, 11)]
    if inverter_on_grid:
        conns.append((1, 10))
    else:
        components.append({"id": 2, "category": "meter", "name": "battery feeder"})
        conns += [(1, 2), (2, 10)]
    return {
        "microgrid": {"id": 9, "name": "two feeders"},
        "component": components,
        "connection": [{"source": s, "destination": d} for s, d in conns],
        "load": {"base_w": load_w},
    }


@pytest.fixture
def feeder_site() -> Callable[..., SiteConfig]:
    """`feeder_site(load_w=..., inverter_on_grid=False)`: `_feeder_site_dict` as a `SiteConfig`."""

    def make(load_w: float = 100_000.0, *, inverter_on_grid: bool = False) -> SiteConfig:
        return site_from_dict(_feeder_site_dict(load_w, inverter_on_grid=inverter_on_grid))

    return make


@pytest.fixture
def another_site() -> SiteConfig:
    """Another site whose ids overlap the default site's: microgrid id 2, id 10 is a PV
    inverter, 20 → 21 the only battery group, no 30, 31, 40 (a server restarted with
    another site on the same port)."""
    import tomllib
    from importlib import resources

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
