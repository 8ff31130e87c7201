"""The text of each SMS from its template. Placeholders: ``{organisation}``, ``{number}``,
``{due}``, ``{progress}``, ``{result}``, ``{hotline}``; an unknown one is left as written
rather than failing the message."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo


class _Keep(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def local_deadline(due_at: datetime | None, zone: ZoneInfo) -> str:
    """A deadline as a complainant reads it: 12月3日18:00 in the organisation's zone."""
    if due_at is None:
        return "规定时限内"
    local = due_at.astimezone(zone)
    return f"{local.month}月{local.day}日{local:%H:%M}"


def progress_line(base_url: str, token: str | None) -> str:
    if token:
        return f"进度查询：{base_url}/progress/{token}"
    return f"凭编号和手机号可在{base_url}/progress查询进度。"


def render(template: str, params: dict[str, str]) -> str:
    return template.format_map(_Keep(params)).strip()
