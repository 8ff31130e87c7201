"""POSTing one work order: JSON ``{id, number, department, dispatched_at, category,
severity, status, due_at, subject, body, complainant}`` (no ``complainant`` for one who
asked for confidentiality), signed as ``ingest/signing.py`` says. 2xx: sent; 429, 5xx or
no answer: retried; another 4xx: a dead letter with the answer."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx

from ingest.signing import signed_headers
from router.settings import DepartmentWebhook
from store.outbox import AttemptOutcome


async def post_work_order(
    client: httpx.AsyncClient,
    webhook: DepartmentWebhook,
    order: dict[str, Any],
    clock: Callable[[], datetime],
) -> AttemptOutcome:
    secret = webhook.key()
    if not secret:
        return AttemptOutcome(False, detail="webhook secret not set")
    body = json.dumps(order, ensure_ascii=False, separators=(",", ":")).encode()
    try:
        response = await client.post(
            webhook.url,
            content=body,
            headers=signed_headers(secret, body, clock()),
            timeout=webhook.timeout_seconds,
        )
    except httpx.HTTPError as exc:
        return AttemptOutcome(False, detail=f"work-order system unreachable: {type(exc).__name__}")
    code = response.status_code
    if code == 429 or code >= 500:
        return AttemptOutcome(False, detail=f"HTTP {code}", code=code)
    if code >= 400:
        return AttemptOutcome(False, permanent=True, detail=f"HTTP {code}", code=code)
    return AttemptOutcome(True, detail=f"HTTP {code}", code=code)
