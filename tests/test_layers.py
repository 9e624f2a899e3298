"""The import rules of ARCHITECTURE.md, checked on every module (top-level and
function-level imports alike): arrows only point down the package table."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# (package path, forbidden import prefixes, files exempt from the rule)
RULES: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    ("distribution", ("actors", "controller", "simulator", "grpc", "frequenz"), ()),
    ("actors", ("controller", "simulator"), ()),
    ("simulator", ("actors", "controller", "distribution"), ()),
    ("controller/runtime", ("controller.ops", "controller.lab", "controller.run",
                            "controller.cli", "simulator"),
     ("controller/runtime/embedded.py",)),  # the embedded-default launcher
    ("controller/ops", ("controller.lab", "controller.run", "controller.cli", "simulator"), ()),
]


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def _violations(package: str, forbidden: tuple[str, ...], exempt: tuple[str, ...]) -> list[str]:
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel in exempt:
            continue
        for line, module in _imports(path):
            if any(module == f or module.startswith(f + ".") for f in forbidden):
                bad.append(f"{rel}:{line} imports {module}")
    return bad


@pytest.mark.parametrize(("package", "forbidden", "exempt"), RULES, ids=[r[0] for r in RULES])
def test_imports_point_down(
    package: str, forbidden: tuple[str, ...], exempt: tuple[str, ...]
) -> None:
    assert _violations(package, forbidden, exempt) == []


def test_the_rule_sees_a_violation(tmp_path: Path) -> None:
    """The checker itself: an upward import, even inside a function, is reported."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text("def f():\n    from controller.lab import bench\n")
    assert _imports(tmp_path / "pkg" / "m.py") == [(2, "controller.lab")]
