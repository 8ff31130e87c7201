"""From raw mail bytes to a durably queued ticket draft: the part SMTP and IMAP share.

Order matters for "never 250 for a mail that is then lost": the raw message and its
attachments are written to the blob store first, then the draft is published and confirmed.
Only after :meth:`MailIntake.receive` returns may the sender hear "accepted" (SMTP 250,
IMAP flag). Auto-replies, bounces and delivery reports are kept (raw blob, log, metric) but
never become tickets.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from channels.email.complainant import complainant, complainant_from
from channels.email.noise import MailKind
from channels.email.parse import ParsedMail, idempotency_key, parse_mail
from channels.email.settings import EmailSettings, Mailbox
from ingest.draft import Channel, FirstContact, FirstContactKind, TicketDraft
from ingest.handoff import Handoff
from ingest.metrics import Metrics
from store.blobs import BlobStore

log = structlog.get_logger(__name__)

# Parsing a large mail is CPU work; small ones are parsed inline to skip a thread hop.
_INLINE_PARSE_BYTES = 256 * 1024
_MAX_BODY_CHARS = 200_000


@dataclass(frozen=True)
class MailOutcome:
    source_key: str
    kind: MailKind
    queued: bool  # False for auto-replies, bounces and reports: stored, not ticketed


class MailIntake:
    def __init__(
        self, settings: EmailSettings, blobs: BlobStore, handoff: Handoff, metrics: Metrics
    ) -> None:
        self._settings = settings
        self._blobs = blobs
        self._handoff = handoff
        self._metrics = metrics

    async def receive(self, raw: bytes, recipients: Sequence[str]) -> MailOutcome:
        """Store, parse and queue one mail; raises when it could not be durably handed off."""
        raw_sha256 = await self._blobs.put(raw)
        if len(raw) > _INLINE_PARSE_BYTES:
            parsed = await asyncio.to_thread(parse_mail, raw)
        else:
            parsed = parse_mail(raw)
        source_key = idempotency_key(raw, parsed)
        if parsed.kind is not MailKind.NORMAL:
            log.info(
                "mail_not_a_complaint",
                source_key=source_key,
                kind=parsed.kind.value,
                reason=parsed.kind_reason,
                raw_sha256=raw_sha256,
            )
            return MailOutcome(source_key, parsed.kind, queued=False)
        attachments = []
        for attachment in parsed.attachments:
            await self._blobs.put(attachment.data)
            attachments.append(attachment.to_ref())
        draft = self.draft(parsed, source_key, raw_sha256, recipients, tuple(attachments))
        await self._handoff.submit(draft)
        return MailOutcome(source_key, parsed.kind, queued=True)

    def draft(
        self,
        parsed: ParsedMail,
        source_key: str,
        raw_sha256: str,
        recipients: Sequence[str],
        attachments: tuple[object, ...],
    ) -> TicketDraft:
        mailboxes = [m for m in (self._settings.mailbox(r) for r in recipients) if m]
        first: Mailbox | None = mailboxes[0] if mailboxes else None
        _, matter = complainant_from(parsed)
        notes = [*parsed.charset_decisions, *parsed.notes]
        notes.extend(f"also addressed to mailbox {m.desk}" for m in mailboxes[1:])
        if parsed.defects:
            notes.append(f"{len(parsed.defects)} MIME defect(s): {parsed.defects[0][:200]}")
        return TicketDraft.model_validate(
            {
                "channel": Channel.EMAIL,
                "source_key": source_key[:500],
                "received_at": datetime.now(UTC),
                "complainant": complainant(parsed),
                "subject": (matter or parsed.subject)[:1000],
                "body": parsed.body_text[:_MAX_BODY_CHARS],
                "category": first.category if first else None,
                "first_contact": FirstContact(
                    kind=FirstContactKind.MAILBOX,
                    id=first.desk if first else "mailbox",
                    department=first.department if first else None,
                ),
                "attachments": attachments,
                "raw_sha256": raw_sha256,
                "notes": tuple(n[:500] for n in notes),
            }
        )
