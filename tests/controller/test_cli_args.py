"""The one command-line parser of the controller's commands: one line, exit status 2."""

from __future__ import annotations

import pytest

from controller.cli import main as gridloop_main
from controller.lab.bench import main as bench_main
from controller.lab.replay.cli import main as replay_main
from controller.ops.report import main as report_main


@pytest.mark.parametrize(
    ("entry", "argv", "prog", "expected"),
    [
        (gridloop_main, ["run", "--duration", "x"], "gridloop run",
         "--duration = 'x': not a number"),
        (gridloop_main, ["run", "--metrics-port", "70000"], "gridloop run",
         "--metrics-port = '70000': must be 0..65535"),
        (gridloop_main, ["run", "--bogus"], "gridloop run", "unrecognized arguments: --bogus"),
        (bench_main, ["latency", "--inverters", "0"], "gridloop bench latency",
         "--inverters = '0': must be >= 1"),
        (bench_main, ["latency", "--inverters", "2", "--interval", "nan"],
         "gridloop bench latency", "--interval = 'nan': must be a positive number"),
        (replay_main, ["--bogus"], "gridloop replay", "unrecognized arguments: --bogus"),
        (report_main, ["x.csv", "--dpi", "z"], "gridloop report", "argument --dpi: invalid int"),
    ],
)
def test_usage_errors_are_one_line_naming_the_flag(
    capsys: pytest.CaptureFixture[str], entry, argv, prog, expected  # type: ignore[no-untyped-def]
) -> None:
    try:
        status = entry(argv)
    except SystemExit as exc:
        status = exc.code
    assert status == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{prog}: error: "), err
    assert err.endswith(f" (see {prog} --help)\n"), err
    assert err.count("\n") == 1, err
    assert expected in err, err
