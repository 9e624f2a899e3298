"""``gridloop bench site`` over TLS with an API key, as ``gridloop run`` connects.

Real gRPC on loopback against a `SimulatorServer` serving TLS only with an API
key, and only the v1 API (the original API sites in the field run; the other
versions are the bench's default tests): the right root and key (from
``GRIDLOOP_API_KEY``) run the steps on v1; a wrong key is one line with exit
status 2 and no setpoint reaches the site.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from testkit import ENTRY

from controller.lab.bench import site_dict
from simulator.config import site_from_dict
from simulator.server import SimulatorServer

pytestmark = pytest.mark.integration

HANG_GUARD_S = 120.0


async def _bench(port: int, *args: str, key: str) -> tuple[int | None, str]:
    env = {**os.environ, "GRIDLOOP_API_KEY": key}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", ENTRY, "bench", "site", "--api",
        f"grpc://localhost:{port}?ssl=true", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )
    _out, err = await asyncio.wait_for(proc.communicate(), HANG_GUARD_S)
    assert "Traceback" not in err.decode()
    return proc.returncode, err.decode()


async def test_bench_site_over_tls_with_an_api_key(
    sim_factory: Any, tls: Any, tmp_path: Path
) -> None:
    srv: SimulatorServer = await sim_factory(
        site_from_dict(site_dict(1)), api_key="s3cret", tls_cert=tls.server.cert_pem,
        tls_key=tls.server.key_pem, api_versions=("v1",),
    )
    code, err = await _bench(srv.port, "--root-cert", str(tls.ca), key="wrong")
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1
    assert "UNAUTHENTICATED" in err
    assert srv.stats()["setpoints_received"] == 0
    out = tmp_path / "tls.json"
    code, err = await _bench(srv.port, "--root-cert", str(tls.ca), "--steps", "2", "--hold",
                             "0.5", "--step-w", "2000", "--json", str(out), key="s3cret")
    assert code == 0, err
    data = json.loads(out.read_text())
    assert data["api_version"] == "v1"
    assert data["inverters"]["1000"]["responded"] == 2
    assert not data["inverters"]["1000"]["setpoints_failed"]
