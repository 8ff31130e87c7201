"""The workers' settings sections, and the tree the workers are built from: everything the
channels read, plus how the workers batch, retry and watch deadlines."""

from __future__ import annotations

from pydantic import Field

from channels.settings import ChannelSettings
from ingest.queue import BrokerSettings
from ingest.sections import Section
from router.timelimit import TimeLimit


class WorkerSettings(Section):
    batch_size: int = Field(default=200, ge=1, le=5000)
    max_attempts: int = Field(default=6, ge=1, le=100)
    retry_base_seconds: float = Field(default=1.0, gt=0)
    retry_max_seconds: float = Field(default=300.0, gt=0)
    shutdown_grace_seconds: float = Field(default=20.0, gt=0)


class SlaSettings(Section):
    interval_seconds: float = Field(default=60.0, gt=0)
    escalate_unresolved_after: TimeLimit = TimeLimit.parse("30 days")


class WorkersSettings(ChannelSettings):
    broker: BrokerSettings = BrokerSettings()
    worker: WorkerSettings = WorkerSettings()
    sla: SlaSettings = SlaSettings()
