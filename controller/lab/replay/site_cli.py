"""``gridloop replay`` on a site with EV chargers (or ``--pv-ev``): the PV / EV site replay.

* :func:`run_site_command` — run :func:`~controller.lab.replay.site.run_site` for the
  config's site (its own load, or ``--profile`` / ``--load-csv``), print the table,
  write the summary and say whether the targets (:data:`SITE_TARGETS`) were met.
* :func:`site_targets_met` — each target: met or not.

Bad input raises :class:`~controller.lab.replay.errors.ReplayError`: one line naming
the flag.
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from controller.lab.replay.cli_kit import progress_of, write_summary_json
from controller.lab.replay.loader import LoadProfile
from controller.lab.replay.reports import SiteReport
from controller.lab.replay.site import SiteReplayOptions, run_site

__all__ = ["SITE_TARGETS", "run_site_command", "site_targets_met"]

SITE_TARGETS: dict[str, float] = {
    "export_intervals_above_limit_max": 0,
    "export_excess_longest_s_max": math.nan,
    "pv_curtailed_storable_pct_max": 0.1,
    "ev_energy_delivered_pct_min": 99.0,
    "import_intervals_above_limit_max": 0,
}
"""The issue's targets: no billing interval above the export limit and no excess longer
than the inverters' response delay plus one control cycle (per site:
``export_excess_longest_allowed_s``, nan here), ≤ 0.1 % of the PV energy curtailed while the
batteries could have stored it, ≥ 99 % of the EV energy the import limit allowed delivered
by departure, and the import limit held."""


def site_targets_met(r: SiteReport) -> dict[str, bool]:
    """Each target of :data:`SITE_TARGETS`: met (no EV session: met)."""
    t = SITE_TARGETS
    return {
        "export_intervals_above_limit":
            r.export_intervals_above_limit <= t["export_intervals_above_limit_max"],
        "export_excess_longest_s": r.export_excess_longest_s
        <= r.export_excess_longest_allowed_s + 1e-9,
        "pv_curtailed_storable_pct":
            r.pv_curtailed_storable_pct <= t["pv_curtailed_storable_pct_max"],
        "ev_energy_delivered_pct": math.isnan(r.ev_energy_delivered_pct)
        or r.ev_energy_delivered_pct >= t["ev_energy_delivered_pct_min"],
        "import_intervals_above_limit":
            r.import_intervals_above_limit <= t["import_intervals_above_limit_max"],
    }


def _kw(v: float) -> str:
    return "none" if not math.isfinite(v) else f"{v / 1000:,.2f} kW"


def _kwh(v: float) -> str:
    return f"{v / 1000:,.1f} kWh"


def _table(r: SiteReport, met: dict[str, bool]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    def mark(key: str) -> str:
        return "" if met[key] else " ✗"

    t = Table(title=escape(f"PV / EV site replay: {r.load.get('days', 0):g} days of "
                           f"{r.load.get('source')} from {r.load.get('start')} "
                           f"(controlled: {', '.join(r.controlled_kinds)})"))
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_column("target", justify="right")
    t.add_row("export limit / import limit", f"{_kw(r.export_limit_w)} / {_kw(r.import_limit_w)}",
              f"tolerance {r.above_limit_tolerance_w:g} W")
    t.add_row("intervals above the export limit",
              f"{r.export_intervals_above_limit} / {r.intervals_total}"
              f"{mark('export_intervals_above_limit')}", "0")
    t.add_row("worst 1-s / interval export excess",
              f"{_kw(r.export_excess_1s_max_w)} / {_kw(r.export_excess_15min_max_w)}", "")
    t.add_row("longest export excess", f"{r.export_excess_longest_s:.2f} s"
              f"{mark('export_excess_longest_s')}", f"≤ {r.export_excess_longest_allowed_s:g} s")
    t.add_row("export energy above the limit", _kwh(r.export_energy_above_limit_wh), "")
    t.add_row("time to comply after a load drop (worst)",
              f"{r.export_comply_time_max_s:.2f} s ({r.load_drops} drops, "
              f"{r.load_drops_not_complied} not complied)", "")
    t.add_row("PV available / curtailed", f"{_kwh(r.pv_energy_available_wh)} / "
              f"{_kwh(r.pv_energy_curtailed_wh)}", "")
    t.add_row("curtailed PV the batteries could have stored",
              f"{r.pv_curtailed_storable_pct:.3f} %{mark('pv_curtailed_storable_pct')}",
              "≤ 0.1 %")
    t.add_row("EV energy requested / allowed / delivered",
              f"{_kwh(r.ev_energy_requested_wh)} / {_kwh(r.ev_energy_allowed_wh)} / "
              f"{_kwh(r.ev_energy_delivered_wh)} ({r.ev_sessions} sessions)", "")
    pct = r.ev_energy_delivered_pct
    t.add_row("EV energy delivered, of allowed",
              ("n/a" if math.isnan(pct) else f"{pct:.2f} %") + mark("ev_energy_delivered_pct"),
              "≥ 99 %")
    t.add_row("intervals above the import limit",
              f"{r.import_intervals_above_limit} / {r.intervals_total}"
              f"{mark('import_intervals_above_limit')}", "0")
    t.add_row("battery energy into slowable EV load", _kwh(r.battery_energy_to_ev_wh), "")
    t.add_row("peak import (interval / instant)",
              f"{_kw(r.peak_import_w)} / {_kw(r.peak_import_w_instant)}", "")
    t.add_row("fleet SoC range", f"{r.soc_min_pct:.1f} – {r.soc_max_pct:.1f} %", "")
    t.add_row("control cycles / refused / wall time",
              f"{r.control_cycles:,} / {r.setpoints_refused} / {r.wall_s:.1f} s", "")
    Console().print(t)


def run_site_command(args: argparse.Namespace, site: Any, cfg: Any,
                     load: LoadProfile | None) -> int:
    """The site replay of ``gridloop replay``; returns the exit status."""

    from controller.lab.bench import json_safe

    control = cfg.control
    options = SiteReplayOptions(soc_exponent=control.soc_exponent, deadband_w=control.deadband_w,
                                stale_after_s=control.stale_after_s)
    with progress_of("PV / EV site replay (simulated time)", args.no_progress) as cb:
        report = run_site(site, cfg, days=args.days, load=load, options=options, seed=args.seed,
                          progress=cb)
    met = site_targets_met(report)
    _table(report, met)
    if args.summary_json is not None:
        summary: dict[str, Any] = {"site": site.source}
        summary.update(report.summary())
        summary["targets"] = dict(SITE_TARGETS, export_excess_longest_s_max=(
            report.export_excess_longest_allowed_s))
        summary["targets_missed"] = [k for k, ok in met.items() if not ok]
        summary["targets_met"] = all(met.values())
        write_summary_json(args.summary_json, json_safe(summary))
    if args.check and not all(met.values()):
        missed = ", ".join(k for k, ok in met.items() if not ok)
        sys.stderr.write(f"gridloop replay: a target was missed: {missed}\n")
        return 1
    return 0
