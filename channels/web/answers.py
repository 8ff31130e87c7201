"""What an accepted submission is told: its number, what happens next and by when, and the
progress link; as JSON for systems and as the lines of the answer page for people.

Dates are the configured time limits counted on the working calendar from the moment of
receipt, the same arithmetic the router uses for the ticket's deadline; the handling date
is for a complaint of the default severity (the router may make it sooner).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from channels.web.forms import Contact
from channels.web.i18n import Lang, Translator, format_limit
from channels.web.pages import Pages
from ingest.draft import utc_iso
from ingest.settings import Settings
from router.calendar import WorkCalendar
from router.timelimit import TimeLimit


def feedback_limit(settings: Settings) -> TimeLimit:
    """Feedback's own limit (``time_limits.by_channel.feedback``), else the general one."""
    limits = settings.time_limits
    general = limits.handle[settings.routing.default_severity]
    return limits.by_channel.get("feedback", general)


def answer_json(
    settings: Settings,
    calendar: WorkCalendar,
    which: str,
    number: str,
    new: bool,
    now: datetime,
    contact: Contact | None,
    progress_url: str | None,
) -> dict[str, Any]:
    limits = settings.time_limits
    answer: dict[str, Any] = {"number": number, "new": new, "progress_url": progress_url}
    if which == "complaint":
        severity = settings.routing.default_severity
        answer.update(
            accept_by=utc_iso(calendar.add(now, limits.accept)),
            handle_by=utc_iso(calendar.add(now, limits.handle[severity])),
            handle_within=format_limit(limits.handle[severity], "en"),
            result_within=format_limit(limits.feedback_after_handling, "en"),
            notify_by="email" if contact and contact.email else "sms",
        )
    else:
        limit = feedback_limit(settings)
        answer.update(
            reply_by=utc_iso(calendar.add(now, limit)) if contact else None,
            reply_within=format_limit(limit, "en") if contact else None,
        )
    return answer


def answer_page(
    settings: Settings, pages: Pages, answer: dict[str, Any], lang: Lang
) -> dict[str, Any]:
    """The answer page's content for :func:`answer_json`'s ``answer``."""
    t = Translator(lang)
    limits = settings.time_limits

    def when(iso: str) -> str:
        return pages.when(datetime.fromisoformat(iso.replace("Z", "+00:00")), lang)

    if "accept_by" in answer:
        severity = settings.routing.default_severity
        lines = [
            t("next_accept", by=when(answer["accept_by"]), via=t(f"via_{answer['notify_by']}")),
            t(
                "next_handle",
                limit=format_limit(limits.handle[severity], lang),
                by=when(answer["handle_by"]),
            ),
            t("next_result", limit=format_limit(limits.feedback_after_handling, lang)),
        ]
        title, number_label = "done_complaint_title", "done_number"
    else:
        if answer["reply_by"]:
            limit = format_limit(feedback_limit(settings), lang)
            lines = [t("next_feedback_reply", limit=limit, by=when(answer["reply_by"]))]
        else:
            lines = [t("next_feedback_anonymous")]
        title, number_label = "done_feedback_title", "done_feedback_number"
    return {
        "title": title,
        "number_label": number_label,
        "number": answer["number"],
        "new": answer["new"],
        "next": lines,
        "progress_url": answer["progress_url"],
    }
