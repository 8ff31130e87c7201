"""Time limits as staff write them in config: "5 working days", "24 hours", "2 working hours"."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema


class TimeUnit(StrEnum):
    WORKING_DAYS = "working days"
    WORKING_HOURS = "working hours"
    HOURS = "hours"
    MINUTES = "minutes"
    DAYS = "days"


_UNIT_WORDS: dict[str, TimeUnit] = {
    "working day": TimeUnit.WORKING_DAYS,
    "working days": TimeUnit.WORKING_DAYS,
    "工作日": TimeUnit.WORKING_DAYS,
    "个工作日": TimeUnit.WORKING_DAYS,
    "working hour": TimeUnit.WORKING_HOURS,
    "working hours": TimeUnit.WORKING_HOURS,
    "工作小时": TimeUnit.WORKING_HOURS,
    "个工作小时": TimeUnit.WORKING_HOURS,
    "hour": TimeUnit.HOURS,
    "hours": TimeUnit.HOURS,
    "h": TimeUnit.HOURS,
    "小时": TimeUnit.HOURS,
    "个小时": TimeUnit.HOURS,
    "minute": TimeUnit.MINUTES,
    "minutes": TimeUnit.MINUTES,
    "min": TimeUnit.MINUTES,
    "分钟": TimeUnit.MINUTES,
    "day": TimeUnit.DAYS,
    "days": TimeUnit.DAYS,
    "天": TimeUnit.DAYS,
    "日": TimeUnit.DAYS,
}

_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([^\d\s].*?)\s*$")


@dataclass(frozen=True)
class TimeLimit:
    amount: float
    unit: TimeUnit

    @classmethod
    def parse(cls, text: str) -> TimeLimit:
        match = _PATTERN.match(text)
        if not match:
            raise ValueError(f"{text!r} is not a time limit like '5 working days' or '24 hours'")
        unit = _UNIT_WORDS.get(match.group(2).lower())
        if unit is None:
            known = ", ".join(sorted({u.value for u in TimeUnit}))
            raise ValueError(f"unknown unit {match.group(2)!r} in {text!r} (use one of: {known})")
        amount = float(match.group(1))
        if amount <= 0:
            raise ValueError(f"{text!r} must be longer than zero")
        return cls(amount, unit)

    def __str__(self) -> str:
        amount = int(self.amount) if self.amount.is_integer() else self.amount
        unit = self.unit.value
        return f"{amount} {unit[:-1] if amount == 1 else unit}"  # "1 working day", as parsed

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: type[Any], handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        def validate(value: Any) -> TimeLimit:
            if isinstance(value, TimeLimit):
                return value
            if isinstance(value, str):
                return cls.parse(value)
            raise ValueError("must be text like '5 working days' or '24 hours'")

        return core_schema.no_info_plain_validator_function(
            validate, serialization=core_schema.to_string_ser_schema()
        )


def as_elapsed(limit: TimeLimit) -> timedelta:
    """A limit in elapsed time (a window, not a deadline); working time has no fixed length."""
    units = {TimeUnit.DAYS: "days", TimeUnit.HOURS: "hours", TimeUnit.MINUTES: "minutes"}
    if limit.unit not in units:
        raise ValueError("give the window in days, hours or minutes, not working time")
    return timedelta(**{units[limit.unit]: limit.amount})
