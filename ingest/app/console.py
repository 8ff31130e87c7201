"""What every ``shouli`` command shares: the ``-c/--config`` option, and loading the settings
with each problem printed as ``path: message`` and exit 1."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ingest.app.settings import ConfigNotFound, Settings, load_settings
from ingest.logs import configure_logging
from ingest.sections import ConfigError

EXIT_TEMPFAIL = 75  # sysexits.h EX_TEMPFAIL: try again later

config_option = click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="config file (default: $SHOULI_CONFIG or ./config.yaml)",
)


def settings_or_exit(config_path: Path | None) -> Settings:
    """The settings, logging configured; every config problem printed and exit 1."""
    try:
        settings = load_settings(config_path)
    except ConfigNotFound as exc:
        click.echo(exc.message, err=True)
        sys.exit(1)
    except ConfigError as exc:
        for path, message in exc.problems:
            click.echo(f"{path}: {message}", err=True)
        sys.exit(1)
    configure_logging(settings.logging)
    return settings
