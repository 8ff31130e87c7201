"""The web channel's shared state: settings, the page renderer, the CSRF guard, the rate
limiters, and the page itself with its three forms (``GET /``, and every form shown again).

Submissions (``channels/web/submit.py``) and progress inquiries (``channels/web/inquiry.py``)
work on one :class:`WebChannel`; ``channels/web/routes.py`` maps HTTP onto them.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog
from fastapi import Request
from fastapi.responses import Response

from channels.runtime import Runtime
from channels.web import forms
from channels.web.abuse import CSRF_COOKIE, CsrfGuard, SlidingWindowLimiter, origin_of
from channels.web.i18n import Lang, Translator
from channels.web.pages import Pages
from ingest.api import ApiError, error_response
from router.calendar import WorkCalendar

log = structlog.get_logger(__name__)


def wants_html(request: Request) -> bool:
    accept_header = request.headers.get("accept", "")
    html = accept_header.find("text/html")
    if html < 0:
        return False
    json_at = accept_header.find("application/json")
    return json_at < 0 or html < json_at


def client_ip(request: Request) -> str:
    # uvicorn has already applied X-Forwarded-For from trusted proxies (FORWARDED_ALLOW_IPS).
    return request.client.host if request.client else "unknown"


class WebChannel:
    def __init__(self, runtime: Runtime, *, clock: Callable[[], datetime] | None = None) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.web = runtime.settings.web
        self.pages = Pages(runtime.settings)
        self.calendar = WorkCalendar(self.settings.calendar, self.settings.organisation.timezone)
        self.clock = clock or (lambda: datetime.now(UTC))
        secret = self.web.csrf_secret()
        if secret is None:
            # One edge process works with this; several behind a load balancer need the same
            # secret, or a form served by one is refused by another.
            log.warning("web_csrf_secret_generated", env=self.web.csrf_secret_env)
            secret = secrets.token_bytes(32)
        self.csrf = CsrfGuard(secret, self.web.form_max_age_hours * 3600)
        self.submissions = SlidingWindowLimiter(self.web.rate_limits.submissions)
        self.inquiries = SlidingWindowLimiter(self.web.rate_limits.inquiries)
        self.public_origin = origin_of(self.settings.public_base_url)
        self.secure_cookie = self.public_origin.startswith("https://")

    # --- page -----------------------------------------------------------------------------

    def form_state(
        self,
        cookie: str,
        prefix: str,
        *,
        values: dict[str, str] | None = None,
        errors: dict[str, str] | None = None,
        key: str | None = None,
        notice: str | None = None,
    ) -> dict[str, Any]:
        return {
            "prefix": prefix,
            "values": values or {},
            "errors": errors or {},
            "key": key or uuid.uuid4().hex,
            "csrf": self.csrf.token_for(cookie) if prefix != "p-" else None,
            "notice": notice,
        }

    def page(
        self,
        request: Request,
        lang: Lang,
        *,
        status: int = 200,
        which: str | None = None,
        values: dict[str, str] | None = None,
        errors: dict[str, str] | None = None,
        key: str | None = None,
        notice: str | None = None,
    ) -> Response:
        cookie = request.cookies.get(CSRF_COOKIE) or self.csrf.new_cookie()
        t = Translator(lang)
        states = {}
        for name, prefix in (("complaint", "c-"), ("feedback", "f-"), ("inquiry", "p-")):
            if name == which:
                states[name] = self.form_state(
                    cookie, prefix, values=values, errors=errors, key=key, notice=notice
                )
            else:
                states[name] = self.form_state(cookie, prefix)
        response = self.pages.render(
            "index.html",
            lang,
            status=status,
            switch_url=f"/?lang={'en' if lang == 'zh' else 'zh'}",
            complaint_labels=self.labels(t, "complaint"),
            feedback_labels=self.labels(t, "feedback"),
            inquiry_labels=self.labels(t, "inquiry"),
            **states,
        )
        if request.cookies.get(CSRF_COOKIE) != cookie:
            response.set_cookie(
                CSRF_COOKIE,
                cookie,
                httponly=True,
                samesite="strict",
                secure=self.secure_cookie,
                max_age=int(self.web.form_max_age_hours * 3600) * 2,
            )
        return response

    @staticmethod
    def labels(t: Translator, which: str) -> dict[str, str]:
        if which == "complaint":
            return {
                "name": t("field_name"),
                "contact": t("field_contact"),
                "incident_at": t("field_incident_at"),
                "category": t("field_category"),
                "details": t("field_details"),
                "evidence": t("field_evidence"),
                forms.KEY_FIELD: t("field_key"),
            }
        if which == "feedback":
            return {
                "name": t("field_feedback_name"),
                "contact": t("field_feedback_contact"),
                "overall": t("field_overall"),
                "content": t("field_content"),
                "suggestions": t("field_suggestions"),
                "evidence": t("field_evidence"),
            }
        return {"number": t("field_number"), "contact": t("field_progress_contact")}

    # --- refusing -------------------------------------------------------------------------

    def refuse(
        self,
        request: Request,
        lang: Lang | None,
        status: int,
        code: str,
        message: str,
        page_message: str,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """A whole-request refusal: JSON for systems, a short page for browsers."""
        if wants_html(request):
            return self.pages.render(
                "error.html", lang or "zh", status=status, headers=headers, message=page_message
            )
        return error_response(ApiError(status, code, message, headers=headers))

    def own_origins(self, request: Request) -> set[str]:
        host = request.headers.get("host", "")
        return {self.public_origin, f"{request.url.scheme}://{host}".lower()}
