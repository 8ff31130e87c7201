"""What an accepted submission is told: its number, what happens next and by when, and the
progress link; as JSON for systems and as the lines of the answer page for people.

Dates are the configured time limits counted on the working calendar from the moment of
receipt, the same arithmetic the router uses for the ticket's deadline; the handling date
is for a complaint of the default severity (the router may make it sooner).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from channels.settings import ChannelSettings
from channels.web.forms import Contact
from channels.web.i18n import Lang, Translator, format_limit
from channels.web.pages import Pages
from channels.web.repeats import WebAccepted
from ingest.draft import utc_iso
from router.calendar import WorkCalendar
from router.timelimit import TimeLimit


def feedback_limit(settings: ChannelSettings) -> TimeLimit:
    """Feedback's own limit (``time_limits.by_channel.feedback``), else the general one."""
    limits = settings.time_limits
    general = limits.handle[settings.routing.default_severity]
    return limits.by_channel.get("feedback", general)


def answer_json(
    settings: ChannelSettings,
    calendar: WorkCalendar,
    which: str,
    number: str,
    new: bool,
    now: datetime,
    contact: Contact | None,
    progress_url: str | None,
    *,
    repeat: WebAccepted | None = None,
) -> dict[str, Any]:
    """``repeat``: how the complaint was accepted, when the repeat rule was asked (see
    ``channels/web/repeats.py``). Merged into an open ticket, the dates are that ticket's:
    its own promise to accept and its deadline, not a new ticket's."""
    limits = settings.time_limits
    answer: dict[str, Any] = {"number": number, "new": new, "progress_url": progress_url}
    if which == "complaint":
        severity = settings.routing.default_severity
        merged = repeat is not None and repeat.repeat_of_open
        since = (repeat.received_at if repeat and merged else None) or now
        due = repeat.due_at if repeat and merged else None
        answer.update(
            accept_by=utc_iso(calendar.add(since, limits.accept)),
            handle_by=utc_iso(due or calendar.add(since, limits.handle[severity])),
            handle_within=format_limit(limits.handle[severity], "en"),
            result_within=format_limit(limits.feedback_after_handling, "en"),
            notify_by="email" if contact and contact.email else "sms",
        )
        # Extra fields, only when they say something (CONTRACT.md allows additions).
        if merged:
            answer["repeat_of_open"] = True
        if repeat is not None and repeat.repeat_of:
            answer["repeat_of"] = repeat.repeat_of
    else:
        limit = feedback_limit(settings)
        answer.update(
            reply_by=utc_iso(calendar.add(now, limit)) if contact else None,
            reply_within=format_limit(limit, "en") if contact else None,
        )
    return answer


def answer_page(
    settings: ChannelSettings, pages: Pages, answer: dict[str, Any], lang: Lang
) -> dict[str, Any]:
    """The answer page's content for :func:`answer_json`'s ``answer``."""
    t = Translator(lang)
    limits = settings.time_limits

    def when(iso: str) -> str:
        return pages.when(datetime.fromisoformat(iso.replace("Z", "+00:00")), lang)

    if answer.get("repeat_of_open"):
        # Merged into the open ticket: no new promise, its own deadline and the reminder.
        lines = [
            t("next_repeat_handle", by=when(answer["handle_by"])),
            t("next_result", limit=format_limit(limits.feedback_after_handling, lang)),
        ]
        title, number_label = "done_repeat_title", "done_number"
    elif "accept_by" in answer:
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
        if answer.get("repeat_of"):
            lines.insert(0, t("next_repeat_of", number=answer["repeat_of"]))
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
        "repeat_of_open": bool(answer.get("repeat_of_open")),
        "next": lines,
        "progress_url": answer["progress_url"],
    }
