"""Regenerate the README samples from a real run on the embedded simulator.

    python docs/make_samples.py            # ~60 s: the default `gridloop run`

Writes ``docs/report.png`` (the ``gridloop report`` figure of the run's
recording) and ``docs/dashboard.txt`` (the live dashboard as text, at the
moment of the run's highest uncontrolled load).
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from rich.console import Console

from controller.ops.dashboard import render_dashboard
from controller.ops.recording import CsvRecorder
from controller.ops.report import render_report
from controller.runtime.config import load_config
from controller.runtime.records import CycleRecord
from controller.runtime.service import RunOptions, run_service

DOCS = Path(__file__).resolve().parent


def main() -> None:
    """Run once, record every cycle, render the figure and the dashboard text."""
    records: list[CycleRecord] = []
    with tempfile.TemporaryDirectory() as tmp:
        csv_path = Path(tmp) / "run.csv"
        recorder: CsvRecorder | None = None

        def observe(record: CycleRecord) -> None:
            nonlocal recorder
            if recorder is None:
                recorder = CsvRecorder(csv_path, [g.name for g in record.groups])
            recorder.write(record)
            records.append(record)

        summary = asyncio.run(run_service(load_config(None), RunOptions(), [observe]))
        assert recorder is not None
        recorder.close()
        render_report(csv_path, DOCS / "report.png", dpi=80, title="gridloop run (default site)")
    peak = max(records, key=lambda r: r.uncontrolled_power_w)
    history = [r for r in records if r.time_s <= peak.time_s][-240:]
    console = Console(record=True, width=100, force_terminal=False, color_system=None)
    console.print(render_dashboard(peak, history))
    (DOCS / "dashboard.txt").write_text(console.export_text())
    print(summary.render(), end="")


if __name__ == "__main__":
    main()
