"""The recovery rule (which components get AckError+Start, when), without network."""

from __future__ import annotations

from frequenz.api.common.v1alpha8.microgrid.electrical_components import (
    electrical_components_pb2 as ec,
)

from actors import StateTable
from actors._recovery import RecoveryActor

INV, BAT = 3, 5
ERROR = ec.ELECTRICAL_COMPONENT_STATE_CODE_ERROR
OFF = ec.ELECTRICAL_COMPONENT_STATE_CODE_OFF
READY = ec.ELECTRICAL_COMPONENT_STATE_CODE_READY
S = 1_000_000_000


def _actor() -> tuple[RecoveryActor, StateTable]:
    table = StateTable([10, 11, 20], [INV, BAT, INV])
    actor = RecoveryActor(None, table, [10, 11, 20], stale_after_s=1.0)  # type: ignore[arg-type]
    return actor, table


def test_only_fresh_errors_are_acknowledged() -> None:
    actor, t = _actor()
    now = 100 * S
    t.state_code[:] = [ERROR, READY, ERROR]
    t.received_ns[:] = [now, now, now - 2 * S]  # 20's error report is stale
    assert actor.due(now) == ([0], [])


def test_operator_stopped_component_is_not_started() -> None:
    actor, t = _actor()
    now = 100 * S
    t.state_code[:] = [OFF, OFF, READY]
    t.received_ns[:] = now
    assert actor.due(now) == ([], [])


def test_start_is_retried_after_own_ack_with_backoff() -> None:
    actor, t = _actor()
    now = 100 * S
    t.received_ns[:] = now
    t.state_code[:] = [READY, READY, READY]
    # As after a successful ack whose Start failed (what `_recover` records).
    actor._start_pending[0] = True
    actor._attempts[0] = 1
    actor._next_ns[0] = now + S
    t.state_code[0] = OFF
    assert actor.due(now) == ([], [])  # waits for the backoff
    assert actor.due(now + S) == ([], [0])
    # Once it runs again, its history is forgotten.
    t.state_code[0] = READY
    t.received_ns[:] = now + 2 * S
    assert actor.due(now + 2 * S) == ([], [])
    assert not actor._start_pending[0]
    assert actor._attempts[0] == 0
