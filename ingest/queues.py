"""Queue names come from here and nowhere else."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QueueNames:
    prefix: str

    @property
    def drafts(self) -> str:
        """Ticket drafts from every channel, consumed by the router."""
        return f"{self.prefix}.drafts"

    def all(self) -> tuple[str, ...]:
        return (self.drafts,)
