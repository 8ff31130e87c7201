"""Batch complaints (批量投诉): many different complainants about one fault in a short time.

Run by the router in the transaction that makes the tickets (synchronous Core), after they
are inserted: a ticket whose text names a configured area (``batches.areas``) becomes a
candidate of its (category, area). When ``batches.min_complainants`` different people are
among the candidates of ``batches.window``, they become one batch: every member is linked
(``tickets.batch``, ``links.batch`` in the ticket JSON), raised to at least
``batches.severity``, and the coordinating office is told once (a ``batch`` notice in the
outbox). A later candidate joins the open batch. Rejected and invalid tickets never count.
Two routers cannot open two batches for one matter: the batch key is the first member's
number, unique in ``batches``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, func, insert, select, update
from sqlmodel import col

from ingest.draft import TicketDraft
from router.matching import Matcher
from router.settings import DepartmentRole, RouterSettings, Severity
from store.batch_models import Batch, BatchCandidate
from store.db import upsert_insert
from store.models import Event, Ticket
from store.tickets import NewTicket

ACTOR = "router"
_NOT_COUNTED = frozenset({"rejected", "invalid"})


@dataclass(frozen=True)
class Joined:
    """What one apply did to one batch: its key, the tickets linked now, whether it opened."""

    batch: str
    area: str
    numbers: tuple[str, ...]
    opened: bool
    members: int


def complainant_key(draft: TicketDraft, number: str) -> str:
    """Who complained, as far as the draft tells: an anonymous complaint is a person of its own."""
    person = draft.complainant
    for kind, value in (
        ("phone", person.phone),
        ("email", (person.email or "").lower() or None),
        ("account", person.account),
        ("name", person.name),
    ):
        if value:
            return f"{kind}:{value}"
    return f"ticket:{number}"


class BatchRule:
    def __init__(self, settings: RouterSettings) -> None:
        self._settings = settings.batches
        self._area_of = {k: a.name for a in settings.batches.areas for k in a.keywords}
        self._matcher = Matcher(self._area_of)
        coordinating = [d for d in settings.departments if d.role is DepartmentRole.COORDINATING]
        self.coordinating = coordinating[0].key if coordinating else None

    @property
    def active(self) -> bool:
        return self._settings.enabled and bool(self._area_of)

    def area_of(self, draft: TicketDraft) -> str | None:
        """The first configured area the complaint names, in text order."""
        hits = self._matcher.match(f"{draft.subject}\n{draft.body}").hits
        return self._area_of[hits[0].keyword] if hits else None

    def apply(self, conn: Connection, created: Sequence[NewTicket], now: datetime) -> list[Joined]:
        if not self.active:
            return []
        candidates = [
            (t, area)
            for t in created
            if t.status not in _NOT_COUNTED and t.valid and (area := self.area_of(t.draft))
        ]
        if not candidates:
            return []
        ids = dict(
            conn.execute(
                select(col(Ticket.number), col(Ticket.id)).where(
                    col(Ticket.number).in_([t.number for t, _ in candidates])
                )
            ).all()
        )
        rows = [
            {
                "ticket_id": ids[t.number],
                "number": t.number,
                "category": t.category,
                "area": area,
                "complainant": complainant_key(t.draft, t.number)[:400],
                "at": t.draft.received_at,
                "batch": None,
            }
            for t, area in candidates
        ]
        conn.execute(upsert_insert(conn)(BatchCandidate).on_conflict_do_nothing(), rows)
        matters = dict.fromkeys((t.category, area) for t, area in candidates)
        return [j for m in matters if (j := self._decide(conn, *m, now)) is not None]

    def _decide(self, conn: Connection, category: str, area: str, now: datetime) -> Joined | None:
        since = now - self._settings.window_delta
        matter = (col(BatchCandidate.category) == category, col(BatchCandidate.area) == area)
        waiting = conn.execute(
            select(
                col(BatchCandidate.ticket_id),
                col(BatchCandidate.number),
                col(BatchCandidate.complainant),
            )
            .where(*matter, col(BatchCandidate.at) >= since, col(BatchCandidate.batch).is_(None))
            .order_by(col(BatchCandidate.at), col(BatchCandidate.id))
        ).all()
        if not waiting:
            return None
        open_batch = conn.execute(
            select(col(Batch.key), col(Batch.members))
            .where(
                col(Batch.category) == category,
                col(Batch.area) == area,
                col(Batch.last_member_at) >= since,
            )
            .order_by(col(Batch.id).desc())
            .limit(1)
        ).first()
        opened = open_batch is None
        if open_batch is None:
            if len({row.complainant for row in waiting}) < self._settings.min_complainants:
                return None
            key = f"B{waiting[0].number}"
            # A competing router may open the same batch (the same first member) meanwhile:
            # its row wins, and this one joins it instead of failing the whole transaction.
            fresh = conn.execute(
                upsert_insert(conn)(Batch)
                .values(
                    key=key,
                    category=category,
                    area=area,
                    members=0,
                    opened_at=now,
                    last_member_at=now,
                )
                .on_conflict_do_nothing()
                .returning(col(Batch.id))
            ).first()
            opened = fresh is not None
        else:
            key = open_batch.key
        ticket_ids = [row.ticket_id for row in waiting]
        conn.execute(
            update(BatchCandidate)
            .where(col(BatchCandidate.ticket_id).in_(ticket_ids))
            .values(batch=key)
        )
        # Counted, not added up: a competing router may have linked some of the same members.
        members = int(
            conn.execute(select(func.count()).where(col(BatchCandidate.batch) == key)).scalar_one()
        )
        conn.execute(
            update(Batch).where(col(Batch.key) == key).values(members=members, last_member_at=now)
        )
        self._link(conn, key, area, ticket_ids, members, now)
        numbers = tuple(row.number for row in waiting)
        return Joined(key, area, numbers, opened, members)

    def _link(
        self,
        conn: Connection,
        key: str,
        area: str,
        ticket_ids: list[int],
        members: int,
        now: datetime,
    ) -> None:
        level = self._settings.severity
        found = conn.execute(
            select(col(Ticket.id), col(Ticket.severity)).where(col(Ticket.id).in_(ticket_ids))
        ).all()
        raised = [row.id for row in found if Severity(row.severity).rank < level.rank]
        conn.execute(
            update(Ticket).where(col(Ticket.id).in_(ticket_ids)).values(batch=key, updated_at=now)
        )
        if raised:
            conn.execute(
                update(Ticket).where(col(Ticket.id).in_(raised)).values(severity=level.value)
            )
        conn.execute(
            insert(Event),
            [
                {
                    "ticket_id": row.id,
                    "at": now,
                    "kind": "batched",
                    "actor": ACTOR,
                    "detail": {
                        "batch": key,
                        "area": area,
                        "members": members,
                        "severity": level.value if row.id in raised else row.severity,
                    },
                }
                for row in found
            ],
        )
