"""Fixtures for clients that gridloop did not write (see ``tests/support/foreign_client.py``).

* ``foreign``: ``foreign(version)`` is the betterproto2 + grpclib client of that API
  version (a `foreign_client.ForeignApi`), generated once per session on first use,
  so a version that fails to generate fails only its own tests.
* ``sim_address``: ``HOST:PORT`` of a ``gridloop sim --port 0`` child process on the
  default site, stopped at teardown.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator

import pytest
from foreign_client import ForeignApi, ForeignFactory, generate
from testkit import ENTRY

from controller.runtime.embedded import SimulatorProcess


@pytest.fixture(scope="session")
def foreign(tmp_path_factory: pytest.TempPathFactory) -> ForeignFactory:
    """``foreign(version)``: that version's generated client, cached for the session."""
    cache: dict[str, ForeignApi] = {}

    def get(version: str) -> ForeignApi:
        if version not in cache:
            cache[version] = generate(version, tmp_path_factory.mktemp(f"foreign-{version}"))
        return cache[version]

    return get


@pytest.fixture
async def sim_address() -> AsyncIterator[str]:
    """``gridloop sim --port 0`` (default site, 10 Hz telemetry) through the one launcher."""
    command = (sys.executable, "-c", ENTRY, "sim")
    async with SimulatorProcess(("--port", "0"), command=command) as sim:
        yield sim.address
