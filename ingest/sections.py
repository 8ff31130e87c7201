"""What every package's settings section is built from: a frozen model that refuses unknown
keys (a typo in config.yaml is an error, not a silently ignored line), and secrets read from
the environment by name so they stay out of the file."""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict

from ingest.errors import Misconfigured


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def env_secret(
    env: str | None, inline: str | None = None, environ: Mapping[str, str] | None = None
) -> str | None:
    """The secret in variable ``env`` (unset or empty: None), else the ``inline`` value.

    A named variable wins over a value written in the file, so that moving a secret out of
    config.yaml never leaves the old one in force."""
    if env:
        return (os.environ if environ is None else environ).get(env) or None
    return inline


class ConfigError(Misconfigured):
    """An invalid configuration; ``problems`` are ``(path, message)`` pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("\n".join(f"{path}: {message}" for path, message in problems))
