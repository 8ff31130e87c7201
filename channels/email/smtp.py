"""The SMTP listener (aiosmtpd) on the service's own event loop.

Replies (RFC 5321 §4.2, enhanced codes RFC 3463):
* RCPT to an address that is not a configured complaint mailbox: ``550 5.1.1`` (no relaying);
  more than ``max_recipients``: ``452 4.5.3``;
* a message over ``max_message_bytes`` (announced as SIZE, RFC 1870): ``552``;
* more than ``max_connections`` sessions at once: ``421 4.7.0`` and the connection closes;
* DATA: ``250 2.0.0`` only after :class:`MailIntake` stored the raw mail and the queue
  confirmed the draft; ``451 4.3.0`` when the store or the queue could not take it, so the
  sending server keeps the mail and retries (a 5xx would make it bounce, a 250 would lose it).
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from aiosmtpd.smtp import SMTP, Envelope, Session

from channels.email.intake import MailIntake
from channels.email.settings import SmtpSettings
from channels.settings import ChannelSettings
from ingest.queue import QueueUnavailable
from store.db import STORE_ERRORS

log = structlog.get_logger(__name__)

_NOT_STORED: tuple[type[BaseException], ...] = (QueueUnavailable, *STORE_ERRORS)


class ComplaintMailHandler:
    """aiosmtpd handler: only the hooks we need (RCPT and DATA)."""

    def __init__(self, settings: ChannelSettings, intake: MailIntake, smtp: SmtpSettings) -> None:
        self._email = settings.email
        self._smtp = smtp
        self._intake = intake

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if self._email.mailbox(address) is None:
            return "550 5.1.1 Not a complaint mailbox here; relaying denied"
        if len(envelope.rcpt_tos) >= self._smtp.max_recipients:
            return "452 4.5.3 Too many recipients"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Recipient OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content
        if not isinstance(raw, bytes):
            raw = envelope.content if isinstance(envelope.content, bytes) else b""
        try:
            outcome = await self._intake.receive(raw, envelope.rcpt_tos, envelope.mail_from)
        except _NOT_STORED as exc:
            log.error("mail_not_stored", error=type(exc).__name__, size=len(raw))
            return "451 4.3.0 Complaint could not be stored right now; please try again later"
        log.info(
            "mail_accepted",
            source_key=outcome.source_key,
            kind=outcome.kind.value,
            queued=outcome.queued,
            size=len(raw),
        )
        return "250 2.0.0 Complaint received"


class _LimitedSMTP(SMTP):
    """Counts sessions; one past the limit is told 421 and closed (RFC 5321 §3.8)."""

    active = 0

    def __init__(self, *args: Any, max_connections: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._max_connections = max_connections
        self._counted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if type(self).active >= self._max_connections:
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(b"421 4.7.0 Too many connections, try again later\r\n")
            transport.close()
            return
        type(self).active += 1
        self._counted = True
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._counted:
            type(self).active -= 1
            self._counted = False
        super().connection_lost(exc)


def _smtp_class(config: SmtpSettings) -> type[_LimitedSMTP]:
    # A class per server, so two listeners (tests) do not share one connection count.
    # Lines: RFC 5321 says at most 1000 octets, but real clients send one-line HTML and
    # unwrapped base64 (the corpus has 1 MB lines) and mainstream MTAs accept them. aiosmtpd
    # holds the whole mail in memory anyway, so SIZE is the bound that matters.
    return type(
        "LimitedSMTP",
        (_LimitedSMTP,),
        {"active": 0, "line_length_limit": config.max_message_bytes + 2},
    )


async def start_smtp(
    settings: ChannelSettings, intake: MailIntake, smtp: SmtpSettings | None = None
) -> asyncio.Server:
    """Listen on the running loop (aiosmtpd's UnthreadedController pattern)."""
    config = smtp or settings.email.smtp
    handler = ComplaintMailHandler(settings, intake, config)
    protocol = _smtp_class(config)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: protocol(
            handler,
            max_connections=config.max_connections,
            data_size_limit=config.max_message_bytes,
            hostname=config.hostname,
            ident="Shouli complaint intake",
            decode_data=False,
            enable_SMTPUTF8=True,
        ),
        host=config.host,
        port=config.port,
    )
    log.info("smtp_listening", host=config.host, port=config.port)
    return server
