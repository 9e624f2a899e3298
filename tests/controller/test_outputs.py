"""`gridloop run`'s output files: checked at start-up, never an input, a failed recording.

Real `gridloop run` processes on the embedded simulator (or refused before it
starts). The files given as inputs are compared byte for byte afterwards: a
refused run must leave them as they were.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import pytest
from testkit import ENTRY

from controller.ops.outputs import OutputPathError, check_outputs, same_file


def gridloop(*args: str, cwd: Path | None = None) -> tuple[int, str, str]:
    proc = subprocess.run(
        [sys.executable, "-c", ENTRY, "run", "--no-dashboard", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )
    return proc.returncode, proc.stdout, proc.stderr


def _lines(text: str) -> list[str]:
    """The non-blank stderr lines other than the status lines (grid formula, progress)."""
    return [
        line
        for line in text.splitlines()
        if line.strip() and "gridloop.controller.status:" not in line
    ]


# ------------------------------------------------------------ an output is an input


def _site(tmp_path: Path, *, load_csv: str | None = None) -> Path:
    text = resources.files("simulator.sites").joinpath("default.toml").read_text()
    if load_csv is not None:
        start, end = text.index("\n[load]\n"), text.index("\n[pv]\n")
        load = f'\n[load]\ncsv = "{load_csv}"\ncolumn = "load_w"\npeak_w = 300000.0\n'
        text = text[:start] + load + text[end:]
    path = tmp_path / "site.toml"
    path.write_text(text)
    return path


def _load_csv(tmp_path: Path) -> Path:
    path = tmp_path / "load.csv"
    rows = [f"2024-01-01T00:{m:02d}:00+00:00,{100 + m}" for m in range(0, 60, 15)]
    path.write_text("datetime,load_w\n" + "\n".join(rows) + "\n")
    return path


Case = Callable[[Path], tuple[list[str], Path, str]]
"""tmp_path → (arguments, the input file that must stay unchanged, what the line names)."""


def _record_is_the_site(tmp_path: Path) -> tuple[list[str], Path, str]:
    site = _site(tmp_path)
    return ["--site", str(site), "--record", str(site)], site, "is --site"


def _record_is_a_symlink_to_the_site(tmp_path: Path) -> tuple[list[str], Path, str]:
    site = _site(tmp_path)
    link = tmp_path / "run.csv"
    link.symlink_to(site)
    return ["--site", str(site), "--record", str(link)], site, "is --site"


def _summary_is_the_config(tmp_path: Path) -> tuple[list[str], Path, str]:
    config = tmp_path / "gridloop.toml"
    config.write_text("[run]\nduration_s = 1\n")
    return ["--config", str(config), "--summary-json", str(config)], config, "is --config"


def _summary_is_a_hard_link_to_the_config(tmp_path: Path) -> tuple[list[str], Path, str]:
    config = tmp_path / "gridloop.toml"
    config.write_text("[run]\nduration_s = 1\n")
    (tmp_path / "out").mkdir()
    link = tmp_path / "out" / "summary.json"
    os.link(config, link)
    return ["--config", str(config), "--summary-json", str(link)], config, "is --config"


def _record_is_the_sites_load_csv(tmp_path: Path) -> tuple[list[str], Path, str]:
    csv = _load_csv(tmp_path)
    site = _site(tmp_path, load_csv="load.csv")  # relative to the site file
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # The recording is named from another directory: the paths differ, the file is one.
    args = ["--site", str(site), "--record", os.path.relpath(csv, elsewhere)]
    return args, csv, f"a CSV named by {site}"


def _record_is_the_root_cert(tmp_path: Path) -> tuple[list[str], Path, str]:
    cert = tmp_path / "ca.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\nnot really\n-----END CERTIFICATE-----\n")
    args = ["--api", "grpc://127.0.0.1:1", "--root-cert", str(cert), "--record", str(cert)]
    return args, cert, "is --root-cert"


@pytest.mark.parametrize(
    "case",
    [
        _record_is_the_site,
        _record_is_a_symlink_to_the_site,
        _summary_is_the_config,
        _summary_is_a_hard_link_to_the_config,
        _record_is_the_sites_load_csv,
        _record_is_the_root_cert,
    ],
)
def test_an_output_naming_an_input_is_refused_and_the_input_kept(
    tmp_path: Path, case: Case
) -> None:
    args, input_file, names = case(tmp_path)
    before = input_file.read_bytes()
    cwd = tmp_path / "elsewhere" if (tmp_path / "elsewhere").exists() else tmp_path
    rc, out, err = gridloop("--duration", "1", *args, cwd=cwd)
    assert rc == 2, err
    assert len(_lines(err)) == 1, err
    assert names in err
    assert "refusing to overwrite it" in err
    assert out == ""  # nothing ran
    assert input_file.read_bytes() == before


def test_record_and_summary_json_naming_one_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    rc, out, err = gridloop(
        "--duration", "1", "--record", str(tmp_path / "run.out"),
        "--summary-json", str(tmp_path / "sub" / ".." / "run.out"),
    )  # fmt: skip
    assert rc == 2, err
    assert len(_lines(err)) == 1, err
    assert "--summary-json" in err
    assert "is the same file as --record" in err
    assert out == ""


def test_check_outputs_compares_files_not_spellings(tmp_path: Path) -> None:
    source = tmp_path / "a.toml"
    source.write_text("x")
    (tmp_path / "b.toml").symlink_to(source)
    assert same_file(tmp_path / "b.toml", source)
    assert same_file(tmp_path / "." / "a.toml", source)
    assert not same_file(tmp_path / "c.toml", source)  # not there yet: another file
    with pytest.raises(OutputPathError, match="is --config"):
        check_outputs({"--record": str(tmp_path / "b.toml")}, {"--config": source})
    new = str(tmp_path / "c.toml")
    check_outputs({"--record": new, "--summary-json": None}, {"--config": source})
    assert not (tmp_path / "c.toml").exists()  # the probe leaves no file behind
    assert source.read_text() == "x"


# ------------------------------------------------------------ unwritable outputs


def test_unwritable_summary_json_is_refused_before_the_run(tmp_path: Path) -> None:
    target = tmp_path / "no" / "such" / "dir" / "summary.json"
    rc, out, err = gridloop("--duration", "1", "--summary-json", str(target))
    assert rc == 2, err
    assert _lines(err) == [
        f"gridloop run: --summary-json = {str(target)!r}: cannot write: No such file or directory"
    ]
    assert out == ""  # refused at start-up, not after the run


needs_dev_full = pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")


@needs_dev_full
def test_full_disk_recording_warns_once_keeps_controlling_and_writes_the_summary(
    tmp_path: Path,
) -> None:
    summary_path = tmp_path / "summary.json"
    rc, out, err = gridloop(
        "--duration", "3", "--record", "/dev/full", "--summary-json", str(summary_path)
    )
    assert rc == 1, err  # data was lost: not a clean run, not bad input
    assert "Traceback" not in err
    warnings = [line for line in _lines(err) if "recording stopped" in line]
    assert len(warnings) == 1, err
    assert "No space left on device" in warnings[0]
    assert _lines(err)[-1] == (
        "gridloop run: --record = '/dev/full': recording incomplete:"
        " /dev/full: cannot write: No space left on device"
    )
    assert out.startswith("gridloop run: ")  # the printed summary
    assert "recording        INCOMPLETE: /dev/full: cannot write" in out
    summary = json.loads(summary_path.read_text())
    assert summary["recording_error"] == "/dev/full: cannot write: No space left on device"
    assert summary["grid_samples"] > 0  # control went on after the recording failed


@needs_dev_full
def test_summary_json_on_a_full_disk_still_prints_the_summary() -> None:
    rc, out, err = gridloop("--duration", "1e-9", "--summary-json", "/dev/full")
    assert rc == 1, err
    assert _lines(err) == [
        "gridloop run: --summary-json = '/dev/full': cannot write: No space left on device"
    ]
    assert out.startswith("gridloop run: ")


def test_complete_recording_has_no_recording_error(tmp_path: Path) -> None:
    summary_path = tmp_path / "summary.json"
    record = tmp_path / "run.csv"
    rc, out, err = gridloop(
        "--duration", "2", "--record", str(record), "--summary-json", str(summary_path)
    )
    assert rc == 0, err
    assert json.loads(summary_path.read_text())["recording_error"] is None
    assert "recording" not in out
    assert record.read_text().startswith("time_s,")
