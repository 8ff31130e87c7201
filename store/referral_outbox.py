"""The referral outbox (replies and sign-for confirmations going back to a source) as the
outbox engine sees it: its table, its dead letters (``referral-outbox:<id>`` with
``outbox_id``) and the events each attempt writes on the ticket (``reply_attempt`` every
time, then ``reply_delivered`` or ``reply_dead_lettered``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row

from store.outbox import AttemptOutcome, Due, Entry, Outbox, Recorded, table_of
from store.outbox_states import RowStatus
from store.referral_models import ReferralOutbox
from store.tickets import event_time


@dataclass(frozen=True)
class DueReply(Due):
    source: str
    payload: dict[str, Any]


def _load(common: Mapping[str, Any], row: Row[Any]) -> DueReply:
    return DueReply(**common, source=row.source, payload=dict(row.payload))


def _attempted(due: DueReply, outcome: AttemptOutcome, done: Recorded) -> list[Entry]:
    attempt: dict[str, Any] = {
        "reply": due.kind,
        "outbox_id": due.id,
        "attempt": due.attempt,
        "delivered": outcome.sent,
        "status": outcome.code,
    }
    if done.status == RowStatus.SENT:
        delivered = {"reply": due.kind, "attempts": due.attempt}
        return [("reply_attempt", attempt), ("reply_delivered", delivered)]
    attempt["error"] = done.error
    if done.status == RowStatus.DEAD:
        dead = {
            "reply": due.kind,
            "attempts": due.attempt,
            "reason": done.reason,
            "dead_letter_id": done.dead_letter_id,
        }
        return [("reply_attempt", attempt), ("reply_dead_lettered", dead)]
    return [("reply_attempt", attempt | {"next_attempt_at": event_time(done.next_attempt_at)})]


def _replayed(kind: str, row_id: int, attempts: int) -> list[Entry]:
    return [("reply_replayed", {"reply": kind, "outbox_id": row_id, "after_attempts": attempts})]


REPLIES: Outbox[DueReply] = Outbox(
    table=table_of(ReferralOutbox),
    actor="referrals",
    dead_letter_prefix="referral-outbox",
    id_key="outbox_id",
    refused="refused by the receiver",
    exhausted="{attempts} attempts failed",
    reason="{why}; last error: {error}",
    load=_load,
    attempted=_attempted,
    replayed=_replayed,
)
