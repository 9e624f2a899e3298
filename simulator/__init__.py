"""A Frequenz Microgrid API server with simulated physics: v1, v1alpha18 and v1alpha19 on one port.

Offers:

* `simulator.config`: `load_site(path=None) -> SiteConfig` (None = the shipped
  demo site ``simulator/sites/default.toml``; ``zero_export_with_ev.toml`` beside
  it is a PV-heavy site with EV chargers, ``voltage_support.toml`` the default
  fleet on a weak feeder with a voltage step), `site_from_dict`, and
  `SiteConfigError` (one line: ``<file>: <field> = <value>: <reason>``).
* `simulator.csv_series`: `read_csv_series`, the one reader of timestamped CSV
  series (the site's load/PV profiles, the replay's load profiles, recorded frequency).
* `simulator.frequency_series`: `FrequencySeries` (grid frequency from simulated
  time 0, nan = unknown; `at(t_s)` vectorised), `read_frequency_csv` (a
  recording, gaps bridged or reported) and `frequency_statistics`.
* `simulator.frequency_synthetic`: `synthetic_frequency(duration_s, *, seed)`,
  the seeded generator with the measured Continental Europe statistics.
* `simulator.physics`: `SitePhysics(site, *, seed=0, max_step_s=0.1)`, the
  vectorised model with no asyncio and no clock (`step(dt_s)`, setpoints,
  bounds, state machine, fault injection, injectable load/irradiance profiles;
  EV chargers with seeded sessions take charge limits, PV inverters production caps;
  reactive power within each inverter's apparent-power circle, P first; the
  connection-point voltage from the ``[grid]`` impedance and background).
* `simulator.server`: `SimulatorServer(site, *, host, port, time_scale,
  telemetry_hz, seed, api_key, physics_hz, tls_cert, tls_key, faults,
  api_versions)`, the grpc.aio server (async context manager) of every version
  in ``api_versions`` (default `API_VERSIONS`: v1, v1alpha18, v1alpha19) over
  one site; `stats()` reports setpoints and fault episodes.
* `simulator.faults`: the seeded fault scheduler and the episode accounting
  behind the site's ``[faults]`` table (`simulator.config.FaultConfig`):
  telemetry streams that end or stall, delayed or rejected setpoint calls,
  components in ERROR until AckError, NaN/inf/missing metrics, flapping bounds.
* `simulator.cli`: `main(argv) -> int` behind ``gridloop sim`` and
  ``python -m simulator``.
* `simulator.errors`: `SimulatorError` and the request errors mapped to gRPC
  status codes (NOT_FOUND, INVALID_ARGUMENT, OUT_OF_RANGE, FAILED_PRECONDITION).

Units: W, VAr, VA, V, Wh, %, Hz, simulated seconds. Passive sign convention: positive =
into the component (charging, importing), negative = out (discharging, PV
production, exporting).
"""
