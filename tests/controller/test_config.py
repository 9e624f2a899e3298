"""controller.runtime.config: defaults, the example configs, and one-line errors for bad input."""

from __future__ import annotations

import math
import re
import string
import zoneinfo
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.runtime.config import ConfigError, GridloopConfig, config_from_dict, load_config
from controller.runtime.schedule_file import load_schedule
from controller.runtime.service import runtime_options
from controller.runtime.strategies import DroopCurve

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _load_error(path: Path, content: str | bytes) -> str:
    """Write ``content`` to ``path`` and load it as a config: the `ConfigError` it must
    raise, checked to be one line that starts by naming ``path``."""
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(f"{path}: ")
    return text


def test_defaults_suit_the_default_site() -> None:
    cfg = load_config(None)
    assert cfg == GridloopConfig()
    # Default site: base ~180 kW − ~35 kW PV, peaks ~350 kW; 350 kW of inverters.
    assert 180_000 < cfg.peak_shaving.import_limit_w < 350_000
    assert cfg.frequency_response.reserved_power_w < 350_000
    assert cfg.frequency_response.priority > cfg.peak_shaving.priority
    assert cfg.frequency_response.interval_s == 0.0  # every grid-meter sample
    assert 0.0 < cfg.peak_shaving.interval_s <= 0.2
    assert cfg.frequency_response.curve == DroopCurve.linear(0.010, 0.200)
    assert 10 <= cfg.control.setpoint_lifetime_s <= 900
    assert cfg.api.url is None  # embedded simulator


SCHEDULES = {"fcr_day.toml"}
"""Example schedule files (``gridloop run --schedule``): loaded by their own loader."""


def test_every_example_loads() -> None:
    files = sorted(EXAMPLES.glob("*.toml"))
    assert len(files) >= 4
    for path in files:
        if path.name in SCHEDULES:
            assert load_schedule(path, zoneinfo.ZoneInfo("UTC")).entries
            continue
        cfg = load_config(path)
        assert cfg.source == str(path)


def test_example_contents() -> None:
    ps_only = load_config(EXAMPLES / "peak_shaving_only.toml")
    assert ps_only.peak_shaving.import_limit_w == 250_000.0
    assert not ps_only.frequency_response.enabled
    fcr = load_config(EXAMPLES / "fcr.toml")
    assert fcr.frequency_response.curve == DroopCurve.linear(0.010, 0.200)
    assert not fcr.peak_shaving.enabled
    dc = load_config(EXAMPLES / "dynamic_containment_with_peak_shaving.toml")
    assert dc.frequency_response.curve == DroopCurve.knee(0.015, 0.200, 0.05, 0.500)
    assert dc.peak_shaving.enabled
    assert dc.frequency_response.enabled
    remote = load_config(EXAMPLES / "remote_site_tls.toml")
    assert remote.api.url == "grpc://microgrid.example.com:443?ssl=true"
    assert remote.api.api_key == "replace-me"
    assert remote.peak_shaving.export_limit_w == 0.0


def test_knee_curve_defaults_and_custom_points(tmp_path: Path) -> None:
    path = tmp_path / "k.toml"
    path.write_text('[frequency_response]\ncurve = "knee"\n')
    assert load_config(path).frequency_response.curve == DroopCurve.knee()
    path.write_text('[frequency_response]\ncurve = "knee"\nknee_hz = 0.1\nknee_fraction = 0.2\n')
    assert load_config(path).frequency_response.curve.fraction == (0.0, 0.2, 1.0)


def test_relative_paths_resolve_against_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    (tmp_path / "site.toml").write_text("")
    path = tmp_path / "c.toml"
    path.write_text('[api]\nroot_cert = "ca.pem"\n[simulator]\nsite = "site.toml"\n')
    cfg = load_config(path)
    assert cfg.api.root_cert == tmp_path / "ca.pem"
    assert cfg.simulator.site == tmp_path / "site.toml"


def test_kind_order_reaches_the_runtime(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[control]\nkind_order = ["ev_charger", "battery_inverter", "pv_inverter"]')
    config = load_config(path)
    assert config.control.kind_order == ("ev_charger", "battery_inverter", "pv_inverter")
    assert runtime_options(config).kind_order == config.control.kind_order
    assert GridloopConfig().control.kind_order == ("battery_inverter", "pv_inverter", "ev_charger")


def test_integers_are_accepted_for_floats(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[peak_shaving]\nimport_limit_w = 200000\n")
    value = load_config(path).peak_shaving.import_limit_w
    assert value == 200_000.0
    assert isinstance(value, float)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # negative limit
        (
            "[peak_shaving]\nimport_limit_w = -5.0",
            "peak_shaving.import_limit_w = -5.0: must be >= 0",
        ),
        # a lead beyond any inverter's response (the export lead, s)
        ("[peak_shaving]\nexport_lead_s = 12.0",
         "peak_shaving.export_lead_s = 12.0: must be <= 10"),
        ("[peak_shaving]\nexport_lead_s = -0.5", "peak_shaving.export_lead_s = -0.5: must be >= 0"),
        # unknown key (a typo)
        ("[peak_shaving]\nimport_limt_w = 5", "peak_shaving.import_limt_w = 5: unknown key"),
        # unknown section
        (
            "[peak_shavin]\nimport_limit_w = 5",
            "peak_shavin = {'import_limit_w': 5}: unknown section",
        ),
        # wrong types
        (
            '[peak_shaving]\nimport_limit_w = "250 kW"',
            'peak_shaving.import_limit_w = "250 kW": must be a number',
        ),
        (
            "[peak_shaving]\nimport_limit_w = true",
            "peak_shaving.import_limit_w = true: must be a number",
        ),
        ("[peak_shaving]\nenabled = 1", "peak_shaving.enabled = 1: must be true or false"),
        ("[peak_shaving]\npriority = 1.5", "peak_shaving.priority = 1.5: must be an integer"),
        ("[api]\nurl = 5", "api.url = 5: must be a string"),
        ("peak_shaving = 5", "peak_shaving = 5: must be a table"),
        # NaN and infinity
        (
            "[peak_shaving]\nexport_limit_w = nan",
            "peak_shaving.export_limit_w = nan: must be a finite number",
        ),
        (
            "[frequency_response]\nreserved_power_w = inf",
            "frequency_response.reserved_power_w = inf: must be a finite number",
        ),
        # out of range
        (
            "[peak_shaving]\ntarget_soc_pct = 120",
            "peak_shaving.target_soc_pct = 120: must be in [0, 100]",
        ),
        (
            "[control]\nsetpoint_lifetime_s = 5",
            "control.setpoint_lifetime_s = 5: must be in [10, 900]",
        ),
        ("[simulator]\ntime_scale = 0", "simulator.time_scale = 0: must be > 0"),
        # the kind order: a list naming each kind once
        (
            '[control]\nkind_order = ["battery_inverter", "pv_inverter"]',
            "control.kind_order = ['battery_inverter', 'pv_inverter']: must be a list naming"
            " each of battery_inverter, pv_inverter, ev_charger once",
        ),
        (
            '[control]\nkind_order = "battery_inverter"',
            'control.kind_order = "battery_inverter": must be a list naming each of',
        ),
        ("[run]\nduration_s = -1", "run.duration_s = -1: must be > 0"),
        # choices and cross-field rules
        (
            '[frequency_response]\ncurve = "cubic"',
            'frequency_response.curve = "cubic": must be one of: linear, knee',
        ),
        (
            "[frequency_response]\nknee_hz = 0.1",
            'frequency_response.knee_hz = 0.1: only valid with curve = "knee"',
        ),
        (
            "[frequency_response]\ndeadband_hz = 0.3",
            "frequency_response.deadband_hz = 0.3: must be < full_activation_hz = 0.2",
        ),
        (
            "[frequency_response]\nfull_activation_hz = 0.005",
            "frequency_response.full_activation_hz = 0.005: must be > deadband_hz = 0.01",
        ),
        (
            '[frequency_response]\ncurve = "knee"\nknee_hz = 0.6',
            "frequency_response.knee_hz = 0.6: must be < full_activation_hz = 0.5",
        ),
        (
            '[frequency_response]\ncurve = "knee"\nknee_fraction = 1.0',
            "frequency_response.knee_fraction = 1.0: must be < 1",
        ),
        (
            "[peak_shaving]\npriority = 20",
            "peak_shaving.priority = 20: must differ from frequency_response.priority = 20",
        ),
        # URL and files
        (
            '[api]\nurl = "http://site:443"',
            'api.url = "http://site:443": must look like grpc://HOST:PORT',
        ),
        ('[api]\nurl = "grpc://site"', 'api.url = "grpc://site": must look like grpc://HOST:PORT'),
        ('[api]\nurl = "grpc://site:443?ssl=maybe"', "ssl must be true or false"),
        (
            '[api]\nurl = "grpc://site:99999"',
            'api.url = "grpc://site:99999": port must be 1..65535',
        ),
        ('[api]\nurl = "grpc://[::1:1"', 'api.url = "grpc://[::1:1": not a URL'),
        ('[api]\napi_key = ""', 'api.api_key = "": must not be empty'),
        ('[api]\nroot_cert = "missing.pem"', 'api.root_cert = "missing.pem": no such file'),
        ('[simulator]\nsite = "missing.toml"', 'simulator.site = "missing.toml": no such file'),
        # syntax
        ("[peak_shaving\n", "invalid TOML"),
    ],
)
def test_errors_are_one_line_naming_file_field_and_value(
    tmp_path: Path, body: str, expected: str
) -> None:
    assert expected in _load_error(tmp_path / "site.toml", body + "\n")


@pytest.mark.parametrize(
    ("key_toml", "kind"),
    [
        ('"top\\nsecret"', "a line break (character 4)"),
        ('"top\\u00e9secret"', "a non-ASCII character (character 4)"),
        ('"top\\tsecret"', "a control character (character 4)"),
    ],
)
def test_an_api_key_grpc_cannot_send_is_one_line_without_the_key(
    tmp_path: Path, key_toml: str, kind: str
) -> None:
    path = tmp_path / "c.toml"
    text = _load_error(path, f"[api]\napi_key = {key_toml}\n")
    assert text.startswith(f"{path}: api.api_key = (not shown): contains {kind}")
    assert "printable ASCII" in text
    assert "secret" not in text


def test_error_attributes_name_the_field(tmp_path: Path) -> None:
    path = tmp_path / "x.toml"
    path.write_text("[peak_shaving]\nimport_limit_w = -5.0\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    err = info.value
    assert (err.source, err.field_name, err.value) == (
        str(path),
        "peak_shaving.import_limit_w",
        -5.0,
    )
    assert str(err) == f"{path}: peak_shaving.import_limit_w = -5.0: must be >= 0"


def test_unreadable_file_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=r"nope\.toml: cannot read the config file: No such file"):
        load_config(missing)
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config(tmp_path)  # a directory
    _load_error(tmp_path / "bin.toml", b"\xff\xfe\x00garbage")


# --------------------------------------------------------------------------- fuzzing

_SECTION_KEYS = {
    "api": ["url", "api_key", "root_cert", "call_timeout_s"],
    "control": ["setpoint_lifetime_s", "deadband_w", "stale_after_s", "soc_exponent"],
    "peak_shaving": ["enabled", "priority", "import_limit_w", "export_limit_w", "export_margin_w",
                     "export_lead_s", "target_soc_pct", "recharge_power_w", "recharge_margin_w",
                     "interval_s"],
    "frequency_response": ["enabled", "priority", "curve", "f0_hz", "deadband_hz",
                           "full_activation_hz", "knee_hz", "knee_fraction", "reserved_power_w",
                           "hold_duration_s", "soc_management_power_w", "interval_s"],
    "simulator": ["site", "time_scale", "telemetry_hz"],
    "run": ["duration_s"],
}  # fmt: skip

scalars = st.one_of(
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-1.0, 1e6),
    st.sampled_from(["linear", "knee", "grpc://h:1", "grpc://h:1?ssl=true", "", "x", "~", "a/b"]),
    st.text(max_size=20),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=5,
)


@st.composite
def toml_like(draw: st.DrawFn) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for section in draw(st.lists(st.sampled_from([*_SECTION_KEYS, "extra"]), max_size=4)):
        if draw(st.integers(0, 9)) == 0:
            data[section] = draw(values)
            continue
        keys = _SECTION_KEYS.get(section, ["k"])
        names = draw(
            st.lists(
                st.sampled_from(keys) | st.text(string.ascii_lowercase, max_size=6), max_size=4
            )
        )
        data[section] = {name: draw(values) for name in names}
    return data


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(toml_like())
def test_random_mappings_give_a_config_or_a_config_error(data: dict[str, Any]) -> None:
    error: ConfigError | None = None
    try:
        cfg = config_from_dict(data, "fuzz.toml")
    except ConfigError as exc:
        error = exc
    if error is not None:
        assert "\n" not in str(error)
        assert str(error).startswith("fuzz.toml: ")
        return
    assert isinstance(cfg, GridloopConfig)
    for number in (cfg.peak_shaving.import_limit_w, cfg.frequency_response.reserved_power_w):
        assert math.isfinite(number)
        assert number >= 0


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_random_file_text_gives_a_config_or_a_config_error(
    tmp_path_factory: pytest.TempPathFactory, text: str
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "c.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    error = ""
    try:
        load_config(path)
    except ConfigError as exc:
        error = str(exc)
    assert "\n" not in error


def test_auto_limit_knobs(tmp_path: Path) -> None:
    """The ``auto_*`` keys of [peak_shaving] land in ``auto_limit``; bad ones name the field."""
    path = tmp_path / "auto.toml"
    path.write_text('[peak_shaving]\nauto_horizon_h = 24\nauto_forecaster = "naive_day"\n'
                    "auto_margin_pct = 2.5\n")
    cfg = load_config(path)
    assert cfg.auto_limit.horizon_h == 24.0
    assert cfg.auto_limit.forecaster == "naive_day"
    assert cfg.auto_limit.margin_pct == 2.5
    path.write_text('[peak_shaving]\nauto_day_classes = "workday"\nauto_shape_days = 10\n'
                    "auto_shape_q = 0.5\n")
    shape = load_config(path).auto_limit
    assert (shape.day_classes, shape.shape_days, shape.shape_q) == ("workday", 10, 0.5)
    for text, message in [
        ("auto_horizon_h = 0.5", "peak_shaving.auto_horizon_h = 0.5: must be in [1, 168]"),
        ('auto_forecaster = "prophet"', 'peak_shaving.auto_forecaster = "prophet": must be one'),
        ("auto_weeks = 1.5", "peak_shaving.auto_weeks = 1.5: must be an integer"),
        ('auto_day_classes = "daily"', 'peak_shaving.auto_day_classes = "daily": must be one'),
        ("auto_shape_q = 1.5", "peak_shaving.auto_shape_q = 1.5: must be in [0, 1]"),
    ]:
        path.write_text(f"[peak_shaving]\n{text}\n")
        with pytest.raises(ConfigError, match=re.escape(message)):
            load_config(path)
