"""Letters, visits and faxes (书信 / 来访 / 传真) registered by staff, as ticket drafts.

Same pipeline as every channel: channel ``letter``, the registering desk as first contact
(首问), scans in the blob store as attachments. A letter forwarded by an authority (a
regulator's letter, a 信访 transfer) may carry its referral reference and deadline, which
makes it a referral for routing (at least 'important') and deadlines.

``source_key`` is ``<kind>:<registration number>`` when the desk gives its register's number
(登记号), so registering the same letter twice is harmless; without one every registration
is a new ticket.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from channels.referral.draft import CONFIDENTIAL_NOTE
from ingest.draft import (
    AttachmentRef,
    Channel,
    Complainant,
    FirstContact,
    FirstContactKind,
    ReferralOrder,
    TicketDraft,
)
from ingest.phone import PhoneKind, mask_phone, normalise_phone

LetterKind = Literal["letter", "visit", "fax"]
KIND_NAMES: dict[str, str] = {"letter": "书信", "visit": "来访", "fax": "传真"}
SUBJECT_CHARS = 60


@dataclass(frozen=True)
class LetterRecord:
    kind: LetterKind
    body: str
    received_at: datetime
    registration_no: str | None = None
    subject: str | None = None
    complainant_name: str | None = None
    phone: str | None = None
    email: str | None = None
    address: str | None = None
    category: str | None = None
    confidential: bool = False
    referral_source: str | None = None
    referral_reference: str | None = None
    referral_deadline: datetime | None = None


def letter_draft(
    record: LetterRecord,
    *,
    desk: str,
    department: str | None,
    registered_by: str,
    attachments: tuple[AttachmentRef, ...],
    raw_sha256: str | None,
    region: str,
) -> TicketDraft:
    notes = [f"{record.kind}: {KIND_NAMES[record.kind]} registered by {registered_by}"]
    phone = normalise_phone(record.phone, region) if record.phone else None
    if phone is not None and phone.kind is PhoneKind.INVALID:
        notes.append(f"phone_invalid: {', '.join(f for f in phone.flags if f != 'invalid')}")
    if attachments:
        notes.append(f"scans: {len(attachments)}")
    if record.confidential:
        notes.append(CONFIDENTIAL_NOTE)
    callable_phone = phone is not None and phone.kind is not PhoneKind.ANONYMOUS
    anonymous = not (record.complainant_name or record.email or callable_phone)
    text = mask_phone(record.body, region) if record.confidential else record.body
    lines = [text]
    if record.address:
        lines.append(f"地址：{record.address}")
    if record.registration_no:
        lines.append(f"{KIND_NAMES[record.kind]}登记号：{record.registration_no}")
    body = "\n".join(lines)
    subject = record.subject or _first_line(record.body)
    if record.confidential:
        subject = mask_phone(subject, region)
    referral = None
    if record.referral_source and record.referral_reference:
        referral = ReferralOrder(
            source=record.referral_source,
            reference=record.referral_reference,
            deadline=record.referral_deadline,
        )
    identity = record.registration_no or uuid.uuid4().hex
    return TicketDraft(
        channel=Channel.LETTER,
        source_key=f"{record.kind}:{identity}",
        received_at=record.received_at,
        complainant=Complainant(
            name=record.complainant_name,
            phone=phone.e164 if phone else None,
            phone_raw=phone.raw if callable_phone and phone else None,
            email=record.email,
            anonymous=anonymous,
        ),
        subject=subject,
        body=body,
        category=record.category,
        first_contact=FirstContact(kind=FirstContactKind.DESK, id=desk, department=department),
        referral=referral,
        attachments=attachments,
        raw_sha256=raw_sha256,
        notes=tuple(notes),
    )


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= SUBJECT_CHARS else line[: SUBJECT_CHARS - 1] + "…"
