"""The layering, checked on the source: the store is below the channels and the workers, so
nothing under store/ imports them (a channel's rules stay in the channel; the store serves
every channel alike)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = ("channels", "workers")


def _imported(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth (a function-level import counts too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_nothing_in_the_store_imports_channels_or_workers() -> None:
    modules = sorted((ROOT / "store").rglob("*.py"))
    assert len(modules) > 10, "the store's modules were found"
    upward = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in modules
        for name in _imported(path)
        if name.split(".")[0] in FORBIDDEN
    }
    assert not upward, sorted(upward)


def test_the_check_sees_imports_at_any_depth(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from channels.email import outbound\nimport workers.notify\n")
    assert _imported(sample) == {"channels.email", "workers.notify"}
