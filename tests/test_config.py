"""Configuration: the shipped config loads; every problem is reported as path: message."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from ingest.app.cli import main
from ingest.app.settings import load_settings
from ingest.sections import ConfigError
from tests.stack import CONFIG


def _check(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> tuple[int, list[str]]:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(main, ["check-config", "-c", str(path)], env=env or {})
    return result.exit_code, result.output.strip().splitlines()


def test_the_shipped_config_is_valid_and_describes_a_whole_organisation() -> None:
    result = CliRunner().invoke(main, ["check-config", "-c", str(CONFIG)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("config OK:")
    settings = load_settings(CONFIG, environ={})
    roles = {d.role.value for d in settings.departments}
    assert {"coordinating", "discipline", "handling"} <= roles
    assert all(c.name and c.name_en and c.keywords for c in settings.categories if c.key != "other")


def test_each_config_problem_is_printed_as_its_path_and_message(tmp_path: Path) -> None:
    code, lines = _check(
        tmp_path,
        """
database: {url: "mysql://root@localhost/x"}
broker: {prefetch: 0}
http: {port: 99999}
departments:
  - {key: office, name: 办公室, name_en: Office, role: coordinating}
  - {key: office, name: 纪检, name_en: Discipline, role: discipline}
categories:
  - {key: billing, name: 收费, name_en: Billing, department: finance}
routing: {fallback_category: misc}
time_limits: {accept: "3 fortnights"}
""",
    )
    assert code == 1
    assert lines[0].startswith("database.url: Value error, use sqlite+aiosqlite")
    assert "broker.prefetch: Input should be greater than or equal to 1" in lines
    assert "http.port: Input should be less than or equal to 65535" in lines
    assert any(
        line.startswith("time_limits.accept: Value error, unknown unit 'fortnights'")
        for line in lines
    )


def test_cross_references_are_checked_after_the_fields(tmp_path: Path) -> None:
    code, lines = _check(
        tmp_path,
        """
departments:
  - {key: office, name: 办公室, name_en: Office, role: coordinating}
  - {key: office, name: 纪检, name_en: Discipline, role: discipline}
categories:
  - {key: billing, name: 收费, name_en: Billing, department: finance}
routing: {fallback_category: misc}
""",
    )
    assert code == 1
    assert "departments.1.key: duplicate department 'office'" in lines
    assert "categories.0.department: unknown department 'finance' (known: office, office)" in lines
    assert "routing.fallback_category: unknown category 'misc' (known: billing)" in lines


def test_an_environment_variable_overrides_a_key_and_is_validated_too(tmp_path: Path) -> None:
    code, lines = _check(
        tmp_path, CONFIG.read_text(encoding="utf-8"), env={"SHOULI_BROKER__URL": "redis://x"}
    )
    assert code == 1
    assert lines == [
        "broker.url: Value error, use amqp://user:password@host:5672/vhost,"
        " or leave it out for the embedded queue"
    ]
    settings = load_settings(CONFIG, environ={"SHOULI_HTTP__PORT": "9000"})
    assert settings.http.port == 9000


def test_the_http_body_limits_are_configured_and_bounded(tmp_path: Path) -> None:
    shipped = load_settings(CONFIG, environ={})
    assert (shipped.http.max_json_body_bytes, shipped.http.max_json_depth) == (1_048_576, 64)
    settings = load_settings(
        CONFIG,
        environ={"SHOULI_HTTP__MAX_JSON_BODY_BYTES": "65536", "SHOULI_HTTP__MAX_JSON_DEPTH": "8"},
    )
    assert (settings.http.max_json_body_bytes, settings.http.max_json_depth) == (65536, 8)
    code, lines = _check(tmp_path, "http: {max_json_body_bytes: 10, max_json_depth: 0}\n")
    assert code == 1
    assert "http.max_json_body_bytes: Input should be greater than or equal to 1024" in lines
    assert "http.max_json_depth: Input should be greater than or equal to 1" in lines


def test_broken_yaml_names_the_line(tmp_path: Path) -> None:
    code, lines = _check(tmp_path, "http:\n  port: [8000\n")
    assert code == 1
    assert "not valid YAML at line" in lines[0]


def test_a_missing_config_file_named_on_the_command_line_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_settings(tmp_path / "nope.yaml", environ={})


def test_an_unknown_key_is_refused_rather_than_ignored(tmp_path: Path) -> None:
    code, lines = _check(tmp_path, "http:\n  prot: 8000\n")
    assert code == 1
    assert "http.prot: Extra inputs are not permitted" in lines
