"""``--record FILE.csv``: one CSV row per control cycle.

Offers :class:`CsvRecorder` (a context manager: ``write(record)`` per cycle),
:func:`csv_columns` (the header for a set of battery groups),
:func:`column_slug` (how a group name becomes part of a column name) and
:class:`RecordingError`.

Columns carry their unit in the name (``grid_power_w``, ``soc_pct_<group>``,
``dispatch_latency_ms``). Unknown values (nan) are written as empty cells.
Passive sign convention: + = into the component (the site importing, a
battery charging).

The recorder is pure of the control loop: a :class:`~controller.runtime.records.CycleRecord`
in, a row out. Rows are buffered and flushed to disk every ``flush_interval_s``
of *run time* (the records' ``time_s``, no clock is read) and on close.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Sequence
from os import PathLike
from pathlib import Path

from controller.errors import RecordingError
from controller.runtime.records import CycleRecord, RecordObserver

__all__ = [
    "FIXED_COLUMNS",
    "GROUP_COLUMN_PREFIXES",
    "CsvRecorder",
    "RecordingError",
    "column_slug",
    "csv_columns",
]

FIXED_COLUMNS: tuple[str, ...] = (
    "time_s",
    "unix_time_s",
    "grid_power_w",
    "uncontrolled_power_w",
    "battery_power_w",
    "battery_target_w",
    "import_limit_w",
    "export_limit_w",
    "frequency_hz",
    "fr_required_w",
    "fr_delivered_w",
    "dispatch_latency_ms",
    "latency_p50_ms",
    "latency_p99_ms",
    "setpoints_sent",
    "setpoints_failed",
    "cycle_overruns",
    "excluded_components",
    "pv_curtailed_w",
    "pv_capped",
    "ev_power_w",
    "ev_limited",
)
"""The columns every recording starts with, in order (units in the names; ``pv_capped``
and ``ev_limited`` count the PV inverters / EV chargers under a cap of gridloop's)."""

GROUP_COLUMN_PREFIXES: tuple[str, ...] = ("soc_pct_", "setpoint_w_", "power_w_", "healthy_")
"""Per battery group, these prefixes + :func:`column_slug` of the group name, in order.

``healthy_<group>`` is 1 when the group is in allocation, 0 while excluded.
"""


def column_slug(group_name: str) -> str:
    """The part of a column name that stands for a group.

    ``"g1 inv 10 / bat 11"`` → ``g1_inv_10_bat_11``.
    """
    return re.sub(r"[^A-Za-z0-9]+", "_", group_name).strip("_").lower()


def _unique_slugs(group_names: Sequence[str]) -> list[str]:
    slugs: list[str] = []
    for index, name in enumerate(group_names):
        slug = column_slug(name) or f"group{index + 1}"
        candidate, n = slug, 2
        while candidate in slugs:
            candidate = f"{slug}_{n}"
            n += 1
        slugs.append(candidate)
    return slugs


def csv_columns(group_names: Sequence[str]) -> list[str]:
    """The header of a recording of these battery groups."""
    columns = list(FIXED_COLUMNS)
    for slug in _unique_slugs(group_names):
        columns += [prefix + slug for prefix in GROUP_COLUMN_PREFIXES]
    return columns


def _cell(value: float, fmt: str = ".6g") -> str:
    if math.isnan(value):
        return ""
    return format(value, fmt)


class CsvRecorder(RecordObserver):
    """Writes one CSV row per control cycle.

    Usage::

        with CsvRecorder("run.csv", ["g1 inv 10 / bat 11", "g2 inv 20 / bat 21"]) as rec:
            rec.write(record)  # once per cycle

    The file is created (truncated) when the recorder is constructed, so a bad
    path fails before the run starts. Groups of a record are matched to the
    columns by name; a group missing from a record leaves its cells empty, a
    group not named at construction is not recorded.
    """

    def __init__(
        self,
        path: str | PathLike[str],
        group_names: Sequence[str],
        *,
        flush_interval_s: float = 1.0,
    ) -> None:
        """Open ``path`` for writing and write the header.

        Args:
            path: the CSV file to create (its directory must exist).
            group_names: the battery groups, in column order (``GroupRecord.name``).
            flush_interval_s: run time between two flushes to disk, seconds, >= 0
                (0 flushes every row).

        Raises:
            RecordingError: the file cannot be created, or ``flush_interval_s`` is invalid.
        """
        self.path = Path(path)
        """The recording file."""
        if not (math.isfinite(flush_interval_s) and flush_interval_s >= 0.0):
            raise RecordingError(
                self.path,
                f"flush_interval_s must be a finite number >= 0, got {flush_interval_s!r}",
            )
        self._group_names = tuple(group_names)
        """Group names in column order."""
        self._flush_interval_s = flush_interval_s
        """Run time between two flushes."""
        self._last_flush_s: float | None = None
        """``time_s`` of the record after which the file was last flushed."""
        self._rows = 0
        """Rows written so far."""
        try:
            self._file: io.TextIOWrapper | None = open(  # noqa: SIM115 - closed in close()
                self.path, "w", newline="", encoding="utf-8", buffering=1 << 16
            )
        except OSError as err:
            reason = err.strerror or str(err)
            raise RecordingError(self.path, f"cannot create the recording file: {reason}") from err
        self._writer = csv.writer(self._file, lineterminator="\n")
        """Formats rows into the buffered file."""
        self._write_row(csv_columns(self._group_names))

    @property
    def columns(self) -> list[str]:
        """The header row."""
        return csv_columns(self._group_names)

    @property
    def rows_written(self) -> int:
        """Data rows written (not counting the header)."""
        return self._rows

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._file is None

    def _write_row(self, row: list[str]) -> None:
        try:
            self._writer.writerow(row)
        except OSError as err:
            raise RecordingError(self.path, f"cannot write: {err.strerror or err}") from err

    def write(self, record: CycleRecord) -> None:
        """Append the row for one cycle (flushed to disk every ``flush_interval_s``).

        Raises:
            RecordingError: the recorder is closed, or the disk write failed.
        """
        if self._file is None:
            raise RecordingError(self.path, "write() after close()")
        row = [
            _cell(record.time_s, ".3f"),
            _cell(record.unix_time_s, ".3f"),
            _cell(record.grid_power_w),
            _cell(record.uncontrolled_power_w),
            _cell(record.battery_power_w),
            _cell(record.battery_target_w),
            _cell(record.import_limit_w),
            _cell(record.export_limit_w),
            _cell(record.frequency_hz, ".5f"),
            _cell(record.fr_required_w),
            _cell(record.fr_delivered_w),
            _cell(record.dispatch_latency_ms, ".4g"),
            _cell(record.latency_p50_ms, ".4g"),
            _cell(record.latency_p99_ms, ".4g"),
            str(record.setpoints_sent),
            str(record.setpoints_failed),
            str(record.cycle_overruns),
            " ".join(str(cid) for cid in sorted(record.excluded)),
            _cell(record.pv_curtailed_w),
            str(record.pv_capped),
            _cell(record.ev_power_w),
            str(record.ev_limited),
        ]
        by_name = {group.name: group for group in record.groups}
        for name in self._group_names:
            group = by_name.get(name)
            if group is None:
                row += ["", "", "", ""]
            else:
                row += [
                    _cell(group.soc_pct, ".4g"),
                    _cell(group.setpoint_w),
                    _cell(group.power_w),
                    "1" if group.healthy else "0",
                ]
        self._write_row(row)
        self._rows += 1
        if (
            self._last_flush_s is None
            or record.time_s - self._last_flush_s >= self._flush_interval_s
        ):
            self.flush()
            self._last_flush_s = record.time_s

    def flush(self) -> None:
        """Push buffered rows to the file."""
        if self._file is None:
            return
        try:
            self._file.flush()
        except OSError as err:
            raise RecordingError(self.path, f"cannot write: {err.strerror or err}") from err

    def close(self) -> None:
        """Flush and close the file (idempotent)."""
        if self._file is None:
            return
        file, self._file = self._file, None
        try:
            file.close()
        except OSError as err:
            raise RecordingError(self.path, f"cannot write: {err.strerror or err}") from err

    def stop(self) -> None:
        """Close the file (``with recorder:`` ends here; it opened in the constructor)."""
        self.close()
