"""The simulator's TOML validation kit: one error type and typed table access.

* `SiteConfigError`: ``str()`` is one line ``FILE: FIELD = VALUE: REASON`` (the
  same shape as the controller's config errors; the simulator stands alone, so
  it keeps its own kit). File-level problems (unreadable file, TOML syntax)
  have no field and read ``FILE: REASON``.
* `show_value`: how a value is rendered in an error (TOML-like, one short line).
* `MISSING`: the value of a required field that is not there.
* `Table`: typed, bounded reads of one TOML table, tracking the keys used so
  unknown keys are reported; every failure names the dotted field and value.
* `resolve_path`: a path from the file, relative to the file's directory.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "INT64_MAX",
    "MISSING",
    "UINT64_MAX",
    "SiteConfigError",
    "Table",
    "resolve_path",
    "show_value",
]

INT64_MAX = (2**63 - 1, "int64")
"""Component and sensor ids: the simulator keeps them in int64 arrays and keys
(sensors as negative ids), and the controller in int64 arrays."""
UINT64_MAX = (2**64 - 1, "uint64")
"""Microgrid and enterprise ids: uint64 on the wire."""


class _Missing:
    """The value of a required field that the file does not give."""

    def __repr__(self) -> str:
        return "(missing)"


MISSING: Any = _Missing()
"""Shown as ``(missing)``: the ``VALUE`` of an error about an absent required field."""


def show_value(value: object) -> str:
    """Render a value TOML-like and short (at most 80 characters), on one line."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str | Path):
        text = json.dumps(str(value), ensure_ascii=False)
    else:
        text = repr(value)
    text = " ".join(text.splitlines())
    return text if len(text) <= 80 else text[:77] + "..."


class SiteConfigError(Exception):
    """A site file is unreadable or invalid.

    ``str()`` is one line: ``FILE: FIELD = VALUE: REASON`` (``FILE: REASON`` for a
    problem with the file as a whole).
    """

    def __init__(self, source: str, field: str, value: object, reason: str) -> None:
        """Create the error.

        Args:
            source: the file (or other source) the bad value came from.
            field: dotted path of the offending field, e.g. ``component[3].capacity_wh``;
                empty for file-level problems (unreadable, TOML syntax).
            value: the offending value (`MISSING` when a required field is absent;
                ignored when ``field`` is empty).
            reason: what is wrong with it.
        """
        self.source = source
        """The file the value came from."""
        self.field = field
        """The dotted field name (empty for file-level problems)."""
        self.value = value
        """The offending value."""
        self.reason = reason
        """What is wrong with it."""
        super().__init__(f"{source}: {self.detail}" if field else f"{source}: {reason}")

    @property
    def detail(self) -> str:
        """``FIELD = VALUE: REASON`` (``REASON`` alone without a field): the message
        without the file, for callers that name the source themselves (CLI flags)."""
        if not self.field:
            return " ".join(self.reason.splitlines())
        return " ".join(f"{self.field} = {show_value(self.value)}: {self.reason}".splitlines())


def resolve_path(base_dir: Path | None, value: str) -> Path:
    """``value`` (``~`` expanded) relative to ``base_dir`` unless it is absolute."""
    path = Path(value).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return path


class Table:
    """Typed access to one TOML table with the dotted path used in errors."""

    def __init__(self, source: str, path: str, data: Any) -> None:
        """Wrap ``data`` (must be a mapping) found at dotted ``path`` of ``source``."""
        if not isinstance(data, Mapping):
            raise SiteConfigError(source, path, data, "expected a table")
        self.source = source
        self.path = path
        self.data: Mapping[str, Any] = data
        self.used: set[str] = set()

    def _field(self, key: str) -> str:
        if not key.isprintable():  # e.g. a newline in a quoted TOML key: keep errors one line
            key = repr(key)
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, value: object, reason: str) -> SiteConfigError:
        """The error for ``key`` of this table holding ``value``."""
        return SiteConfigError(self.source, self._field(key), value, reason)

    def fail(self, key: str, reason: str) -> SiteConfigError:
        """The error for ``key`` naming the value the table holds there."""
        return self.error(key, self.data.get(key, MISSING), reason)

    def has(self, key: str) -> bool:
        """Whether the table gives ``key``."""
        return key in self.data

    def raw(self, key: str) -> Any:
        """The value at ``key`` as parsed (marked used); a missing key is an error."""
        self.used.add(key)
        if key not in self.data:
            raise self.error(key, MISSING, "missing required field")
        return self.data[key]

    def int_(
        self,
        key: str,
        default: int | None = None,
        *,
        minimum: int | None = None,
        maximum: tuple[int, str] | None = None,
    ) -> int:
        """The integer at ``key``; ``maximum`` is (bound, its name), e.g. `INT64_MAX`."""
        if default is not None and key not in self.data:
            return default
        value = self.raw(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, value, "expected an integer")
        if minimum is not None and value < minimum:
            raise self.error(key, value, f"must be >= {minimum}")
        if maximum is not None and value > maximum[0]:
            raise self.error(key, value, f"above the {maximum[1]} maximum ({maximum[0]})")
        return value

    def float_(
        self,
        key: str,
        default: float | None = None,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
        positive: bool = False,
    ) -> float:
        """The finite number at ``key`` (int or float), within the given bounds."""
        if default is not None and key not in self.data:
            return default
        value = self.raw(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, value, "expected a number")
        result = float(value)
        if not math.isfinite(result):
            raise self.error(key, value, "must be finite")
        if positive and result <= 0:
            raise self.error(key, value, "must be > 0")
        if minimum is not None and result < minimum:
            raise self.error(key, value, f"must be >= {minimum:g}")
        if maximum is not None and result > maximum:
            raise self.error(key, value, f"must be <= {maximum:g}")
        return result

    def str_(self, key: str, default: str | None = None, *, choices: tuple[str, ...] = ()) -> str:
        """The string at ``key``, one of ``choices`` when given."""
        if default is not None and key not in self.data:
            return default
        value = self.raw(key)
        if not isinstance(value, str):
            raise self.error(key, value, "expected a string")
        if choices and value not in choices:
            raise self.error(key, value, f"must be one of {', '.join(choices)}")
        return value

    def str_list(self, key: str) -> list[str]:
        """The list of strings at ``key`` (required)."""
        value = self.raw(key)
        if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
            raise self.error(key, value, "expected a list of column names")
        return list(value)

    def tables(self, key: str) -> list[Table]:
        """The array of tables ``[[key]]`` (empty when absent)."""
        if key not in self.data:
            self.used.add(key)
            return []
        value = self.raw(key)
        if not isinstance(value, list):
            raise self.error(key, value, f"expected an array of tables ([[{key}]])")
        return [Table(self.source, f"{self._field(key)}[{i}]", v) for i, v in enumerate(value)]

    def table(self, key: str) -> Table:
        """The sub-table ``[key]`` (empty when absent)."""
        if key not in self.data:
            self.used.add(key)
            return Table(self.source, self._field(key), {})
        return Table(self.source, self._field(key), self.raw(key))

    def check_unknown(self) -> None:
        """Fail on the first key no read asked for."""
        for key in self.data:
            if key not in self.used:
                raise self.error(key, self.data[key], "unknown field")
