"""The IMAP worker: one poller per ``email.imap`` mailbox, all on this event loop.

Each mailbox polls, backs off and recovers on its own: a server that is down or refuses
the login holds up only its own mailbox. :meth:`ImapWorker.health` reports each mailbox for
``/readyz`` when the worker runs in the HTTP process.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping

import structlog

from channels.email.imap import ImapPoller
from channels.email.intake import MailIntake
from channels.referral.mail import MailReferrals
from channels.runtime import Runtime
from store.imap_models import ImapStateRepository

log = structlog.get_logger(__name__)


class ImapWorker:
    name = "imap"

    def __init__(self, runtime: Runtime, *, environ: Mapping[str, str] | None = None) -> None:
        settings = runtime.settings.email
        intake = MailIntake(
            settings,
            runtime.blobs,
            runtime.handoff,
            runtime.metrics,
            referrals=MailReferrals(runtime),
        )
        state = ImapStateRepository(runtime.database)
        self.pollers = [
            ImapPoller(
                box,
                intake,
                state,
                runtime.metrics,
                environ=os.environ if environ is None else environ,
            )
            for box in settings.imap
        ]

    async def run(self, stopping: asyncio.Event) -> None:
        log.info(
            "imap_started",
            mailboxes=[
                {"name": p.box.name, "host": p.box.host, "folder": p.box.folder}
                for p in self.pollers
            ],
        )
        if not self.pollers:
            # Nothing to poll (the usual small office: mail arrives over SMTP). Stay up like
            # every other role until the process stops.
            log.info("imap_no_mailboxes", hint="add email.imap entries to config.yaml")
            await stopping.wait()
            return
        # gather, not a TaskGroup: every poller catches its own errors, and one ending must
        # not cancel the others.
        await asyncio.gather(*(poller.run(stopping) for poller in self.pollers))
        log.info("imap_stopped")

    def health(self) -> dict[str, object]:
        """``{"ready": bool, "mailboxes": {name: {...}}}``; ready while none is known down."""
        boxes = {p.box.name: p.health.as_dict() for p in self.pollers}
        return {
            "ready": all(p.health.up is not False for p in self.pollers),
            "mailboxes": boxes,
        }
