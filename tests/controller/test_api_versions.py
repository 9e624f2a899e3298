"""`gridloop run --api` does the main job on every Microgrid API version.

Each run controls a simulator that serves one version only (so the version is
found, not assumed): the default site's 30-minute scenario at 60x, the peak
shaved, frequency followed, no setpoint out of bounds at the site, exit 0, and
the version named in the summary, its JSON and the start-up log line.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from testkit import ENTRY, assert_main_job_done

from actors import API_VERSIONS

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def _gridloop_run(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", ENTRY, "run", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


# v1alpha19 is the version `gridloop run` finds on the embedded simulator, which serves
# all three: tests/controller/test_service.py runs its main job there. v1 has an adapter
# of its own and runs the whole 30-minute scenario too; v1alpha18 shares v1alpha19's
# adapter (actors/_api_v1alpha.py), so a shorter run checks what differs, the fallback
# to it and its transport, and keeps CI inside its budget.
@pytest.mark.parametrize(("version", "duration_s"), [("v1", 30), ("v1alpha18", 8)])
async def test_the_main_job_on_a_server_of_one_version(
    sim_factory: Any, tmp_path: Path, version: str, duration_s: int
) -> None:
    assert {"v1", "v1alpha18", "v1alpha19"} == set(API_VERSIONS)
    srv = await sim_factory(time_scale=60.0, api_versions=(version,))
    summary_path = tmp_path / "summary.json"
    status, out, err = await _gridloop_run(
        "--api", f"grpc://{srv.address}", "--time-scale", "60", "--duration", str(duration_s),
        "--summary-json", str(summary_path), "--no-dashboard",
    )
    assert status == 0, err
    assert "Traceback" not in err
    assert f"speaks Microgrid API {version}" in err
    assert f"Microgrid API {version})" in out  # the summary's first line
    s = json.loads(summary_path.read_text())
    assert s["api_version"] == version
    if duration_s >= 30:
        assert_main_job_done(s)
    else:
        assert s["setpoints_sent"] > 20
        assert s["setpoints_failed"] == 0
        assert s["fr_energy_required_wh"] > 0.0
    stats = srv.stats()
    assert stats["setpoints_out_of_bounds"] == 0
    assert stats["setpoints_rejected"] == dict.fromkeys(stats["setpoints_rejected"], 0)


async def test_a_version_the_server_does_not_speak_is_one_line(sim_factory: Any) -> None:
    srv = await sim_factory(api_versions=("v1alpha18",))
    status, _, err = await _gridloop_run(
        "--api", f"grpc://{srv.address}", "--api-version", "v1", "--duration", "2",
    )
    assert status == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "UNIMPLEMENTED" in lines[0], err
    assert "ListComponents" in lines[0], err


async def test_an_unknown_api_version_flag_is_one_line() -> None:
    status, _, err = await _gridloop_run("--api-version", "v2", "--duration", "1")
    assert status == 2
    assert err.strip() == (
        "gridloop run: error: argument --api-version: --api-version = 'v2': must be one of"
        " v1alpha19, v1alpha18, v1 (see gridloop run --help)"
    )


def test_the_api_version_in_the_config_is_validated(tmp_path: Path) -> None:
    from controller.errors import ConfigError
    from controller.runtime.config import load_config

    cfg = tmp_path / "gridloop.toml"
    cfg.write_text('[api]\nversion = "v9"\n')
    with pytest.raises(ConfigError, match=r"api\.version.*v9.*must be one of"):
        load_config(cfg)
    cfg.write_text('[api]\nversion = "v1"\n')
    assert load_config(cfg).api.version == "v1"
