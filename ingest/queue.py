"""The queue hand-off: one interface, two backends with the same guarantees.

``EmbeddedQueue`` (``store/embedded_queue.py``) keeps messages in a table of the store, so a
small office needs no broker; ``RabbitQueue`` (``ingest/rabbit_queue.py``) uses RabbitMQ through
aio-pika. Both give at-least-once delivery:

* ``publish`` returns only when every message is durable (the embedded queue's commit, or a
  publisher confirm of a persistent message on a durable queue). If it raises
  :class:`QueueUnavailable`, nothing may be acknowledged to the sender.
* ``receive`` hands out a batch of :class:`Delivery`; each stays invisible to other consumers
  until it is acked, retried or released, or until its consumer dies (visibility timeout /
  channel close), after which it is delivered again.
* The attempt count travels in the message (``attempt``), never in worker memory.
* A message delivered more than ``delivery_limit`` times without being settled (a consumer
  that keeps crashing on it) is set aside by the backend itself and reported by
  :meth:`QueueBackend.take_expired` so it can become a dead letter with that reason.

Turning a handler's outcome into ack / retry / dead letter happens in exactly one place:
``workers/settle.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import Field, field_validator

from ingest.errors import ShouliError, Unavailable
from ingest.sections import Section


class BrokerSettings(Section):
    """No ``url``: the embedded queue in the store. An ``amqp://`` URL: RabbitMQ."""

    url: str | None = None
    prefix: str = Field(default="shouli", pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    prefetch: int = Field(default=256, ge=1, le=10_000)
    delivery_limit: int = Field(
        default=5, ge=2, description="deliveries without a settlement before a dead letter"
    )
    confirm_timeout: float = Field(default=15.0, gt=0)
    reconnect_max_delay: float = Field(default=30.0, gt=0)
    visibility_timeout: float = Field(
        default=120.0, gt=0, description="embedded queue: seconds before an unacked message returns"
    )

    @field_validator("url")
    @classmethod
    def _amqp_only(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not value.startswith(("amqp://", "amqps://")):
            raise ValueError(
                "use amqp://user:password@host:5672/vhost, or leave it out for the embedded queue"
            )
        return value


class QueueError(ShouliError):
    """Base of the queue's errors."""


class QueueUnavailable(QueueError, Unavailable):
    """The queue could not durably accept or hand out messages; try again later."""


@dataclass(frozen=True)
class Outgoing:
    """A message to publish. ``message_id`` should be the item's idempotency key."""

    body: bytes
    message_id: str
    attempt: int = 1


@dataclass
class Delivery:
    """A received message. ``handle`` is the backend's own token (delivery tag, row lease)."""

    queue: str
    body: bytes
    message_id: str
    attempt: int
    handle: Any = field(repr=False, default=None)


@dataclass(frozen=True)
class ExpiredMessage:
    """A message the backend gave up on after too many unsettled deliveries."""

    queue: str
    body: bytes
    message_id: str
    attempt: int
    reason: str


class QueueBackend(Protocol):
    """The contract both backends pass (``tests/test_queue_contract.py``)."""

    async def connect(self) -> None:
        """Open connections and declare the queues this process uses. Idempotent."""

    async def close(self) -> None:
        """Stop receiving and close. Unsettled deliveries return to the queue."""

    async def declare(self, queue: str) -> None:
        """Make sure ``queue`` (and its retry and dead-letter companions) exists."""

    async def publish(self, queue: str, messages: Sequence[Outgoing]) -> None:
        """Durably enqueue all ``messages``; raise :class:`QueueUnavailable` if not all were."""

    async def receive(self, queue: str, max_messages: int, timeout: float) -> list[Delivery]:
        """Up to ``max_messages`` deliveries, waiting at most ``timeout`` s for the first one."""

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Remove settled messages for good. Call only after their effects are committed."""

    async def retry(self, delivery: Delivery, delay: float) -> None:
        """Deliver again after ``delay`` s with ``attempt + 1``; the original is removed."""

    async def release(self, deliveries: Sequence[Delivery]) -> None:
        """Give back unprocessed deliveries (shutdown) without counting an attempt."""

    async def take_expired(self, queue: str) -> list[ExpiredMessage]:
        """Remove and return the messages the backend set aside past its delivery limit."""

    async def depth(self, queue: str) -> int:
        """Messages waiting (not counting retries scheduled later), for metrics and tests."""

    async def ready(self) -> bool:
        """True when the backend can accept a publish now (for ``/readyz``)."""
