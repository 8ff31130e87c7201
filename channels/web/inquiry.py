"""Progress inquiries over HTTP: lookups on a read connection, the common minimum duration
of every failed answer, the inquiry rate limit, and the timeline as a page. What is public is
decided in ``channels/web/progress.py``.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from typing import TypeVar

import structlog
from fastapi import Request
from fastapi.responses import Response
from sqlalchemy import Connection

from channels.web import forms
from channels.web.channel import WebChannel, client_ip
from channels.web.i18n import Lang, Translator
from channels.web.progress import (
    PublicProgress,
    department_names,
    find_by_contact,
    find_by_token,
    step_label,
)
from ingest.draft import utc_iso

log = structlog.get_logger(__name__)
T = TypeVar("T")

_NUMBER = re.compile(r"^[A-Z]{1,6}\d{6}-\d{6,}$")
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


class Inquiries:
    def __init__(self, channel: WebChannel) -> None:
        self.channel = channel
        self.runtime = channel.runtime
        self.settings = channel.settings
        self.web = channel.web
        self.pages = channel.pages
        self.calendar = channel.calendar

    async def _read(self, body: Callable[[Connection], T]) -> T:
        async with self.runtime.database.read_engine.connect() as conn:
            return await conn.run_sync(body)

    async def _hold(self, started: float) -> None:
        """Failed inquiries all take at least the floor, so timing tells nothing."""
        remaining = self.web.progress_floor_seconds - (time.monotonic() - started)
        if remaining > 0:
            await asyncio.sleep(remaining)

    def inquiry_limited(self, request: Request) -> int | None:
        retry = self.channel.inquiries.hit(client_ip(request))
        if retry is None:
            return None
        log.info("web_rate_limited", bucket="inquiries")
        return max(1, int(retry + 0.999))

    async def by_contact(self, number: str, contact: str) -> PublicProgress | None:
        started = time.monotonic()
        number = number.strip().upper()
        canonical = forms.canonical_contact(contact, self.settings.hotline.default_region)
        view = None
        if _NUMBER.match(number) and canonical is not None:
            view = await self._read(
                lambda conn: find_by_contact(conn, number, canonical, self.settings, self.calendar)
            )
        if view is None:
            await self._hold(started)
        return view

    async def by_token(self, token: str) -> PublicProgress | None:
        started = time.monotonic()
        view = None
        if _TOKEN.match(token):
            view = await self._read(
                lambda conn: find_by_token(conn, token, self.settings, self.calendar)
            )
        if view is None:
            await self._hold(started)
        return view

    def progress_page(
        self,
        lang: Lang,
        view: PublicProgress | None,
        *,
        not_found: str = "not_found",
        status: int = 200,
        switch_url: str | None = None,
        values: dict[str, str] | None = None,
    ) -> Response:
        t = Translator(lang)
        shown = None
        if view is not None:
            names = department_names(self.settings, view.department)
            shown = {
                "number": view.number,
                "status_label": t(f"status_{view.status}"),
                "department": (names["name"] if lang == "zh" else names["name_en"])
                if names
                else None,
                "due": self.pages.when(view.due_at, lang) if view.due_at else None,
                "result": view.result,
                "steps": [
                    {
                        "label": step_label(
                            step,
                            t,
                            self.settings,
                            self.pages.when(step.at, lang) if step.at else None,
                        ),
                        "when": self.pages.when(step.at, lang)
                        if step.at and step.step != "expected_accept"
                        else None,
                        "iso": utc_iso(step.at) if step.at else "",
                        "css": "expected" if step.step == "expected_accept" else "",
                    }
                    for step in view.steps
                ],
            }
        return self.pages.render(
            "progress.html",
            lang,
            status=status,
            switch_url=switch_url,
            view=shown,
            not_found=not_found,
            inquiry={"prefix": "p-", "values": values or {}, "errors": {}, "notice": None},
            inquiry_labels=self.channel.labels(t, "inquiry"),
        )
