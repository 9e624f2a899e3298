"""What the replay commands' command-line parts share (``cli``, ``day_cli``, ``site_cli``,
``reactive_cli``).

* :func:`progress_bar` — the replays' progress bar on stderr (transient; off with
  ``--no-progress``).
* :func:`progress_of` — one task on such a bar, as a replay's ``progress(done, total)``
  callback.
* :func:`write_summary_json` — ``--summary-json``: write the summary, or one
  :class:`~controller.lab.replay.errors.ReplayError` naming the flag and the file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from controller.lab.replay.errors import ReplayError
from controller.lab.replay.stepping import ProgressCallback

if TYPE_CHECKING:
    from rich.progress import Progress

__all__ = ["progress_bar", "progress_of", "write_summary_json"]


def progress_bar(disabled: bool) -> Progress:
    """The replays' progress bar: description, bar, percentage, elapsed time, on stderr
    (rich is imported here: the command's start stays quick)."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(),
                    TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn(),
                    console=Console(stderr=True), transient=True, disable=disabled)


@contextmanager
def progress_of(description: str, disabled: bool) -> Iterator[ProgressCallback]:
    """A bar with one task ``description``; yields the replay's progress callback."""
    progress = progress_bar(disabled)
    with progress:
        task = progress.add_task(description, total=1.0)

        def cb(done: float, total: float) -> None:
            progress.update(task, completed=done / total if total else 1.0)

        yield cb


def write_summary_json(path: Path, summary: Mapping[str, Any]) -> None:
    """Write ``summary`` as indented JSON to ``path`` (values JSON cannot hold as text).

    Raises:
        ReplayError: The file cannot be written (names ``--summary-json`` and the path).
    """
    try:
        path.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    except OSError as exc:
        raise ReplayError(f"--summary-json: cannot write {path}: {exc.strerror or exc}",
                          source="--summary-json") from None
