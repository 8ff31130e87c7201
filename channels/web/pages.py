"""Rendering the web channel's pages: Jinja2 with autoescape on, so every echoed value (the
person's own input, config text, file names) is escaped; and the headers every page gets.

Everything a page shows about the organisation (name, hotline, service hours, time limits,
categories) comes from the settings, never from a template.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.responses import HTMLResponse

from channels.settings import ChannelSettings
from channels.web.i18n import RATINGS, Lang, Translator, format_clock, format_limit
from channels.web.settings import format_size
from router.settings import Severity

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

# No script at all; styles and forms only from this site; never framed. The referrer goes to
# this site only, so a progress link in the address bar never leaks to another one; not
# "no-referrer", under which browsers send "Origin: null" with the form's POST (Fetch
# standard, "serializing a request origin") and the CSRF origin check could not pass.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

_EVIDENCE_ACCEPT = {
    "jpg": ".jpg,.jpeg,image/jpeg",
    "png": ".png,image/png",
    "mp4": ".mp4,video/mp4",
    "pdf": ".pdf,application/pdf",
    "doc": ".doc,application/msword",
    "docx": ".docx",
}


@dataclass(frozen=True)
class Static:
    body: bytes
    etag: str


class Pages:
    def __init__(self, settings: ChannelSettings) -> None:
        self.settings = settings
        self.zone = ZoneInfo(settings.organisation.timezone)
        self.env = Environment(
            loader=FileSystemLoader(TEMPLATES),
            autoescape=select_autoescape(default=True, default_for_string=True),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        body = (STATIC / "web.css").read_bytes()
        self.css = Static(body, hashlib.sha256(body).hexdigest()[:16])

    def site(self, t: Translator) -> dict[str, Any]:
        settings = self.settings
        org = settings.organisation
        limits = settings.time_limits
        lang = t.lang
        web = settings.web
        hours = t(
            "hours",
            start=format_clock(settings.calendar.service_start),
            end=format_clock(settings.calendar.service_end),
        )
        feedback_limit = limits.by_channel.get("feedback", limits.handle[Severity.GENERAL])
        return {
            "org": org.name if lang == "zh" else org.name_en,
            "hotline": org.hotline,
            "hours": hours,
            "css_url": f"/static/web.css?v={self.css.etag}",
            "limits": {
                "accept": format_limit(limits.accept, lang),
                "general": format_limit(limits.handle[Severity.GENERAL], lang),
                "important": format_limit(limits.handle[Severity.IMPORTANT], lang),
                "major": format_limit(limits.handle[Severity.MAJOR], lang),
                "feedback_after_handling": format_limit(limits.feedback_after_handling, lang),
                "feedback_channel": format_limit(feedback_limit, lang),
            },
            "categories": [
                {"key": c.key, "label": c.name if lang == "zh" else c.name_en}
                for c in settings.categories
            ],
            "aspects": [
                {"key": a.key, "label": a.name if lang == "zh" else a.name_en}
                for a in web.feedback_aspects
            ],
            "ratings": [(r, t(f"rating_{r}")) for r in RATINGS],
            "details_min": web.details_min_chars,
            "details_max": web.details_max_chars,
            "evidence_hint": self.evidence_hint(t),
            "accept": ",".join(_EVIDENCE_ACCEPT[e.kind] for e in web.evidence),
            "number_example": f"{org.number_prefix}{datetime.now(self.zone):%Y%m}-000123",
            "now_local": datetime.now(UTC).astimezone(self.zone).strftime("%Y-%m-%dT%H:%M"),
        }

    def evidence_hint(self, t: Translator) -> str:
        web = self.settings.web
        by_size: dict[int, list[str]] = {}
        for evidence in web.evidence:
            by_size.setdefault(evidence.max_size, []).append(evidence.kind)
        groups = [
            t(
                "evidence_kind",
                kinds="、".join(kinds) if t.lang == "zh" else ", ".join(kinds),
                size=format_size(size),
            )
            for size, kinds in by_size.items()
        ]
        joiner = "；" if t.lang == "zh" else "; "
        return t(
            "hint_evidence",
            limits=joiner.join(groups),
            files=web.max_files,
            total=format_size(web.max_total_size),
        )

    def render(
        self,
        template: str,
        lang: Lang,
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
        switch_url: str | None = None,
        **context: Any,
    ) -> HTMLResponse:
        t = Translator(lang)
        other = "en" if lang == "zh" else "zh"
        html = self.env.get_template(template).render(
            _=t,
            lang=lang,
            site=self.site(t),
            switch_url=switch_url or f"/?lang={other}",
            **context,
        )
        return HTMLResponse(
            html, status_code=status, headers={**SECURITY_HEADERS, **(headers or {})}
        )

    def when(self, value: datetime, lang: Lang) -> str:
        from channels.web.i18n import format_when

        return format_when(value, self.zone, lang)
