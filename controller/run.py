"""``gridloop run``: the service with the operator's outputs around it.

:func:`run_main` loads the config, checks the output paths, builds the
observers the flags ask for (dashboard or status lines, ``--record`` CSV,
``--metrics-port``), runs :func:`controller.runtime.service.run_service` on
uvloop, prints the summary, writes ``--summary-json`` and returns the exit
status. This is where the runtime and the operator I/O meet.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import sys
import zoneinfo
from pathlib import Path

from actors import (
    DistributionOutcome,
)
from controller.errors import (
    ConfigError,
    GridloopError,
    OutputPathError,
    RecordingError,
    UserError,
)
from controller.ops.outputs import check_outputs
from controller.ops.recording import CsvRecorder
from controller.runtime.config import GridloopConfig, load_config
from controller.runtime.control import Observer, OutcomeObserver
from controller.runtime.embedded import site_input_files
from controller.runtime.process import catch_stop_signals
from controller.runtime.records import CycleRecord
from controller.runtime.schedule_file import load_schedule
from controller.runtime.service import RunOptions, run_service, schedule_path, state_file

_LOG = logging.getLogger("gridloop.controller")


def run_main(options: RunOptions, stop: asyncio.Event | None = None) -> int:
    """``gridloop run``: load the config, run, print the summary; return the exit status.

    Args:
        options: What the command line asked for.
        stop: Set by the stop signals since the process started
            (:func:`controller.runtime.process.catch_stop_signals`); None catches them from here.

    Returns:
        0: the run ended normally and every output was written. 2: bad input
        (flags, config, site file, output paths, an unreachable or refusing
        server), found at start-up or when the server refuses us. 1: a runtime
        error, or data lost (the recording stopped at a failed write, or
        ``--summary-json`` could not be written at the end); the summary is
        printed all the same. 3: the server came back as another site and the run
        stopped. 4: another client commands the site and the run stopped.
        5: the safe stop's 0 W was not confirmed by every inverter gridloop had
        commanded (the summary names them). 5, 3 and 4 take precedence over 1.
    """
    if stop is None:
        with catch_stop_signals(hup_stops=options.schedule_path is None) as caught:
            return run_main(options, caught)
    from actors import run as run_on_uvloop
    from controller.ops.logs import setup_logging

    setup_logging(options.log_level, options.log_format)
    try:
        config = load_config(options.config_path)
        schedule = schedule_path(config, options)
        if schedule is not None:  # refused before anything starts; the zone places it later
            load_schedule(schedule, zoneinfo.ZoneInfo("UTC"))
    except ConfigError as exc:
        sys.stderr.write(f"gridloop run: {exc}\n")
        return 2
    named = state_file(config, options)
    outputs = {"--record": options.record_csv, "--summary-json": options.summary_json}
    if named is not None:
        outputs[named[0]] = str(named[1])
    try:
        check_outputs(outputs, _input_files(config, options))
    except OutputPathError as exc:
        sys.stderr.write(f"gridloop run: {exc}\n")
        return 2
    try:
        with contextlib.ExitStack() as stack:
            observers = _observers(options, stack)
            # Collect the start-up garbage once and take everything alive now
            # (modules, config, observers) out of the collector's view: full
            # collections then scan only what the run allocates, and a ~15 ms
            # pause no longer lands in the middle of a control step. Here, not in
            # `run_service`: that one leaves an embedding program's gc alone.
            gc.collect()
            gc.freeze()
            summary = run_on_uvloop(
                run_service(
                    config,
                    options,
                    observers.callbacks,
                    outcome_observers=observers.outcome_callbacks,
                    stop=stop,
                )
            )
            observers.close()
    except UserError as exc:
        sys.stderr.write(f"gridloop run: {exc}\n")
        return 2
    except GridloopError as exc:
        sys.stderr.write(f"gridloop run: {exc}\n")
        return 1
    summary.recording_error = observers.recording_error
    # 5 failed safe stop, 3 site changed, 4 another client: each was logged as one
    # line and the summary names it.
    status = summary.exit_status
    sys.stdout.write(summary.render())
    sys.stdout.flush()
    if summary.recording_error is not None:
        sys.stderr.write(
            f"gridloop run: --record = {options.record_csv!r}: recording incomplete:"
            f" {summary.recording_error}\n"
        )
        status = status or 1
    if options.summary_json:
        try:
            Path(options.summary_json).write_text(json.dumps(summary.to_json(), indent=2) + "\n")
        except OSError as exc:
            sys.stderr.write(
                f"gridloop run: --summary-json = {options.summary_json!r}: cannot write:"
                f" {exc.strerror or exc}\n"
            )
            status = status or 1
    return status


def _input_files(config: GridloopConfig, options: RunOptions) -> dict[str, Path | str | None]:
    """The files this run reads, by the flag or config field that names them.

    The embedded simulator's site file and the load/PV CSVs it names are
    included (they are read by the child process).
    """
    inputs: dict[str, Path | str | None] = {"--config": options.config_path}
    if options.schedule_path is not None:
        inputs["--schedule"] = options.schedule_path
    else:
        inputs[f"{config.source}: schedule.file"] = config.schedule.file
    if options.root_cert_path is not None:
        inputs["--root-cert"] = options.root_cert_path
    else:
        inputs[f"{config.source}: api.root_cert"] = config.api.root_cert
    if (options.api_url or config.api.url) is None:
        if options.site_path is not None:
            site_name, site_path = "--site", options.site_path
        elif config.simulator.site is not None:
            site_name, site_path = f"{config.source}: simulator.site", str(config.simulator.site)
        else:
            site_name, site_path = "the default site", None
        site_file, *csvs = site_input_files(site_path)
        inputs[site_name] = site_file
        for csv in csvs:
            inputs[f"a CSV named by {site_file}"] = csv
    return inputs


class _Observers:
    """The run's observers (dashboard or log line, CSV recording, metrics), built from flags.

    The CSV file and the metrics port are opened before the run starts, so a
    bad path or a busy port fails at once with one line; the recorder's
    columns come from the first record (the site's groups are known then).
    A write that fails during the run (a full disk) stops the recording with
    one warning and sets :attr:`recording_error`; control goes on.
    """

    def __init__(self, options: RunOptions, stack: contextlib.ExitStack) -> None:
        from controller.ops.dashboard import LiveDashboard, LogLine
        from controller.ops.metrics import MetricsError, MetricsExporter

        self.callbacks: list[Observer] = []
        self.outcome_callbacks: list[OutcomeObserver] = []
        self.recording_error: str | None = None
        """Why the recording stopped early (it is not retried); None while it is fine."""
        self._record_path = options.record_csv
        self._recorder: CsvRecorder | None = None
        stack.callback(self.close)  # also on the way out of a failed run
        if self._record_path is not None:
            try:
                with open(self._record_path, "w", encoding="utf-8"):
                    pass
            except OSError as exc:
                raise UserError(
                    f"--record = {self._record_path!r}: cannot create: {exc.strerror}"
                ) from None
            self.callbacks.append(self._record)
        if options.metrics_port is not None:
            exporter = MetricsExporter(options.metrics_port)
            try:
                stack.enter_context(exporter)
            except MetricsError as exc:
                raise UserError(f"--metrics-port = {options.metrics_port}: {exc}") from None
            sys.stderr.write(f"gridloop run: metrics on {exporter.url}\n")

            def observe(record: CycleRecord) -> None:
                exporter.observe_cycle(record, record.cycle_duration_ms / 1e3)

            self.callbacks.append(observe)

            def observe_dispatch(outcome: DistributionOutcome) -> None:
                if outcome.sent > 0 and outcome.done_time_ns >= outcome.request_time_ns:
                    exporter.observe_dispatch(outcome.latency_ms / 1e3)

            self.outcome_callbacks.append(observe_dispatch)
        if options.dashboard:
            dashboard = stack.enter_context(LiveDashboard())
            self.callbacks.append(dashboard.update)
        else:
            line = LogLine(interval_s=5.0, level=logging.WARNING)
            self.callbacks.append(line.update)

    def _record(self, record: CycleRecord) -> None:
        """Write one CSV row; on the first failure stop recording (control goes on)."""
        if self.recording_error is not None:
            return
        try:
            if self._recorder is None:
                assert self._record_path is not None
                self._recorder = CsvRecorder(self._record_path, [g.name for g in record.groups])
            self._recorder.write(record)
        except RecordingError as exc:
            self._recording_failed(exc)

    def _recording_failed(self, exc: RecordingError) -> None:
        """One warning, then no more writes: a full disk must not flood the log."""
        self.recording_error = str(exc)
        _LOG.warning("recording stopped, control goes on: %s", exc)
        recorder, self._recorder = self._recorder, None
        if recorder is not None:
            with contextlib.suppress(RecordingError):  # the file is closed even so
                recorder.close()

    def close(self) -> None:
        """Flush and close the recording (idempotent); a failure is kept, not raised."""
        recorder, self._recorder = self._recorder, None
        if recorder is not None:
            try:
                recorder.close()
            except RecordingError as exc:
                self._recording_failed(exc)


def _observers(options: RunOptions, stack: contextlib.ExitStack) -> _Observers:
    return _Observers(options, stack)
