"""The controller's errors: one tree, rooted at :class:`GridloopError`.

Every error gridloop shows a user derives from :class:`GridloopError` (defined in
``actors._errors``, the lowest layer the runtime shares, and re-exported here), so a
command can catch the root and print ``str(exc)``, always one line, with exit status 2.
The operator modules (dashboard, metrics, recording, report, logs), the service and
the lab tools import their errors from here, not from ``actors``.

* :class:`ConfigError` — a bad gridloop config value: ``FILE: FIELD = VALUE: REASON``.
* :class:`UserError` — something else the user gave cannot work (a flag, an
  unreachable server, an unusable graph).
* :class:`OutputPathError` — an output path (``--record``, ``--summary-json``) is unusable.
* :class:`RecordingError` — the recording cannot be written; carries the path.
* :class:`MetricsError` — the metrics endpoint cannot be served.
* :class:`DashboardError` — a bad dashboard or log-line parameter.
* :class:`LogConfigError` — a bad logging option.
* :class:`ReportError` — ``gridloop report`` cannot make the report.
* :class:`EmbeddedSimulatorError` — the embedded simulator did not start.
* :class:`ReplayError` — bad ``gridloop replay`` input or an unusable result.
* :class:`BenchError` — ``gridloop bench`` could not run;
  :class:`SiteBenchRefusedError` — ``gridloop bench site`` refuses to start on this
  site; :class:`BenchStoppedError` — it ended early (its exit status and one line).
* :class:`PlanningError` — bad input to the peak planner (LP, forecasters, auto limit).

The simulator stands alone (it imports nothing from gridloop), so its
``simulator.config.SiteConfigError`` cannot derive from the root. Where the
controller side meets it, it is wrapped with the same one-line message: the
embedded launcher's child prints it and :class:`EmbeddedSimulatorError` carries
that line; the lab tools raise :class:`ReplayError` / :class:`BenchError` with it.
"""

from __future__ import annotations

import json
from pathlib import Path

from actors import GridloopError

__all__ = [
    "BenchError",
    "BenchStoppedError",
    "ConfigError",
    "DashboardError",
    "EmbeddedSimulatorError",
    "GridloopError",
    "LogConfigError",
    "MetricsError",
    "OutputPathError",
    "PlanningError",
    "RecordingError",
    "ReplayError",
    "ReportError",
    "SiteBenchRefusedError",
    "UserError",
    "show_value",
]


def show_value(value: object) -> str:
    """Render a value TOML-like and short (at most 80 characters), on one line."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, Path):
        text = json.dumps(str(value), ensure_ascii=False)
    else:
        text = repr(value)
    text = " ".join(text.splitlines())
    return text if len(text) <= 80 else text[:77] + "..."


class ConfigError(GridloopError, ValueError):
    """A bad configuration value; ``str()`` is one line: ``FILE: FIELD = VALUE: REASON``."""

    def __init__(self, source: str, field_name: str, value: object, reason: str) -> None:
        """Create the error.

        Args:
            source: The config file (or ``"<config>"`` for an in-memory mapping).
            field_name: Dotted field, e.g. ``"peak_shaving.import_limit_w"``; empty
                for file-level problems (unreadable, bad TOML syntax).
            value: The offending value (ignored when ``field_name`` is empty).
            reason: What is wrong.
        """
        self.source: str = source
        """The config file the value came from."""
        self.field_name: str = field_name
        """The dotted field name (empty for file-level problems)."""
        self.value: object = value
        """The offending value."""
        self.reason: str = reason
        """What is wrong with it."""
        if field_name:
            text = f"{source}: {field_name} = {show_value(value)}: {reason}"
        else:
            text = f"{source}: {reason}"
        super().__init__(" ".join(text.splitlines()))


class UserError(GridloopError):
    """Something the user gave cannot work: one line, exit status 2, no traceback."""


class OutputPathError(GridloopError):
    """An output path cannot be used; ``str()`` is one line naming the flag and path."""


class RecordingError(GridloopError):
    """The recording file cannot be opened or written; carries the path."""

    def __init__(self, path: Path, message: str) -> None:
        """Create the error for ``path`` with a human message (the path is prepended)."""
        super().__init__(f"{path}: {message}")
        self.path = path
        """The recording file."""


class MetricsError(GridloopError):
    """The metrics endpoint cannot be served (bad port, address in use); names host and port."""


class DashboardError(GridloopError, ValueError):
    """A dashboard or log-line parameter is invalid (the message names it)."""


class LogConfigError(GridloopError, ValueError):
    """A logging option is invalid (the message names it and the value)."""


class ReportError(GridloopError):
    """The report cannot be made: matplotlib missing, unreadable or malformed CSV, bad output."""


class EmbeddedSimulatorError(GridloopError, RuntimeError):
    """The embedded simulator could not be started (its stderr is in the message)."""


class ReplayError(GridloopError):
    """Bad replay input (CSV, flags, site config) or an unusable result.

    The message is always one line naming the file, line, column or field and
    the offending value, so the CLI can print it as is (no traceback).
    """

    def __init__(self, message: str, *, source: str = "") -> None:
        """Create the error.

        Args:
            message: One line describing the problem (newlines are flattened).
            source: The file, flag or field the problem came from (may be empty).
        """
        flat = " ".join(message.split())
        super().__init__(flat)
        self.source: str = source
        """The file, flag or field the problem came from."""


class BenchError(GridloopError):
    """The benchmark could not run (one line for the user)."""


class SiteBenchRefusedError(BenchError):
    """``gridloop bench site`` refuses to start (an error state, another client's setpoints,
    unknown inverters): one line, exit status 2."""


class BenchStoppedError(BenchError):
    """``gridloop bench site`` ended early (a signal, a refusal, another client): the exit
    status and the one line to print (the inverters it moved were sent 0 W)."""

    def __init__(self, status: int, line: str) -> None:
        """Create the error.

        Args:
            status: The command's exit status.
            line: What to print (one line).
        """
        super().__init__(line)
        self.status = status
        """The command's exit status."""
        self.line = line
        """What to print."""


class PlanningError(GridloopError, ValueError):
    """Bad input to the peak planner (:mod:`controller.runtime.planning`): one line naming
    the argument or field and its value; ``source`` is that name."""

    def __init__(self, message: str, *, source: str = "") -> None:
        """Create the error.

        Args:
            message: One line describing the problem (newlines are flattened).
            source: The argument or field the problem came from (may be empty).
        """
        super().__init__(" ".join(message.split()))
        self.source: str = source
        """The argument or field the problem came from."""
