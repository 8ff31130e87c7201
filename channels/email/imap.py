"""IMAP polling of one mailbox: fetch what is new, hand it off, then mark it on the server.

Order, per batch of ``batch_size`` messages above the stored high-water mark:

1. (re)select the folder and compare its UIDVALIDITY with the stored one; a new value
   means the UIDs were renumbered, so the mark starts again from 0 (RFC 3501 2.3.1.1);
2. fetch with ``BODY.PEEK[]`` and give each message to :class:`MailIntake` (raw blob, parse,
   durable hand-off), ``concurrency`` at a time;
3. only then flag (or move) the handed-off ones as processed, and the ones that can never be
   taken (a non-transient error) as failed, so they stay visible to a person;
4. advance the high-water mark in the store to the last message of that unbroken prefix.

A crash between 2 and 3 leaves the message unmarked: it is handed off again on the next
poll, and the idempotency key (Message-ID, else a hash of the content) makes that the same
ticket. A message whose hand-off failed transiently (store or queue down) stays unmarked,
and the high-water mark stays below it, so the next poll takes it again. ``\\Seen`` plays
no part (see :mod:`channels.email.imap_session`).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import structlog

from channels.email.imap_session import FetchedMail, ImapSession, ImapUnavailable
from channels.email.intake import MailOutcome
from channels.email.settings import ImapMailbox
from ingest.errors import Unavailable
from ingest.metrics import Metrics
from ingest.queue import QueueUnavailable
from store.db import STORE_ERRORS, StoreUnavailable
from store.imap_models import HighWaterMark, ImapStateRepository

log = structlog.get_logger(__name__)

# Store or queue not there right now: the message stays unmarked and is tried next poll.
TRANSIENT_HANDOFF_ERRORS: tuple[type[BaseException], ...] = (
    QueueUnavailable,
    StoreUnavailable,
    *STORE_ERRORS,
)


class Intake(Protocol):
    """What the poller needs of :class:`channels.email.intake.MailIntake`."""

    async def receive(self, raw: bytes, recipients: Sequence[str]) -> MailOutcome: ...


class HandoffUnavailable(Unavailable):
    """The mailbox answered but the store or queue did not: retry the batch later."""


@dataclass(frozen=True)
class PollResult:
    processed: int = 0
    failed: int = 0
    more: bool = False  # messages beyond this batch are waiting: poll again at once


@dataclass
class MailboxHealth:
    up: bool | None = None  # None until the first poll has finished or failed
    since: datetime | None = None
    reason: str | None = None
    failures: int = 0
    last_success: datetime | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "up": self.up,
            "since": self.since.isoformat() if self.since else None,
            "reason": self.reason,
            "failures": self.failures,
            "last_success": self.last_success.isoformat() if self.last_success else None,
        }


class ImapPoller:
    """Polls one :class:`ImapMailbox` until stopped; one poller per mailbox."""

    def __init__(
        self,
        box: ImapMailbox,
        intake: Intake,
        state: ImapStateRepository,
        metrics: Metrics,
        *,
        environ: Mapping[str, str],
        session_factory: Callable[[ImapMailbox, str], ImapSession] = ImapSession,
    ) -> None:
        self.box = box
        self.health = MailboxHealth()
        self._intake = intake
        self._state = state
        self._metrics = metrics
        self._password = box.password(environ)
        self._session_factory = session_factory
        self._session: ImapSession | None = None

    async def run(self, stopping: asyncio.Event) -> None:
        """Poll every ``poll_interval``; on failure back off (capped), logging once per outage."""
        try:
            while not stopping.is_set():
                delay = self.box.poll_interval
                try:
                    result = await self.poll_once()
                    self._mark_up()
                    if result.more:
                        delay = 0.0
                except (ImapUnavailable, HandoffUnavailable) as exc:
                    reason = exc.reason if isinstance(exc, ImapUnavailable) else "handoff"
                    detail = exc.detail if isinstance(exc, ImapUnavailable) else str(exc)
                    delay = self._mark_down(reason, detail)
                except Exception as exc:  # a bug must not stop this or the other mailboxes
                    delay = self._mark_down("error", f"{type(exc).__name__}: {exc}"[:300], exc)
                try:
                    await asyncio.wait_for(stopping.wait(), delay)
                except TimeoutError:
                    pass
        finally:
            await self.close()

    async def poll_once(self) -> PollResult:
        """One batch; raises ImapUnavailable or HandoffUnavailable when it had to stop."""
        box = self.box
        if self._password is None:
            raise ImapUnavailable("no_password", f"environment variable {box.password_env} unset")
        if self._session is None:
            self._session = self._session_factory(box, self._password)
        session = self._session
        uidvalidity = await asyncio.to_thread(session.select)
        mark = await self._state.load(box.name, box.folder)
        if mark is None or mark.uidvalidity != uidvalidity:
            if mark is not None:
                log.warning(
                    "imap_uidvalidity_changed",
                    mailbox=box.name,
                    folder=box.folder,
                    old=mark.uidvalidity,
                    new=uidvalidity,
                    old_last_uid=mark.last_uid,
                )
            mark = HighWaterMark(uidvalidity, 0)
            await self._state.save(box.name, box.folder, mark)
        pending = await asyncio.to_thread(session.pending, mark.last_uid)
        batch = pending[: box.batch_size]
        mails = await asyncio.to_thread(session.fetch, batch)
        outcomes = await self._receive_all(mails)
        processed: list[int] = []
        failed: list[int] = []
        stopped: BaseException | None = None
        for mail, outcome in zip(mails, outcomes, strict=True):
            if isinstance(outcome, MailOutcome):
                processed.append(mail.uid)
                self._count("processed" if outcome.queued else "not_a_complaint")
            elif isinstance(outcome, TRANSIENT_HANDOFF_ERRORS):
                stopped = stopped or outcome
                self._count("retry")
            else:
                # Not the store or queue being away: this message will never go through.
                log.error(
                    "imap_message_failed",
                    mailbox=box.name,
                    uid=mail.uid,
                    error=f"{type(outcome).__name__}: {outcome}"[:500],
                    marked=box.failed_folder or box.failed_keyword,
                )
                failed.append(mail.uid)
                self._count("failed")
        # Only now, after the hand-off, does the server hear "processed".
        await asyncio.to_thread(session.mark_processed, processed)
        await asyncio.to_thread(session.mark_failed, failed)
        # The mark moves up to the last message of the unbroken run of handled ones: a
        # message left for a retry keeps it below itself, so the next poll sees it again.
        handled = set(processed) | set(failed)
        last = mark.last_uid
        for mail in mails:
            if mail.uid not in handled:
                break
            last = mail.uid
        if last != mark.last_uid:
            await self._state.save(box.name, box.folder, HighWaterMark(uidvalidity, last))
        if stopped is not None:
            raise HandoffUnavailable(f"{type(stopped).__name__}: {stopped}"[:300]) from stopped
        return PollResult(len(processed), len(failed), more=len(pending) > len(batch))

    async def _receive_all(self, mails: Sequence[FetchedMail]) -> list[MailOutcome | Exception]:
        """Hand off a batch, ``concurrency`` at a time (fsyncs overlap); outcome per mail."""
        limit = asyncio.Semaphore(self.box.concurrency)

        async def one(mail: FetchedMail) -> MailOutcome | Exception:
            async with limit:
                try:
                    return await self._intake.receive(mail.raw, [self.box.address])
                except Exception as exc:
                    return exc

        return list(await asyncio.gather(*(one(mail) for mail in mails)))

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await asyncio.to_thread(session.close)

    def _count(self, outcome: str) -> None:
        self._metrics.imap_messages.labels(mailbox=self.box.name, outcome=outcome).inc()

    def _mark_up(self) -> None:
        health = self.health
        now = datetime.now(UTC)
        if health.up is False:
            log.info(
                "imap_mailbox_available_again",
                mailbox=self.box.name,
                after_failures=health.failures,
                down_since=health.since.isoformat() if health.since else None,
            )
        if health.up is not True:
            health.up, health.since, health.reason = True, now, None
        health.failures = 0
        health.last_success = now
        self._metrics.imap_up.labels(mailbox=self.box.name).set(1)

    def _mark_down(self, reason: str, detail: str, exc: BaseException | None = None) -> float:
        """Record a failed poll; log only the first of an outage. Returns the backoff."""
        health = self.health
        if health.up is not False:
            # Once per outage, never once per poll: the cause may flap between polls (dovecot
            # delays a client after a rejected login, which looks like a timeout), so health
            # and the metric show the latest reason and the log the first.
            log.error(
                "imap_mailbox_unavailable",
                mailbox=self.box.name,
                host=self.box.host,
                port=self.box.effective_port,
                user=self.box.user,
                reason=reason,
                error=detail,
                exc_info=exc,
            )
            health.since = datetime.now(UTC)
        health.up, health.reason = False, reason
        health.failures += 1
        self._metrics.imap_up.labels(mailbox=self.box.name).set(0)
        self._metrics.imap_poll_failures.labels(mailbox=self.box.name, reason=reason).inc()
        return backoff(self.box.poll_interval, self.box.backoff_max_seconds, health.failures)


def backoff(base: float, cap: float, failures: int) -> float:
    """``base * 2**(failures-1)``, jittered by up to 20 % so mailboxes drift apart, capped."""
    raw = base * 2 ** min(failures - 1, 30)
    return float(min(cap, raw * random.uniform(0.8, 1.2)))
