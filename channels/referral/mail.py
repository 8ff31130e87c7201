"""Mail-borne referrals: a mail to a referral mailbox (``email.mailboxes`` with
``referral: true``) from a source's allowlisted sender is read as that source's work order.

Called by ``channels.email.intake.MailIntake`` after it stored and parsed the mail. Either
every order in the mail went to :meth:`ReferralIntake.receive` (the same path as the
webhook: one order one ticket, updates 催办/延期/撤单/退单/督办 applied), or the mail is a
normal complaint of that mailbox with notes saying why. Nothing is dropped:

* From is on no source's ``mail.senders``: a complaint, flagged (anyone may write to that
  address, and the liaison desk should see it);
* the source ``require_dkim`` and the mail has no passing DKIM signature of its From domain:
  a complaint, flagged with the result;
* the order cannot be read (no order file, a payload or mapping error, an update of an order
  we never received): a complaint, flagged with the field names, so staff can act on it.

How it reached us (mailbox desk, From domain, DKIM result and signing domain, the raw mail's
hash) is a note on the order's ticket (an ``intake_note`` event), or for an update part of
its event's detail: see ``ReferralIntake.receive(notes=...)``. Notes and logs name domains,
never addresses; the full From stays in the raw mail in the blob store.

A store or queue error of ``ReferralIntake`` propagates: the SMTP listener answers 451 and
the sender retries; IMAP leaves the mail unprocessed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import structlog

from channels.email.parse import ParsedMail
from channels.email.settings import Mailbox
from channels.referral.dkim_check import DkimResult, DnsFunc, key_lookup, verify_dkim
from channels.referral.mail_orders import MailOrderError, OrderDocument, orders_in_mail
from channels.referral.mapping import MappingError
from channels.referral.orders import Received, ReferralIntake, UnknownOrder
from channels.referral.payload import PayloadError
from channels.referral.settings import ReferralSource
from channels.runtime import Runtime

log = structlog.get_logger(__name__)
_NOTE_CHARS = 500


@dataclass(frozen=True)
class MailReferralOutcome:
    taken: bool  # every order in it was received: the mail is not also a complaint
    notes: tuple[str, ...] = ()  # when not taken: notes for the complaint's draft
    received: tuple[Received, ...] = ()


def domain_of(address: str | None) -> str | None:
    if not address or "@" not in address:
        return None
    return address.strip().lower().rpartition("@")[2] or None


class MailReferrals:
    def __init__(
        self,
        runtime: Runtime,
        *,
        intake: ReferralIntake | None = None,
        dnsfunc: DnsFunc | None = None,
    ) -> None:
        self._settings = runtime.settings.referrals
        self._intake = intake or ReferralIntake(runtime)
        self._dnsfunc = dnsfunc or key_lookup(self._settings.dkim_keys)

    def source_for(self, address: str | None) -> ReferralSource | None:
        return next(
            (s for s in self._settings.sources if s.mail is not None and s.mail.allows(address)),
            None,
        )

    async def receive(
        self, raw: bytes, parsed: ParsedMail, mailbox: Mailbox, raw_sha256: str
    ) -> MailReferralOutcome:
        sender_domain = domain_of(parsed.from_address)
        source = self.source_for(parsed.from_address)
        if source is None or source.mail is None:
            log.info("referral_mail_sender_not_allowed", mailbox=mailbox.desk, domain=sender_domain)
            return _complaint(
                f"referral_mailbox: sent to referral mailbox {mailbox.desk} by a sender not on "
                f"any source's allowlist (sender domain {sender_domain or 'unknown'})"
            )
        # dkimpy looks keys up in DNS: blocking, so off the event loop.
        dkim = await asyncio.to_thread(verify_dkim, raw, sender_domain, self._dnsfunc)
        via = (
            f"referral_mail: by mail to {mailbox.desk} from sender domain {sender_domain}; "
            f"DKIM {dkim.describe()}; raw mail sha256 {raw_sha256}"
        )
        log.info(
            "referral_mail_checked",
            source=source.key,
            mailbox=mailbox.desk,
            domain=sender_domain,
            dkim=dkim.result,
            dkim_domain=dkim.domain,
            dkim_aligned=dkim.aligned,
        )
        if source.mail.require_dkim and not dkim.passed:
            return _complaint(via, f"DKIM required by source {source.key}: {_why(dkim)}")
        try:
            documents = orders_in_mail(
                parsed, source.mail.format, self._settings.mapping_of(source)
            )
        except MailOrderError as exc:
            log.warning("referral_mail_no_order", source=source.key, problem=str(exc))
            return _complaint(via, f"referral order from source {source.key} not read: {exc}")
        return await self._receive_all(source, documents, via)

    async def _receive_all(
        self, source: ReferralSource, documents: list[OrderDocument], via: str
    ) -> MailReferralOutcome:
        received: list[Received] = []
        problems: list[str] = []
        for document in documents:
            try:
                received.append(
                    await self._intake.receive(source, document.raw, fmt=document.fmt, notes=(via,))
                )
            except MappingError as exc:
                # Field names only: the problem texts may quote the sender's values.
                problems.append(f"{document.origin}: fields {', '.join(exc.fields)}")
            except PayloadError as exc:
                problems.append(f"{document.origin}: {exc}")
            except UnknownOrder:
                problems.append(f"{document.origin}: an update of an order never received")
        log.info(
            "referral_mail_received",
            source=source.key,
            orders=len(documents),
            numbers=[r.number for r in received],
            new=sum(r.new for r in received),
            problems=len(problems),
        )
        if not problems:
            return MailReferralOutcome(taken=True, received=tuple(received))
        taken = f"; {len(received)} other order(s) in it were received" if received else ""
        return MailReferralOutcome(
            taken=False,
            notes=_clip(
                via,
                f"referral order(s) from source {source.key} not read{taken}: "
                + "; ".join(problems),
            ),
            received=tuple(received),
        )


def _why(dkim: DkimResult) -> str:
    if dkim.result == "pass" and not dkim.aligned:
        return f"pass, but signed by {dkim.domain}, not the sender's domain"
    return dkim.describe()


def _complaint(*notes: str) -> MailReferralOutcome:
    return MailReferralOutcome(taken=False, notes=_clip(*notes))


def _clip(*notes: str) -> tuple[str, ...]:
    return tuple(n if len(n) <= _NOTE_CHARS else n[: _NOTE_CHARS - 1] + "…" for n in notes)
