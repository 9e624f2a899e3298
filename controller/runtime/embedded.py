"""The one simulator launcher: a simulator child process on a loopback port.

``gridloop run`` without ``--api`` starts ``python -m simulator --port 0`` and talks
to it over gRPC like to any real site (:class:`EmbeddedSimulator`). The child never
outlives the run: it is stopped with SIGTERM (then SIGKILL) when the run ends, after
the safe stop, and on Linux the kernel kills it if the parent dies first
(``PR_SET_PDEATHSIG``). It runs in its own process group, so a terminal's Ctrl-C or
hangup reaches only the parent, whose safe stop then still finds the simulator serving.

Every other place that starts a simulator child (``gridloop bench``'s probe
simulator, the tests, the benchmarks) uses the same launcher, so the child is set
up, recognised as listening and stopped one way:

* :class:`SimulatorProcess`: any simulator command line as an async context manager
  (:class:`EmbeddedSimulator` is the embedded default built on it);
* :func:`start_simulator_process`: the same start for synchronous callers, which
  then own the :class:`subprocess.Popen` (signals, restarts, ``communicate``);
* :func:`listening_address`: ``HOST:PORT`` from the one line a simulator prints
  when it listens, ``gridloop sim listening on HOST:PORT``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from controller.errors import EmbeddedSimulatorError

__all__ = [
    "LISTEN_PREFIX",
    "SIMULATOR_COMMAND",
    "EmbeddedSimulator",
    "EmbeddedSimulatorError",
    "SimulatorProcess",
    "listening_address",
    "site_input_files",
    "start_simulator_process",
]

_LOG = logging.getLogger("gridloop.embedded")
LISTEN_PREFIX = "gridloop sim listening on "
"""What a simulator child prints, then ``HOST:PORT``, once it serves (one line, flushed)."""
SIMULATOR_COMMAND: tuple[str, ...] = (sys.executable, "-m", "simulator")
"""The program part of the default child's command line (its arguments follow)."""
_PR_SET_PDEATHSIG = 1


def site_input_files(site_path: str | os.PathLike[str] | None) -> tuple[Path, ...]:
    """The files the child will read for this site: the site TOML, then the CSVs it names.

    ``None`` is the simulator's default site. See :func:`simulator.config.site_input_files`.
    """
    from simulator.config import site_input_files as files

    return files(site_path)


def listening_address(line: str) -> str | None:
    """``HOST:PORT`` from a ``gridloop sim listening on HOST:PORT`` line; None for any other."""
    line = line.strip()
    if not line.startswith(LISTEN_PREFIX):
        return None
    return line[len(LISTEN_PREFIX) :].strip() or None


def _child_setup() -> None:  # pragma: no cover - runs in the child before exec
    """Leave the parent's process group; on Linux, die (SIGKILL) when the parent exits.

    Its own process group keeps the terminal's signals (Ctrl-C's SIGINT, a hangup's
    SIGHUP, sent to the whole foreground group) from stopping the simulator while
    the parent's safe stop is still sending it 0 W: the parent stops it afterwards.
    """
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    if sys.platform == "linux":
        with contextlib.suppress(Exception):
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _did_not_start(detail: str, name: str = "simulator") -> EmbeddedSimulatorError:
    return EmbeddedSimulatorError(f"the {name} did not start: {detail}")


def start_simulator_process(
    args: Sequence[str] = (),
    *,
    command: Sequence[str] = SIMULATOR_COMMAND,
    start_timeout_s: float = 30.0,
    preexec_fn: Callable[[], object] | None = None,
    **popen_kwargs: Any,
) -> tuple[subprocess.Popen[str], str]:
    """Start ``command + args`` as a simulator child; return it and ``HOST:PORT`` once it listens.

    The child runs in its own session and process group (a terminal's Ctrl-C reaches
    only the caller), then ``preexec_fn``, if given, runs in it. Its stdout is a text pipe
    read up to the listening line (a simulator writes nothing else there); stdin,
    stderr, ``env``, ``cwd`` … are ``popen_kwargs`` for :class:`subprocess.Popen`.
    The caller owns the process from then on: it signals, waits for and reaps it.

    Args:
        args: The simulator's arguments (e.g. ``["--port", "0", "--config", PATH]``).
        command: The program part: ``python -m simulator`` unless another entry
            (``gridloop``'s own CLI) is under test.
        start_timeout_s: How long to wait for the listening line.
        preexec_fn: Run in the child before exec (forks rather than vforks: keep it
            for callers that must, e.g. to close a std fd).
        **popen_kwargs: Passed to :class:`subprocess.Popen` (not ``stdout``/``text``).

    Raises:
        EmbeddedSimulatorError: The child exited or timed out before listening; it has
            been killed and reaped, and the message carries its last stderr line
            (when stderr is a pipe) or what it printed.
    """
    proc = subprocess.Popen(
        [*command, *args],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=preexec_fn,
        **popen_kwargs,
    )
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + start_timeout_s
    pending = b""
    seen: list[str] = []
    problem = f"no listening line within {start_timeout_s} s"
    # Raw reads with select (not readline): a child that hangs before listening must
    # not hang the caller. Nothing is buffered in the text wrapper, so a later
    # `communicate` reads the rest of stdout as usual.
    while (remaining := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            problem = "it exited before listening"
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for raw in lines:
            line = raw.decode(errors="replace")
            address = listening_address(line)
            if address is not None:
                return proc, address
            seen.append(line)
    proc.kill()
    _, err = proc.communicate(timeout=30)
    tail = [line for line in (err or "").splitlines() + seen if line.strip()]
    raise _did_not_start(tail[-1] if tail else problem)


class SimulatorProcess:
    """A simulator child process (any command that prints the listening line); async.

    An async context manager: ``__aenter__`` starts the child (own process group,
    stdin from /dev/null) and returns once it
    printed ``gridloop sim listening on HOST:PORT``; ``__aexit__`` stops it
    (SIGTERM, then SIGKILL). Its output is drained for its whole life, the last
    stderr lines kept for messages. With ``interactive``, stdin is a pipe and
    stdout, after the listening line, is the caller's to read (:attr:`stdin`,
    :attr:`stdout`): the protocol of ``gridloop bench``'s probe simulator; the
    child is then first asked to stop by closing its stdin.
    """

    _NAME = "simulator"
    """What messages and log lines call the child."""

    def __init__(
        self,
        args: Sequence[str] = (),
        *,
        command: Sequence[str] = SIMULATOR_COMMAND,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        interactive: bool = False,
        stream_limit: int = 1 << 16,
        start_timeout_s: float = 20.0,
        die_with_parent: bool = False,
    ) -> None:
        """Describe the child to start; nothing runs until ``__aenter__``.

        Args:
            args: The simulator's arguments.
            command: The program part (default ``python -m simulator``).
            env: The child's environment (None: this process's).
            cwd: The child's working directory (None: this process's).
            interactive: Pipe stdin and leave stdout after the listening line to the caller.
            stream_limit: Longest line (bytes) the stdout/stderr readers accept.
            start_timeout_s: How long to wait for the listening line.
            die_with_parent: On Linux, have the kernel kill the child when this process
                dies (``PR_SET_PDEATHSIG``). That takes a pre-exec hook, so a fork that
                runs gRPC's fork handlers: only for a process with no gRPC threads yet
                (``gridloop run`` starts its embedded simulator before connecting).
        """
        self._die_with_parent = die_with_parent
        self._command = [*command, *args]
        self._env = dict(env) if env is not None else None
        self._cwd = cwd
        self._interactive = interactive
        self._stream_limit = stream_limit
        self._start_timeout_s = start_timeout_s
        self._proc: asyncio.subprocess.Process | None = None
        self._drains: list[asyncio.Task[None]] = []
        self._stderr_tail: deque[str] = deque(maxlen=20)
        self.address: str = ""
        """``HOST:PORT`` the child listens on."""

    @property
    def url(self) -> str:
        """The ``grpc://`` URL of the child's server (plaintext)."""
        return f"grpc://{self.address}?ssl=false"

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        return self._proc.pid if self._proc is not None else None

    @property
    def returncode(self) -> int | None:
        """The child's exit status once it has stopped (None while it runs)."""
        return self._proc.returncode if self._proc is not None else None

    @property
    def stdin(self) -> asyncio.StreamWriter:
        """The child's stdin (``interactive`` only)."""
        proc = self._proc
        if proc is None or proc.stdin is None:
            raise RuntimeError("stdin is a pipe only for an interactive, running child")
        return proc.stdin

    @property
    def stdout(self) -> asyncio.StreamReader:
        """The child's stdout after the listening line (``interactive`` only)."""
        proc = self._proc
        if not self._interactive or proc is None or proc.stdout is None:
            raise RuntimeError("stdout is the caller's only for an interactive, running child")
        return proc.stdout

    def _argv(self) -> list[str]:
        """The child's full command line (subclasses add arguments)."""
        return list(self._command)

    async def __aenter__(self) -> SimulatorProcess:
        """Start the child and wait until it listens."""
        pipe = asyncio.subprocess.PIPE
        self._proc = await asyncio.create_subprocess_exec(
            *self._argv(),
            stdin=pipe if self._interactive else asyncio.subprocess.DEVNULL,
            stdout=pipe,
            stderr=pipe,
            env=self._env,
            cwd=self._cwd,
            limit=self._stream_limit,
            # Own process group either way; setsid (no hook) unless PDEATHSIG is wanted.
            **(
                {"preexec_fn": _child_setup}
                if self._die_with_parent
                else {"start_new_session": True}
            ),
        )
        assert self._proc.stdout is not None
        assert self._proc.stderr is not None
        # Keep the pipes drained for the child's whole life, or it blocks on a full pipe.
        self._drains.append(asyncio.ensure_future(self._drain(self._proc.stderr, "stderr")))
        try:
            self.address = await asyncio.wait_for(
                self._read_address(self._proc.stdout), self._start_timeout_s
            )
        except (TimeoutError, EmbeddedSimulatorError) as exc:
            await self._terminate()
            await self._stop_drains()
            self._release()
            problem = str(exc) or f"no listening line within {self._start_timeout_s} s"
            detail = self._stderr_tail[-1] if self._stderr_tail else problem
            raise _did_not_start(detail, self._NAME) from exc
        except BaseException:
            await self._terminate()
            await self._stop_drains()
            self._release()
            raise
        if not self._interactive:
            self._drains.append(asyncio.ensure_future(self._drain(self._proc.stdout, "stdout")))
        _LOG.info("%s pid %d listening on %s", self._NAME, self._proc.pid, self.address)
        return self

    async def _read_address(self, stdout: asyncio.StreamReader) -> str:
        while True:
            raw = await stdout.readline()
            if not raw:
                raise EmbeddedSimulatorError("it exited before listening")
            address = listening_address(raw.decode(errors="replace"))
            if address is not None:
                return address

    async def _drain(self, stream: asyncio.StreamReader, name: str) -> None:
        while raw := await stream.readline():
            line = raw.decode(errors="replace").rstrip()
            if name == "stderr":
                self._stderr_tail.append(line)
            _LOG.debug("simulator %s: %s", name, line)

    async def _stop_drains(self) -> None:
        # The child has exited: let the drains read what is left, then stop them.
        if self._drains:
            await asyncio.wait(self._drains, timeout=1.0)
        for task in self._drains:
            task.cancel()
        if self._drains:
            # asyncio.wait never swallows a cancellation of the task calling it.
            await asyncio.wait(self._drains)
        for task in self._drains:
            if not task.cancelled() and task.exception() is not None:
                _LOG.debug("simulator output drain failed: %r", task.exception())
        self._drains.clear()

    async def _terminate(self) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        if proc.stdin is not None:  # interactive: end of input asks it to stop
            with contextlib.suppress(Exception):
                proc.stdin.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 5.0)
            if proc.returncode is not None:
                return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 5.0)
        except TimeoutError:
            _LOG.warning("%s pid %d ignored SIGTERM; killing it", self._NAME, proc.pid)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    async def _stopped(self) -> None:
        """Hook between the child's exit and the end of its output (subclasses)."""

    def _release(self) -> None:
        """Hook: free what the child needed, whether it started or not (subclasses)."""

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the child (SIGTERM, then SIGKILL) and drain what it still wrote."""
        try:
            await asyncio.shield(self._terminate())
            await self._stopped()
            await self._stop_drains()
            if self._proc is not None and self._proc.returncode not in (0, None):
                _LOG.warning(
                    "%s exited with status %s: %s",
                    self._NAME,
                    self._proc.returncode,
                    self._stderr_tail[-1] if self._stderr_tail else "no output",
                )
        finally:
            self._release()


class EmbeddedSimulator(SimulatorProcess):
    """The bundled simulator as ``gridloop run``'s child process; an async context manager.

    Attributes are valid inside the ``async with`` block: :attr:`address` is
    ``"127.0.0.1:PORT"`` and :attr:`url` the matching ``grpc://`` URL. After the
    block, :attr:`stats` holds the simulator's statistics (setpoints received,
    accepted, rejected by reason), read from its ``--stats-json`` file.
    """

    _NAME = "embedded simulator"

    def __init__(
        self,
        *,
        site_path: str | os.PathLike[str] | None = None,
        time_scale: float = 1.0,
        telemetry_hz: float | None = None,
        seed: int | None = None,
        extra_args: list[str] | None = None,
        start_timeout_s: float = 20.0,
    ) -> None:
        """Describe the child to start; nothing runs until ``__aenter__``.

        Args:
            site_path: Site TOML for the simulator (None: its default site).
            time_scale: Simulated seconds per wall second.
            telemetry_hz: Telemetry rate per component stream (None: simulator default).
            seed: Random seed of the simulated noise (None: simulator default).
            extra_args: More ``gridloop sim`` arguments, passed through.
            start_timeout_s: How long to wait for the "listening on" line.
        """
        args = ["--host", "127.0.0.1", "--port", "0", "--time-scale", repr(time_scale)]
        if site_path is not None:
            args += ["--config", os.fspath(site_path)]
        if telemetry_hz is not None:
            args += ["--telemetry-hz", repr(telemetry_hz)]
        if seed is not None:
            args += ["--seed", str(seed)]
        super().__init__(
            args + list(extra_args or []), start_timeout_s=start_timeout_s, die_with_parent=True
        )
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        self.stats: dict[str, Any] = {}
        """The child's statistics, filled in when it has stopped."""

    def _argv(self) -> list[str]:
        assert self._tmpdir is not None
        return [*self._command, "--stats-json", str(Path(self._tmpdir.name) / "stats.json")]

    async def __aenter__(self) -> EmbeddedSimulator:
        """Start the child and wait until it listens."""
        self._tmpdir = tempfile.TemporaryDirectory(prefix="gridloop-sim-")
        await super().__aenter__()
        return self

    async def _stopped(self) -> None:
        if self._tmpdir is not None:
            stats_path = Path(self._tmpdir.name) / "stats.json"
            with contextlib.suppress(OSError, ValueError):
                self.stats = json.loads(stats_path.read_text())

    def _release(self) -> None:
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None
