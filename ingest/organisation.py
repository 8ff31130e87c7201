"""Who the organisation is: its name, hotline, time zone and numbering, which every layer
reads (the router for deadlines, the channels for answers, the workers for notices)."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from ingest.sections import Section


class OrganisationSettings(Section):
    name: str = "示例市水务集团"
    name_en: str = "Example City Water Group"
    hotline: str = "96116"
    timezone: str = "Asia/Shanghai"
    number_prefix: str = Field(default="TS", pattern=r"^[A-Z]{1,6}$")
    public_url: str = Field(
        default="",
        description="base of links sent to complainants; empty: the HTTP listener's address "
        "(Settings.public_base_url)",
    )

    @field_validator("public_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip()
        if value and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("use an http:// or https:// URL, or leave it empty")
        return value
