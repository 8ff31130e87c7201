"""What the SMS channel queues in the notification outbox (synchronous Core, inside
``Database.write``); the ``notify`` worker sends the rows, the outbox engine retries them.

* :func:`queue_sms_acknowledgements`: the router calls it in the batch transaction that makes
  the tickets, next to the mail acknowledgements, so an SMS is owed exactly when its ticket
  exists (``sms_ack:<number>``);
* :func:`queue_sms_results`: a sweep of ``feedback`` events given by SMS (``channel: sms``):
  the result is sent to the complainant's mobile (``sms_result:<event id>``).

Only mobile numbers (an SMS to a landline never arrives), never an anonymous complainant nor
one in ``sms.opt_out``; in the quiet hours a row is due when they end.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, String, cast, literal, select
from sqlmodel import col

from channels.sms.settings import SmsSettings
from ingest.phone import PhoneKind, normalise_phone
from store.models import Complainant, Event, Ticket
from store.notification_models import Notification, NotificationKind
from store.notification_outbox import NOTIFICATIONS
from store.outbox import enqueue, new_events, newest_event_id
from store.tickets import NewTicket, feedback_result

# The feedback channels staff record that mean "we told them by SMS".
SMS_FEEDBACK = frozenset({"sms", "短信"})


def mobile_of(phone: str | None) -> str | None:
    """The E.164 form of ``phone`` when it is a mobile number, else None."""
    if not phone:
        return None
    number = normalise_phone(phone)
    return number.e164 if number.kind is PhoneKind.MOBILE else None


def _row(
    kind: str, key: str, ticket_id: int, number: str, phone: str, due: datetime, detail: Any
) -> dict[str, Any]:
    return {
        "kind": kind,
        "dedupe_key": f"{kind}:{key}",
        "ticket_id": ticket_id,
        "number": number,
        "recipient": phone,
        "message_id": f"<{kind}.{uuid.uuid4().hex}@sms.shouli>",
        "detail": detail,
        "next_attempt_at": due,
    }


def _recipient(sms: SmsSettings, phone: str | None, anonymous: bool) -> str | None:
    mobile = mobile_of(phone)
    if mobile is None or anonymous or sms.opted_out(mobile):
        return None
    return mobile


def _due(sms: SmsSettings, now: datetime, zone: ZoneInfo) -> datetime:
    return sms.quiet_hours.release(now, zone) if sms.quiet_hours is not None else now


def queue_sms_acknowledgements(
    conn: Connection,
    tickets: Sequence[NewTicket],
    sms: SmsSettings,
    zone: ZoneInfo,
    now: datetime,
) -> int:
    """One ``sms_ack`` row per just-created ticket whose complainant left a mobile number;
    returns how many rows were new. Call right after ``insert_tickets``."""
    if not sms.enabled:
        return 0
    wanted = [
        (t, phone)
        for t in tickets
        if t.draft.channel.value in sms.channels
        and (phone := _recipient(sms, t.draft.complainant.phone, t.draft.complainant.anonymous))
    ]
    if not wanted:
        return 0
    found = conn.execute(
        select(col(Ticket.number), col(Ticket.id)).where(
            col(Ticket.number).in_([t.number for t, _ in wanted])
        )
    )
    ids: dict[str, int] = {n: i for n, i in found if i is not None}
    due = _due(sms, now, zone)
    kind = NotificationKind.SMS_ACKNOWLEDGEMENT
    rows = [_row(kind, t.number, ids[t.number], t.number, phone, due, {}) for t, phone in wanted]
    return enqueue(conn, NOTIFICATIONS, rows, now)


def queue_sms_results(
    conn: Connection, sms: SmsSettings, zone: ZoneInfo, after_event_id: int, now: datetime
) -> tuple[int, int]:
    """An ``sms_result`` row for each new feedback-by-SMS event; returns (rows queued, newest
    event id seen) for the next sweep's ``after_event_id``."""
    newest = newest_event_id(conn)
    if not sms.enabled:
        return 0, newest
    queued = (
        select(col(Notification.id))
        .where(col(Notification.dedupe_key) == literal("sms_result:") + cast(col(Event.id), String))
        .exists()
    )
    events = new_events(
        "feedback", after_event_id, newest, col(Complainant.phone), col(Complainant.anonymous)
    ).outerjoin(Complainant, col(Complainant.id) == col(Ticket.complainant_id))
    due = _due(sms, now, zone)
    rows = []
    for event in conn.execute(events.where(~queued)).all():
        detail = dict(event.detail or {})
        if str(detail.get("channel", "")).strip().lower() not in SMS_FEEDBACK:
            continue
        phone = _recipient(sms, event.phone, bool(event.anonymous))
        if phone is None:
            continue
        facts = {
            "event_id": event.event_id,
            "result": feedback_result(conn, event.ticket_id, detail),
        }
        kind = NotificationKind.SMS_RESULT
        rows.append(
            _row(kind, str(event.event_id), event.ticket_id, event.number, phone, due, facts)
        )
    return enqueue(conn, NOTIFICATIONS, rows, now), newest
