"""Actor base, supervisor with capped exponential restart backoff, signal helpers.

An `Actor` is a named long-running coroutine (`_run`). A `Supervisor` runs a set of
actors as tasks of one `asyncio.TaskGroup`; an actor whose `_run` raises is logged
(with its name and the cause) and restarted after `backoff_delay_s(...)`. Cancellation
is never swallowed: cancelling the supervisor (or leaving its `async with` block)
cancels every actor and waits for all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
import time
import warnings
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from types import TracebackType
from typing import Any, TypeAlias, TypeVar

from frequenz.channels import BroadcastReceiver, BroadcastSender

from ._errors import ActorError, OptionsError

_logger = logging.getLogger(__name__)

_T = TypeVar("_T")

ExcInfo: TypeAlias = tuple[type[BaseException] | None, BaseException | None, TracebackType | None]
"""What `__aexit__` receives: the exception leaving the block (all None if none)."""


def backoff_delay_s(failures: int, min_s: float, max_s: float) -> float:
    """Return the delay before retry number `failures` (capped exponential).

    `failures` = 1 gives `min_s`, each further failure doubles it, never above `max_s`.
    `failures` <= 0 gives 0 (no delay).

    Args:
        failures: Consecutive failures so far.
        min_s: First delay in seconds.
        max_s: Cap in seconds.

    Returns:
        The delay in seconds.
    """
    if failures <= 0:
        return 0.0
    # 2**60 is far above any cap; avoid float overflow on huge failure counts.
    return float(min(max_s, min_s * 2.0 ** min(failures - 1, 60)))


def validate_positive(field: str, value: float, *, allow_zero: bool = False) -> float:
    """Return `value` if it is a finite positive number, else raise `OptionsError`.

    Args:
        field: Name of the field (for the error).
        value: The value.
        allow_zero: Whether 0 is accepted.

    Returns:
        The value as float.

    Raises:
        OptionsError: If the value is NaN, infinite, negative (or zero when not allowed).
    """
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise OptionsError(field, value, "must be a number")
    if not math.isfinite(value):
        raise OptionsError(field, value, "must be finite")
    if value < 0 or (value == 0 and not allow_zero):
        raise OptionsError(field, value, "must be > 0" if not allow_zero else "must be >= 0")
    return float(value)


def new_broadcast_channel(
    name: str, *, limit: int = 50, warn_on_overflow: bool = False
) -> tuple[BroadcastSender[_T], BroadcastReceiver[_T]]:
    """Create a frequenz-channels `BroadcastChannel` (sender, first receiver).

    The channel closes when all its senders or all its receivers are closed; more
    receivers come from `sender.subscribe()`. (frequenz-channels 1.12 warns about its
    own use of the deprecated `Broadcast` class inside `BroadcastChannel`; that warning
    is silenced here.)

    Args:
        name: Channel name (logs).
        limit: Receiver buffer size.
        warn_on_overflow: Log when a receiver drops its oldest message.

    Returns:
        (sender, receiver).
    """
    from frequenz.channels import BroadcastChannel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        sender: BroadcastSender[_T]
        receiver: BroadcastReceiver[_T]
        sender, receiver = BroadcastChannel[_T](
            name, limit=limit, warn_on_overflow=warn_on_overflow
        )
    return sender, receiver


class Actor:
    """Base class of a long-running, restartable actor.

    Subclasses implement `_run()`. It runs until cancelled; if it raises, the
    supervisor logs the cause and restarts it after a capped exponential backoff.
    An actor can be used alone as an async context manager (it then runs under its
    own one-actor `Supervisor`).
    """

    def __init__(self, name: str) -> None:
        """Create the actor.

        Args:
            name: Name used in logs and errors.
        """
        self.name: str = name
        """Name used in logs and errors."""
        self.restarts: int = 0
        """How many times the actor was restarted after a failure."""
        self._own_supervisor: Supervisor | None = None

    async def _run(self) -> None:
        """Run the actor until cancelled (override)."""
        raise NotImplementedError

    async def __aenter__(self) -> Actor:
        """Start the actor under its own supervisor.

        Returns:
            self
        """
        self._own_supervisor = Supervisor([self], name=f"{self.name}-supervisor")
        await self._own_supervisor.__aenter__()
        return self

    async def __aexit__(self, *exc_info: *ExcInfo) -> None:
        """Stop the actor and wait for it."""
        sup, self._own_supervisor = self._own_supervisor, None
        if sup is not None:
            await sup.__aexit__(*exc_info)

    def __repr__(self) -> str:
        """Return a representation with the actor's name."""
        return f"{type(self).__name__}({self.name!r})"


class Supervisor:
    """Runs actors in one TaskGroup and restarts failed ones with backoff.

    Restart delay after the k-th consecutive failure is
    `backoff_delay_s(k, restart_min_s, restart_max_s)`; the count resets when an
    actor ran longer than `restart_max_s` before failing. Leaving the `async with`
    block cancels all actors and waits for them (no task outlives the block).
    """

    def __init__(
        self,
        actors: Iterable[Actor],
        *,
        name: str = "supervisor",
        restart_min_s: float = 0.1,
        restart_max_s: float = 5.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """Create the supervisor.

        Args:
            actors: Actors to run.
            name: Name used in logs.
            restart_min_s: First restart delay in seconds.
            restart_max_s: Maximum restart delay in seconds.
            sleep: Sleep function (tests inject a fake).
        """
        self.name: str = name
        """Name used in logs."""
        self.actors: list[Actor] = list(actors)
        """The supervised actors."""
        self._min_s = validate_positive("restart_min_s", restart_min_s)
        self._max_s = validate_positive("restart_max_s", restart_max_s)
        self._sleep = sleep
        self._tg: asyncio.TaskGroup | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Supervisor:
        """Start every actor.

        Returns:
            self
        """
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        for actor in self.actors:
            self._tasks.append(self._tg.create_task(self._supervise(actor), name=actor.name))
        return self

    async def __aexit__(self, *exc_info: *ExcInfo) -> None:
        """Cancel every actor and wait for all of them."""
        for task in self._tasks:
            task.cancel()
        tg, self._tg = self._tg, None
        self._tasks = []
        if tg is not None:
            await tg.__aexit__(*exc_info)

    async def _supervise(self, actor: Actor) -> None:
        failures = 0
        while True:
            started = time.monotonic()
            try:
                await actor._run()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if time.monotonic() - started > self._max_s:
                    failures = 0
                failures += 1
                delay = backoff_delay_s(failures, self._min_s, self._max_s)
                actor.restarts += 1
                _logger.error(
                    "%s: actor %r failed (%s: %s); restart %d in %.2f s",
                    self.name,
                    actor.name,
                    type(exc).__name__,
                    exc,
                    failures,
                    delay,
                    exc_info=exc,
                )
                await self._sleep(delay)
            else:
                _logger.warning("%s: actor %r returned; restarting", self.name, actor.name)
                failures += 1
                await self._sleep(backoff_delay_s(failures, self._min_s, self._max_s))


@contextlib.contextmanager
def cancel_on_signals(
    task: asyncio.Task[Any] | None = None,
    signals: Sequence[signal.Signals] = (signal.SIGINT, signal.SIGTERM),
) -> Any:
    """Cancel `task` (default: the current task) on SIGINT/SIGTERM, for orderly shutdown.

    Cancellation propagates through `async with Site(...)` / `Supervisor`, whose exits
    send 0 W and stop every task. Handlers are removed when the block ends.

    Args:
        task: The task to cancel; the current task when None.
        signals: The signals to handle.

    Yields:
        None

    Raises:
        ActorError: If called outside a running task.
    """
    loop = asyncio.get_running_loop()
    target = task if task is not None else asyncio.current_task()
    if target is None:
        raise ActorError("cancel_on_signals", "must be called inside a task")

    def _handler(sig: signal.Signals) -> None:
        _logger.warning("received %s: shutting down", sig.name)
        target.cancel(f"received {sig.name}")

    installed: list[signal.Signals] = []
    try:
        for sig in signals:
            loop.add_signal_handler(sig, _handler, sig)
            installed.append(sig)
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def run(main: Coroutine[Any, Any, _T]) -> _T:
    """Run `main` on uvloop when installed (else the default asyncio loop).

    Args:
        main: The coroutine to run.

    Returns:
        What `main` returns.
    """
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a linux dependency
        return asyncio.run(main)
    result: _T = uvloop.run(main)
    return result
