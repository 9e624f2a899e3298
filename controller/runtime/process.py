"""What a ``gridloop`` process sets up before anything else: std fds and its stop signals.

Two things must hold from the first line of the command, before the heavy
imports and the event loop:

- **File descriptors 0, 1 and 2 are open.** A service manager, or ``<&-`` /
  ``>&-``, may start the process with one of them closed; the next socket or
  pipe then gets that number, and uvloop aborts the process
  (``uv__close: Assertion 'fd > STDERR_FILENO' failed``) when it closes it.
  :func:`ensure_std_fds` opens ``/dev/null`` on every closed one.
- **A stop signal is never lost or fatal.** SIGINT, SIGTERM and SIGHUP all
  request the same orderly stop (0 W to every commanded inverter, summary),
  whenever they arrive: :func:`catch_stop_signals` records them from the start
  of ``gridloop run``, and the run's event loop (:func:`controller.runtime.service.run_service`)
  takes over from there with the same event. SIGINT is caught even when the
  parent ignored it (a shell's background job): the run would catch it a moment
  later anyway. SIGHUP that the parent ignored stays ignored: that is what
  ``nohup`` asks for, and the run then goes on.
- **With a schedule, SIGHUP reloads it** (``gridloop run --schedule FILE``, the
  conventional daemon meaning): :func:`catch_stop_signals` with ``hup_stops=False``
  does not stop on it, and :func:`stop_on_signals` given ``on_hup`` calls that
  instead of stopping. SIGINT and SIGTERM still stop the run.

Light on purpose (no numpy, no grpc): it runs before those are imported.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["catch_stop_signals", "ensure_std_fds", "stop_on_signals", "stop_signals"]


def ensure_std_fds() -> None:
    """Open ``/dev/null`` on each of fds 0, 1, 2 that is closed, and give Python a stream for it.

    Call it first thing in a process entry point, before any file or socket is
    opened (the lowest free number would otherwise be 0, 1 or 2).
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:  # not the lowest free number: an earlier one was open
                os.dup2(null, fd)
                os.close(null)
            else:
                os.set_inheritable(fd, True)  # as a std fd is (os.open's are not)
    # Python leaves sys.stdin/stdout/stderr as None when their fd was closed at start.
    if sys.stdin is None:
        sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115 - process-long
    if sys.stdout is None:
        sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
    if sys.stderr is None:
        sys.stderr = open(2, "w", encoding="utf-8", closefd=False)  # noqa: SIM115


def stop_signals() -> tuple[signal.Signals, ...]:
    """The signals that stop a run now: SIGINT, SIGTERM, and SIGHUP unless it is ignored.

    Returns:
        The signals, SIGHUP left out while its disposition is ``SIG_IGN`` (``nohup``).
    """
    sigs = [signal.SIGINT, signal.SIGTERM]
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        sigs.append(signal.SIGHUP)
    return tuple(sigs)


@contextlib.contextmanager
def catch_stop_signals(hup_stops: bool = True) -> Iterator[asyncio.Event]:
    """Turn the stop signals into one event, from now until the block ends.

    The event is set by a plain Python signal handler, so it works before any
    event loop runs (it is an :class:`asyncio.Event` that no task waits on yet);
    :func:`controller.runtime.service.run_service` given this event installs the loop's
    own handlers for the same signals, and a signal that came earlier ends the
    run as soon as it starts. The previous handlers are restored at the end.
    Off the main thread nothing is installed (Python allows handlers only there).

    Args:
        hup_stops: False (a schedule is given): SIGHUP is caught but does not stop the
            run (the schedule is read at the start anyway).

    Yields:
        The stop event.
    """
    stop = asyncio.Event()

    def handler(signum: int, frame: Any) -> None:
        if hup_stops or signum != signal.SIGHUP:
            stop.set()

    previous: dict[signal.Signals, Any] = {}
    try:
        for sig in stop_signals():
            try:
                previous[sig] = signal.signal(sig, handler)
            except ValueError:  # not the main thread: the caller handles signals
                break
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def stop_on_signals(
    loop: asyncio.AbstractEventLoop,
    stop: asyncio.Event,
    on_hup: Callable[[], None] | None = None,
) -> Iterator[None]:
    """Set ``stop`` on the stop signals through ``loop`` while the block runs.

    The loop's handlers replace the Python ones (e.g. those of
    :func:`catch_stop_signals`) for the block; the previous handlers are put
    back afterwards, so a signal during what follows the block (printing the
    summary) is still not fatal. Off the main thread, or on a loop without
    signal support, nothing is installed.

    Args:
        loop: The running loop.
        stop: The event to set.
        on_hup: Called on SIGHUP instead of setting ``stop`` (None = SIGHUP stops).

    Yields:
        None
    """
    previous: dict[signal.Signals, Any] = {}
    try:
        for sig in stop_signals():
            old = signal.getsignal(sig)
            try:
                action = on_hup if on_hup is not None and sig == signal.SIGHUP else stop.set
                loop.add_signal_handler(sig, action)
            except (NotImplementedError, RuntimeError, ValueError):
                continue
            previous[sig] = old
        yield
    finally:
        for sig, old in previous.items():
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)
            if old is not None:
                signal.signal(sig, old)
