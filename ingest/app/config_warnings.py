"""Configurations that are valid but will not work as whoever starts them expects.

A token or secret named by ``token_env`` / ``secret_env`` is read from the environment when a
request comes, so a config naming variables nobody set validates: then every agent's call is
refused 401 and every referral 503, and nothing said so at start. The shipped config's
development staff token is valid too, and known to everyone who read the config.

These are warnings, not problems (``check-config`` still exits 0): a trial without hotline
agents or referral sources is legitimate. Each is ``(path, message)`` like a problem; a message
names the entry and the variable, never a secret.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from ingest.app.settings import Settings
from ingest.sections import env_secret

# The inline token of the shipped config.yaml's dev-officer entry, so that `make run` answers
# the staff API out of the box; with it anyone who has read the README is staff.
DEVELOPMENT_STAFF_TOKEN = "dev-staff-token-change-me"

ConfigWarning = tuple[str, str]


def config_warnings(
    settings: Settings, environ: Mapping[str, str] | None = None
) -> list[ConfigWarning]:
    """Every warning of ``settings`` with the variables of ``environ`` (default: ours)."""
    environ = os.environ if environ is None else environ
    return [
        *_staff_warnings(settings, environ),
        *_agent_warnings(settings, environ),
        *_referral_warnings(settings, environ),
    ]


def _staff_warnings(settings: Settings, environ: Mapping[str, str]) -> list[ConfigWarning]:
    warnings: list[ConfigWarning] = []
    usable = 0
    for index, staff in enumerate(settings.auth.staff):
        where = f"auth.staff.{index}"
        secret = env_secret(staff.token_env, staff.token, environ)
        if secret is None:
            warnings.append(
                (where, f"{staff.token_env} is not set: staff token {staff.id!r} cannot be used")
            )
            continue
        usable += 1
        if secret == DEVELOPMENT_STAFF_TOKEN:
            warnings.append(
                (
                    where,
                    f"the development staff token ({staff.id!r}) is active: anyone who has "
                    "read config.yaml can use the staff API; remove the entry outside a trial",
                )
            )
    if settings.auth.staff and not usable:
        warnings.append(("auth.staff", "no staff token is set: the staff API answers 401"))
    return warnings


def _agent_warnings(settings: Settings, environ: Mapping[str, str]) -> list[ConfigWarning]:
    warnings: list[ConfigWarning] = []
    agents = settings.hotline.agents
    unset = [
        (index, agent)
        for index, agent in enumerate(agents)
        if env_secret(agent.token_env, agent.token, environ) is None
    ]
    for index, agent in unset:
        warnings.append(
            (
                f"hotline.agents.{index}",
                f"{agent.token_env} is not set: agent {agent.id!r} cannot file calls",
            )
        )
    if agents and len(unset) == len(agents):
        warnings.append(
            ("hotline.agents", "no agent token is set: POST /api/calls answers 401 to everyone")
        )
    return warnings


def _referral_warnings(settings: Settings, environ: Mapping[str, str]) -> list[ConfigWarning]:
    warnings: list[ConfigWarning] = []
    for index, source in enumerate(settings.referrals.sources):
        where = f"referrals.sources.{index}"
        current = env_secret(source.secret_env, source.secret, environ)
        rotated = environ.get(source.previous_secret_env or "") or None
        if current is None and rotated is None:
            warnings.append(
                (
                    where,
                    f"{source.secret_env} is not set: POST /api/referrals/{source.key}"
                    " answers 503 until it is",
                )
            )
        webhook = source.reply.webhook if source.reply else None
        if webhook is not None and env_secret(webhook.secret_env, webhook.secret, environ) is None:
            warnings.append(
                (
                    f"{where}.reply.webhook",
                    f"{webhook.secret_env} is not set: replies to {source.key} fail until it is",
                )
            )
    return warnings
