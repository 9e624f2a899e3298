"""The embedded default: the bundled simulator in a child process on a free loopback port.

``gridloop run`` without ``--api`` starts ``python -m simulator --port 0`` and talks
to it over gRPC like to any real site. The child never outlives the run: it is
stopped with SIGTERM (then SIGKILL) when the run ends, after the safe stop, and
on Linux the kernel kills it if the parent dies first (``PR_SET_PDEATHSIG``). It
runs in its own process group, so a terminal's Ctrl-C or hangup reaches only the
parent, whose safe stop then still finds the simulator serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import signal
import sys
import tempfile
from collections import deque
from pathlib import Path
from types import TracebackType
from typing import Any

from controller.errors import EmbeddedSimulatorError

__all__ = ["EmbeddedSimulator", "EmbeddedSimulatorError", "site_input_files"]

_LOG = logging.getLogger("gridloop.embedded")
_LISTEN_PREFIX = "gridloop sim listening on "
_PR_SET_PDEATHSIG = 1


def site_input_files(site_path: str | os.PathLike[str] | None) -> tuple[Path, ...]:
    """The files the child will read for this site: the site TOML, then the CSVs it names.

    ``None`` is the simulator's default site. See :func:`simulator.config.site_input_files`.
    """
    from simulator.config import site_input_files as files

    return files(site_path)


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


class EmbeddedSimulator:
    """The bundled simulator as a child process; an async context manager.

    Attributes are valid inside the ``async with`` block: :attr:`address` is
    ``"127.0.0.1:PORT"`` and :attr:`url` the matching ``grpc://`` URL. After the
    block, :attr:`stats` holds the simulator's statistics (setpoints received,
    accepted, rejected by reason), read from its ``--stats-json`` file.
    """

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
        self._site_path = site_path
        self._time_scale = time_scale
        self._telemetry_hz = telemetry_hz
        self._seed = seed
        self._extra_args = list(extra_args or [])
        self._start_timeout_s = start_timeout_s
        self._proc: asyncio.subprocess.Process | None = None
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        self._drains: list[asyncio.Task[None]] = []
        self._stderr_tail: deque[str] = deque(maxlen=20)
        self.address: str = ""
        """``HOST:PORT`` the child listens on."""
        self.stats: dict[str, Any] = {}
        """The child's statistics, filled in when it has stopped."""

    @property
    def url(self) -> str:
        """The ``grpc://`` URL of the child's server."""
        return f"grpc://{self.address}?ssl=false"

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        return self._proc.pid if self._proc is not None else None

    def _argv(self, stats_path: Path) -> list[str]:
        argv = [sys.executable, "-m", "simulator", "--host", "127.0.0.1", "--port", "0"]
        argv += ["--time-scale", repr(self._time_scale), "--stats-json", str(stats_path)]
        if self._site_path is not None:
            argv += ["--config", os.fspath(self._site_path)]
        if self._telemetry_hz is not None:
            argv += ["--telemetry-hz", repr(self._telemetry_hz)]
        if self._seed is not None:
            argv += ["--seed", str(self._seed)]
        return argv + self._extra_args

    async def __aenter__(self) -> EmbeddedSimulator:
        """Start the child and wait until it listens."""
        self._tmpdir = tempfile.TemporaryDirectory(prefix="gridloop-sim-")
        stats_path = Path(self._tmpdir.name) / "stats.json"
        self._proc = await asyncio.create_subprocess_exec(
            *self._argv(stats_path),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=_child_setup,
        )
        assert self._proc.stdout is not None
        assert self._proc.stderr is not None
        # Keep both pipes drained for the child's whole life, or it blocks on a full pipe.
        self._drains.append(asyncio.ensure_future(self._drain(self._proc.stderr, "stderr")))
        try:
            self.address = await asyncio.wait_for(
                self._read_address(self._proc.stdout), self._start_timeout_s
            )
        except (TimeoutError, EmbeddedSimulatorError) as exc:
            await self._terminate()
            await self._stop_drains()
            detail = self._stderr_tail[-1] if self._stderr_tail else str(exc) or "no output"
            raise EmbeddedSimulatorError(f"the embedded simulator did not start: {detail}") from exc
        except BaseException:
            await self._terminate()
            await self._stop_drains()
            raise
        self._drains.append(asyncio.ensure_future(self._drain(self._proc.stdout, "stdout")))
        _LOG.info("embedded simulator pid %d listening on %s", self._proc.pid, self.address)
        return self

    async def _read_address(self, stdout: asyncio.StreamReader) -> str:
        while True:
            raw = await stdout.readline()
            if not raw:
                raise EmbeddedSimulatorError("the simulator exited before listening")
            line = raw.decode(errors="replace").strip()
            if line.startswith(_LISTEN_PREFIX):
                return line[len(_LISTEN_PREFIX) :].strip()

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
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 5.0)
        except TimeoutError:
            _LOG.warning("embedded simulator pid %d ignored SIGTERM; killing it", proc.pid)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the child (SIGTERM, then SIGKILL) and read its statistics."""
        try:
            await asyncio.shield(self._terminate())
            if self._tmpdir is not None:
                stats_path = Path(self._tmpdir.name) / "stats.json"
                with contextlib.suppress(OSError, ValueError):
                    self.stats = json.loads(stats_path.read_text())
            await self._stop_drains()
            if self._proc is not None and self._proc.returncode not in (0, None):
                _LOG.warning(
                    "embedded simulator exited with status %s: %s",
                    self._proc.returncode,
                    self._stderr_tail[-1] if self._stderr_tail else "no output",
                )
        finally:
            if self._tmpdir is not None:
                self._tmpdir.cleanup()
                self._tmpdir = None
