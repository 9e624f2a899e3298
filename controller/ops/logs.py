"""Logging for ``gridloop``: one line per event, as text or as JSON.

Offers :func:`setup_logging` (configures the standard :mod:`logging` root
logger once per process; calling it again replaces its own handler),
:class:`TextFormatter`, :class:`JsonFormatter` and :class:`LogConfigError`.

Loggers follow the package layout: ``gridloop.actors.<name>``,
``gridloop.controller.<part>``, ... Context goes in ``extra=``::

    log.warning("setpoint rejected", extra={"actor": "dispatch", "component_id": 12})

Text lines look like::

    2026-11-26T07:12:17.123Z WARNING gridloop.actors.dispatch: setpoint rejected
        [actor=dispatch component_id=12]

(on one line).

JSON lines (``--log-format json``) are one object each, with ``time``,
``level``, ``logger``, ``message``, every ``extra`` field, and ``exception``
(the formatted traceback) when there is one. Tracebacks never span lines in
either format: in text they are folded into the line with `` ⏎ `` separators.

The handler writes to whatever ``sys.stderr`` is at the time of the event, so
a live dashboard that redirects stderr shows log lines above itself.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any, Literal

from controller.errors import LogConfigError

__all__ = ["JsonFormatter", "LogConfigError", "TextFormatter", "setup_logging"]

_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
) | {"message", "asctime", "taskName"}
"""Attributes every LogRecord has; anything else came from ``extra=``."""

_HANDLER_MARK = "_gridloop_handler"


def _iso_time(created: float) -> str:
    stamp = datetime.fromtimestamp(created, UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {
        key: value
        for key, value in vars(record).items()
        if key not in _STANDARD_ATTRS and not key.startswith("_")
    }


def _exception_text(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    parts = []
    if record.exc_info:
        parts.append(formatter.formatException(record.exc_info))
    if record.stack_info:
        parts.append(formatter.formatStack(record.stack_info))
    return "\n".join(parts)


class TextFormatter(logging.Formatter):
    """``TIME LEVEL logger: message [key=value ...]`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        """Format one event as a single line."""
        message = record.getMessage()
        line = f"{_iso_time(record.created)} {record.levelname} {record.name}: {message}"
        extras = _extras(record)
        if extras:
            line += " [" + " ".join(f"{key}={value}" for key, value in extras.items()) + "]"
        exception = _exception_text(self, record)
        if exception:
            line += " ⏎ " + exception
        return line.replace("\r\n", "\n").replace("\n", " ⏎ ")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        """Format one event as a single-line JSON object."""
        obj: dict[str, Any] = {
            "time": _iso_time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in _extras(record).items():
            obj.setdefault(key, value)
        exception = _exception_text(self, record)
        if exception:
            obj["exception"] = exception
        return json.dumps(obj, default=str, ensure_ascii=False, allow_nan=True)


class _CurrentStderrHandler(logging.StreamHandler[IO[str]]):
    """A stream handler that writes to the *current* ``sys.stderr`` on every event."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, value: IO[str]) -> None:
        pass


def setup_logging(level: str = "INFO", fmt: Literal["text", "json"] = "text") -> None:
    """Configure the root logger: one line per event on stderr.

    Args:
        level: DEBUG, INFO, WARNING, ERROR or CRITICAL (any case).
        fmt: ``"text"`` for people, ``"json"`` for log shippers.

    Raises:
        LogConfigError: unknown level or format (naming the option and value).
    """
    if not isinstance(level, str) or level.upper() not in _LEVELS:
        raise LogConfigError(
            f"log level = {level!r}: expected one of {', '.join(_LEVELS)} (any case)"
        )
    if fmt not in ("text", "json"):
        raise LogConfigError(f"log format = {fmt!r}: expected 'text' or 'json'")
    handler = _CurrentStderrHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, _HANDLER_MARK, False):
            root.removeHandler(old)
            old.close()
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.captureWarnings(True)
