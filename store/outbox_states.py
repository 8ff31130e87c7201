"""The states every outbox row moves through: one vocabulary for the engine
(``store.outbox``) and the tables (which may add their own, e.g. skipped, cancelled).
Kept apart from the engine so that the table modules import nothing but this."""

from __future__ import annotations


class RowStatus:
    PENDING = "pending"
    SENT = "sent"
    DEAD = "dead"  # given up on; a dead letter says why, and a replay brings it back
