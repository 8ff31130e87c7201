"""Queue names come from here and nowhere else."""

from __future__ import annotations

from dataclasses import dataclass


def dead_queue(queue: str) -> str:
    """Where a queue's given-up messages wait to be collected as dead letters."""
    return f"{queue}.dead"


@dataclass(frozen=True)
class QueueNames:
    prefix: str

    @property
    def drafts(self) -> str:
        """Ticket drafts from every channel, consumed by the router."""
        return f"{self.prefix}.drafts"

    @property
    def notifications(self) -> str:
        """Dead notifications put back by ``shouli dead-letters replay`` (the notify worker)."""
        return f"{self.prefix}.notifications"

    @property
    def referral_replies(self) -> str:
        """Dead referral replies put back by ``shouli dead-letters replay``."""
        return f"{self.prefix}.referral-replies"

    def all(self) -> tuple[str, ...]:
        return (self.drafts, self.notifications, self.referral_replies)
