"""Sending one reply to a source: a signed JSON POST (same scheme as inbound requests).

The outcome says whether to try again: a 2xx is delivered; 408, 409, 425, 429, any 5xx and
every network error are transient (retried with backoff); any other 4xx means the receiver
will never take this request as it is (wrong secret, wrong URL, a payload it refuses), so
it becomes a dead letter at once, to be replayed after the cause is fixed.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import httpx

from channels.referral.settings import ReferralSource
from channels.referral.signature import signed_headers

_TRANSIENT_4XX = frozenset({408, 409, 425, 429})
DELIVERY_HEADER = "X-Shouli-Delivery"


@dataclass(frozen=True)
class SendOutcome:
    delivered: bool
    status: int | None = None
    error: str | None = None
    permanent: bool = False


def reply_body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


async def send_reply(
    client: httpx.AsyncClient,
    source: ReferralSource | None,
    payload: dict[str, Any],
    *,
    delivery_id: str,
    timeout: float,
) -> SendOutcome:
    if source is None or source.reply is None:
        return SendOutcome(False, error="the source has no reply route configured (any more)")
    webhook = source.reply.webhook
    if webhook is None:
        return SendOutcome(False, error="replies by email need the email channel (not yet)")
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
