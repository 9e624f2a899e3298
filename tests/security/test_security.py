"""TLS and API keys end to end: ``gridloop run`` and ``gridloop sim`` over real gRPC.

The simulator runs in the test's event loop (the `sim_factory` fixture) and
``gridloop run`` is a child process started with asyncio, so the loop keeps
serving while the child talks to it. A refusal (wrong or missing key, untrusted
certificate) must end the run with exit status 2 and one line on stderr.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from frequenz.client.base.exception import OperationUnauthenticated
from frequenz.client.microgrid import MicrogridApiClient as OfficialClient
from testkit import ENTRY

from actors import API_VERSIONS, ApiError, MicrogridApiClient, Site
from controller.runtime.embedded import SimulatorProcess

pytestmark = pytest.mark.integration

KEY = "s3cret-key"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "GRIDLOOP_API_KEY"}
    env.update(extra)
    return env


async def _run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run ``gridloop run ARGS`` to completion; return (status, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", ENTRY, "run", *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env if env is not None else _env(),
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


async def _served_and_refused(
    served: MicrogridApiClient, refused: MicrogridApiClient, status: str
) -> None:
    """``served`` lists the components; ``refused`` fails with ``status``; both are closed."""
    try:
        assert await served.list_components()
        with pytest.raises(ApiError) as info:
            await refused.microgrid()
        assert info.value.status == status
    finally:
        await served.close()
        await refused.close()


def _url(srv: Any, ssl: bool = False) -> str:
    return f"grpc://127.0.0.1:{srv.port}?ssl={'true' if ssl else 'false'}"


# ------------------------------------------------------------------ API keys


async def test_right_key_runs_and_setpoints_reach_the_simulator(sim_factory: Any) -> None:
    srv = await sim_factory(api_key=KEY)
    status, out, err = await _run("--api", _url(srv), "--api-key", KEY, "--duration", "3")
    assert status == 0, err
    assert "setpoints" in out
    assert srv.stats()["setpoints_accepted"] > 0


async def test_key_from_environment(sim_factory: Any) -> None:
    srv = await sim_factory(api_key=KEY)
    status, _, err = await _run(
        "--api", _url(srv), "--duration", "2", env=_env(GRIDLOOP_API_KEY=KEY)
    )
    assert status == 0, err
    assert srv.stats()["setpoints_accepted"] > 0


async def test_key_from_config_file(sim_factory: Any, tmp_path: Path) -> None:
    srv = await sim_factory(api_key=KEY)
    cfg = tmp_path / "gridloop.toml"
    cfg.write_text(f'[api]\nurl = "{_url(srv)}"\napi_key = "{KEY}"\n')
    status, _, err = await _run("--config", str(cfg), "--duration", "2")
    assert status == 0, err
    assert srv.stats()["setpoints_accepted"] > 0


@pytest.mark.parametrize("key", ["wrong-key", None], ids=["wrong", "missing"])
async def test_wrong_or_missing_key_is_one_line_and_exit_2(
    sim_factory: Any, key: str | None
) -> None:
    srv = await sim_factory(api_key=KEY)
    args = ["--api", _url(srv), "--duration", "30"]
    if key is not None:
        args += ["--api-key", key]
    status, _, err = await _run(*args)
    assert status == 2, err
    lines = _lines(err)
    assert len(lines) == 1, err
    assert "UNAUTHENTICATED" in lines[0]
    assert _url(srv) in lines[0]
    assert "--api-key" in lines[0]  # the hint
    assert KEY not in err
    assert srv.stats()["setpoints_received"] == 0


async def test_key_revoked_during_the_run_stops_it_with_one_line(sim_factory: Any) -> None:
    srv = await sim_factory(api_key=KEY)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", ENTRY, "run", "--api", _url(srv), "--api-key", KEY,
        "--duration", "120",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_env(),
    )
    try:
        deadline = time.monotonic() + 30
        while srv.stats()["setpoints_accepted"] == 0:
            assert proc.returncode is None
            assert time.monotonic() < deadline, "no setpoint arrived"
            await asyncio.sleep(0.05)
        srv.api_key = "rotated"  # every new call is now refused
        srv.break_streams()  # the open telemetry streams reconnect and are refused
        _, err_b = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    err = err_b.decode()
    assert proc.returncode == 2, err
    last = _lines(err)[-1]
    assert last.startswith("gridloop run: "), err
    assert "UNAUTHENTICATED" in last
    assert _url(srv) in last
    assert sum("gridloop run:" in line for line in _lines(err)) == 1, err


async def test_site_reports_a_refusal_during_the_run(sim_factory: Any) -> None:
    srv = await sim_factory(api_key=KEY)
    site = await Site.connect(f"grpc://{srv.address}", api_key=KEY)
    async with site:
        srv.api_key = "rotated"
        srv.break_streams()
        err = await asyncio.wait_for(site.wait_fatal_error(), 20)
    assert isinstance(err, ApiError)
    assert err.status == "UNAUTHENTICATED"
    assert site.fatal_error is err
    assert site.telemetry.refused


@pytest.mark.parametrize(
    ("api_version", "method"),
    [("v1", "SetComponentPowerActive"), ("v1alpha18", "SetElectricalComponentPower"),
     ("v1alpha19", "SetElectricalComponentPower")],
)
async def test_site_reports_a_refused_setpoint(
    sim_factory: Any, api_version: str, method: str
) -> None:
    srv = await sim_factory(api_key=KEY)
    site = await Site.connect(f"grpc://{srv.address}", api_key=KEY, api_version=api_version)
    async with site:
        deadline = time.monotonic() + 20
        while not site.measurements().fleet_upper_w > 0:
            assert time.monotonic() < deadline, "the fleet never became usable"
            await asyncio.sleep(0.05)
        srv.api_key = "rotated"  # open telemetry streams live on; new calls are refused
        outcome = await asyncio.wait_for(site.set_power(10_000.0), 20)
        err = await asyncio.wait_for(site.wait_fatal_error(), 20)
    assert outcome is not None
    assert err.status == "UNAUTHENTICATED"
    assert err.method == method
    assert not site.telemetry.refused
    assert srv.stats()["setpoints_accepted"] == 0


# ------------------------------------------------------------------ TLS


@pytest.mark.parametrize("api_version", API_VERSIONS)
async def test_tls_with_the_right_root_works(
    sim_factory: Any, tls: Any, api_version: str
) -> None:
    srv = await sim_factory(
        api_key=KEY,
        tls_cert=tls.server.cert_pem,
        tls_key=tls.server.key_pem,
        api_versions=(api_version,),
    )
    assert srv.tls
    status, _, err = await _run(
        "--api", _url(srv, ssl=True), "--api-key", KEY, "--root-cert", str(tls.ca),
        "--duration", "2",
    )
    assert status == 0, err
    assert f"speaks Microgrid API {api_version}" in err
    assert srv.stats()["setpoints_accepted"] > 0


async def test_tls_root_from_config_file(sim_factory: Any, tls: Any, tmp_path: Path) -> None:
    srv = await sim_factory(tls_cert=tls.server.cert_pem, tls_key=tls.server.key_pem)
    cfg = tmp_path / "gridloop.toml"
    cfg.write_text(f'[api]\nurl = "{_url(srv, ssl=True)}"\nroot_cert = "{tls.ca}"\n')
    status, _, err = await _run("--config", str(cfg), "--duration", "2")
    assert status == 0, err
    assert srv.stats()["setpoints_accepted"] > 0


@pytest.mark.parametrize("root", ["other", "system"])
async def test_untrusted_certificate_is_refused_with_one_line(
    sim_factory: Any, tls: Any, root: str
) -> None:
    srv = await sim_factory(
        api_key=KEY, tls_cert=tls.server.cert_pem, tls_key=tls.server.key_pem
    )
    args = ["--api", _url(srv, ssl=True), "--api-key", KEY, "--duration", "30"]
    if root == "other":
        args += ["--root-cert", str(tls.other_ca)]
    status, _, err = await _run(*args)
    assert status == 2, err
    lines = _lines(err)
    assert len(lines) == 1, err
    assert _url(srv, ssl=True) in lines[0]
    assert "CERTIFICATE_VERIFY_FAILED" in lines[0]
    assert "--root-cert" in lines[0]  # the hint
    assert srv.stats()["setpoints_received"] == 0


async def test_plaintext_client_cannot_talk_to_a_tls_server(
    sim_factory: Any, tls: Any
) -> None:
    srv = await sim_factory(tls_cert=tls.server.cert_pem, tls_key=tls.server.key_pem)
    status, _, err = await _run("--api", _url(srv, ssl=False), "--duration", "30")
    assert status == 2, err
    assert len(_lines(err)) == 1, err
    assert "UNAVAILABLE" in err


async def test_actor_client_over_tls(sim_factory: Any, tls: Any) -> None:
    srv = await sim_factory(
        api_key=KEY, tls_cert=tls.server.cert_pem, tls_key=tls.server.key_pem
    )
    good = MicrogridApiClient(_url(srv, ssl=True), api_key=KEY, root_cert=tls.ca.read_bytes())
    bad = MicrogridApiClient(
        _url(srv, ssl=True), api_key=KEY, root_cert=tls.other_ca.read_bytes()
    )
    await _served_and_refused(good, bad, "UNAVAILABLE")


def test_server_needs_both_cert_and_key(tls: Any) -> None:
    from simulator.config import load_site
    from simulator.server import SimulatorServer

    with pytest.raises(ValueError, match="together"):
        SimulatorServer(load_site(None), tls_cert=tls.server.cert_pem)


# ------------------------------------------------------------------ gridloop sim


def _sim_child(*args: str) -> SimulatorProcess:
    """``gridloop sim ARGS`` through the one simulator launcher (no GRIDLOOP_API_KEY)."""
    return SimulatorProcess(args, command=(sys.executable, "-c", ENTRY, "sim"), env=_env())


@pytest.fixture
async def sim_cli() -> AsyncIterator[str]:
    """``gridloop sim --port 0 --api-key KEY`` as a child process; yields its address."""
    async with _sim_child("--port", "0", "--api-key", KEY) as sim:
        yield sim.address


async def test_sim_cli_requires_the_key(sim_cli: str) -> None:
    address = sim_cli
    assert address.startswith("127.0.0.1:")  # loopback unless --host says otherwise
    official = OfficialClient(f"grpc://{address}?ssl=false")
    try:
        with pytest.raises(OperationUnauthenticated):
            await official.list_components()
    finally:
        await official.disconnect()
    ours = MicrogridApiClient(f"grpc://{address}", api_key=KEY)
    wrong = MicrogridApiClient(f"grpc://{address}", api_key="nope")
    await _served_and_refused(ours, wrong, "UNAUTHENTICATED")


async def test_sim_cli_serves_tls(tls: Any) -> None:
    async with _sim_child(
        "--port", "0", "--tls-cert", str(tls.server_cert), "--tls-key", str(tls.server_key)
    ) as sim:
        address = sim.address
        port = address.rsplit(":", 1)[-1]
        client = MicrogridApiClient(
            f"grpc://localhost:{port}?ssl=true", root_cert=tls.ca.read_bytes()
        )
        try:
            assert await client.list_components()
        finally:
            await client.close()
        channel = grpc.aio.insecure_channel(address)
        try:
            with pytest.raises(grpc.aio.AioRpcError):
                await asyncio.wait_for(channel.channel_ready(), 1.0)
        except TimeoutError:
            pass  # a plaintext channel never becomes ready against a TLS port
        finally:
            await channel.close()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--tls-cert", "CERT"], "together"),
        (["--tls-cert", "CERT", "--tls-key", "/nonexistent/key.pem"], "--tls-key"),
        (["--tls-cert", "CA", "--tls-key", "KEY"], "matching private key"),
        (["--api-key", ""], "--api-key"),
    ],
)
async def test_sim_cli_bad_security_flags_are_one_line(
    tls: Any, args: list[str], needle: str
) -> None:
    subst = {"CERT": str(tls.server_cert), "KEY": str(tls.server_key), "CA": str(tls.ca)}
    argv = [subst.get(a, a) for a in args]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", ENTRY, "sim", "--port", "0", *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_env(),
    )
    _, err_b = await asyncio.wait_for(proc.communicate(), 30)
    err = err_b.decode()
    assert proc.returncode == 2, err
    assert len(_lines(err)) == 1, err
    assert needle in err


@pytest.mark.parametrize(
    ("url", "key", "warned"),
    [
        ("grpc://10.1.2.3:62060?ssl=false", "s3cr3t-key", True),
        ("grpc://site.example:62060?ssl=false", "s3cr3t-key", True),
        ("grpc://10.1.2.3:62060?ssl=true", "s3cr3t-key", False),
        ("grpc://127.0.0.1:62060", "s3cr3t-key", False),
        ("grpc://10.1.2.3:62060?ssl=false", None, False),
    ],
)
async def test_plaintext_key_to_a_remote_host_is_warned_about(
    url: str, key: str | None, warned: bool, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="actors._client"):
        client = MicrogridApiClient(url, api_key=key)
    await client.close()
    hits = [r for r in caplog.records if "plaintext" in r.getMessage()]
    assert bool(hits) is warned
    if warned:
        assert "s3cr3t-key" not in hits[0].getMessage()  # the key itself is never logged
