"""The drafts a web complaint and a supervision feedback become (``ingest.draft``), and the
raw record of what was submitted, kept in the blob store for audit."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from channels.settings import ChannelSettings
from channels.web.abuse import CSRF_FIELD, HONEYPOT_FIELD
from channels.web.forms import ComplaintForm, FeedbackForm
from channels.web.i18n import ZH
from channels.web.uploads import ReceivedForm
from ingest.draft import (
    AttachmentRef,
    Channel,
    Complainant,
    FirstContact,
    FirstContactKind,
    TicketDraft,
)

FIRST_CONTACT_COMPLAINT = "web-form"
FIRST_CONTACT_FEEDBACK = "web-feedback-form"


def _subject(text: str, limit: int = 60) -> str:
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= limit else first[: limit - 1] + "…"


def complaint_draft(
    form: ComplaintForm,
    settings: ChannelSettings,
    *,
    key: str,
    received_at: datetime,
    attachments: tuple[AttachmentRef, ...],
    raw_sha256: str,
) -> TicketDraft:
    contact = form.contact
    phone = contact.phone
    return TicketDraft(
        channel=Channel.WEB,
        source_key=key,
        received_at=received_at,
        complainant=Complainant(
            name=form.name,
            phone=phone.e164 if phone else None,
            phone_raw=phone.raw if phone else None,
            # Lower-cased, as the repeat rule looks addresses up (router/repeats.py).
            email=contact.email.lower() if contact.email else None,
        ),
        subject=_subject(form.details),
        body=form.details,
        incident_at=form.incident_at,
        category=form.category,
        first_contact=FirstContact(
            kind=FirstContactKind.WEB,
            id=FIRST_CONTACT_COMPLAINT,
            department=settings.web.complaint_department,
        ),
        attachments=attachments,
        raw_sha256=raw_sha256,
    )


def feedback_body(form: FeedbackForm, settings: ChannelSettings) -> str:
    """The feedback as staff read it: Chinese labels, whatever language the form was in."""
    names = {a.key: a.name for a in settings.web.feedback_aspects}
    lines = [f"总体评价：{ZH['rating_' + form.overall]}"]
    if form.aspects:
        rated = "；".join(f"{names[k]} {ZH['rating_' + v]}" for k, v in form.aspects)
        lines.append(f"分项评价：{rated}")
    if form.content:
        lines.append(f"评价内容：{form.content}")
    if form.suggestions:
        lines.append(f"改进建议：{form.suggestions}")
    return "\n".join(lines)


def feedback_draft(
    form: FeedbackForm,
    settings: ChannelSettings,
    *,
    key: str,
    received_at: datetime,
    attachments: tuple[AttachmentRef, ...],
    raw_sha256: str,
) -> TicketDraft:
    contact = form.contact
    phone = contact.phone if contact else None
    return TicketDraft(
        channel=Channel.FEEDBACK,
        source_key=key,
        received_at=received_at,
        complainant=Complainant(
            name=form.name or None,
            phone=phone.e164 if phone else None,
            phone_raw=phone.raw if phone else None,
            email=contact.email if contact else None,
            anonymous=not form.name,
        ),
        subject=f"服务监督反馈：{ZH['rating_' + form.overall]}",
        body=feedback_body(form, settings),
        first_contact=FirstContact(
            kind=FirstContactKind.WEB,
            id=FIRST_CONTACT_FEEDBACK,
            department=settings.web.feedback_department,
        ),
        attachments=attachments,
        raw_sha256=raw_sha256,
    )


def raw_record(kind: str, form: ReceivedForm, attachments: tuple[AttachmentRef, ...]) -> bytes:
    """The submission as received (fields and file references), kept as the raw original.
    The CSRF token and the honeypot are not part of what the person said."""
    fields = {k: v for k, v in form.fields.items() if k not in (CSRF_FIELD, HONEYPOT_FIELD)}
    record: dict[str, Any] = {
        "form": kind,
        "fields": fields,
        "attachments": [a.model_dump() for a in attachments],
    }
    return json.dumps(record, ensure_ascii=False, sort_keys=True).encode()
