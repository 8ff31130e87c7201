"""What the referral channel queues in its outbox, and the sweeps that fill it (synchronous
Core, run in ``Database.write``; every function here is idempotent, so several referrals
workers may run). Sending, retries, dead letters and replays are the outbox engine's
(``store.outbox`` with ``store.referral_outbox.REPLIES``).

* :func:`register_new_tickets`: once the router has made an order's ticket, record the
  authority's clocks and the confidential marker on it (``referral_registered``), sign for
  it (``signed_for``) and queue the 签收 confirmation when the source wants one;
* :func:`queue_replies`: each ``handle`` event of a referral ticket whose source has a reply
  route gets one ``reply`` row (unique on ticket, kind and that event): a returned order
  (退单) handled again sends a new reply.

Polling handled tickets rather than hooking the staff API keeps the reply independent of
how the ``handle`` event was made, and a crash between the event and the reply loses
nothing: the next sweep finds the event without its row.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, and_, func, select, update
from sqlmodel import col

from channels.referral.settings import ReferralMapping, ReferralSettings
from ingest.draft import Channel
from store.models import Event, Ticket
from store.outbox import enqueue, new_events, newest_event_id, write_event
from store.referral_models import ReferralOrderRecord, ReferralOutbox
from store.referral_outbox import REPLIES
from store.tickets import as_utc, event_time

ACTOR = "referrals"
REPLY, SIGN_FOR = "reply", "sign_for"


def _event(
    conn: Connection, ticket_id: int, kind: str, detail: dict[str, Any], at: datetime
) -> None:
    write_event(conn, ticket_id, kind, detail, actor=ACTOR, at=at)


def _time(value: datetime, mapping: ReferralMapping | None, zone: ZoneInfo) -> str:
    value = value.astimezone(UTC)
    if mapping is not None and mapping.reply_time_format:
        zone = ZoneInfo(mapping.timezone) if mapping.timezone else zone
        return value.astimezone(zone).strftime(mapping.reply_time_format)
    return value.astimezone(zone).isoformat()


def _payload(fields: dict[str, Any], mapping: ReferralMapping | None) -> dict[str, Any]:
    return {(mapping.reply_key(k) if mapping else k): v for k, v in fields.items()}


def register_new_tickets(
    conn: Connection, settings: ReferralSettings, zone: ZoneInfo, now: datetime
) -> int:
    orders = ReferralOrderRecord.metadata.tables[ReferralOrderRecord.__tablename__]
    rows = conn.execute(
        select(orders, col(Ticket.id).label("ticket_id"), col(Ticket.number).label("number"))
        .join(
            Ticket,
            and_(
                col(Ticket.channel) == Channel.REFERRAL.value,
                col(Ticket.source_key) == orders.c.source_key,
            ),
        )
        .where(orders.c.registered_at.is_(None))
        .order_by(orders.c.id)
        .limit(200)
    ).all()
    registered = 0
    for order in rows:
        ticket_id, number = order.ticket_id, order.number
        claimed = conn.execute(
            update(ReferralOrderRecord)
            .where(
                col(ReferralOrderRecord.id) == order.id,
                col(ReferralOrderRecord.registered_at).is_(None),
            )
            .values(registered_at=now)
        )
        if claimed.rowcount != 1:
            continue  # another worker registered it
        registered += 1
        source = settings.source(order.source)
        sign_for_due = as_utc(order.sign_for_due)
        _event(
            conn,
            ticket_id,
            "referral_registered",
            {
                "source": order.source,
                "reference": order.reference,
                "request_type": order.request_type,
                "handling_unit": order.handling_unit,
                "dispatched_at": event_time(order.dispatched_at),
                "clocks": {
                    "sign_for_due": event_time(sign_for_due),
                    "contact_due": event_time(order.contact_due),
                    "complete_due": event_time(order.complete_due),
                },
                "confidential": order.confidential,
            },
            now,
        )
        if source is None or not source.sign_for_confirmations or source.reply is None:
            continue
        late = sign_for_due is not None and now > sign_for_due
        _event(
            conn,
            ticket_id,
            "signed_for",
            {"desk": source.liaison_desk, "due": event_time(sign_for_due), "late": late},
            now,
        )
        mapping = settings.mappings.get(source.mapping)
        payload = _payload(
            {
                "type": SIGN_FOR,
                "source": source.key,
                "reference": order.reference,
                "number": number,
                "signed_at": _time(now, mapping, zone),
                "desk": source.liaison_desk,
            },
            mapping,
        )
        _queue(conn, ticket_id, number, source.key, SIGN_FOR, 0, payload, now)
    return registered


def _queue(
    conn: Connection,
    ticket_id: int,
    number: str,
    source: str,
    kind: str,
    trigger: int,
    payload: dict[str, Any],
    now: datetime,
) -> None:
    row = {
        "ticket_id": ticket_id,
        "number": number,
        "source": source,
        "kind": kind,
        "trigger_event_id": trigger,
        "payload": payload,
    }
    enqueue(conn, REPLIES, [row], now)


def last_reply_trigger(conn: Connection) -> int:
    """Where the reply sweep starts after a restart: the newest handle event replied to."""
    found = conn.execute(
        select(func.max(col(ReferralOutbox.trigger_event_id))).where(
            col(ReferralOutbox.kind) == REPLY
        )
    ).scalar_one_or_none()
    return int(found or 0)


def queue_replies(
    conn: Connection, settings: ReferralSettings, zone: ZoneInfo, after_event_id: int, now: datetime
) -> tuple[int, int]:
    """Queue a reply for each new ``handle`` event; returns (queued, newest event id seen)."""
    newest = newest_event_id(conn)
    sources = [s.key for s in settings.sources if s.reply is not None]
    if not sources:
        return 0, newest
    replied = (
        select(col(ReferralOutbox.id))
        .where(
            col(ReferralOutbox.ticket_id) == col(Ticket.id),
            col(ReferralOutbox.kind) == REPLY,
            col(ReferralOutbox.trigger_event_id) == col(Event.id),
        )
        .exists()
    )
    handled = new_events(
        "handle",
        after_event_id,
        newest,
        col(Ticket.referral_source),
        col(Ticket.referral_reference),
        col(Ticket.department),
    )
    rows = conn.execute(handled.where(col(Ticket.referral_source).in_(sources), ~replied)).all()
    for row in rows:
        source = settings.source(row.referral_source or "")
        assert source is not None
        mapping = settings.mappings.get(source.mapping)
        detail = row.detail or {}
        actor = str(row.actor).split(":", 1)[-1]
        result_code = detail.get("result_code") or settings.replies.default_result_code
        payload = _payload(
            {
                "type": REPLY,
                "source": source.key,
                "reference": row.referral_reference,
                "number": row.number,
                "result_code": str(result_code),
                "result": str(detail.get("result", "")),
                "handler": str(detail.get("handler") or actor),
                "handled_at": _time(as_utc(row.at) or now, mapping, zone),
                "department": row.department,
            },
            mapping,
        )
        _queue(conn, row.ticket_id, row.number, source.key, REPLY, row.event_id, payload, now)
    return len(rows), newest
