"""What someone trying Shouli for the first time meets: the CLI run from outside the
checkout, the warnings of a trial config, and the README's quick start."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.stack import CONFIG, Stack
from tests.test_web_support import free_port

ROOT = Path(__file__).resolve().parent.parent


def shouli(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The real command in ``cwd``, without the caller's SHOULI_* variables."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SHOULI_")}
    clean["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "ingest.app.cli", *args],
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


# --- warnings of a trial config --------------------------------------------------------------

# What the shipped config names and a trial shell usually lacks.
SECRET_VARIABLES = (
    "SHOULI_STAFF_TOKEN",
    "SHOULI_AGENT_1001_TOKEN",
    "SHOULI_AGENT_1002_TOKEN",
    "SHOULI_REFERRAL_GOV12345_SECRET",
    "SHOULI_REFERRAL_GOV12345_REPLY_SECRET",
    "SHOULI_REFERRAL_REGULATOR_SECRET",
    "SHOULI_REFERRAL_REGULATOR_REPLY_SECRET",
)
STAFF_SECRET = "staff-secret-value-4711-never-logged"


def warning_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("warning: ")]


def test_check_config_warns_of_every_unset_secret_and_the_development_token() -> None:
    result = shouli(ROOT, "check-config")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("config OK:")
    warnings = warning_lines(result.stderr)
    text = "\n".join(warnings)
    for variable in SECRET_VARIABLES:
        assert variable in text, (variable, text)
    assert any(w.startswith("warning: hotline.agents: ") and "401" in w for w in warnings), text
    assert "warning: referrals.sources.0: SHOULI_REFERRAL_GOV12345_SECRET is not set" in text
    assert "503" in text
    assert any(w.startswith("warning: auth.staff.1: ") and "dev-officer" in w for w in warnings)
    assert "dev-staff-token-change-me" not in text, "a warning names the entry, not its secret"


def test_with_the_secrets_set_only_the_development_token_is_warned_of() -> None:
    environ = {variable: f"{variable.lower()}-trial-value" for variable in SECRET_VARIABLES}
    result = shouli(ROOT, "check-config", env=environ)
    assert result.returncode == 0, result.stderr
    [warning] = warning_lines(result.stderr)
    assert warning.startswith("warning: auth.staff.1: ") and "development" in warning
    assert not any(value in result.stderr for value in environ.values())


def test_without_the_development_token_and_with_every_secret_nothing_is_warned_of(
    tmp_path: Path,
) -> None:
    config = CONFIG.read_text(encoding="utf-8")
    development = "    - id: dev-officer\n      token: dev-staff-token-change-me\n"
    assert development in config
    (tmp_path / "config.yaml").write_text(config.replace(development, ""), encoding="utf-8")
    environ = {variable: f"{variable.lower()}-trial-value" for variable in SECRET_VARIABLES}
    result = shouli(tmp_path, "check-config", env=environ)
    assert result.returncode == 0, result.stderr
    assert warning_lines(result.stderr) == []


@pytest.mark.parametrize("role", ["serve", "edge"])
async def test_serve_and_edge_log_the_same_warnings_at_start_without_secrets(
    embedded_stack: Stack, role: str
) -> None:
    checked = shouli(ROOT, "check-config", env={"SHOULI_STAFF_TOKEN": STAFF_SECRET})
    expected = [w.removeprefix("warning: ") for w in warning_lines(checked.stderr)]
    assert expected, checked.stderr
    log = await started_log(embedded_stack, role, {"SHOULI_STAFF_TOKEN": STAFF_SECRET})
    logged = [
        f"{line['path']}: {line['warning']}"
        for line in log
        if line.get("event") == "config_warning" and line.get("level") == "warning"
    ]
    assert logged == expected
    raw = json.dumps(log)
    assert STAFF_SECRET not in raw and "dev-staff-token-change-me" not in raw


async def started_log(stack: Stack, role: str, env: dict[str, str]) -> list[dict[str, Any]]:
    """Start ``shouli ROLE`` on free ports, wait until it is ready, stop it: its JSON log."""
    port = free_port()
    extra = {
        "SHOULI_HTTP__PORT": str(port),
        "SHOULI_EMAIL__SMTP__PORT": str(free_port()),
        **env,
    }
    path = stack.tmp_path / f"{role}.log"
    with path.open("wb") as out:
        process = subprocess.Popen(
            stack.shouli_command(role),
            env=stack.process_env() | extra,
            cwd=stack.tmp_path,
            stdout=out,
            stderr=out,
        )
    try:
        await wait_ready(f"http://127.0.0.1:{port}/readyz", process, path)
    finally:
        process.terminate()
        await asyncio.to_thread(process.wait, 30)
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


async def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    async with httpx.AsyncClient() as http:
        for _ in range(600):
            if process.poll() is not None:
                text = await asyncio.to_thread(log.read_text, errors="replace")
                raise AssertionError("exited: " + text[-2000:])
            try:
                if (await http.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("never became ready")
