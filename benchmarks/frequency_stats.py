"""The synthetic grid frequency's statistics beside the measured Continental Europe ones.

Run (from the repository root)::

    python benchmarks/frequency_stats.py                    # 28 days, seed 0
    python benchmarks/frequency_stats.py --days 7 --seed 3
    python benchmarks/frequency_stats.py --csv recorded.csv # a recording as a third column

Generates ``--days`` days of :func:`simulator.frequency_synthetic.synthetic_frequency`
(the measured figures cover 28 days) and prints, as a Markdown table, the figures of
``frequency_statistics.md`` — computed by
:func:`simulator.frequency_series.frequency_statistics` — for the generator, the
measurement (:data:`simulator.frequency_synthetic.MEASURED`) and, with ``--csv``, a
recorded trace read by :func:`simulator.frequency_series.read_frequency_csv` (its first
sample is taken as a full hour). The README section "Grid frequency" is this output.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from simulator.csv_series import CsvSeriesError
from simulator.frequency_series import (
    ACF_LAGS_S,
    PERCENTILES,
    frequency_statistics,
    read_frequency_csv,
)
from simulator.frequency_synthetic import MEASURED, synthetic_frequency

__all__ = ["main", "table"]


def _fmt(values: object, digits: int) -> str:
    seq = values if isinstance(values, list) else [values]
    return " / ".join(f"{float(v):.{digits}f}" for v in seq)  # type: ignore[arg-type]


_ROWS: tuple[tuple[str, str, int], ...] = (
    ("mean deviation (mHz)", "mean_mhz", 1),
    ("standard deviation (mHz)", "std_mhz", 1),
    ("percentiles " + " / ".join(f"{p:g}" for p in PERCENTILES) + " % (mHz)",
     "percentiles_mhz", 0),
    ("largest abs deviation (mHz)", "max_abs_mhz", 0),
    ("time with abs deviation > 10 / 20 / 50 / 100 / 200 mHz (%)", "share_above_pct", 2),
    ("autocorrelation at " + " / ".join(f"{lag}" for lag in ACF_LAGS_S) + " s", "acf", 3),
    ("abs(df/dt) mean (mHz/s)", "dfdt_mean_mhz_s", 2),
    ("abs(df/dt) 99th percentile (mHz/s)", "dfdt_p99_mhz_s", 1),
    ("abs(df/dt) max (mHz/s)", "dfdt_max_mhz_s", 0),
    ("mean abs deviation, minutes 0-4 / 28-32 / 55-59 (mHz)", "minutes", 0),
)


def _minutes(stats: dict[str, object]) -> list[float]:
    by = stats["minute_mean_abs_mhz"]
    assert isinstance(by, list)
    return [sum(by[a:b]) / (b - a) for a, b in ((0, 5), (28, 33), (55, 60))]


def table(columns: dict[str, dict[str, object]]) -> str:
    """The Markdown table: one row per statistic, one column per series."""
    lines = ["| statistic | " + " | ".join(columns) + " |",
             "|---|" + "---|" * len(columns)]
    for label, key, digits in _ROWS:
        cells = [_fmt(_minutes(s) if key == "minutes" else s[key], digits)
                 for s in columns.values()]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the table; 2 on a bad ``--csv``."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    p.add_argument("--days", type=float, default=28.0, help="days generated (default 28)")
    p.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    p.add_argument("--csv", help="a recorded trace to add as a column")
    args = p.parse_args(argv)
    series = synthetic_frequency(args.days * 86400.0, seed=args.seed)
    columns = {f"generator ({args.days:g} d, seed {args.seed})":
               frequency_statistics(series.hz, series.step_s),
               "measured (28 d, 2024)": MEASURED}
    if args.csv:
        try:
            rec = read_frequency_csv(args.csv)
        except CsvSeriesError as exc:
            print(f"error: --csv: {exc}", file=sys.stderr)
            return 2
        columns[f"recorded ({rec.duration_s / 86400:.2f} d)"] = frequency_statistics(
            rec.hz, rec.step_s)
    print(f"python benchmarks/frequency_stats.py --days {args.days:g} --seed {args.seed}")
    print()
    print(table(columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
