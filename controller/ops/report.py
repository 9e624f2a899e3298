"""``gridloop report FILE.csv -o report.png``: plot a recording made with ``--record``.

Offers :func:`render_report` (CSV in, PNG out, returns a :class:`ReportSummary`),
:func:`read_recording` (the CSV as numpy columns, validated), :func:`main` (the
``gridloop report`` subcommand) and :class:`ReportError`.

The figure has three panels sharing the time axis:

1. grid power controlled vs uncontrolled (what it would have been without the
   batteries), with the import (and export) limit;
2. state of charge per battery group;
3. grid frequency with the frequency-response power required and delivered.

matplotlib is an optional extra (``pip install 'gridloop[report]'``); it is
imported only when a report is rendered, with the Agg backend and without
pyplot (no global state, no display needed).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from controller.cli_args import OneLineParser
from controller.errors import ReportError
from controller.ops.recording import FIXED_COLUMNS

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "PANEL_TITLES",
    "REQUIRED_COLUMNS",
    "Recording",
    "ReportError",
    "ReportSummary",
    "main",
    "read_recording",
    "render_report",
]

REQUIRED_COLUMNS: tuple[str, ...] = (
    "time_s",
    "grid_power_w",
    "uncontrolled_power_w",
    "frequency_hz",
    "fr_required_w",
    "fr_delivered_w",
)
"""Columns a recording must have to be plotted (all others are optional)."""

PANEL_TITLES: tuple[str, str, str] = (
    "Grid power: controlled vs uncontrolled",
    "Battery state of charge per group",
    "Grid frequency and frequency-response power",
)
"""The titles of the three panels, top to bottom."""

_MISSING_MATPLOTLIB = "the report needs matplotlib: pip install 'gridloop[report]'"

FloatArray = npt.NDArray[np.float64]

_KW = 1000.0
"""Watts per kilowatt (the panels plot kW)."""


@dataclass(frozen=True, slots=True)
class Recording:
    """A recording read back: one float array per column (nan for empty cells)."""

    path: Path
    """The CSV file."""
    columns: dict[str, FloatArray]
    """Column name → values, one per cycle."""
    groups: tuple[str, ...]
    """Battery group slugs, from the ``soc_pct_<group>`` columns, in file order."""

    @property
    def rows(self) -> int:
        """Number of cycles."""
        return len(self.columns["time_s"])

    def get(self, name: str) -> FloatArray:
        """A column, or all-nan if the recording does not have it."""
        values = self.columns.get(name)
        if values is None:
            return np.full(self.rows, np.nan)
        return values


@dataclass(frozen=True, slots=True)
class ReportSummary:
    """What :func:`render_report` drew."""

    png_path: Path
    """The image written."""
    panel_titles: tuple[str, ...]
    """Titles of the panels, top to bottom (read back from the figure's axes)."""
    rows: int
    """Cycles plotted."""
    groups: tuple[str, ...]
    """Battery groups in the SoC panel."""
    width_px: int
    """Image width in pixels."""
    height_px: int
    """Image height in pixels."""


def _parse_float(path: Path, line: int, column: str, text: str) -> float:
    text = text.strip()
    if not text:
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise ReportError(
            f"{path}: line {line}, column {column!r}: {text!r} is not a number"
        ) from None


def read_recording(csv_path: str | PathLike[str]) -> Recording:
    """Read and validate a ``--record`` CSV.

    Raises:
        ReportError: the file is missing/unreadable, has no header or no rows,
            lacks a required column, or holds a non-numeric value (the message
            names the file, line and column).
    """
    path = Path(csv_path)
    try:
        with path.open(newline="", encoding="utf-8") as file:
            reader = csv.reader(file)
            header = next(reader, None)
            if header is None or not any(cell.strip() for cell in header):
                raise ReportError(f"{path}: empty file, expected a gridloop --record CSV")
            header = [cell.strip() for cell in header]
            missing = [name for name in REQUIRED_COLUMNS if name not in header]
            if missing:
                raise ReportError(
                    f"{path}: not a gridloop recording, missing column(s) {', '.join(missing)}"
                )
            wanted = [
                (index, name)
                for index, name in enumerate(header)
                if name in FIXED_COLUMNS
                or name.startswith(("soc_pct_", "setpoint_w_", "power_w_", "healthy_"))
            ]
            data: dict[str, list[float]] = {name: [] for _, name in wanted}
            for row in reader:
                line = reader.line_num
                if not row or not any(cell.strip() for cell in row):
                    continue
                if len(row) != len(header):
                    raise ReportError(
                        f"{path}: line {line} has {len(row)} fields, the header has {len(header)}"
                    )
                for index, name in wanted:
                    if name == "excluded_components":
                        data[name].append(float(len(row[index].split())))
                    else:
                        data[name].append(_parse_float(path, line, name, row[index]))
    except OSError as err:
        raise ReportError(f"{path}: cannot read: {err.strerror or err}") from err
    except UnicodeDecodeError as err:
        raise ReportError(f"{path}: not a text CSV file ({err.reason})") from err
    except csv.Error as err:
        raise ReportError(f"{path}: malformed CSV: {err}") from err
    columns = {name: np.asarray(values, dtype=np.float64) for name, values in data.items()}
    if len(columns["time_s"]) == 0:
        raise ReportError(f"{path}: the recording has a header but no rows")
    if np.isnan(columns["time_s"]).any():
        raise ReportError(f"{path}: column 'time_s' has empty cells")
    groups = tuple(name.removeprefix("soc_pct_") for name in header if name.startswith("soc_pct_"))
    return Recording(path=path, columns=columns, groups=groups)


def _time_axis(time_s: FloatArray) -> tuple[FloatArray, str]:
    span = float(time_s[-1] - time_s[0]) if len(time_s) else 0.0
    if span > 2 * 3600:
        return time_s / 3600.0, "time since start (h)"
    if span > 20 * 60:
        return time_s / 60.0, "time since start (min)"
    return time_s, "time since start (s)"


def _legend(ax: Axes) -> None:
    ax.legend(loc="best", fontsize="small", framealpha=0.85)


def _plot_grid_panel(ax: Axes, t: FloatArray, recording: Recording) -> None:
    """Panel 1: grid power controlled vs uncontrolled, the limits and the battery fleet (kW)."""
    grid = recording.get("grid_power_w") / _KW
    uncontrolled = recording.get("uncontrolled_power_w") / _KW
    import_limit = recording.get("import_limit_w") / _KW
    export_limit = recording.get("export_limit_w") / _KW
    with np.errstate(invalid="ignore"):
        cut = uncontrolled > grid
        exports = bool(np.nanmin(np.concatenate([grid, uncontrolled, [0.0]])) < 0.0)
    if cut.any():
        ax.fill_between(
            t,
            uncontrolled,
            grid,
            where=cut,
            color="tab:green",
            alpha=0.15,
            linewidth=0,
            label="cut by the batteries",
        )
    ax.plot(
        t,
        uncontrolled,
        color="0.45",
        linewidth=1.0,
        linestyle="--",
        label="uncontrolled (without batteries)",
    )
    ax.plot(t, grid, color="tab:blue", linewidth=1.4, label="grid (controlled)")
    if not np.isnan(import_limit).all():
        ax.plot(t, import_limit, color="tab:red", linewidth=1.2, label="import limit")
    if exports and not np.isnan(export_limit).all():  # only where the site exports
        ax.plot(
            t, -export_limit, color="tab:red", linewidth=1.0, linestyle=":", label="export limit"
        )
    battery = recording.get("battery_power_w") / _KW
    if not np.isnan(battery).all():
        ax.plot(
            t,
            battery,
            color="tab:purple",
            linewidth=0.8,
            alpha=0.7,
            label="battery fleet (+ charging)",
        )
    ax.axhline(0.0, color="0.8", linewidth=0.6)
    ax.set_title(PANEL_TITLES[0], loc="left", fontsize="medium")
    ax.set_ylabel("power (kW, + import)")
    _legend(ax)


def _plot_soc_panel(ax: Axes, t: FloatArray, recording: Recording) -> None:
    """Panel 2: SoC per battery group (%), the axis fitted to the recorded range."""
    for group in recording.groups:
        ax.plot(t, recording.get("soc_pct_" + group), linewidth=1.2, label=group)
    if not recording.groups:
        ax.text(
            0.5,
            0.5,
            "no battery groups recorded",
            transform=ax.transAxes,
            ha="center",
            va="center",
            color="0.4",
        )
    all_soc = np.concatenate(
        [np.empty(0)] + [recording.get("soc_pct_" + g) for g in recording.groups]
    )
    finite_soc = all_soc[np.isfinite(all_soc)]
    if finite_soc.size:
        low, high = float(finite_soc.min()), float(finite_soc.max())
        pad = max(2.0, (high - low) * 0.15)
        ax.set_ylim(max(0.0, low - pad), min(100.0, high + pad))
    else:
        ax.set_ylim(0.0, 100.0)
    ax.set_title(PANEL_TITLES[1], loc="left", fontsize="medium")
    ax.set_ylabel("SoC (%)")
    if recording.groups:
        _legend(ax)


def _plot_frequency_panel(ax: Axes, t: FloatArray, recording: Recording) -> None:
    """Panel 3: grid frequency (Hz) with frequency-response required and delivered (kW)."""
    ax.plot(t, recording.get("frequency_hz"), color="tab:gray", linewidth=0.9, label="frequency")
    ax.set_ylabel("frequency (Hz)")
    ax.set_title(PANEL_TITLES[2], loc="left", fontsize="medium")
    ax_fr = ax.twinx()
    ax_fr.plot(
        t,
        recording.get("fr_required_w") / _KW,
        color="tab:orange",
        linestyle="--",
        linewidth=1.2,
        label="FR required",
    )
    ax_fr.plot(
        t,
        recording.get("fr_delivered_w") / _KW,
        color="tab:green",
        linewidth=1.2,
        label="FR delivered",
    )
    ax_fr.set_ylabel("FR power (kW, + charging)")
    handles, labels = ax.get_legend_handles_labels()
    more_handles, more_labels = ax_fr.get_legend_handles_labels()
    ax.legend(
        handles + more_handles,
        labels + more_labels,
        loc="best",
        fontsize="small",
        framealpha=0.85,
    )


def _default_title(recording: Recording) -> str:
    """The CSV name, and the peak import controlled vs uncontrolled when both are known."""
    title = f"gridloop recording {recording.path.name}"
    peak_grid = np.nanmax(recording.get("grid_power_w") / _KW, initial=-np.inf)
    peak_unc = np.nanmax(recording.get("uncontrolled_power_w") / _KW, initial=-np.inf)
    if math.isfinite(peak_grid) and math.isfinite(peak_unc):
        title += f" — peak import {peak_grid:.1f} kW (uncontrolled {peak_unc:.1f} kW)"
    return title


def render_report(
    csv_path: str | PathLike[str],
    png_path: str | PathLike[str],
    *,
    dpi: int = 90,
    title: str | None = None,
) -> ReportSummary:
    """Plot a ``--record`` CSV into a PNG with three panels (see :data:`PANEL_TITLES`).

    Args:
        csv_path: the recording.
        png_path: the image to write (its directory must exist).
        dpi: image resolution (the figure is 9 × 9 inches).
        title: figure title (default: the CSV name and the peak import figures).

    Returns:
        What was drawn: panel titles, rows, groups and the image size.

    Raises:
        ReportError: matplotlib is missing, the CSV is malformed (naming the file
            and the problem), or the PNG cannot be written.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ReportError(_MISSING_MATPLOTLIB) from err

    if not (isinstance(dpi, int) and 20 <= dpi <= 600):
        raise ReportError(f"dpi must be an integer in [20, 600], got {dpi!r}")
    recording = read_recording(csv_path)
    out = Path(png_path)
    t, t_label = _time_axis(recording.columns["time_s"])

    fig = Figure(figsize=(9.0, 9.0), dpi=dpi, layout="constrained")
    canvas = FigureCanvasAgg(fig)
    ax_grid, ax_soc, ax_freq = fig.subplots(3, 1, sharex=True)
    _plot_grid_panel(ax_grid, t, recording)
    _plot_soc_panel(ax_soc, t, recording)
    _plot_frequency_panel(ax_freq, t, recording)
    ax_freq.set_xlabel(t_label)
    for ax in (ax_grid, ax_soc, ax_freq):
        ax.grid(True, color="0.9", linewidth=0.6)
    fig.suptitle(_default_title(recording) if title is None else title, fontsize="medium")

    try:
        fig.savefig(out, format="png", dpi=dpi)
    except OSError as err:
        raise ReportError(f"{out}: cannot write the report: {err.strerror or err}") from err
    width, height = canvas.get_width_height()
    return ReportSummary(
        png_path=out,
        panel_titles=tuple(ax.get_title(loc="left") for ax in (ax_grid, ax_soc, ax_freq)),
        rows=recording.rows,
        groups=recording.groups,
        width_px=int(width),
        height_px=int(height),
    )


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="gridloop report",
        description="Plot a recording made with `gridloop run --record FILE.csv`: grid power "
        "controlled vs uncontrolled with the limit, SoC per battery group, frequency with "
        "frequency-response power. Needs the report extra: pip install 'gridloop[report]'.",
    )
    parser.add_argument("csv", type=Path, help="the recording (CSV written by --record)")
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        help="the PNG to write (default: the CSV's name with .png)",
    )
    parser.add_argument("--dpi", type=int, default=90, help="image resolution (default 90)")
    parser.add_argument("--title", default=None, help="figure title")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``gridloop report``; returns the exit status (0 ok, 2 on any error).

    Errors print one line on stderr, no traceback.
    """
    parser = _parser()
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as exit_:  # --help, or a usage error (one line printed, status 2)
        return exit_.code if isinstance(exit_.code, int) else 0
    csv_path: Path = args.csv
    png_path: Path = args.output if args.output is not None else csv_path.with_suffix(".png")
    try:
        summary = render_report(csv_path, png_path, dpi=args.dpi, title=args.title)
    except ReportError as err:
        print(f"gridloop report: error: {err}", file=sys.stderr)
        return 2
    print(
        f"wrote {summary.png_path} ({summary.width_px}×{summary.height_px} px, "
        f"{summary.rows} cycles, {len(summary.groups)} battery groups)"
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
