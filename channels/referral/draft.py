"""A new work order as a ticket draft.

* channel ``referral``, ``source_key`` ``<source>:<reference>`` (one order, one ticket);
* the first contact (首问) is the source's liaison desk, kind ``regulator``;
* ``referral`` carries the completion deadline (办结时限): the router makes it the ticket's
  deadline when it is earlier than our own limit;
* the complainant is never "anonymous with no way to reply" (无效投诉): the reply goes back
  through the authority, so an order without contact details stays valid (with a note);
* a confidential complainant (是否保密): name and phone are stored for the liaison desk,
  phone numbers inside the complaint text are masked, and the ticket says so in its notes.
  Hiding the stored name and phone from the handling department's view is for the ticket
  reader (see the issue 6 note on ``store.tickets.ticket_json``);
* notes (intake events) carry no personal data: request type, flags, the authority's clocks.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from channels.referral.mapping import MappedOrder
from channels.referral.settings import ReferralSource
from ingest.draft import (
    Channel,
    Complainant,
    FirstContact,
    FirstContactKind,
    ReferralOrder,
    TicketDraft,
)
from ingest.phone import PhoneKind, mask_phone, normalise_phone

SUBJECT_CHARS = 60
CONFIDENTIAL_NOTE = (
    "confidential_complainant: name and phone are hidden from the handling department "
    "and from logs (是否保密)"
)


def referral_source_key(source: str, reference: str) -> str:
    return f"{source}:{reference}"


def order_draft(
    source: ReferralSource,
    order: MappedOrder,
    *,
    received_at: datetime,
    raw_sha256: str | None,
    region: str,
    timezone: ZoneInfo,
) -> TicketDraft:
    notes: list[str] = [f"referral: {source.name} order {order.reference}"]
    if order.request_type is not None:
        notes.append(f"request_type: {order.request_type.value} ({order.request_label})")
    if order.category_label is not None:
        notes.append(f"category_unmapped: {order.category_label}")
    phone = normalise_phone(order.phone, region) if order.phone else None
    if phone is not None:
        if phone.kind is PhoneKind.INVALID:
            notes.append(f"phone_invalid: {', '.join(f for f in phone.flags if f != 'invalid')}")
        elif phone.kind is PhoneKind.SERVICE:
            notes.append("phone_service_number")
    contactable = bool(
        order.name or order.email or (phone and phone.kind is not PhoneKind.ANONYMOUS)
    )
    if not contactable:
        notes.append("no_contact_details: the reply goes back through the authority")
    if order.confidential:
        notes.append(CONFIDENTIAL_NOTE)
    clocks = [
        f"{name} {_local(at, timezone)}"
        for name, at in (
            ("dispatched", order.dispatched_at),
            ("sign_for", order.sign_for_deadline),
            ("contact", order.contact_deadline),
            ("complete", order.deadline),
        )
        if at is not None
    ]
    if clocks:
        notes.append(f"authority_clocks: {'; '.join(clocks)}")

    text = order.body or order.subject or ""
    subject = order.subject or _first_line(text)
    if order.confidential:
        # The complainant's own words only: order numbers and dates stay readable.
        text, subject = mask_phone(text, region), mask_phone(subject, region)
    body = _body(source, order, text, timezone)
    return TicketDraft(
        channel=Channel.REFERRAL,
        source_key=referral_source_key(source.key, order.reference),
        received_at=received_at,
        complainant=Complainant(
            name=order.name,
            phone=phone.e164 if phone else None,
            phone_raw=phone.raw if phone and phone.kind is not PhoneKind.ANONYMOUS else None,
            email=order.email,
            anonymous=False,
        ),
        subject=subject,
        body=body,
        category=order.category,
        first_contact=FirstContact(
            kind=FirstContactKind.REGULATOR,
            id=source.liaison_desk,
            department=source.liaison_department,
        ),
        referral=ReferralOrder(
            source=source.key, reference=order.reference, deadline=order.deadline
        ),
        raw_sha256=raw_sha256,
        notes=tuple(notes),
    )


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= SUBJECT_CHARS else line[: SUBJECT_CHARS - 1] + "…"


def _body(source: ReferralSource, order: MappedOrder, text: str, timezone: ZoneInfo) -> str:
    lines = [text]
    if order.address:
        lines.append(f"诉求地址：{order.address}")
    if order.request_label:
        lines.append(f"诉求类型：{order.request_label}")
    if order.handling_unit:
        lines.append(f"承办单位：{order.handling_unit}")
    if order.dispatched_at:
        lines.append(f"派单时间：{_local(order.dispatched_at, timezone)}")
    if order.deadline:
        lines.append(f"办结时限：{_local(order.deadline, timezone)}")
    lines.append(f"{source.name} 工单编号：{order.reference}")
    return "\n".join(lines)


def _local(at: datetime, timezone: ZoneInfo) -> str:
    return at.astimezone(timezone).strftime("%Y-%m-%d %H:%M")
