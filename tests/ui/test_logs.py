"""setup_logging: one line per event, text with logger name and context, or JSON."""

from __future__ import annotations

import io
import json
import logging
import sys

import pytest

from controller.ops.logs import LogConfigError, setup_logging


@pytest.fixture(autouse=True)
def restore_root_logger():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)
    logging.captureWarnings(False)


def emit_events() -> None:
    log = logging.getLogger("gridloop.actors.dispatch")
    log.debug("hidden at INFO")
    log.info("dispatched %d setpoints", 4)
    log.warning("setpoint rejected", extra={"actor": "dispatch", "component_id": 12})
    try:
        raise ValueError("bad bounds\nsecond line")
    except ValueError:
        log.exception("allocation failed", extra={"actor": "distributor"})


def test_json_lines_parse(capsys) -> None:
    setup_logging("info", "json")
    emit_events()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3  # one per event, debug filtered out
    events = [json.loads(line) for line in lines]
    for event in events:
        assert set(event) >= {"time", "level", "logger", "message"}
        assert event["logger"] == "gridloop.actors.dispatch"
        assert event["time"].endswith("Z")
    assert events[0]["message"] == "dispatched 4 setpoints"
    assert events[0]["level"] == "INFO"
    assert events[1]["actor"] == "dispatch"
    assert events[1]["component_id"] == 12
    assert events[2]["level"] == "ERROR"
    assert events[2]["actor"] == "distributor"
    assert "ValueError: bad bounds\nsecond line" in events[2]["exception"]


def test_text_lines_have_logger_context_and_fold_tracebacks(capsys) -> None:
    setup_logging("DEBUG", "text")
    emit_events()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 4
    assert " DEBUG gridloop.actors.dispatch: hidden at INFO" in lines[0]
    assert lines[2].endswith(
        "WARNING gridloop.actors.dispatch: setpoint rejected [actor=dispatch component_id=12]"
    )
    assert " ERROR gridloop.actors.dispatch: allocation failed [actor=distributor] ⏎ " in lines[3]
    assert "ValueError: bad bounds ⏎ second line" in lines[3]


def test_setup_twice_does_not_duplicate_lines(capsys) -> None:
    setup_logging("INFO", "text")
    setup_logging("INFO", "json")
    logging.getLogger("gridloop.controller").info("once")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["message"] == "once"


def test_handler_follows_the_current_stderr(capsys, monkeypatch) -> None:
    """A live display that swaps sys.stderr still gets the log lines (printed above it)."""
    setup_logging("INFO", "text")
    swapped = io.StringIO()
    monkeypatch.setattr(sys, "stderr", swapped)
    logging.getLogger("gridloop.controller").warning("to the new stderr")
    assert "to the new stderr" in swapped.getvalue()


def test_non_serialisable_extra_is_stringified(capsys) -> None:
    setup_logging("INFO", "json")
    logging.getLogger("gridloop.x").info("odd", extra={"where": {3}})
    (line,) = capsys.readouterr().err.splitlines()
    assert json.loads(line)["where"] == "{3}"


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [({"level": "LOUD"}, "log level = 'LOUD'"), ({"fmt": "xml"}, "log format = 'xml'")],
)
def test_bad_options_name_the_value(kwargs, needle) -> None:
    with pytest.raises(LogConfigError, match=needle):
        setup_logging(**kwargs)
