"""The files ``gridloop run`` writes, checked before the run starts.

Offers :func:`check_outputs` (every output can be written, and none of them is an
input of the run or another output) and :class:`OutputPathError`.

Paths are compared as the files they name: resolved through symbolic links and
``..``, and, when both exist, by device and inode (hard links, bind mounts), so
``--record site.toml`` or a ``--summary-json`` that is a link to the config is
refused before anything is truncated.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Mapping
from pathlib import Path

from controller.errors import OutputPathError

__all__ = ["OutputPathError", "check_outputs", "same_file"]


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether two paths name the same file (resolved paths, or same device and inode)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):  # one of them does not exist (yet)
        return False


def _probe_writable(path: str) -> str | None:
    """Why ``path`` cannot be opened for writing, or None; leaves the file as it was.

    The file is opened without truncation; one that did not exist is removed again.
    """
    if os.path.isdir(path):
        return os.strerror(errno.EISDIR)
    existed = os.path.lexists(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
    except OSError as exc:
        return exc.strerror or str(exc)
    os.close(fd)
    if not existed:
        with contextlib.suppress(OSError):
            os.unlink(path)
    return None


def check_outputs(
    outputs: Mapping[str, str | None], inputs: Mapping[str, str | os.PathLike[str] | None]
) -> None:
    """Refuse outputs that cannot be written or would overwrite an input or each other.

    Args:
        outputs: Flag → path of each file the run writes (None = not asked for).
        inputs: What names it (a flag or config field) → path of each file the run
            reads (None = not used).

    Raises:
        OutputPathError: The first problem: an output naming the same file as an
            input or as another output, or one that cannot be opened for writing
            (missing directory, no permission, a directory).
    """
    seen: list[tuple[str, str]] = []
    for flag, path in outputs.items():
        if path is None:
            continue
        for name, input_path in inputs.items():
            if input_path is not None and same_file(path, input_path):
                raise OutputPathError(
                    f"{flag} = {path!r}: is {name} ({str(Path(input_path))!r}), an input of"
                    " the run; refusing to overwrite it"
                )
        for other_flag, other in seen:
            if same_file(path, other):
                raise OutputPathError(
                    f"{flag} = {path!r}: is the same file as {other_flag} = {other!r}"
                )
        problem = _probe_writable(path)
        if problem is not None:
            raise OutputPathError(f"{flag} = {path!r}: cannot write: {problem}")
        seen.append((flag, path))
