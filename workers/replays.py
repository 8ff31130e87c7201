"""Taking replay requests (``shouli dead-letters replay ID``) off an outbox's queue.

Both outboxes (notifications, referral replies) are replayed the same way: a message names
the row to send again; the row goes back to pending in one transaction; the message is then
settled through the one settle point. An unreadable message is a dead letter with its
reason, never acknowledged away; a store outage leaves it to be retried.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import structlog

from ingest.queue import Delivery, QueueBackend
from store.db import is_outage
from workers.settle import Done, Outcome, Reject, Retry, Settler

log = structlog.get_logger(__name__)


async def take_replays(
    queue: QueueBackend,
    queue_name: str,
    settler: Settler,
    *,
    key: str,
    replay: Callable[[int], Awaitable[bool]],
    limit: int = 50,
) -> int:
    """Replay what the queue holds; how many rows went back to pending."""
    results: list[tuple[Delivery, Outcome]] = []
    replayed = 0
    for delivery in await queue.receive(queue_name, limit, timeout=0.01):
        try:
            row_id = _row_id(delivery.body, key)
        except ValueError as exc:
            results.append((delivery, Reject(f"unreadable replay message: {exc}")))
            continue
        try:
            if await replay(row_id):
                replayed += 1
                log.info("outbox_row_replayed", queue=queue_name, **{key: row_id})
        except Exception as exc:
            if not is_outage(exc):
                raise
            results.append((delivery, Retry(f"store unavailable: {type(exc).__name__}")))
            continue
        results.append((delivery, Done()))
    await settler.settle(results)
    return replayed


def _row_id(body: bytes, key: str) -> int:
    try:
        value = json.loads(body)[key]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise ValueError(f"expected a JSON object with an integer {key!r}") from exc
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{key!r} is not an integer")
    try:
        return int(value)
    except ValueError as exc:
        raise ValueError(f"{key!r} is not an integer") from exc
