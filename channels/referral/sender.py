"""Sending one reply to a source by its route: a signed JSON POST (same scheme as inbound
requests), or a mail through ``email.outbound`` (``reply_mail``).

The outcome says whether to try again. Webhook: a 2xx is delivered; 408, 409, 425, 429, any
5xx and every network error are transient (retried with backoff); any other 4xx means the
receiver will never take this request as it is (wrong secret, wrong URL, a payload it
refuses), so it becomes a dead letter at once, to be replayed after the cause is fixed.
Mail: a 5xx answer is permanent (a dead letter at once), a 4xx or no connection is retried;
``status`` is then the SMTP reply code.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import httpx

from channels.email.outbound import send_mail
from channels.email.settings import OutboundSmtp
from channels.referral.reply_mail import reply_message, smtp_code
from channels.referral.settings import ReferralMapping, ReferralSource
from channels.referral.signature import signed_headers
from store.outbox import AttemptOutcome

_TRANSIENT_4XX = frozenset({408, 409, 425, 429})
DELIVERY_HEADER = "X-Shouli-Delivery"


@dataclass(frozen=True)
class SendOutcome:
    delivered: bool
    status: int | None = None
    error: str | None = None
    permanent: bool = False

    def outcome(self) -> AttemptOutcome:
        """As the outbox engine records it: ``status`` is the code on the attempt's event."""
        return AttemptOutcome(
            self.delivered, permanent=self.permanent, detail=self.error or "", code=self.status
        )


def reply_body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


async def send_reply(
    client: httpx.AsyncClient,
    source: ReferralSource | None,
    payload: dict[str, Any],
    *,
    delivery_id: str,
    timeout: float,
    mapping: ReferralMapping | None = None,
    outbound: OutboundSmtp | None = None,
) -> SendOutcome:
    if source is None or source.reply is None:
        return SendOutcome(False, error="the source has no reply route configured (any more)")
    if source.reply.email is not None:
        return await _send_mail(source, source.reply.email, payload, delivery_id, mapping, outbound)
    webhook = source.reply.webhook
    if webhook is None:  # pragma: no cover - ReplyRoute holds exactly one route
        return SendOutcome(False, error="the source has no reply route configured")
    secret = webhook.current_secret()
    if not secret:
        where = webhook.secret_env or "reply.webhook.secret"
        return SendOutcome(False, error=f"the reply secret is not set ({where})")
    body = reply_body(payload)
    headers = signed_headers(secret, int(time.time()), body) | {
        "Content-Type": "application/json; charset=utf-8",
        DELIVERY_HEADER: delivery_id,
    }
    try:
        response = await client.post(webhook.url, content=body, headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        return SendOutcome(False, error=f"{type(exc).__name__}: {exc}"[:500])
    if 200 <= response.status_code < 300:
        return SendOutcome(True, status=response.status_code)
    permanent = 400 <= response.status_code < 500 and response.status_code not in _TRANSIENT_4XX
    return SendOutcome(
        False,
        status=response.status_code,
        error=f"HTTP {response.status_code}: {response.text[:200]}",
        permanent=permanent,
    )


async def _send_mail(
    source: ReferralSource,
    to: str,
    payload: dict[str, Any],
    delivery_id: str,
    mapping: ReferralMapping | None,
    outbound: OutboundSmtp | None,
) -> SendOutcome:
    if outbound is None:
        # Refused at start-up; reachable only if the config changed under a running worker.
        return SendOutcome(False, error="replies by email need email.outbound, which is not set")
    message = reply_message(
        source,
        payload,
        reply_body(payload),
        mapping=mapping,
        outbound=outbound,
        to=to,
        delivery_id=delivery_id,
    )
    delivery = await send_mail(message, outbound, recipients=(to,))
    status = smtp_code(delivery)
    if delivery.sent:
        return SendOutcome(True, status=status)
    return SendOutcome(
        False, status=status, error=f"SMTP {delivery.detail}"[:500], permanent=delivery.permanent
    )
