"""Sending one of our own mails through the configured outbound server (aiosmtplib).

The one way Shouli sends mail: the ``notify`` worker's acknowledgements and notices and the
referral replies that go back by email all come here. The result says whether trying again
can help: a 5xx answer (a refused recipient, a rejected message) is permanent, anything
else (no connection, a timeout, a 4xx) is worth a retry.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage

import aiosmtplib

from channels.email.settings import OutboundSmtp, OutboundTls
from store.outbox import AttemptOutcome


@dataclass(frozen=True)
class Delivery:
    sent: bool
    permanent: bool = False  # only meaningful when not sent: retrying will not help
    detail: str = ""  # the server's answer or the error, without addresses

    def outcome(self) -> AttemptOutcome:
        """As the outbox engine records it."""
        return AttemptOutcome(self.sent, permanent=self.permanent, detail=self.detail)


async def send_mail(
    message: EmailMessage,
    server: OutboundSmtp,
    *,
    recipients: tuple[str, ...],
    environ: Mapping[str, str] | None = None,
) -> Delivery:
    """Hand ``message`` to the outbound server; never raises for a delivery problem."""
    password = server.password(environ if environ is not None else os.environ)
    try:
        refused, answer = await aiosmtplib.send(
            message,
            sender=server.from_address,
            recipients=list(recipients),
            hostname=server.host,
            port=server.effective_port,
            username=server.user if password else None,
            password=password,
            use_tls=server.tls is OutboundTls.SSL,
            start_tls=True if server.tls is OutboundTls.STARTTLS else False,
            timeout=server.timeout_seconds,
        )
    except aiosmtplib.SMTPRecipientsRefused as exc:
        codes = sorted({r.code for r in exc.recipients})
        return Delivery(False, permanent=all(c >= 500 for c in codes), detail=f"refused {codes}")
    except aiosmtplib.SMTPResponseException as exc:
        return Delivery(False, permanent=exc.code >= 500, detail=f"{exc.code} {exc.message[:200]}")
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        return Delivery(False, detail=f"{type(exc).__name__}: {str(exc)[:200]}")
    if refused:
        codes = sorted({r.code for r in refused.values()})
        return Delivery(False, permanent=all(c >= 500 for c in codes), detail=f"refused {codes}")
    return Delivery(True, detail=answer[:200])
