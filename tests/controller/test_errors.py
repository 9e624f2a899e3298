"""One error tree: every user-facing error of gridloop derives from GridloopError."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import controller.errors as errors
from actors import GridloopError

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("controller.runtime.config", "ConfigError"),
        ("controller.runtime.service", "UserError"),
        ("controller.ops.outputs", "OutputPathError"),
        ("controller.ops.recording", "RecordingError"),
        ("controller.ops.metrics", "MetricsError"),
        ("controller.ops.dashboard", "DashboardError"),
        ("controller.ops.logs", "LogConfigError"),
        ("controller.ops.report", "ReportError"),
        ("controller.runtime.embedded", "EmbeddedSimulatorError"),
        ("controller.lab.replay", "ReplayError"),
        ("controller.lab.replay.errors", "ReplayError"),
        ("controller.lab.bench", "BenchError"),
    ],
)
def test_every_user_facing_error_is_a_gridloop_error(module: str, name: str) -> None:
    import importlib

    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, GridloopError)
    # One definition, in controller.errors, found where it always was.
    assert cls is getattr(errors, name)
    assert errors.GridloopError is GridloopError


def test_controller_modules_take_their_errors_from_controller_errors() -> None:
    offenders = []
    for path in sorted((ROOT / "controller").rglob("*.py")):
        if path.name == "errors.py" and path.parent.name == "controller":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.ImportFrom)
                and (node.module or "").startswith("actors")
                and any(alias.name == "GridloopError" for alias in node.names)
            ):
                offenders.append(str(path.relative_to(ROOT)))
            if isinstance(node, ast.ClassDef) and node.name.endswith("Error"):
                offenders.append(f"{path.relative_to(ROOT)}: class {node.name}")
    assert offenders == []
