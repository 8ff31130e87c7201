"""The layering, checked on the source by the import-linter contract in pyproject.toml:
app -> workers -> channels -> router -> store -> core, every arrow pointing down."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _contract() -> dict[str, Any]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contracts: list[dict[str, Any]] = config["tool"]["importlinter"]["contracts"]
    (layers,) = [c for c in contracts if c["type"] == "layers"]
    return layers


def _lint(where: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(where)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=where, env=env, capture_output=True, text=True
    )


def test_the_layers_contract_is_kept_with_no_ignored_imports() -> None:
    contract = _contract()
    assert "ignore_imports" not in contract
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_every_core_module_of_ingest_is_placed_in_the_bottom_layer() -> None:
    # The composition root is a package inside ingest/, so the core is named module by module;
    # a new core module left out would be checked by nobody.
    bottom = {name.strip() for name in _contract()["layers"][-1].split(":")}
    core = {
        f"ingest.{path.stem}" for path in (ROOT / "ingest").glob("*.py") if path.stem != "__init__"
    }
    assert core == bottom


def test_an_upward_import_breaks_the_contract(tmp_path: Path) -> None:
    """The same contract on a tree of empty modules, one of which climbs in a function."""
    contract = _contract()
    for layer in contract["layers"]:
        for module in (name.strip() for name in layer.split(":")):
            path = tmp_path.joinpath(*module.split("."))
            path.mkdir(parents=True, exist_ok=True)
            (path / "__init__.py").touch()
    (tmp_path / "store" / "tickets.py").write_text(
        "def notify():\n    from channels import email\n"
    )
    (tmp_path / "channels" / "email.py").write_text("")
    (tmp_path / "pyproject.toml").write_text(
        "[tool.importlinter]\n"
        + 'root_packages = ["ingest", "channels", "router", "store", "workers"]\n'
        + "[[tool.importlinter.contracts]]\n"
        + f'name = "{contract["name"]}"\n'
        + 'type = "layers"\n'
        + f"layers = {contract['layers']!r}\n".replace("'", '"')
    )
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert "store is not allowed to import channels" in result.stdout
    assert "store.tickets -> channels.email" in result.stdout
