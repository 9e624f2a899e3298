"""Telemetry frames' wire bytes, assembled from pre-encoded pieces (no protobuf objects).

The four telemetry responses the simulator streams (v1alpha18/v1alpha19
``ReceiveElectricalComponentTelemetryStreamResponse`` and
``ReceiveSensorTelemetryStreamResponse``, v1 ``ReceiveComponentDataStreamResponse`` and
``ReceiveSensorDataStreamResponse``) share one layout of field numbers::

    response { 1: body {
        1: id (uint64),
        2: sample { 1: Timestamp, 2: metric (enum), 3: value { 1: simple { 2: float } },
                    4: bounds { 1: lower (optional float), 2: upper (optional float) } }...,
        3: state snapshot { 1: Timestamp, 2: states (packed enums),
                            4: errors (v1alpha8: diagnostic { 1: code }...; v1: packed enums) } } }

`Template` writes exactly the bytes protobuf's own ``SerializeToString`` writes
for that message (fields in number order, proto3 zero scalars left out, packed
repeated enums): the static parts (ids, metric numbers, field tags) are encoded
once, the values (32-bit floats on the wire) are packed with `struct`, and a
publication's timestamp and
sample heads (tag, length, timestamp, metric, value header) are encoded once per
publication and shared by every template (`_Heads`). Per sample, an unbounded
non-zero value costs two byte strings. `_check_layout` compares the field
numbers and types above with the generated descriptors at import, so a protobuf
package that changed them would fail loudly instead of streaming wrong frames.

Offers `Template`.
"""

from __future__ import annotations

import math
import struct
from typing import Any

from frequenz.api.microgrid.v1 import microgrid_pb2 as v1_mg_pb2
from frequenz.api.microgrid.v1alpha18 import microgrid_pb2 as mg_pb2
from google.protobuf.message import Message

from ._intervals import Interval
from ._wire import V1_METRIC, Wire, v1_error_code, v1_sensor_state_code, v1_state_code

__all__ = ["Template"]

_PACK_FLOAT = struct.Struct("<f").pack
_FLOAT_ZERO = b"\0\0\0\0"
_BYTE = [bytes((n,)) for n in range(128)]
"""The one-byte varints."""
_UINT64 = (1 << 64) - 1

# Tags (field number << 3 | wire type): 0 varint, 2 length-delimited, 5 fixed32.
_T1_LEN = b"\x0a"  # response.body, sample.sample_time, snapshot.time, value.simple_metric
_T1_VARINT = b"\x08"  # body.id, Timestamp.seconds, diagnostic.code
_T1_FLOAT = b"\x0d"  # bounds.lower
_T2_LEN = b"\x12"  # body.metric_samples, snapshot.states (packed)
_T2_VARINT = b"\x10"  # sample.metric, Timestamp.nanos
_T2_FLOAT = b"\x15"  # simple.value, bounds.upper
_T3_LEN = b"\x1a"  # body.state_snapshot, sample.value
_T4_LEN = b"\x22"  # sample.bounds, snapshot.errors
_VALUE_HEAD = _T3_LEN + b"\x07" + _T1_LEN + b"\x05" + _T2_FLOAT
"""sample.value { simple_metric { value = <the 4 bytes that follow> } }."""
_ZERO_VALUE = _T3_LEN + b"\x02" + _T1_LEN + b"\x00"
"""sample.value { simple_metric {} }: a value whose float is +0.0 (proto3 leaves it out)."""


def _varint(n: int) -> bytes:
    """``n`` as a protobuf varint (negative numbers as their 64-bit two's complement)."""
    if 0 <= n < 0x80:
        return _BYTE[n]
    n &= _UINT64
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: ``tag``, the length of ``payload``, ``payload``."""
    n = len(payload)
    return tag + (_BYTE[n] if n < 0x80 else _varint(n)) + payload


def _timestamp(seconds: int, nanos: int) -> bytes:
    """A ``Timestamp`` field numbered 1 (present even when both parts are 0)."""
    body = (_T1_VARINT + _varint(seconds) if seconds else b"") + (
        _T2_VARINT + _varint(nanos) if nanos else b""
    )
    return _field(_T1_LEN, body)


def _float(value: float) -> bytes:
    """``value`` as the 4 bytes of a protobuf ``float`` (rounded to nearest, as a C cast;
    beyond the float range: infinite, as protobuf's own conversion gives)."""
    try:
        return _PACK_FLOAT(value)
    except OverflowError:
        return _PACK_FLOAT(math.copysign(math.inf, value))


_FINITE_BOUNDS = struct.Struct("<BBBfBf").pack
"""One ``bounds`` entry with both ends: tag, length 10, lower's tag, lower, upper's tag, upper."""


def _bounds(intervals: list[Interval]) -> bytes:
    """The repeated ``bounds`` field of closed ``intervals`` (an infinite end left out)."""
    out = b""
    for lo, hi in intervals:
        if lo != -math.inf and hi != math.inf:
            try:
                out += _FINITE_BOUNDS(0x22, 10, 0x0D, lo, 0x15, hi)
                continue
            except OverflowError:
                pass
        inner = (_T1_FLOAT + _float(lo) if lo != -math.inf else b"") + (
            _T2_FLOAT + _float(hi) if hi != math.inf else b""
        )
        out += _field(_T4_LEN, inner)
    return out


class _Heads:
    """The sample heads of one publication time, shared by every template.

    ``samples[metric]``: (a whole unbounded sample of wire metric number
    ``metric`` but the 4 bytes of its value, the whole sample of a zero value,
    the sample's time and metric fields). Built on first use per metric; a new
    time gets new heads.
    """

    def __init__(self, seconds: int, nanos: int) -> None:
        self.time = (seconds, nanos)
        self.timestamp = _timestamp(seconds, nanos)
        """The sample time: field 1 of a sample and of a state snapshot."""
        self.samples: dict[int, tuple[bytes, bytes, bytes]] = {}

    def add(self, metric: int) -> tuple[bytes, bytes, bytes]:
        """Build the heads of wire metric ``metric`` (a metric 0 left out, as proto3 does)."""
        start = self.timestamp + (_T2_VARINT + _varint(metric) if metric else b"")
        head = _field(_T2_LEN, start + _VALUE_HEAD + _FLOAT_ZERO)[:-4]
        heads = self.samples[metric] = (head, _field(_T2_LEN, start + _ZERO_VALUE), start)
        return heads


_heads = _Heads(0, 0)
"""The heads of the latest publication time (one publication renders every template
at the same time; the simulator serves from one thread)."""


def _heads_at(seconds: int, nanos: int) -> _Heads:
    """The shared `_Heads` of time (``seconds``, ``nanos``)."""
    global _heads  # a one-entry cache for the whole process
    if _heads.time != (seconds, nanos):
        _heads = _Heads(seconds, nanos)
    return _heads


class Template:
    """The telemetry response of one stream key, encoded per publication.

    ``wire`` picks the message: v1alpha8-shaped (``Receive*TelemetryStreamResponse``
    of v1alpha18, the same bytes as v1alpha19's) or v1 (``Receive*DataStreamResponse``
    with ``frequenz.api.common.v1`` numbers, translated by `simulator._wire`).
    ``metrics`` (the samples, in this order) and ``full`` (the order of the values
    `render` gets) are v1alpha8 numbers either way.
    """

    def __init__(
        self,
        component_id: int,
        metrics: tuple[int, ...],
        full: tuple[int, ...],
        sensor: bool = False,
        wire: Wire = "v1alpha8",
    ) -> None:
        self.metrics = metrics
        """The v1alpha8 metric of each sample."""
        self.wire: Wire = wire
        self.index = [full.index(m) for m in metrics]
        """Per sample, the index of its value in the ``values`` `render` gets."""
        v1 = wire == "v1"
        self._samples = [
            (m, V1_METRIC[m] if v1 else m, i) for m, i in zip(metrics, self.index, strict=True)
        ]
        """Per sample: v1alpha8 metric, wire metric, value index."""
        self.message_type: type[Message]
        """The generated class of the response."""
        if sensor:
            self.message_type = (
                v1_mg_pb2.ReceiveSensorDataStreamResponse
                if v1
                else mg_pb2.ReceiveSensorTelemetryStreamResponse
            )
        else:
            self.message_type = (
                v1_mg_pb2.ReceiveComponentDataStreamResponse
                if v1
                else mg_pb2.ReceiveElectricalComponentTelemetryStreamResponse
            )
        self._id = _T1_VARINT + _varint(component_id) if component_id else b""
        self._sensor = sensor
        self._states: list[int] | None = None
        self._errors: list[int] | None = None
        """The states and errors `_codes_bytes` encodes (v1alpha8 numbers; None: not yet)."""
        self._codes_bytes = b""
        self._last = b""

    def body(self, msg: Message) -> Any:
        """The telemetry part of a response of this template's type (``data`` or ``telemetry``)."""
        return msg.data if self.wire == "v1" else msg.telemetry  # type: ignore[attr-defined]

    def decoded(self) -> Message:
        """The response `render` encoded last, decoded (a fresh message)."""
        return self.message_type.FromString(self._last)

    def render(
        self,
        seconds: int,
        nanos: int,
        values: list[float],
        bounds: dict[int, list[Interval]],
        states: list[int],
        errors: list[int],
    ) -> bytes:
        """Encode the response for one publication at (``seconds``, ``nanos``) since the
        epoch (``values`` in the ``full`` order, ``bounds`` keyed by v1alpha8 metric;
        ``states`` and ``errors`` in v1alpha8 numbers)."""
        heads = _heads_at(seconds, nanos)
        samples = heads.samples
        parts = [self._id]
        append = parts.append
        for metric, wire_metric, idx in self._samples:
            try:
                packed = _PACK_FLOAT(values[idx])
            except OverflowError:
                packed = _float(values[idx])
            head = samples.get(wire_metric) or heads.add(wire_metric)
            if bounds and metric in bounds:
                value = _VALUE_HEAD + packed if packed != _FLOAT_ZERO else _ZERO_VALUE
                append(_field(_T2_LEN, head[2] + value + _bounds(bounds[metric])))
            elif packed != _FLOAT_ZERO:
                append(head[0])
                append(packed)
            else:  # +0.0 (as a float): proto3 leaves the value out
                append(head[1])
        if states != self._states or errors != self._errors:
            self._states, self._errors = list(states), list(errors)
            self._codes_bytes = self._encode_codes(states, errors)
        append(_field(_T3_LEN, heads.timestamp + self._codes_bytes))
        data = _field(_T1_LEN, b"".join(parts))
        self._last = data
        return data

    def _encode_codes(self, states: list[int], errors: list[int]) -> bytes:
        """The snapshot's states and errors (v1alpha8 numbers in, the wire's out)."""
        if self.wire == "v1":
            to_v1 = v1_sensor_state_code if self._sensor else v1_state_code
            states = [to_v1(c) for c in states]
            errors = [v1_error_code(c) for c in errors]
        out = b""
        if states:
            out += _field(_T2_LEN, b"".join(_varint(c) for c in states))
        if errors and self.wire == "v1":
            out += _field(_T4_LEN, b"".join(_varint(c) for c in errors))
        elif errors:
            out += b"".join(_field(_T4_LEN, _T1_VARINT + _varint(c) if c else b"") for c in errors)
        return out


_MSG, _ENUM, _FLOAT, _INT = "message", "enum", "float", "integer"
_TIMESTAMP: dict[int, Any] = {1: (_INT, False), 2: (_INT, False)}
_SAMPLE: dict[int, Any] = {
    1: (_MSG, False, _TIMESTAMP),
    2: (_ENUM, False),
    3: (_MSG, False, {1: (_MSG, False, {2: (_FLOAT, False)})}),
    4: (_MSG, True, {1: (_FLOAT, False), 2: (_FLOAT, False)}),
}
_LAYOUT: dict[int, Any] = {
    1: (
        _MSG,
        False,
        {
            1: (_INT, False),
            2: (_MSG, True, _SAMPLE),
            3: (_MSG, True, {1: (_MSG, False, _TIMESTAMP), 2: (_ENUM, True), 4: (None, True)}),
        },
    )
}
"""What `Template` writes, by field number: (kind, repeated[, the message's fields]);
kind None = a diagnostic message ``{1: code}`` (v1alpha8) or a packed enum (v1)."""
_KINDS = {
    11: _MSG,
    14: _ENUM,
    2: _FLOAT,
    3: _INT,
    4: _INT,
    5: _INT,
}


def _check_layout(desc: Any, layout: dict[int, Any], where: str) -> None:
    """Raise `RuntimeError` if message ``desc`` differs from ``layout`` (`_LAYOUT`).

    A field ``layout`` names but ``desc`` lacks is fine (v1 sensor samples carry no
    bounds: `Template` writes none for sensors).
    """
    for number, (kind, repeated, *inner) in layout.items():
        field = desc.fields_by_number.get(number)
        if field is None:
            continue
        name = f"{where}.{field.name}"
        found = _KINDS.get(field.type)
        if kind is None:  # errors: a packed enum, or a message whose field 1 is the code
            ok = field.type == 14 and field.is_packed
            if field.type == 11:
                ok = True
                _check_layout(field.message_type, {1: (_ENUM, False)}, name)
        else:
            ok = found == kind and (field.type != 14 or not repeated or field.is_packed)
        if not ok or field.is_repeated != repeated:
            raise RuntimeError(f"{name} (field {number}) is not the {kind} the encoder writes")
        if inner:
            _check_layout(field.message_type, inner[0], name)


for _response in (
    mg_pb2.ReceiveElectricalComponentTelemetryStreamResponse,
    mg_pb2.ReceiveSensorTelemetryStreamResponse,
    v1_mg_pb2.ReceiveComponentDataStreamResponse,
    v1_mg_pb2.ReceiveSensorDataStreamResponse,
):
    _check_layout(_response.DESCRIPTOR, _LAYOUT, _response.DESCRIPTOR.full_name)
