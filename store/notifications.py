"""The notification outbox (synchronous Core, run inside ``Database.write``).

* :func:`queue_acknowledgements`: the router calls it in the batch transaction that makes
  the tickets, so an acknowledgement (受理回执) is owed exactly when its ticket exists;
* :func:`queue_urge_notices`: turns ``urge`` (催办) events into notices to the department's
  mailbox, found by a sweep (however the urge was made: staff API, hotline repeat, referral);
* :func:`claim_due` / :func:`record_attempt`: hand rows to one sender at a time and record each
  attempt as an event; ``sent``, a retry with capped jittered backoff, or ``dead`` with a dead
  letter (``shouli dead-letters replay`` puts it back through :func:`replay`).

Every insert is ``ON CONFLICT DO NOTHING`` on the unique ``dedupe_key``: a replayed router
batch or two notify workers sweeping the same events never make a second row. Addresses
live only in ``notifications.recipient``; events and dead letters never carry them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, String, cast, func, insert, literal, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import col

from channels.email.outbound import Delivery
from channels.email.settings import EmailSettings, OutboxSettings
from channels.referral.outbox import EVENT_ID_MARGIN
from ingest.backoff import backoff_seconds
from ingest.draft import MailKind
from ingest.logs import redact_text
from ingest.settings import Department
from store.models import DeadLetter, Event, Ticket
from store.notification_models import Notification, NotificationKind, NotificationStatus
from store.tickets import NewTicket, as_utc

ACTOR = "notify"
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


def _insert(conn: Connection) -> Any:
    return pg_insert if conn.dialect.name == "postgresql" else sqlite_insert


def _event(
    conn: Connection, ticket_id: int | None, kind: str, detail: dict[str, Any], at: datetime
) -> None:
    if ticket_id is not None:
        conn.execute(
            insert(Event).values(ticket_id=ticket_id, at=at, kind=kind, actor=ACTOR, detail=detail)
        )


def _row(
    kind: str,
    dedupe_key: str,
    ticket_id: int,
    number: str,
    recipient: str,
    domain: str,
    detail: dict[str, Any],
    now: datetime,
) -> dict[str, Any]:
    return {
        "kind": kind,
        "dedupe_key": dedupe_key,
        "ticket_id": ticket_id,
        "number": number,
        "recipient": recipient,
        "message_id": new_message_id(kind, domain),
        "detail": detail,
        "status": NotificationStatus.PENDING,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
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
        number = ticket.number
        rows.append(
            _row(
                NotificationKind.ACKNOWLEDGEMENT,
                f"ack:{number}",
                ids[number],
                number,
                address,
                domain,
                detail,
                now,
            )
        )
    result = conn.execute(_insert(conn)(Notification).on_conflict_do_nothing(), rows)
    return max(result.rowcount, 0)


def last_urge_event(conn: Connection) -> int:
    """Where the urge sweep starts after a restart: the event of the newest notice."""
    detail = conn.execute(
        select(col(Notification.detail))
        .where(col(Notification.kind) == NotificationKind.URGE)
        .order_by(col(Notification.id).desc())
        .limit(1)
    ).scalar_one_or_none()
    return int((detail or {}).get("event_id", 0))


def queue_urge_notices(
    conn: Connection,
    departments: Sequence[Department],
    email: EmailSettings,
    after_event_id: int,
    now: datetime,
) -> tuple[int, int]:
    """An ``urge`` row for each new ``urge`` event whose department has an ``email``;
    returns (rows queued, newest event id seen) for the next sweep's ``after_event_id``."""
    newest = int(conn.execute(select(func.max(col(Event.id)))).scalar_one_or_none() or 0)
    mailboxes = {d.key: d.email.strip().lower() for d in departments if d.email}
    if not mailboxes:
        return 0, newest
    noticed = (
        select(col(Notification.id))
        .where(col(Notification.dedupe_key) == literal("urge:") + cast(col(Event.id), String))
        .exists()
    )
    found = conn.execute(
        select(
            col(Event.id),
            col(Event.at),
            col(Event.detail),
            col(Ticket.id),
            col(Ticket.number),
            col(Ticket.department),
        )
        .join(Ticket, col(Ticket.id) == col(Event.ticket_id))
        .where(
            col(Event.id) > max(after_event_id - EVENT_ID_MARGIN, 0),
            col(Event.id) <= newest,
            col(Event.kind) == "urge",
            col(Event.at) >= now - URGE_MAX_AGE,
            ~noticed,
        )
        .order_by(col(Event.id))
    ).all()
    domain = message_id_domain(email)
    rows = []
    for event_id, at, detail, ticket_id, number, department in found:
        named = (detail or {}).get("notify_department")
        key = named if isinstance(named, str) and named else department
        if key not in mailboxes:
            continue  # no mailbox for this department: it reads urges in the system only
        facts = {"event_id": event_id, "department": key, "urged_at": _iso(at)}
        rows.append(
            _row(
                NotificationKind.URGE,
                f"urge:{event_id}",
                ticket_id,
                number,
                mailboxes[key],
                domain,
                facts,
                now,
            )
        )
    if not rows:
        return 0, newest
    result = conn.execute(_insert(conn)(Notification).on_conflict_do_nothing(), rows)
    return max(result.rowcount, 0), newest


def _iso(value: datetime | None) -> str | None:
    value = as_utc(value)
    return value.isoformat() if value else None


@dataclass(frozen=True)
class DueNotification:
    id: int
    kind: str
    ticket_id: int | None
    number: str | None
    recipient: str
    message_id: str
    detail: dict[str, Any]
    attempt: int  # this attempt's number, counted when claimed


def claim_due(
    conn: Connection, now: datetime, *, lease: timedelta, limit: int
) -> list[DueNotification]:
    """Pending rows whose time has come, leased to this caller: ``next_attempt_at`` moves
    ``lease`` ahead and ``attempts`` counts this attempt in the same transaction, so no other
    worker takes them meanwhile, and a worker that dies mid-send still used up an attempt."""
    query = (
        select(col(Notification.id))
        .where(
            col(Notification.status) == NotificationStatus.PENDING,
            col(Notification.next_attempt_at) <= now,
        )
        .order_by(col(Notification.next_attempt_at), col(Notification.id))
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    ids = list(conn.execute(query).scalars())
    if not ids:
        return []
    claimed = conn.execute(
        update(Notification)
        .where(
            col(Notification.id).in_(ids),
            col(Notification.status) == NotificationStatus.PENDING,
            col(Notification.next_attempt_at) <= now,
        )
        .values(next_attempt_at=now + lease, attempts=col(Notification.attempts) + 1)
        .returning(Notification)
    ).all()
    return sorted(
        (
            DueNotification(
                id=row.id,
                kind=row.kind,
                ticket_id=row.ticket_id,
                number=row.number,
                recipient=row.recipient,
                message_id=row.message_id,
                detail=dict(row.detail or {}),
                attempt=row.attempts,
            )
            for row in claimed
        ),
        key=lambda due: due.id,
    )


def record_attempt(
    conn: Connection,
    due: DueNotification,
    delivery: Delivery,
    *,
    outbox: OutboxSettings,
    dead_letter_queue: str,
    now: datetime,
) -> str:
    """The outcome of one attempt: the row's new status (an event on the ticket each time)."""
    # The server's answer can quote the address ("550 <x@y>: no such user"): masked, since
    # events are shown to staff and kept for good.
    answer = redact_text(delivery.detail)[:1000]
    base = {"notification": due.kind, "notification_id": due.id, "attempt": due.attempt}
    row = update(Notification).where(col(Notification.id) == due.id)
    if delivery.sent:
        conn.execute(row.values(status=NotificationStatus.SENT, sent_at=now, last_error=None))
        _event(conn, due.ticket_id, "notification_sent", base | {"message_id": due.message_id}, now)
        return NotificationStatus.SENT
    if delivery.permanent or due.attempt >= outbox.max_attempts:
        why = "refused by the mail server" if delivery.permanent else f"{due.attempt} attempts"
        reason = f"{due.kind} notification not sent: {why}; last answer: {answer}"
        conn.execute(row.values(status=NotificationStatus.DEAD, last_error=answer))
        dead = conn.execute(
            insert(DeadLetter)
            .values(
                queue=dead_letter_queue,
                message_id=f"notification:{due.id}",
                body=json.dumps({"notification_id": due.id, "number": due.number}).encode(),
                reason=reason[:4000],
                attempts=due.attempt,
                failed_at=now,
            )
            .returning(col(DeadLetter.id))
        ).scalar_one()
        detail = base | {"error": answer, "reason": reason, "dead_letter_id": dead}
        _event(conn, due.ticket_id, "notification_failed", detail, now)
        return NotificationStatus.DEAD
    next_at = now + timedelta(seconds=backoff_seconds(due.attempt, outbox))
    conn.execute(row.values(next_attempt_at=next_at, last_error=answer))
    detail = base | {"error": answer, "next_attempt_at": _iso(next_at)}
    _event(conn, due.ticket_id, "notification_attempt_failed", detail, now)
    return NotificationStatus.PENDING


def replay(conn: Connection, notification_id: int, now: datetime) -> bool:
    """A dead notification back to pending with fresh attempts; False if it is not dead."""
    found = conn.execute(
        select(
            col(Notification.ticket_id), col(Notification.kind), col(Notification.attempts)
        ).where(
            col(Notification.id) == notification_id,
            col(Notification.status) == NotificationStatus.DEAD,
        )
    ).first()
    if found is None:
        return False
    conn.execute(
        update(Notification)
        .where(col(Notification.id) == notification_id)
        .values(status=NotificationStatus.PENDING, attempts=0, next_attempt_at=now)
    )
    detail = {"notification": found.kind, "notification_id": notification_id}
    _event(conn, found.ticket_id, "notification_replayed", detail | {"after": found.attempts}, now)
    return True
