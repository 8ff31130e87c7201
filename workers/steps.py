"""Running a periodic worker's steps so that one failing step neither stops the others nor
floods the log: an outage is logged once (further failures with the same error, of this
step or another, are quiet) and so is the recovery, once every step works again, as the
router worker does for its queue."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from ingest.queue import QueueUnavailable
from store.db import is_outage

R = TypeVar("R")


class Steps:
    def __init__(self, worker: str, log: Any) -> None:
        self._worker = worker
        self._log = log
        self._failing: dict[str, str] = {}

    async def run(
        self,
        steps: Sequence[tuple[str, Callable[[R], Awaitable[None]]]],
        report: R,
        *,
        strict: bool,
    ) -> bool:
        """Every step in order; False when one failed. ``strict`` (tests) raises instead."""
        worked = True
        for name, step in steps:
            try:
                await step(report)
            except Exception as exc:
                if strict:
                    raise
                worked = False
                self.failed(name, exc)
            else:
                self.recovered(name)
        return worked

    def failed(self, step: str, exc: Exception) -> None:
        error = type(exc).__name__
        # One outage makes every step that touches the store fail alike: said once.
        known = error in self._failing.values()
        self._failing[step] = error
        if known:
            return
        if isinstance(exc, QueueUnavailable) or is_outage(exc):
            self._log.error(f"{self._worker}_dependency_unavailable", step=step, error=error)
        else:
            self._log.exception(f"{self._worker}_step_failed", step=step, error=error)

    def recovered(self, step: str) -> None:
        if self._failing.pop(step, None) is not None and not self._failing:
            self._log.info(f"{self._worker}_working_again", step=step)
