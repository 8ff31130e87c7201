"""From raw mail bytes to a durably queued ticket draft: the part SMTP and IMAP share.

Order matters for "never 250 for a mail that is then lost": the raw message and its
attachments are written to the blob store first, then the draft is published and confirmed.
Only after :meth:`MailIntake.receive` returns may the sender hear "accepted" (SMTP 250,
IMAP flag). Auto-replies, bounces and delivery reports are queued too, marked by their kind,
so the router can record them where they belong; they never become tickets.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

import structlog

from channels.email.complainant import complainant, complainant_from, split_subject
from channels.email.headers import valid_address
from channels.email.noise import MailKind
from channels.email.parse import ParsedMail, idempotency_key, parse_mail
from channels.email.settings import EmailSettings, Mailbox
from ingest.draft import Channel, FirstContact, FirstContactKind, MailThread, TicketDraft
from ingest.handoff import Handoff
from ingest.metrics import Metrics
from store.blobs import BlobStore

if TYPE_CHECKING:  # the referral channel imports this package: no cycle at run time
    from channels.referral.mail import MailReferrals

log = structlog.get_logger(__name__)

# Parsing a large mail is CPU work; small ones are parsed inline to skip a thread hop.
_INLINE_PARSE_BYTES = 256 * 1024
_MAX_BODY_CHARS = 200_000
# The whole subject is kept (issue 14 §8: a display may cut it, the record may not); only one
# longer than a body is cut, and the note says so.
_MAX_SUBJECT_CHARS = 200_000
# A complaint number as the router issues it (prefix, yyyymm, serial): "TS202611-000123".
NUMBER_IN_SUBJECT: Final = re.compile(r"(?<![A-Z0-9])[A-Z]{1,6}\d{6}-\d{6,}(?!\d)")


@dataclass(frozen=True)
class MailOutcome:
    source_key: str
    kind: MailKind
    queued: bool  # False for auto-replies, bounces and reports: stored, not ticketed


class MailIntake:
    def __init__(
        self,
        settings: EmailSettings,
        blobs: BlobStore,
        handoff: Handoff,
        metrics: Metrics,
        *,
        referrals: MailReferrals | None = None,
    ) -> None:
        self._settings = settings
        self._blobs = blobs
        self._handoff = handoff
        self._metrics = metrics
        # Work orders mailed to a referral mailbox (channels.referral.mail); None: such
        # mail is a complaint of that mailbox, with a note saying it was not read as one.
        self._referrals = referrals

    async def receive(
        self, raw: bytes, recipients: Sequence[str], envelope_sender: str | None = None
    ) -> MailOutcome:
        """Store, parse and queue one mail; raises when it could not be durably handed off.

        ``envelope_sender`` (SMTP MAIL FROM) is the complainant's address of last resort, when
        no header of the mail holds a valid one.

        Auto-replies, bounces and reports are queued too, marked by kind: the router records
        them (a bounce of our acknowledgement on its ticket) and never makes them tickets.
        """
        raw_sha256 = await self._blobs.put(raw)
        if len(raw) > _INLINE_PARSE_BYTES:
            parsed = await asyncio.to_thread(parse_mail, raw, self._settings.expected_charsets)
        else:
            parsed = parse_mail(raw, self._settings.expected_charsets)
        source_key = idempotency_key(raw, parsed)
        flags: tuple[str, ...] = ()
        mailbox = self._settings.mailbox(recipients[0]) if recipients else None
        if mailbox is not None and mailbox.referral and parsed.kind is MailKind.NORMAL:
            if self._referrals is None:
                flags = (f"referral_mailbox: {mailbox.desk} is not read for work orders here",)
            else:
                # A store or queue error propagates: the sender must retry (SMTP 451).
                referral = await self._referrals.receive(raw, parsed, mailbox, raw_sha256)
                if referral.taken:
                    return MailOutcome(source_key, parsed.kind, queued=True)
                flags = referral.notes
        attachments = []
        if parsed.kind is MailKind.NORMAL:
            for attachment in parsed.attachments:
                await self._blobs.put(attachment.data)
                attachments.append(attachment.to_ref())
        else:
            log.info(
                "mail_not_a_complaint",
                source_key=source_key,
                kind=parsed.kind.value,
                reason=parsed.kind_reason,
                raw_sha256=raw_sha256,
            )
        draft = self.draft(
            parsed, source_key, raw_sha256, recipients, tuple(attachments), envelope_sender
        )
        if flags:
            draft = draft.model_copy(update={"notes": (*draft.notes, *flags)})
        await self._handoff.submit(draft)
        return MailOutcome(source_key, parsed.kind, queued=parsed.kind is MailKind.NORMAL)

    def draft(
        self,
        parsed: ParsedMail,
        source_key: str,
        raw_sha256: str,
        recipients: Sequence[str],
        attachments: tuple[object, ...],
        envelope_sender: str | None = None,
    ) -> TicketDraft:
        mailboxes = [m for m in (self._settings.mailbox(r) for r in recipients) if m]
        first: Mailbox | None = mailboxes[0] if mailboxes else None
        _, matter = complainant_from(parsed)
        notes = [*parsed.charset_decisions, *parsed.notes]
        convention = split_subject(parsed.subject).note
        if convention:
            notes.append(convention)
        who = complainant(parsed)
        if who.email is None and envelope_sender and valid_address(envelope_sender):
            who = who.model_copy(update={"email": envelope_sender.strip().lower()})
            notes.append("sender: address taken from the SMTP envelope (MAIL FROM)")
        subject = matter or parsed.subject
        if len(subject) > _MAX_SUBJECT_CHARS:
            notes.append(f"subject of {len(subject)} characters cut to {_MAX_SUBJECT_CHARS}")
        notes.extend(f"also addressed to mailbox {m.desk}" for m in mailboxes[1:])
        if parsed.defects:
            notes.append(f"{len(parsed.defects)} MIME defect(s): {parsed.defects[0][:200]}")
        return TicketDraft.model_validate(
            {
                "channel": Channel.EMAIL,
                "source_key": source_key[:500],
                "received_at": datetime.now(UTC),
                "complainant": who,
                "subject": subject[:_MAX_SUBJECT_CHARS],
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
                "mail": thread_of(parsed),
            }
        )


def thread_of(parsed: ParsedMail) -> MailThread:
    """The headers the router threads by; numbers quoted in the subject, deduplicated."""
    numbers = tuple(dict.fromkeys(NUMBER_IN_SUBJECT.findall(parsed.subject.upper())))[:10]
    return MailThread(
        kind=parsed.kind,
        sender=(parsed.from_address or "").strip().lower()[:320] or None,
        message_id=_clip(parsed.message_id),
        in_reply_to=_clip(parsed.in_reply_to),
        references=tuple(r for r in (_clip(r) for r in parsed.references[-100:]) if r),
        subject_numbers=numbers,
        bounce_of=_clip(parsed.bounce_of),
    )


def _clip(value: str | None) -> str | None:
    # An over-long id cannot be one we issued or stored: dropping it loses no thread.
    return value if value and len(value) <= 1000 else None
