"""The command-line parser every ``gridloop`` command shares, and its value types.

* :class:`OneLineParser` — ``argparse``, but a usage error is one line on stderr
  (``PROG: error: MESSAGE (see PROG --help)``) and exit status 2, never a usage dump.
* :func:`positive_float`, :func:`positive_int`, :func:`int_in`, :func:`port` —
  ``type=`` converters whose error names the flag and the value
  (``--duration = 'x': not a number``).

Used by ``gridloop run``, ``replay``, ``report`` and ``bench``. ``gridloop sim`` keeps
its own in :mod:`simulator.cli`: the simulator stands alone and imports nothing
from the controller.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import NoReturn

__all__ = ["OneLineParser", "int_in", "port", "positive_float", "positive_int"]


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit status 2), no usage dump."""

    def error(self, message: str) -> NoReturn:
        """Print ``PROG: error: MESSAGE (see PROG --help)`` on stderr and exit with status 2."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def positive_float(name: str) -> Callable[[str], float]:
    """A converter to a finite float > 0; its error names ``name`` (the flag) and the text."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} = {text!r}: not a number") from None
        if not math.isfinite(value) or value <= 0:
            raise argparse.ArgumentTypeError(f"{name} = {text!r}: must be a positive number")
        return value

    return parse


def int_in(name: str, low: int, high: int | None = None) -> Callable[[str], int]:
    """A converter to an integer in ``low..high`` (no upper bound when ``high`` is None)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} = {text!r}: not an integer") from None
        if value < low or (high is not None and value > high):
            bounds = f"must be {low}..{high}" if high is not None else f"must be >= {low}"
            raise argparse.ArgumentTypeError(f"{name} = {text!r}: {bounds}")
        return value

    return parse


def positive_int(name: str) -> Callable[[str], int]:
    """A converter to an integer >= 1; its error names ``name`` and the text."""
    return int_in(name, 1)


def api_version(name: str) -> Callable[[str], str]:
    """An argparse type: a Microgrid API version gridloop speaks (`actors.API_VERSIONS`).

    Args:
        name: The flag, named in the error.

    Returns:
        The converter (imports the runtime only when the flag is given).
    """

    def parse(text: str) -> str:
        from actors import OptionsError, check_api_version

        try:
            check_api_version(text)
        except OptionsError as exc:
            raise argparse.ArgumentTypeError(f"{name} = {text!r}: {exc.reason}") from None
        return text

    return parse


def port(name: str) -> Callable[[str], int]:
    """A converter to a TCP port number 0..65535 (0 = any free port)."""
    return int_in(name, 0, 65535)
