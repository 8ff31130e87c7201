"""Capped exponential backoff with jitter: the one retry schedule of queue messages and of
every outbox, so a dependency that comes back is not hit by every waiting item at once."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Protocol


class RetryPolicy(Protocol):
    @property
    def retry_base_seconds(self) -> float: ...

    @property
    def retry_max_seconds(self) -> float: ...


def backoff_seconds(
    attempt: int, policy: RetryPolicy, rand: Callable[[], float] = random.random
) -> float:
    """Before attempt ``attempt + 1``: base·2^(attempt-1), at most the maximum, then jittered
    into its upper half."""
    ceiling = min(policy.retry_max_seconds, policy.retry_base_seconds * 2.0 ** (attempt - 1))
    return ceiling * (0.5 + rand() / 2)
