"""The e-mail channel's listener for the channel registry: SMTP on the process's own loop.

Kept apart from ``channels/email/smtp.py``, which is the listener itself and knows nothing of
the running process: here is only what a process needs to decide on and wire it.
"""

from __future__ import annotations

import asyncio

from channels.email.intake import MailIntake
from channels.email.smtp import start_smtp
from channels.referral.mail import MailReferrals
from channels.runtime import Runtime


async def start_listener(runtime: Runtime) -> asyncio.Server | None:
    """None when SMTP is switched off, or there is no mailbox it could take mail for."""
    email = runtime.settings.email
    if not (email.smtp.enabled and email.mailboxes):
        return None
    intake = MailIntake(
        email,
        runtime.blobs,
        runtime.handoff,
        runtime.metrics,
        referrals=MailReferrals(runtime),
    )
    return await start_smtp(runtime.settings, intake)
