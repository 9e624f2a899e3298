"""The asyncio actor layer between the Microgrid API and the control logic.

Data path (no timers on it): telemetry stream → `StateTable.decode` (numpy columns) →
synchronous fresh-sample listeners (`Site.add_fresh_listener`, same task) or
fresh-sample receivers → a strategy calls `Site.request_power` (latest wins) →
`PowerDistributor` snapshots the table into a `distribution.Fleet` and the usable PV
inverters and EV chargers, calls `allocate_kinds`, re-checks bounds, keeps only
setpoints that changed beyond the deadband or need lifetime renewal (caps: only while
needed), never commands an excluded component → `Dispatcher` puts every call
on the wire before awaiting any response (an idle distributor allocates and starts the
first 16 calls inside `request_power`), then reads the first response of each
(acknowledgement) and leaves the rest of each response stream to tail readers. A
`RecoveryActor` acknowledges components reporting ERROR and starts them again.
Signs: positive power = into the component (charging, importing). Units in names.

Public names:

* `Site` – the facade: `await Site.connect(url)`, `async with site:` runs telemetry and
  the distributor; `measurements(fleet_max_age_s)`, `request_power()`, `set_power()`,
  `add_fresh_listener()`, `new_fresh_receiver()`, `new_result_receiver()`, `stats()`.
* `RuntimeOptions` – timeouts, lifetime, deadband, staleness, backoff (validated).
* `SiteMeasurements` – snapshot returned by `Site.measurements()`.
* `RuntimeStats` – counters returned by `Site.stats()`.
* `SafeStopResult` – what the safe stop's 0 W round reached (`Site.safe_stop`).
* `DistributionOutcome`, `OutcomeKind` – the result of one power request.
* `Actor` – base of a restartable long-running actor.
* `Supervisor` – runs actors in a TaskGroup, restarts failures with capped backoff.
* `backoff_delay_s` – the capped exponential backoff rule (pure).
* `cancel_on_signals` – cancel the main task on SIGINT/SIGTERM for orderly shutdown.
* `run` – run a coroutine on uvloop (asyncio fallback).
* `ApiUrl` – parsed `grpc://host:port?ssl=true|false`.
* `api_key_problem` – why an API key cannot be sent as gRPC metadata (printable ASCII only).
* `MicrogridApiClient` – async client in the server's Microgrid API version
  (`API_VERSIONS`: v1alpha19, v1alpha18, v1; given or found newest first); one
  adapter per version, nothing above the client knows versions.
* `TelemetryWire` – where the state table finds its metrics in a version's messages.
* `MicrogridInfo` – the microgrid's id and location (and time zone) as the server gives them.
* `ComponentGraph`, `BatteryGroup`, `ComponentInfo` – the component graph.
* `GridFormula` – grid power = sum of the branches leaving the grid connection point.
* `StateTable` – columnar numpy latest-value state, with the telemetry decoder.
* `bounds_to_band`, `intervals_to_band` – API bounds (union of intervals) → inclusion +
  exclusion band.
* `TelemetryActor`, `FreshNotifier` – per-component streams with reconnect; fresh events.
* `Health`, `stale_mask`, `failed_mask` – component exclusion rules (pure, fake-clock testable).
* `Dispatcher`, `needs_send` – concurrent setpoint calls (keeps a `SetpointBook`); the
  deadband/renewal rule.
* `SiteIdentity`, `SiteGuard` – what the graph was built from; the check after every reconnect.
* `ContentionRule` – when overrides by another client mean it controls the site.
* `PowerDistributor` – requests → `RoundPlanner` → dispatch (latest wins, periodic renewal).
* `SiteCore` – the synchronous, clock-free part of a site (state table, health,
  measurements with the fleet bounds, round planning), built once from graph + options;
  `Site` runs on one and the replay builds one the same way.
* `RoundPlanner`, `PlannedRound`, `FleetIndex` – fleet target → setpoints and which to
  send (allocation, bounds re-check, deadband/renewal rule), pure given a time; the
  controlled components are the battery inverters, then the PV inverters (production
  caps) and the EV chargers (charge limits), which serve only what the strategies'
  bounds require (``must_w``, `distribution.allocate_kinds`; rules in `actors._flex`).
* `SetpointBook` – what each inverter was last sent, when, and whether acknowledged.
* `GridloopError` (root), `ApiError`, `GraphError`, `OptionsError`, `ActorError` – errors.
"""

from ._actor import Actor, Supervisor, backoff_delay_s, cancel_on_signals, run
from ._api import API_VERSIONS, MicrogridInfo, TelemetryWire
from ._client import ApiUrl, MicrogridApiClient, api_key_problem, check_api_version
from ._contention import ContentionRule
from ._core import RuntimeOptions, SiteCore, SiteMeasurements
from ._dispatch import Dispatcher, DispatchStats, SetpointBook, needs_send
from ._distributor import DistributionOutcome, OutcomeKind, PowerDistributor
from ._errors import ActorError, ApiError, GraphError, GridloopError, OptionsError
from ._graph import BatteryGroup, ComponentGraph, ComponentInfo
from ._grid import GridFormula
from ._health import Health, failed_mask, stale_mask
from ._identity import SiteGuard, SiteIdentity
from ._plan import FleetIndex, PlannedRound, RoundPlanner
from ._site import RuntimeStats, SafeStopResult, Site
from ._state import StateTable, bounds_to_band, intervals_to_band
from ._telemetry import FreshNotifier, TelemetryActor

__all__ = [
    "API_VERSIONS",
    "Actor",
    "ActorError",
    "ApiError",
    "ApiUrl",
    "BatteryGroup",
    "ComponentGraph",
    "ComponentInfo",
    "ContentionRule",
    "DispatchStats",
    "Dispatcher",
    "DistributionOutcome",
    "FleetIndex",
    "FreshNotifier",
    "GraphError",
    "GridFormula",
    "GridloopError",
    "Health",
    "MicrogridApiClient",
    "MicrogridInfo",
    "OptionsError",
    "OutcomeKind",
    "PlannedRound",
    "PowerDistributor",
    "RoundPlanner",
    "RuntimeOptions",
    "RuntimeStats",
    "SafeStopResult",
    "SetpointBook",
    "Site",
    "SiteCore",
    "SiteGuard",
    "SiteIdentity",
    "SiteMeasurements",
    "StateTable",
    "Supervisor",
    "TelemetryActor",
    "TelemetryWire",
    "api_key_problem",
    "backoff_delay_s",
    "bounds_to_band",
    "cancel_on_signals",
    "check_api_version",
    "failed_mask",
    "intervals_to_band",
    "needs_send",
    "run",
    "stale_mask",
]
