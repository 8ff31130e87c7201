"""One work order, one ticket: receiving an order or an update, whichever way it came.

:meth:`ReferralIntake.receive` is the one entry point of the webhook, the drop folder and
the referral mailbox (``channels.referral.mail``). It reads the payload through the source's
mapping, keeps the raw original in the blob store, and then:

* a new order becomes a draft handed to ``channels.intake.accept``: idempotent on
  ``referral:<source>:<reference>``, so the same order again answers the same number
  (``new=False``) and changes nothing;
* an update (催办, 延期, 撤单, 退单, 督办) of an order whose ticket exists is applied to it
  in one transaction together with its ``referral_updates`` record (so a re-sent update is
  applied once);
* an update of an order that was accepted but whose ticket the router has not made yet
  (still queued) is *held*: recorded with ``applied_at`` empty and applied by the referrals
  worker as soon as the ticket exists. We answer 200 with ``pending: true`` rather than 409:
  the authority's update is then durably ours, and its delivery does not depend on the
  sender's retry policy or on how long the router is behind;
* an update of an order we never received is refused (:class:`UnknownOrder`, HTTP 404).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import structlog
from pydantic import ValidationError
from sqlalchemy import Connection, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from channels.intake import EdgeDecision, decide_then_hand_off
from channels.referral.draft import order_draft, referral_source_key
from channels.referral.mapping import MappedOrder, MappingError, map_order
from channels.referral.payload import Format, parse_payload
from channels.referral.settings import ReferralSource, UpdateKind
from channels.referral.signature import claim_signature, release_signature
from channels.referral.updates import apply_update
from channels.runtime import Runtime
from ingest.draft import Channel
from ingest.errors import Refused
from router.clocks import clock_book
from store.db import upsert_insert
from store.intake import reserve_number
from store.models import IntakeNumber, Ticket
from store.numbering import period_of
from store.referral_models import ReferralOrderRecord, ReferralUpdateRecord

log = structlog.get_logger(__name__)


class UnknownOrder(Refused):
    """An update for an order this source never sent us."""


@dataclass(frozen=True)
class Received:
    number: str
    new: bool  # a new ticket: 201
    update: UpdateKind | None = None  # the update applied (or held), None for an order
    pending: bool = False  # held until the router has made the ticket
    duplicate: bool = False  # this order or update was received before; nothing changed


class ReferralIntake:
    def __init__(
        self, runtime: Runtime, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self._runtime = runtime
        self._settings = runtime.settings.referrals
        self._timezone = runtime.settings.organisation.timezone
        self._clock = clock
        self._clocks = clock_book(runtime.settings)

    async def receive(
        self,
        source: ReferralSource,
        raw: bytes,
        *,
        fmt: Format | None = None,
        signature: str | None = None,
        notes: Sequence[str] = (),
    ) -> Received:
        """Take one order or update. ``signature`` (the webhook's verified MAC) is claimed in
        the same transaction as the order's effect, so a replay is refused and a request that
        fails on our side leaves no claim behind. ``notes`` (no PII) say how it reached us:
        intake notes of a new order's ticket, or part of an update's event.

        Raises ``PayloadError`` / ``MappingError`` (the sender's fault: 422),
        :class:`UnknownOrder` (404), ``SignatureRejected`` (``replayed``: 401), or a queue /
        store error (ours: 503, retry later)."""
        mapping = self._settings.mapping_of(source)
        payload = parse_payload(
            raw, fmt or mapping.format, max_depth=self._runtime.settings.http.max_json_depth
        )
        order = map_order(payload, mapping, self._timezone)
        if notes:
            order = dataclasses.replace(order, notes=tuple(n[:500] for n in notes))
        raw_sha256 = hashlib.sha256(raw).hexdigest()
        claim = (source.key, signature) if signature else None
        # The raw original is written while the store works; both finish before any hand-off.
        stored = asyncio.ensure_future(self._runtime.blobs.put(raw))
        try:
            if order.is_new:
                return await self._new(source, order, raw_sha256, claim, stored)
            received = await self._update(source, order, raw_sha256, claim)
            await stored
            return received
        finally:
            if not stored.done():
                stored.cancel()
                await asyncio.gather(stored, return_exceptions=True)

    async def _new(
        self,
        source: ReferralSource,
        order: MappedOrder,
        raw_sha256: str,
        claim: tuple[str, str] | None,
        stored: asyncio.Future[str],
    ) -> Received:
        now = self._clock()
        try:
            draft = order_draft(
                source,
                order,
                received_at=now,
                raw_sha256=raw_sha256,
                region=self._settings.default_region,
                timezone=ZoneInfo(self._timezone),
            )
        except ValidationError as exc:  # a value the draft refuses: still the sender's
            raise MappingError(
                {".".join(str(p) for p in e["loc"]) or "(order)": e["msg"] for e in exc.errors()}
            ) from exc
        if order.notes:
            draft = draft.model_copy(update={"notes": (*draft.notes, *order.notes)})
        period = period_of(
            self._runtime.settings.organisation.number_prefix,
            now,
            ZoneInfo(self._runtime.settings.organisation.timezone),
        )
        channel, key = draft.idempotency_key

        def reserve(conn: Connection) -> EdgeDecision[Received]:
            # channels.intake.accept's reservation, in one transaction with the replay guard
            # and the order's record: one commit (one fsync) per order instead of three.
            if claim is not None:
                claim_signature(conn, claim[0], claim[1], now)
            _record_order(conn, source.key, key, order, now)
            number, new, made = reserve_number(
                conn, channel=channel, source_key=key, period=period, now=now
            )
            ready = None if made else draft.model_copy(update={"number": number})
            return EdgeDecision(Received(number, new=new, duplicate=not new), ready)

        # Not handed off: the sender's identical retry must not count as a replay.
        release = (lambda: self._release(*claim)) if claim is not None else None
        decision = await decide_then_hand_off(self._runtime, reserve, durable=stored, undo=release)
        return decision.accepted

    async def _release(self, source: str, signature: str) -> None:
        try:
            await self._runtime.database.write(
                lambda conn: release_signature(conn, source, signature)
            )
        except Exception as exc:  # the store is down too: the sender will have to re-sign
            log.warning("referral_signature_not_released", source=source, error=repr(exc))

    async def _update(
        self,
        source: ReferralSource,
        order: MappedOrder,
        raw_sha256: str,
        claim: tuple[str, str] | None,
    ) -> Received:
        # Without the authority's own update id, the same bytes again are the same update.
        identity = order.update_id or raw_sha256[:40]
        update_key = f"{order.kind.value}:{order.reference}:{identity}"
        key = referral_source_key(source.key, order.reference)
        for attempt in range(2):
            try:
                return await self._apply_or_hold(source, order, key, update_key, raw_sha256, claim)
            except IntegrityError:
                # The same update recorded by a concurrent request: the retry finds it.
                if attempt:
                    raise
        raise AssertionError("unreachable")

    async def _apply_or_hold(
        self,
        source: ReferralSource,
        order: MappedOrder,
        key: str,
        update_key: str,
        raw_sha256: str,
        claim: tuple[str, str] | None,
    ) -> Received:
        now = self._clock()
        async with self._runtime.database.transaction() as session:
            if claim is not None:
                await session.run_sync(
                    lambda sync: claim_signature(sync.connection(), claim[0], claim[1], now)
                )
            seen = (
                await session.execute(
                    select(ReferralUpdateRecord).where(
                        col(ReferralUpdateRecord.source) == source.key,
                        col(ReferralUpdateRecord.update_key) == update_key,
                    )
                )
            ).scalar_one_or_none()
            if seen is not None:
                return Received(
                    seen.number,
                    new=False,
                    update=order.kind,
                    pending=seen.applied_at is None,
                    duplicate=True,
                )
            record = ReferralUpdateRecord(
                source=source.key,
                reference=order.reference,
                update_key=update_key,
                kind=order.kind.value,
                number="",
                detail=update_detail(order),
                raw_sha256=raw_sha256,
                received_at=now,
            )
            ticket = (
                await session.execute(
                    select(Ticket)
                    .where(
                        col(Ticket.channel) == Channel.REFERRAL.value,
                        col(Ticket.source_key) == key,
                    )
                    .with_for_update()
                )
            ).scalar_one_or_none()
            if ticket is not None:
                record.number = ticket.number
                record.applied_at = now
                record.result = await apply_update(
                    session,
                    ticket,
                    source=source.key,
                    order=order,
                    supervision_severity=self._settings.supervision_severity,
                    now=now,
                    clocks=self._clocks,
                )
                session.add(record)
                await session.flush()
                return Received(ticket.number, new=False, update=order.kind)
            reserved = (
                await session.execute(
                    select(col(IntakeNumber.number)).where(
                        col(IntakeNumber.channel) == Channel.REFERRAL.value,
                        col(IntakeNumber.source_key) == key,
                    )
                )
            ).scalar_one_or_none()
            if reserved is None:
                raise UnknownOrder(
                    f"no work order {order.reference!r} from {source.key!r}; "
                    "send the order itself before its updates"
                )
            record.number = reserved
            session.add(record)
            await session.flush()
            return Received(reserved, new=False, update=order.kind, pending=True)


def update_detail(order: MappedOrder) -> dict[str, object]:
    """What a held update needs to be applied later (the mapped order, JSON-ready)."""
    return {
        "kind": order.kind.value,
        "reference": order.reference,
        "update_id": order.update_id,
        "reason": order.reason,
        "department": order.department,
        "deadline": order.deadline.isoformat() if order.deadline else None,
        "notes": list(order.notes),
    }


def order_from_detail(detail: dict[str, object]) -> MappedOrder:
    deadline = detail.get("deadline")
    notes = detail.get("notes")
    return MappedOrder(
        kind=UpdateKind(str(detail["kind"])),
        reference=str(detail["reference"]),
        update_id=_str_or_none(detail.get("update_id")),
        reason=_str_or_none(detail.get("reason")),
        department=_str_or_none(detail.get("department")),
        deadline=datetime.fromisoformat(deadline) if isinstance(deadline, str) else None,
        notes=tuple(str(n) for n in notes) if isinstance(notes, list) else (),
    )


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def _record_order(
    conn: Connection, source: str, key: str, order: MappedOrder, now: datetime
) -> None:
    insert = upsert_insert(conn)
    conn.execute(
        insert(ReferralOrderRecord)
        .values(
            source=source,
            reference=order.reference,
            source_key=key,
            request_type=order.request_type.value if order.request_type else None,
            handling_unit=order.handling_unit,
            dispatched_at=order.dispatched_at,
            sign_for_due=order.sign_for_deadline,
            contact_due=order.contact_deadline,
            complete_due=order.deadline,
            confidential=order.confidential,
            received_at=now,
        )
        .on_conflict_do_nothing()
    )


async def apply_held_updates(
    runtime: Runtime, *, supervision_severity: str, now: datetime, limit: int = 200
) -> int:
    """Apply held updates whose ticket the router has made meanwhile, oldest first (so an
    extension then a withdrawal end as the authority meant); returns how many."""
    async with runtime.database.sessions() as session:
        held = (
            await session.execute(
                select(col(ReferralUpdateRecord.id))
                .join(
                    Ticket,
                    (col(Ticket.channel) == Channel.REFERRAL.value)
                    & (col(Ticket.number) == col(ReferralUpdateRecord.number)),
                )
                .where(col(ReferralUpdateRecord.applied_at).is_(None))
                .order_by(col(ReferralUpdateRecord.id))
                .limit(limit)
            )
        ).scalars()
        ids = list(held)
    applied = 0
    clocks = clock_book(runtime.settings)
    for update_id in ids:
        async with runtime.database.transaction() as session:
            record = (
                await session.execute(
                    select(ReferralUpdateRecord)
                    .where(
                        col(ReferralUpdateRecord.id) == update_id,
                        col(ReferralUpdateRecord.applied_at).is_(None),
                    )
                    .with_for_update(skip_locked=True)
                )
            ).scalar_one_or_none()
            if record is None:
                continue  # applied by another worker
            ticket = (
                await session.execute(
                    select(Ticket).where(col(Ticket.number) == record.number).with_for_update()
                )
            ).scalar_one()
            record.result = await apply_update(
                session,
                ticket,
                source=record.source,
                order=order_from_detail(record.detail),
                supervision_severity=supervision_severity,
                now=now,
                clocks=clocks,
            ) | {"held_since": record.received_at.isoformat()}
            record.applied_at = now
            applied += 1
    return applied
