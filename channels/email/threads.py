"""Where an inbound mail belongs: a new ticket, or something recorded on one we have.

Run by the router worker inside its batch transaction (synchronous Core), for every email
draft, before numbering. The rules (issue 3, items 5 and 6):

* **Threading.** A mail whose In-Reply-To / References name a mail we received (a ticket's
  Message-ID, or a reply already threaded) or sent (an acknowledgement's Message-ID), or
  whose subject quotes one of our complaint numbers, is about that ticket. From the ticket's
  complainant or a staff address (``email.staff_addresses``) it becomes a ``mail_reply``
  event with its attachments on that ticket. From anyone else it becomes a new ticket with a
  ``linked`` event naming the other number, for staff only: a stranger who quotes a number
  never sees into someone else's complaint, and is never added to it.
* **Noise.** Auto-replies and delivery reports never make tickets: they are recorded as an
  event on the ticket they answer when there is one, and as an inbound item either way.
  A bounce of one of our notifications marks it bounced and says so on its ticket.
* **Storms.** A sender who already has ``email.storm.max_tickets`` email tickets received
  within ``email.storm.window_minutes`` gets no more: each further mail is a counted
  ``mail_followup`` on the newest of them, so a mail client stuck in a loop or an angry
  burst makes one ticket plus follow-ups instead of a flood.

Every mail placed without a ticket is written as an :class:`~store.models.InboundItem`
(with the ticket it went to, or none), so a redelivery finds it and changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, insert, select, update
from sqlmodel import col

from channels.email.settings import EmailSettings
from ingest.draft import Channel, MailKind, MailThread, TicketDraft
from store.models import Complainant, Event, InboundItem, Ticket
from store.notification_models import Notification
from store.tickets import NewEvent, NewTicket, add_attachments, inbound_row

ACTOR = "router"


@dataclass(frozen=True)
class Placed:
    """The mail made no ticket: it was recorded on ``number`` (or on no ticket)."""

    number: str | None
    event: str  # the event written, or "duplicate" / "recorded"


@dataclass(frozen=True)
class _Target:
    id: int
    number: str
    complainant_email: str | None
    by: str  # "header" or "subject"


def already_placed(conn: Connection, draft: TicketDraft) -> Placed | None:
    """A mail recorded earlier without a ticket of its own (reply, noise, follow-up)."""
    row = conn.execute(
        select(col(InboundItem.ticket_id), col(Ticket.number))
        .outerjoin(Ticket, col(Ticket.id) == col(InboundItem.ticket_id))
        .where(
            col(InboundItem.channel) == draft.channel.value,
            col(InboundItem.source_key) == draft.source_key,
        )
    ).first()
    if row is None:
        return None
    return Placed(row.number, "duplicate")


def place_mail(
    conn: Connection, ticket: NewTicket, email: EmailSettings, now: datetime
) -> tuple[Placed | None, NewTicket]:
    """``(placed, ticket)``: with ``placed`` no ticket is to be made; otherwise insert
    ``ticket`` (perhaps with a ``linked`` event added)."""
    draft = ticket.draft
    mail = draft.mail
    if draft.channel is not Channel.EMAIL or mail is None:
        return None, ticket
    earlier = already_placed(conn, draft)
    if earlier is not None:
        return earlier, ticket
    if mail.kind in (MailKind.BOUNCE, MailKind.DELIVERY_REPORT):
        return _report(conn, draft, mail, now), ticket
    target = _thread_target(conn, mail)
    if mail.kind is MailKind.AUTO_REPLY:
        if target is not None:
            _event(conn, target.id, "auto_reply_received", {"source_key": draft.source_key}, now)
        _record(conn, draft, target.id if target else None)
        return Placed(target.number if target else None, "auto_reply_received"), ticket
    if target is not None:
        role = _role(mail.sender, target, email)
        if role is not None:
            _attach(conn, target, draft, role, now)
            return Placed(target.number, "mail_reply"), ticket
        linked = NewEvent(
            "linked",
            ACTOR,
            {
                "related": target.number,
                "by": target.by,
                "reason": "the mail refers to another complaint but its sender is neither "
                "that complaint's complainant nor staff",
            },
        )
        return None, replace(ticket, events=(*ticket.events, linked))
    storm = _storm_target(conn, mail, draft, email)
    if storm is not None:
        return _follow_up(conn, storm, draft, email, now), ticket
    return None, ticket


def _report(conn: Connection, draft: TicketDraft, mail: MailThread, now: datetime) -> Placed:
    refs = _refs(mail)
    notification = None
    if mail.bounce_of:
        notification = conn.execute(
            select(col(Notification.id), col(Notification.ticket_id), col(Notification.kind)).where(
                col(Notification.message_id) == mail.bounce_of
            )
        ).first()
    ticket_id: int | None = None
    kind = "delivery_report_received"
    if notification is not None:
        ticket_id = notification.ticket_id
        if mail.kind is MailKind.BOUNCE:
            kind = "notification_bounced"
            conn.execute(
                update(Notification)
                .where(col(Notification.id) == notification.id)
                .values(bounced_at=now)
            )
        detail: dict[str, Any] = {"notification": notification.kind, "message_id": mail.bounce_of}
    else:
        target = _by_headers(conn, refs)
        ticket_id = target.id if target else None
        kind = "mail_bounced" if mail.kind is MailKind.BOUNCE else kind
        detail = {"source_key": draft.source_key}
    number = None
    if ticket_id is not None:
        _event(conn, ticket_id, kind, detail, now)
        number = conn.execute(
            select(col(Ticket.number)).where(col(Ticket.id) == ticket_id)
        ).scalar()
    _record(conn, draft, ticket_id)
    return Placed(number, kind if ticket_id is not None else "recorded")


def _refs(mail: MailThread) -> list[str]:
    refs = [mail.in_reply_to, *reversed(mail.references), mail.bounce_of]
    return list(dict.fromkeys(r for r in refs if r))


def _thread_target(conn: Connection, mail: MailThread) -> _Target | None:
    return _by_headers(conn, _refs(mail)) or _by_subject(conn, mail.subject_numbers)


def _by_headers(conn: Connection, refs: Sequence[str]) -> _Target | None:
    if not refs:
        return None
    ticket_id = conn.execute(
        select(col(Notification.ticket_id))
        .where(col(Notification.message_id).in_(refs), col(Notification.ticket_id).is_not(None))
        .limit(1)
    ).scalar()
    if ticket_id is None:
        ticket_id = conn.execute(
            select(col(InboundItem.ticket_id))
            .where(
                col(InboundItem.channel) == Channel.EMAIL.value,
                col(InboundItem.source_key).in_(refs),
                col(InboundItem.ticket_id).is_not(None),
            )
            .order_by(col(InboundItem.id).desc())
            .limit(1)
        ).scalar()
    if ticket_id is None:
        return None
    return _target(conn, col(Ticket.id) == ticket_id, "header")


def _by_subject(conn: Connection, numbers: Sequence[str]) -> _Target | None:
    if not numbers:
        return None
    return _target(conn, col(Ticket.number).in_(list(numbers)), "subject")


def _target(conn: Connection, condition: Any, by: str) -> _Target | None:
    row = conn.execute(
        select(col(Ticket.id), col(Ticket.number), col(Complainant.email))
        .outerjoin(Complainant, col(Complainant.id) == col(Ticket.complainant_id))
        .where(condition)
        .order_by(col(Ticket.id))
        .limit(1)
    ).first()
    if row is None:
        return None
    email = row.email.strip().lower() if row.email else None
    return _Target(row.id, row.number, email, by)


def _role(sender: str | None, target: _Target, email: EmailSettings) -> str | None:
    if sender and target.complainant_email and sender == target.complainant_email:
        return "complainant"
    if email.is_staff(sender):
        return "staff"
    return None


def _attach(
    conn: Connection, target: _Target, draft: TicketDraft, role: str, now: datetime
) -> None:
    add_attachments(conn, target.id, draft)
    _event(
        conn,
        target.id,
        "mail_reply",
        {
            "from": role,
            "by": target.by,
            "source_key": draft.source_key,
            "raw_sha256": draft.raw_sha256,
            "attachments": [a.sha256 for a in draft.attachments],
        },
        now,
    )
    conn.execute(update(Ticket).where(col(Ticket.id) == target.id).values(updated_at=now))
    _record(conn, draft, target.id)


def _storm_target(
    conn: Connection, mail: MailThread, draft: TicketDraft, email: EmailSettings
) -> _Target | None:
    storm = email.storm
    if not storm.enabled or not mail.sender:
        return None
    since = draft.received_at - timedelta(minutes=storm.window_minutes)
    rows = conn.execute(
        select(col(Ticket.id), col(Ticket.number))
        .join(Complainant, col(Complainant.id) == col(Ticket.complainant_id))
        .where(
            col(Complainant.email) == mail.sender,
            col(Ticket.channel) == Channel.EMAIL.value,
            col(Ticket.received_at) >= since,
        )
        .order_by(col(Ticket.id).desc())
        .limit(storm.max_tickets)
    ).all()
    if len(rows) < storm.max_tickets:
        return None
    newest = rows[0]
    return _Target(newest.id, newest.number, mail.sender, "storm")


def _follow_up(
    conn: Connection, target: _Target, draft: TicketDraft, email: EmailSettings, now: datetime
) -> Placed:
    count = conn.execute(
        select(func.count())
        .select_from(Event)
        .where(col(Event.ticket_id) == target.id, col(Event.kind) == "mail_followup")
    ).scalar_one()
    add_attachments(conn, target.id, draft)
    _event(
        conn,
        target.id,
        "mail_followup",
        {
            "count": int(count) + 1,
            "reason": f"more than {email.storm.max_tickets} mails from one sender within "
            f"{email.storm.window_minutes:g} minutes",
            "source_key": draft.source_key,
            "raw_sha256": draft.raw_sha256,
        },
        now,
    )
    conn.execute(update(Ticket).where(col(Ticket.id) == target.id).values(updated_at=now))
    _record(conn, draft, target.id)
    return Placed(target.number, "mail_followup")


def _event(
    conn: Connection, ticket_id: int, kind: str, detail: dict[str, Any], now: datetime
) -> None:
    conn.execute(
        insert(Event).values(ticket_id=ticket_id, at=now, kind=kind, actor=ACTOR, detail=detail)
    )


def _record(conn: Connection, draft: TicketDraft, ticket_id: int | None) -> None:
    conn.execute(insert(InboundItem).values(inbound_row(draft, ticket_id)))
