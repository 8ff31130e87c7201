"""The referral outbox and the sweeps that fill it (synchronous Core, run in
``Database.write``; every function here is idempotent, so several referrals workers may run).

* :func:`register_new_tickets`: once the router has made an order's ticket, record the
  authority's clocks and the confidential marker on it (``referral_registered``), sign for
  it (``signed_for``) and queue the 签收 confirmation when the source wants one;
* :func:`queue_replies`: each ``handle`` event of a referral ticket whose source has a reply
  route gets one ``reply`` row (unique on ticket, kind and that event): a returned order
  (退单) handled again sends a new reply;
* :func:`claim_due` / :func:`record_attempt`: hand out rows whose time has come, and record
  each attempt as an event, then ``sent``, a retry with capped jittered backoff, or ``dead``
  (with a dead letter, replayable with ``shouli dead-letters replay``).

Polling handled tickets rather than hooking the staff API keeps the reply independent of
how the ``handle`` event was made, and a crash between the event and the reply loses
nothing: the next sweep finds the event without its row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, and_, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import col

from channels.referral.sender import SendOutcome
from channels.referral.settings import ReferralMapping, ReferralSettings, ReplySettings
from ingest.backoff import backoff_seconds
from ingest.draft import Channel
from store.models import DeadLetter, Event, Ticket
from store.referral_models import OutboxStatus, ReferralOrderRecord, ReferralOutbox
from store.tickets import as_utc

ACTOR = "referrals"
REPLY, SIGN_FOR = "reply", "sign_for"
# Out-of-order commits: an event id below one already seen may still commit a moment later,
# so every sweep looks this many ids back (cheap: a primary-key range).
EVENT_ID_MARGIN = 10_000


def _iso(value: datetime | None) -> str | None:
    value = as_utc(value)
    return value.isoformat() if value else None


def _insert(conn: Connection) -> Any:
    return pg_insert if conn.dialect.name == "postgresql" else sqlite_insert


def _event(
    conn: Connection, ticket_id: int, kind: str, detail: dict[str, Any], at: datetime
) -> None:
    conn.execute(
        insert(Event).values(ticket_id=ticket_id, at=at, kind=kind, actor=ACTOR, detail=detail)
    )


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
                "dispatched_at": _iso(order.dispatched_at),
                "clocks": {
                    "sign_for_due": _iso(sign_for_due),
                    "contact_due": _iso(order.contact_due),
                    "complete_due": _iso(order.complete_due),
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
            {"desk": source.liaison_desk, "due": _iso(sign_for_due), "late": late},
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
    conn.execute(
        _insert(conn)(ReferralOutbox)
        .values(
            ticket_id=ticket_id,
            number=number,
            source=source,
            kind=kind,
            trigger_event_id=trigger,
            payload=payload,
            status=OutboxStatus.PENDING,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
        .on_conflict_do_nothing()
    )


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
    newest = int(conn.execute(select(func.max(col(Event.id)))).scalar_one_or_none() or 0)
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
    rows = conn.execute(
        select(
            col(Event.id).label("event_id"),
            col(Event.at),
            col(Event.actor),
            col(Event.detail),
            col(Ticket.id).label("ticket_id"),
            col(Ticket.number),
            col(Ticket.referral_source),
            col(Ticket.referral_reference),
            col(Ticket.department),
        )
        .join(Ticket, col(Ticket.id) == col(Event.ticket_id))
        .where(
            col(Event.id) > max(after_event_id - EVENT_ID_MARGIN, 0),
            col(Event.id) <= newest,
            col(Event.kind) == "handle",
            col(Ticket.referral_source).in_(sources),
            ~replied,
        )
        .order_by(col(Event.id))
    ).all()
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


@dataclass(frozen=True)
class DueReply:
    id: int
    ticket_id: int
    number: str
    source: str
    kind: str
    payload: dict[str, Any]
    attempts: int


def claim_due(conn: Connection, now: datetime, lease: timedelta, limit: int = 20) -> list[DueReply]:
    """Rows whose next attempt is due, leased for ``lease`` so no other worker sends them."""
    query = (
        select(ReferralOutbox)
        .where(
            col(ReferralOutbox.status) == OutboxStatus.PENDING,
            col(ReferralOutbox.next_attempt_at) <= now,
        )
        .order_by(col(ReferralOutbox.next_attempt_at), col(ReferralOutbox.id))
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    due = conn.execute(query).all()
    if not due:
        return []
    conn.execute(
        update(ReferralOutbox)
        .where(col(ReferralOutbox.id).in_([row.id for row in due]))
        .values(next_attempt_at=now + lease)
    )
    return [
        DueReply(
            id=row.id,
            ticket_id=row.ticket_id,
            number=row.number,
            source=row.source,
            kind=row.kind,
            payload=dict(row.payload),
            attempts=row.attempts,
        )
        for row in due
    ]


@dataclass(frozen=True)
class Recorded:
    status: str
    next_attempt_at: datetime | None = None


def record_attempt(
    conn: Connection,
    reply: DueReply,
    outcome: SendOutcome,
    *,
    settings: ReplySettings,
    dead_letter_queue: str,
    now: datetime,
) -> Recorded:
    """One attempt: an event on the ticket, and the row's next state."""
    attempt = reply.attempts + 1
    detail: dict[str, Any] = {
        "reply": reply.kind,
        "outbox_id": reply.id,
        "attempt": attempt,
        "delivered": outcome.delivered,
        "status": outcome.status,
    }
    if outcome.delivered:
        conn.execute(
            update(ReferralOutbox)
            .where(col(ReferralOutbox.id) == reply.id)
            .values(status=OutboxStatus.SENT, attempts=attempt, sent_at=now, last_error=None)
        )
        _event(conn, reply.ticket_id, "reply_attempt", detail, now)
        _event(
            conn,
            reply.ticket_id,
            "reply_delivered",
            {"reply": reply.kind, "attempts": attempt},
            now,
        )
        return Recorded(OutboxStatus.SENT)
    detail["error"] = outcome.error
    if outcome.permanent or attempt >= settings.max_attempts:
        why = "refused by the receiver" if outcome.permanent else f"{attempt} attempts failed"
        reason = f"{why}; last error: {outcome.error}"
        conn.execute(
            update(ReferralOutbox)
            .where(col(ReferralOutbox.id) == reply.id)
            .values(status=OutboxStatus.DEAD, attempts=attempt, last_error=outcome.error)
        )
        dead = conn.execute(
            insert(DeadLetter)
            .values(
                queue=dead_letter_queue,
                message_id=f"referral-outbox:{reply.id}",
                body=json.dumps({"outbox_id": reply.id, "number": reply.number}).encode(),
                reason=reason[:4000],
                attempts=attempt,
                failed_at=now,
            )
            .returning(col(DeadLetter.id))
        ).scalar_one()
        _event(conn, reply.ticket_id, "reply_attempt", detail, now)
        _event(
            conn,
            reply.ticket_id,
            "reply_dead_lettered",
            {"reply": reply.kind, "attempts": attempt, "reason": reason, "dead_letter_id": dead},
            now,
        )
        return Recorded(OutboxStatus.DEAD)
    next_at = now + timedelta(seconds=backoff_seconds(attempt, settings))
    conn.execute(
        update(ReferralOutbox)
        .where(col(ReferralOutbox.id) == reply.id)
        .values(attempts=attempt, next_attempt_at=next_at, last_error=outcome.error)
    )
    _event(conn, reply.ticket_id, "reply_attempt", detail | {"next_attempt_at": _iso(next_at)}, now)
    return Recorded(OutboxStatus.PENDING, next_at)


def replay(conn: Connection, outbox_id: int, now: datetime) -> bool:
    """A dead reply back to pending (``shouli dead-letters replay``); False if not dead."""
    row = conn.execute(select(ReferralOutbox).where(col(ReferralOutbox.id) == outbox_id)).first()
    if row is None or row.status != OutboxStatus.DEAD:
        return False
    conn.execute(
        update(ReferralOutbox)
        .where(col(ReferralOutbox.id) == outbox_id)
        .values(status=OutboxStatus.PENDING, attempts=0, next_attempt_at=now)
    )
    _event(
        conn,
        row.ticket_id,
        "reply_replayed",
        {"reply": row.kind, "outbox_id": outbox_id, "after_attempts": row.attempts},
        now,
    )
    return True
