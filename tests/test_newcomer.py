"""What someone trying Shouli for the first time meets: the CLI run from outside the
checkout, the warnings of a trial config, and the README's quick start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.stack import CONFIG

ROOT = Path(__file__).resolve().parent.parent


def shouli(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The real command in ``cwd``, without the caller's SHOULI_* variables."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SHOULI_")}
    clean["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "ingest.cli", *args],
        cwd=cwd,
        env=clean | (env or {}),
        capture_output=True,
        text=True,
        timeout=120,
    )


# Every command that loads the settings, with arguments it needs to get that far.
SETTINGS_COMMANDS = [
    ["serve"],
    ["edge"],
    ["worker", "router"],
    ["migrate"],
    ["check-config"],
    ["submit", "draft.json"],
    ["tickets", "list"],
    ["tickets", "show", "TS202611-000001"],
    ["dead-letters", "list"],
    ["dead-letters", "replay", "1"],
    ["import-calls", "calls.csv"],
]


@pytest.mark.parametrize("args", SETTINGS_COMMANDS, ids=lambda a: " ".join(a))
def test_outside_the_checkout_every_command_says_the_config_file_is_missing(
    tmp_path: Path, args: list[str]
) -> None:
    (tmp_path / "draft.json").write_text('{"source_key": "x"}', encoding="utf-8")
    (tmp_path / "calls.csv").write_text("来电号码\n13800000000\n", encoding="utf-8")
    result = shouli(tmp_path, *args)
    assert result.returncode == 1, result.stdout + result.stderr
    looked = tmp_path.resolve() / "config.yaml"
    assert f"config.yaml not found (looked in {looked}" in result.stderr, result.stderr
    assert "coordinating" not in result.stderr
    assert not (tmp_path / "var").exists(), "nothing is created without a config"


def test_a_missing_file_named_by_shouli_config_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "etc" / "shouli.yaml"
    result = shouli(tmp_path, "check-config", env={"SHOULI_CONFIG": str(missing)})
    assert result.returncode == 1
    assert f"shouli.yaml not found (looked in {missing}" in result.stderr, result.stderr
    assert "SHOULI_CONFIG" in result.stderr


def test_a_missing_file_named_by_c_is_named(tmp_path: Path) -> None:
    result = shouli(tmp_path, "check-config", "-c", "nope.yaml")
    assert result.returncode == 1
    assert f"nope.yaml not found (looked in {tmp_path.resolve() / 'nope.yaml'}" in result.stderr


def test_the_config_of_the_checkout_is_still_found_from_the_checkout() -> None:
    result = shouli(CONFIG.parent, "check-config")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("config OK:")
