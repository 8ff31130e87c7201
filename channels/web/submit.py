"""Submitting a complaint or supervision feedback: the body streamed under its limits, then
the honeypot, CSRF, the idempotency key and every field rule; only a submission that passes
them all has its files and raw record stored, is handed off durably (``channels.intake.accept``)
and gets a progress link. A complaint with a contact first meets the repeat rule
(``channels/web/repeats.py``): about the same matter as the complainant's open ticket, it is
answered with that ticket's number and urges it instead. See ``channels/web/routes.py`` for
the answers.
"""

from __future__ import annotations

import uuid

import structlog
from fastapi import Request
from fastapi.responses import JSONResponse, Response

from channels.intake import Accepted, accept
from channels.web import drafts, forms
from channels.web.abuse import (
    CSRF_COOKIE,
    CSRF_FIELD,
    HONEYPOT_FIELD,
    CsrfProblem,
    cross_site,
    honeypot_filled,
)
from channels.web.answers import answer_json, answer_page
from channels.web.channel import WebChannel, client_ip, wants_html
from channels.web.forms import Problems, render_problems
from channels.web.i18n import Lang, Translator, pick_lang
from channels.web.progress import issue_link
from channels.web.repeats import WebAccepted, accept_complaint, can_repeat, repeat_rule
from channels.web.settings import format_size
from channels.web.uploads import FormReadError, ReceivedForm, receive_form
from ingest.api import ApiError, error_response
from ingest.draft import AttachmentRef, TicketDraft
from ingest.queue import QueueUnavailable
from store.db import STORE_ERRORS

log = structlog.get_logger(__name__)

_UNAVAILABLE: tuple[type[Exception], ...] = (
    QueueUnavailable,
    *(e for e in STORE_ERRORS if issubclass(e, Exception)),
)


class Submissions:
    def __init__(self, channel: WebChannel) -> None:
        self.channel = channel
        self.runtime = channel.runtime
        self.settings = channel.settings
        self.web = channel.web
        self.pages = channel.pages
        self.calendar = channel.calendar
        self.clock = channel.clock
        self.repeats = repeat_rule(self.runtime)

    async def submit(self, request: Request, which: str) -> Response:
        query_lang = request.query_params.get("lang")
        lang: Lang = pick_lang(query_lang)
        t = Translator(lang)
        retry = self.channel.submissions.hit(client_ip(request))
        if retry is not None:
            seconds = max(1, int(retry + 0.999))
            log.info("web_rate_limited", bucket="submissions")
            return self.channel.refuse(
                request,
                lang,
                429,
                "rate_limited",
                f"too many submissions from this address; try again in {seconds} s",
                t("error_rate_limited", seconds=seconds),
                headers={"Retry-After": str(seconds)},
            )
        if cross_site(request.headers, self.channel.own_origins(request)):
            log.info("web_csrf_refused", problem=CsrfProblem.CROSS_SITE.value)
            return self.channel.refuse(
                request,
                lang,
                403,
                "csrf_failed",
                "a form posted from another site is not accepted",
                t("error_csrf"),
            )
        try:
            form = await receive_form(request, self.web)
        except FormReadError as exc:
            log.info("web_form_refused", code=exc.code, status=exc.status)
            return self.channel.refuse(
                request,
                lang,
                exc.status,
                exc.code,
                exc.message,
                self._read_error_page(exc, t),
            )
        try:
            return await self._submit_form(request, which, form, query_lang)
        except _UNAVAILABLE as exc:
            if not wants_html(request):
                raise  # ingest.app.http answers 503 + Retry-After in JSON
            log.error("web_submit_unavailable", error=type(exc).__name__)
            lang = pick_lang(form.get("lang") or query_lang)
            return self.channel.refuse(
                request,
                lang,
                503,
                "unavailable",
                "try again shortly",
                Translator(lang)("error_unavailable"),
                headers={"Retry-After": "5"},
            )
        finally:
            form.close()

    def _read_error_page(self, exc: FormReadError, t: Translator) -> str:
        if exc.status == 413:
            return t("error_too_large", limit=format_size(self.web.max_request_size))
        if exc.status == 408:
            return t("error_timeout")
        return t("error_bad_form")

    async def _submit_form(
        self, request: Request, which: str, form: ReceivedForm, query_lang: str | None
    ) -> Response:
        explicit_lang = form.get("lang") or query_lang
        lang = pick_lang(explicit_lang)
        # Systems without a language get English messages; the page's forms always send one.
        api_lang: Lang = pick_lang(explicit_lang) if explicit_lang else "en"
        html = wants_html(request)
        message_lang: Lang = lang if html else api_lang
        t = Translator(message_lang)
        if honeypot_filled(form.get(HONEYPOT_FIELD)):
            log.info("web_honeypot_filled", form=which)
            return self.channel.refuse(
                request,
                lang,
                422,
                "rejected",
                "this submission looks automated and was not filed; call the hotline",
                t("error_spam"),
            )
        problem = self.channel.csrf.check(
            request.headers,
            request.cookies.get(CSRF_COOKIE),
            form.get(CSRF_FIELD) or None,
            self.channel.own_origins(request),
        )
        if problem is not None:
            log.info("web_csrf_refused", problem=problem.value)
            if html:
                return self._form_again(request, which, form, lang, {}, 403, t("error_csrf"))
            return error_response(
                ApiError(403, "csrf_failed", f"CSRF check failed ({problem.value})")
            )
        key, key_ok = forms.idempotency_key(form, request.headers.get("idempotency-key"))
        now = self.clock()
        checked: forms.ComplaintForm | forms.FeedbackForm | None
        problems: Problems
        if which == "complaint":
            checked, problems = forms.check_complaint(form, self.settings, now)
        else:
            checked, problems = forms.check_feedback(form, self.settings)
        if not key_ok:
            problems = {**forms.key_problem(), **problems}
        if problems or checked is None:
            too_large = any(u.problem in ("too_large", "total") for u in form.uploads)
            status = 413 if too_large else 422
            rendered = render_problems(problems, t)
            if html:
                notice = t("files_again") if form.uploads else None
                return self._form_again(request, which, form, lang, rendered, status, notice)
            code = "too_large" if too_large else "invalid_request"
            message = "a file is too large" if too_large else "some fields are invalid"
            return error_response(ApiError(status, code, message, rendered))

        key = key or uuid.uuid4().hex
        attachments = await self._store_files(form)
        raw_sha256 = await self.runtime.blobs.put(drafts.raw_record(which, form, attachments))
        contact = checked.contact
        draft: TicketDraft
        if isinstance(checked, forms.ComplaintForm):
            draft = drafts.complaint_draft(
                checked,
                self.settings,
                key=key,
                received_at=now,
                attachments=attachments,
                raw_sha256=raw_sha256,
            )
        else:
            draft = drafts.feedback_draft(
                checked,
                self.settings,
                key=key,
                received_at=now,
                attachments=attachments,
                raw_sha256=raw_sha256,
            )
        if form.notes:
            # How the form's bytes were decoded (field and codec names only, never the text).
            draft = draft.model_copy(update={"notes": (*draft.notes, *form.notes)})
        repeat: WebAccepted | None = None
        if which == "complaint" and can_repeat(draft):
            # The repeat rule's answer (重复投诉), with the reservation in one transaction.
            repeat = await accept_complaint(self.runtime, self.repeats, draft, clock=self.clock)
            accepted = Accepted(number=repeat.number, new=repeat.new)
        else:
            accepted = await accept(self.runtime, draft)
        canonical = contact.canonical if contact else None
        token = await self.runtime.database.write(
            lambda conn: issue_link(conn, number=accepted.number, contact=canonical, now=now)
        )
        progress_url = f"{self.settings.public_base_url}/progress/{token}" if token else None
        log.info(
            "web_submission_accepted",
            form=which,
            number=accepted.number,
            new=accepted.new,
            repeat_of_open=bool(repeat and repeat.repeat_of_open),
            repeat_of=repeat.repeat_of if repeat else None,
            files=len(attachments),
        )
        status = 201 if accepted.new else 200
        answer = answer_json(
            self.settings,
            self.calendar,
            which,
            accepted.number,
            accepted.new,
            now,
            contact,
            progress_url,
            repeat=repeat,
        )
        if html:
            return self.pages.render(
                "answer.html",
                lang,
                status=status,
                answer=answer_page(self.settings, self.pages, answer, lang),
            )
        return JSONResponse(answer, status_code=status, headers={"Cache-Control": "no-store"})

    def _form_again(
        self,
        request: Request,
        which: str,
        form: ReceivedForm,
        lang: Lang,
        errors: dict[str, str],
        status: int,
        notice: str | None,
    ) -> Response:
        skip = {CSRF_FIELD, HONEYPOT_FIELD, forms.KEY_FIELD, "lang"}
        values = {k: v for k, v in form.fields.items() if k not in skip}
        key = form.get(forms.KEY_FIELD)
        return self.channel.page(
            request,
            lang,
            status=status,
            which=which,
            values=values,
            errors=errors,
            key=key if key and forms.idempotency_key(form, None)[1] else None,
            notice=notice,
        )

    async def _store_files(self, form: ReceivedForm) -> tuple[AttachmentRef, ...]:
        refs = []
        for upload in form.kept:
            # One file in memory at a time (at most its kind's limit).
            sha256 = await self.runtime.blobs.put(await upload.read())
            refs.append(
                AttachmentRef(
                    filename=upload.filename,
                    content_type=upload.content_type,
                    size=upload.size,
                    sha256=sha256,
                )
            )
        return tuple(refs)
