"""What the email channel queues in the notification outbox (synchronous Core, run inside
``Database.write``); the outbox engine (``store.outbox``) sends, retries and replays them.

* :func:`queue_acknowledgements`: the router calls it in the batch transaction that makes
  the tickets, so an acknowledgement (受理回执) is owed exactly when its ticket exists;
* :func:`queue_urge_notices`: turns ``urge`` (催办) events into notices to the department's
  mailbox, found by a sweep (however the urge was made: staff API, hotline repeat, referral);
* :func:`queue_dispatch_notices`: the same for dispatches (派单通知), when enabled;
* :func:`queue_clock_notices`: the SLA worker's due-soon and breach marks, to the department
  and the coordinating office.

Rows are unique on ``dedupe_key`` (``ack:<number>``, ``urge:<event id>``,
``dispatch:<event id>``): a replayed router
batch or two notify workers sweeping the same events never make a second row.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, String, cast, literal, select
from sqlmodel import col

from channels.email.settings import EmailSettings
from ingest.draft import MailKind
from router.batches import Joined
from router.settings import Department, DepartmentRole
from store.models import Complainant, Event, Ticket
from store.notification_models import Notification, NotificationKind
from store.notification_outbox import NOTIFICATIONS
from store.outbox import enqueue, new_events, newest_event_id
from store.tickets import NewTicket, confidential_sources, event_time, feedback_result

# An urge older than this when the sweep first sees it is history (a worker deployed on an
# existing database, or one down for a week): a notice now would only confuse the department.
URGE_MAX_AGE = timedelta(days=7)


def message_id_domain(email: EmailSettings) -> str:
    """The right side of our Message-IDs: the outbound server's (``message_id_domain`` or the
    sender's domain); before one is configured, the name our SMTP listener announces. The id
    is fixed when the row is written, so a row queued before ``email.outbound`` was set keeps
    that domain; it stays unique, which is all a Message-ID must be."""
    return email.outbound.domain if email.outbound is not None else email.smtp.hostname


def new_message_id(kind: str, domain: str) -> str:
    return f"<{kind}.{uuid.uuid4().hex}@{domain}>"


def _row(
    kind: str,
    dedupe_key: str,
    ticket_id: int,
    number: str,
    recipient: str,
    domain: str,
    detail: dict[str, Any],
) -> dict[str, Any]:
    return {
        "kind": kind,
        "dedupe_key": dedupe_key,
        "ticket_id": ticket_id,
        "number": number,
        "recipient": recipient,
        "message_id": new_message_id(kind, domain),
        "detail": detail,
    }


def _acknowledged(ticket: NewTicket, email: EmailSettings) -> str | None:
    """The address to acknowledge ``ticket`` to, or None when it gets no acknowledgement."""
    draft = ticket.draft
    settings = email.acknowledgement
    if not settings.enabled or draft.channel.value not in settings.channels:
        return None
    person = draft.complainant
    address = (person.email or "").strip().lower()
    if person.anonymous or "@" not in address or email.is_ours(address):
        return None
    if draft.mail is not None and draft.mail.kind is not MailKind.NORMAL:
        return None  # never answer an auto-reply or a bounce (RFC 3834: no mail loops)
    return address


def _reply_to(ticket: NewTicket, email: EmailSettings) -> str | None:
    """Where a reply to the acknowledgement should go (our From is a no-reply sender): the
    complaint mailbox it came in by, else the first complaint mailbox; None without one."""
    boxes = [m for m in email.mailboxes if not m.referral]
    desk = ticket.draft.first_contact.id
    mailbox = next((m for m in boxes if m.desk == desk), boxes[0] if boxes else None)
    return mailbox.address if mailbox else None


def _refusal_reason(ticket: NewTicket) -> str | None:
    if ticket.status not in ("rejected", "invalid"):
        return None
    for event in ticket.events:
        if event.kind in ("rejected", "invalid") and event.detail.get("reason"):
            return str(event.detail["reason"])
    return ticket.invalid_reason


def queue_acknowledgements(
    conn: Connection, tickets: Sequence[NewTicket], email: EmailSettings, now: datetime
) -> int:
    """One ``ack`` row per just-created ticket that should be acknowledged; returns how many
    rows were new. Call right after ``insert_tickets`` in the same transaction."""
    wanted = [(t, a) for t in tickets if (a := _acknowledged(t, email)) is not None]
    if not wanted:
        return 0
    found = conn.execute(
        select(col(Ticket.number), col(Ticket.id)).where(
            col(Ticket.number).in_([t.number for t, _ in wanted])
        )
    )
    ids: dict[str, int] = {n: i for n, i in found if i is not None}
    domain = message_id_domain(email)
    rows = []
    for ticket, address in wanted:
        mail = ticket.draft.mail
        # Their Message-ID: the acknowledgement threads under the mail it answers.
        detail: dict[str, Any] = {"in_reply_to": mail.message_id if mail else None}
        detail["reply_to"] = _reply_to(ticket, email)
        # 不予受理 / 无效: the acknowledgement tells the complainant why (the seeds: "otherwise
        # explain the reason"); the reason is the rule's configured text, no personal data.
        detail["reason"] = _refusal_reason(ticket)
        number = ticket.number
        kind = NotificationKind.ACKNOWLEDGEMENT
        rows.append(_row(kind, f"ack:{number}", ids[number], number, address, domain, detail))
    return enqueue(conn, NOTIFICATIONS, rows, now)


def queue_urge_notices(
    conn: Connection,
    departments: Sequence[Department],
    email: EmailSettings,
    after_event_id: int,
    now: datetime,
) -> tuple[int, int]:
    """An ``urge`` row for each new ``urge`` event whose department has an ``email``;
    returns (rows queued, newest event id seen) for the next sweep's ``after_event_id``."""
    newest = newest_event_id(conn)
    mailboxes = {d.key: d.email.strip().lower() for d in departments if d.email}
    if not mailboxes:
        return 0, newest
    noticed = (
        select(col(Notification.id))
        .where(col(Notification.dedupe_key) == literal("urge:") + cast(col(Event.id), String))
        .exists()
    )
    urges = new_events("urge", after_event_id, newest, col(Ticket.department))
    found = conn.execute(urges.where(col(Event.at) >= now - URGE_MAX_AGE, ~noticed)).all()
    domain = message_id_domain(email)
    rows = []
    for urge in found:
        named = (urge.detail or {}).get("notify_department")
        key = named if isinstance(named, str) and named else urge.department
        if key not in mailboxes:
            continue  # no mailbox for this department: it reads urges in the system only
        facts = {"event_id": urge.event_id, "department": key, "urged_at": event_time(urge.at)}
        dedupe_key, address = f"urge:{urge.event_id}", mailboxes[key]
        kind = NotificationKind.URGE
        rows.append(_row(kind, dedupe_key, urge.ticket_id, urge.number, address, domain, facts))
    return enqueue(conn, NOTIFICATIONS, rows, now), newest


# Every way a ticket reaches a department: the router's dispatch, a staff dispatch or
# transfer, the referring authority's return (退单) to a named department.
DISPATCH_EVENTS = ("dispatched", "dispatch", "transfer", "referral_returned")


def queue_dispatch_notices(
    conn: Connection,
    departments: Sequence[Department],
    email: EmailSettings,
    after_event_id: int,
    now: datetime,
) -> tuple[int, int]:
    """A ``dispatch`` row for each new dispatch event whose department has an ``email``
    (when ``email.dispatch_notices`` is on); returns (rows queued, newest event id seen).
    ``confidential`` is decided here, once: the notice then never carries the person."""
    newest = newest_event_id(conn)
    mailboxes = {d.key: d.email.strip().lower() for d in departments if d.email}
    if not email.dispatch_notices or not mailboxes:
        return 0, newest
    noticed = (
        select(col(Notification.id))
        .where(col(Notification.dedupe_key) == literal("dispatch:") + cast(col(Event.id), String))
        .exists()
    )
    found = conn.execute(
        new_events(DISPATCH_EVENTS, after_event_id, newest, col(Ticket.source_key)).where(
            col(Event.at) >= now - URGE_MAX_AGE, ~noticed
        )
    ).all()
    confidential = confidential_sources(conn, [e.source_key for e in found])
    domain = message_id_domain(email)
    rows = []
    for event in found:
        key = (event.detail or {}).get("department")
        if not isinstance(key, str) or key not in mailboxes:
            continue  # no mailbox for this department: it reads its worklist in the system
        facts = {
            "event_id": event.event_id,
            "department": key,
            "dispatched_at": event_time(event.at),
            "confidential": event.source_key in confidential,
        }
        kind = NotificationKind.DISPATCH
        rows.append(
            _row(
                kind,
                f"dispatch:{event.event_id}",
                event.ticket_id,
                event.number,
                mailboxes[key],
                domain,
                facts,
            )
        )
    return enqueue(conn, NOTIFICATIONS, rows, now), newest


# The SLA worker's marks (workers/sla.py): each tells the handling department and the
# coordinating office (客服中心 / 办公室), which follows every complaint to its end (首问负责制);
# a complaint unresolved for a month, raised to major, is reported upward: the office only.
CLOCK_EVENTS = ("clock_due_soon", "clock_breached", "severity_raised")
UNRESOLVED_RULE = "severity.unresolved_too_long"


def queue_clock_notices(
    conn: Connection,
    departments: Sequence[Department],
    email: EmailSettings,
    after_event_id: int,
    now: datetime,
) -> tuple[int, int]:
    """A ``clock`` row per new due-soon or breach event and recipient (the ticket's department
    and the coordinating office, those with an ``email``); (rows queued, newest event id)."""
    newest = newest_event_id(conn)
    mailboxes = {d.key: d.email.strip().lower() for d in departments if d.email}
    coordinating = [d.key for d in departments if d.role is DepartmentRole.COORDINATING]
    if not mailboxes:
        return 0, newest
    found = conn.execute(
        new_events(
            CLOCK_EVENTS, after_event_id, newest, col(Ticket.department), col(Event.kind)
        ).where(col(Event.at) >= now - URGE_MAX_AGE)
    ).all()
    domain = message_id_domain(email)
    rows = []
    for event in found:
        detail = event.detail or {}
        escalated = event.kind == "severity_raised"
        if escalated and detail.get("rule") != UNRESOLVED_RULE:
            continue  # raised by a rule or an authority at intake: no clock ran out
        recipients = coordinating if escalated else [event.department, *coordinating]
        for key in dict.fromkeys(recipients):
            if key not in mailboxes:
                continue
            facts = {
                "event_id": event.event_id,
                "department": key,
                "handling_department": event.department,
                "clock": detail.get("clock"),
                "due_at": detail.get("due_at"),
                "breached": event.kind == "clock_breached",
                "escalated_after": detail.get("limit") if escalated else None,
            }
            dedupe_key = f"clock:{event.event_id}:{key}"
            kind = NotificationKind.CLOCK
            rows.append(
                _row(kind, dedupe_key, event.ticket_id, event.number, mailboxes[key], domain, facts)
            )
    # A row already there (an earlier sweep's overlap margin) is left as it is by enqueue.
    return enqueue(conn, NOTIFICATIONS, rows, now), newest


def queue_batch_notice(
    conn: Connection,
    joined: Sequence[Joined],
    departments: Sequence[Department],
    email: EmailSettings,
    now: datetime,
) -> int:
    """One ``batch`` row per batch opened in this transaction, to the coordinating office's
    mailbox (``batch:<key>``: told once however often the router replays the batch)."""
    office = next((d for d in departments if d.role is DepartmentRole.COORDINATING), None)
    opened = [j for j in joined if j.opened]
    if office is None or not office.email or not opened:
        return 0
    numbers = [j.numbers[0] for j in opened]
    found = conn.execute(
        select(col(Ticket.number), col(Ticket.id)).where(col(Ticket.number).in_(numbers))
    )
    ids: dict[str, int] = {n: i for n, i in found if i is not None}
    domain = message_id_domain(email)
    address = office.email.strip().lower()
    rows = []
    for batch in opened:
        first = batch.numbers[0]
        facts = {
            "batch": batch.batch,
            "area": batch.area,
            "members": batch.members,
            "department": office.key,
        }
        kind = NotificationKind.BATCH
        rows.append(_row(kind, f"batch:{batch.batch}", ids[first], first, address, domain, facts))
    return enqueue(conn, NOTIFICATIONS, rows, now)


# The feedback channels staff record that mean "we told them by mail".
MAIL_FEEDBACK = frozenset({"email", "mail", "邮件", "电子邮件"})


def queue_result_mails(
    conn: Connection, email: EmailSettings, after_event_id: int, now: datetime
) -> tuple[int, int]:
    """A ``result`` row for each new feedback given by mail to a complainant with an address;
    returns (rows queued, newest event id seen). Threads under the acknowledgement's thread
    (the complainant's own mail) when there was one."""
    newest = newest_event_id(conn)
    queued = (
        select(col(Notification.id))
        .where(col(Notification.dedupe_key) == literal("result:") + cast(col(Event.id), String))
        .exists()
    )
    events = new_events(
        "feedback", after_event_id, newest, col(Complainant.email), col(Complainant.anonymous)
    ).outerjoin(Complainant, col(Complainant.id) == col(Ticket.complainant_id))
    domain = message_id_domain(email)
    rows = []
    for event in conn.execute(events.where(~queued)).all():
        detail = dict(event.detail or {})
        if str(detail.get("channel", "")).strip().lower() not in MAIL_FEEDBACK:
            continue
        address = (event.email or "").strip().lower()
        if event.anonymous or "@" not in address or email.is_ours(address):
            continue
        ack = conn.execute(
            select(col(Notification.detail)).where(
                col(Notification.dedupe_key) == f"ack:{event.number}"
            )
        ).scalar_one_or_none()
        facts = {
            "event_id": event.event_id,
            "result": feedback_result(conn, event.ticket_id, detail),
            "in_reply_to": (ack or {}).get("in_reply_to"),
            "reply_to": (ack or {}).get("reply_to"),
        }
        key = f"result:{event.event_id}"
        kind = NotificationKind.RESULT
        rows.append(_row(kind, key, event.ticket_id, event.number, address, domain, facts))
    return enqueue(conn, NOTIFICATIONS, rows, now), newest
