"""One export row to one :class:`CallRecord`, through the vendor's column mapping.

Every problem is reported as (row, field, reason) and the reason never repeats the cell's
value when it could be personal data (numbers, names, text): the error report holds no
personal data beyond the row number. Category, outcome and direction labels are vocabulary,
not personal data, and are named so the mapping can be fixed.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from channels.hotline.records import CallRecord, record_problems
from channels.hotline.settings import (
    IMPORT_FIELDS,
    REQUIRED_COLUMNS,
    Direction,
    Outcome,
    VendorMapping,
)
from channels.hotline.sources import FileProblem, SourceRow

BUILTIN_TIME_FORMATS = (
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d %H:%M",
    "%Y.%m.%d %H:%M:%S",
    "%Y%m%d%H%M%S",
    "%Y年%m月%d日 %H:%M:%S",
    "%Y年%m月%d日 %H时%M分%S秒",
    "%Y年%m月%d日%H:%M:%S",
    "%Y年%m月%d日 %H:%M",
)
BUILTIN_OUTCOMES: dict[str, Outcome] = {
    "直接办结": "resolved",
    "已办结": "resolved",
    "办结": "resolved",
    "当场办结": "resolved",
    "现场办结": "resolved",
    "已解决": "resolved",
    "resolved": "resolved",
    "派单": "dispatch",
    "已派单": "dispatch",
    "待派单": "dispatch",
    "转办": "dispatch",
    "转派": "dispatch",
    "dispatch": "dispatch",
}
BUILTIN_DIRECTIONS: dict[str, Direction] = {
    "呼入": "inbound",
    "来电": "inbound",
    "inbound": "inbound",
    "in": "inbound",
    "呼出": "outbound",
    "去电": "outbound",
    "外呼": "outbound",
    "回访": "outbound",
    "outbound": "outbound",
    "out": "outbound",
}
_TRUE = frozenset({"1", "true", "yes", "y", "是", "不满意"})
_FALSE = frozenset({"0", "false", "no", "n", "否", "满意", ""})
_HMS = re.compile(r"^(\d+):([0-5]\d):([0-5]\d)$")
_EPOCH = re.compile(r"^\d{10}(\d{3})?$")


@dataclass(frozen=True)
class RowError:
    row: int
    field: str
    reason: str


@dataclass(frozen=True)
class MappedRow:
    record: CallRecord
    department: str | None  # the agent's team


class RowMapper:
    def __init__(
        self,
        vendor_name: str,
        vendor: VendorMapping,
        *,
        timezone: str,
        categories: frozenset[str],
        agent_departments: dict[str, str],
        headers: Sequence[str] = (),
    ) -> None:
        self._vendor_name = vendor_name
        self._columns = vendor.columns
        self._zone = ZoneInfo(vendor.timezone or timezone)
        self._formats = (*vendor.time_formats, *BUILTIN_TIME_FORMATS)
        self._categories = categories
        self._category_labels = {**{k: k for k in categories}, **vendor.category_values}
        self._outcomes = {**BUILTIN_OUTCOMES, **vendor.outcome_values}
        self._directions = {**BUILTIN_DIRECTIONS, **vendor.direction_values}
        self._agents = agent_departments
        self._default_department = vendor.default_department
        if headers:
            missing = [f for f in REQUIRED_COLUMNS if self._columns[f] not in headers]
            if missing:
                names = ", ".join(f"{self._columns[f]} ({f})" for f in missing)
                raise FileProblem(
                    f"has no column {names}; the vendor mapping {vendor_name!r} needs it "
                    f"(hotline.vendors.{vendor_name}.columns)"
                )

    def map(self, row: SourceRow, now: datetime) -> MappedRow | list[RowError]:
        if row.problem is not None:
            return [RowError(row.number, *row.problem)]
        errors: list[RowError] = []
        data: dict[str, object] = {}
        for field in IMPORT_FIELDS:
            header = self._columns.get(field)
            if header is None:
                continue
            value = row.values.get(header)
            value = value.strip() if value is not None else None
            if not value:
                continue
            try:
                data[field] = self._convert(field, value)
            except ValueError as exc:
                errors.append(RowError(row.number, field, str(exc)))
        for field in ("agent_id", "started_at", "summary"):
            if field not in data and not any(e.field == field for e in errors):
                errors.append(RowError(row.number, field, "missing"))
        if errors:
            return errors
        if "call_id" not in data:
            data["call_id"] = row_identity(row.values, self._columns)
        try:
            record = CallRecord.model_validate(data)
        except ValidationError as exc:
            return [
                RowError(row.number, str(e["loc"][0]) if e["loc"] else "row", e["msg"])
                for e in exc.errors()
            ]
        problems = record_problems(record, categories=self._categories, now=now, strict=False)
        if problems:
            return [RowError(row.number, f, reason) for f, reason in problems.items()]
        assert record.agent_id is not None
        department = self._agents.get(record.agent_id, self._default_department)
        return MappedRow(record, department)

    def _convert(self, field: str, value: str) -> object:
        if field in ("started_at", "ended_at"):
            return self.parse_time(value)
        if field == "duration_seconds":
            return _duration(value)
        if field == "category":
            key = self._category_labels.get(value)
            if key is None:
                raise ValueError(
                    f"unknown category label {value!r}; map it under "
                    f"hotline.vendors.{self._vendor_name}.category_values"
                )
            return key
        if field == "outcome":
            outcome = self._outcomes.get(value) or self._outcomes.get(value.lower())
            if outcome is None:
                raise ValueError(
                    f"unknown outcome {value!r}; map it under "
                    f"hotline.vendors.{self._vendor_name}.outcome_values"
                )
            return outcome
        if field == "direction":
            direction = self._directions.get(value) or self._directions.get(value.lower())
            if direction is None:
                raise ValueError(
                    f"unknown direction {value!r}; map it under "
                    f"hotline.vendors.{self._vendor_name}.direction_values"
                )
            return direction
        if field == "dissatisfied":
            if value.lower() in _TRUE:
                return True
            if value.lower() in _FALSE:
                return False
            raise ValueError("not yes/no (是/否, 1/0, true/false)")
        return value

    def parse_time(self, value: str) -> datetime:
        """A time as exports write it; without an offset it is the vendor's local time."""
        if _EPOCH.match(value):
            seconds = int(value) / (1000 if len(value) == 13 else 1)
            return datetime.fromtimestamp(seconds, UTC)
        parsed: datetime | None = None
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            if len(value) <= 10:
                raise ValueError("a date without a time of day")
        except ValueError:
            parsed = None
            for fmt in self._formats:
                try:
                    parsed = datetime.strptime(value, fmt)
                    break
                except ValueError:
                    continue
        if parsed is None:
            raise ValueError("not a date and time (e.g. 2026-11-23 14:05:09)")
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=self._zone)
        return parsed


def _duration(value: str) -> int:
    hms = _HMS.match(value)
    if hms:
        hours, minutes, seconds = (int(g) for g in hms.groups())
        return int(timedelta(hours=hours, minutes=minutes, seconds=seconds).total_seconds())
    try:
        return int(float(value))
    except ValueError:
        raise ValueError("not a number of seconds or hh:mm:ss") from None


def row_identity(values: dict[str, str | None], columns: dict[str, str]) -> str:
    """A stable id for a row without a call id: the hash of its mapped cells, so the same
    row in the same (or a re-exported) file is the same call."""
    mapped = {f: (values.get(h) or "").strip() for f, h in sorted(columns.items())}
    digest = hashlib.sha256(json.dumps(mapped, ensure_ascii=False).encode()).hexdigest()
    return f"row-{digest[:40]}"
