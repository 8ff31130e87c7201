"""One typed settings tree, loaded and validated once, passed by constructor.

Sources, later wins: ``config.yaml`` (path from ``-c`` or ``SHOULI_CONFIG``), then environment
variables ``SHOULI_<SECTION>__<KEY>`` (``SHOULI_DATABASE__URL``, ``SHOULI_BROKER__URL``).
Every problem is reported as ``path.to.field: message`` by :class:`ConfigError`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ingest.logs import LoggingSettings
from ingest.sections import ConfigError
from store.settings import BlobSettings, DatabaseSettings
from workers.settings import WorkersSettings

ENV_PREFIX = "SHOULI_"
DEFAULT_CONFIG = "config.yaml"


class ConfigNotFound(ConfigError):
    """No config file where we looked: the embedded defaults alone describe no organisation,
    so running on them would only fail later with a puzzling message."""

    def __init__(self, path: Path, source: str) -> None:
        self.path = path
        looked_in = path.absolute()
        self.message = (
            f"{path.name} not found (looked in {looked_in}, {source});"
            " give the file with -c FILE or SHOULI_CONFIG"
        )
        super().__init__([(str(path), f"file not found (looked in {looked_in}, {source})")])


class Settings(WorkersSettings):
    """The whole configuration: every tree below plus what only the process as a whole
    reads (where the store and the blobs are, how it logs). Each package declares its own
    sections in its own tree; this class only adds the last ones and loads the file."""

    database: DatabaseSettings = DatabaseSettings()
    blobs: BlobSettings = BlobSettings()
    logging: LoggingSettings = LoggingSettings()


def _apply_env(data: dict[str, Any], environ: Mapping[str, str]) -> None:
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        target = data
        for part in path[:-1]:
            child = target.get(part)
            if not isinstance(child, dict):
                child = {}
                target[part] = child
            target = child
        target[path[-1]] = _env_value(raw)


def _env_value(raw: str) -> Any:
    # Lists and maps may be given as YAML flow text; everything else stays a string and
    # pydantic converts it, so a URL or a token is never reinterpreted by YAML.
    if raw.strip().startswith(("[", "{")):
        try:
            return yaml.safe_load(raw)
        except yaml.YAMLError:
            return raw
    return raw


_LOC_NOISE = re.compile(r"^(function-plain|function-after|function-before)\[.*\]$")


def _format_loc(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc if not _LOC_NOISE.match(str(p))]
    return ".".join(parts) or "(top level)"


def _config_path(path: str | Path | None, environ: Mapping[str, str]) -> tuple[Path, str]:
    """The file to read and where its name came from (for the message when it is missing)."""
    if path:
        return Path(path), "given with -c"
    if environ.get("SHOULI_CONFIG"):
        return Path(environ["SHOULI_CONFIG"]), "named by SHOULI_CONFIG"
    return Path(DEFAULT_CONFIG), "the current directory"


def _read_config(config_path: Path, source: str) -> dict[str, Any]:
    if not config_path.is_file():
        raise ConfigNotFound(config_path, source)
    try:
        loaded = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown place"
        raise ConfigError([(str(config_path), f"not valid YAML at {where}")]) from exc
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError([(str(config_path), "the top level must be a mapping of sections")])
    return loaded or {}


def load_settings(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read, merge and validate the configuration; raise :class:`ConfigError` on any problem."""
    environ = os.environ if environ is None else environ
    data = _read_config(*_config_path(path, environ))
    _apply_env(data, environ)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            _in_file_order(
                [(_format_loc(error["loc"]), error["msg"]) for error in exc.errors()], data
            )
        ) from exc
    problems = settings.problems()
    if problems:
        raise ConfigError(_in_file_order(problems, data))
    return settings


def _in_file_order(problems: list[tuple[str, str]], data: dict[str, Any]) -> list[tuple[str, str]]:
    """Problems in the order their sections appear in the file (each package's tree declares
    its own sections, so the model's field order is not the file's)."""
    order = {key: index for index, key in enumerate(data)}
    return sorted(problems, key=lambda problem: order.get(problem[0].split(".")[0], len(order)))
