"""The web channel over HTTP (CONTRACT.md, issue 5).

| method and path | answers |
|---|---|
| ``GET /`` | the page: complaint form, supervision feedback form, progress inquiry (``?lang=en``) |
| ``POST /api/complaints`` | 201 ``{"number", "progress_url", ...}`` new; 200 the same form again |
| ``POST /api/feedback`` | the same for service supervision feedback (may be anonymous) |
| ``GET /api/complaints/{number}/progress?contact=`` | the public timeline, or 404 |
| ``GET /api/progress/{token}`` | the same by the link's token |
| ``GET /progress/{token}``, ``POST /progress`` | the timeline as a page |
| ``GET /static/web.css`` | the page's only other resource |

A complaint about the same matter as the complainant's open ticket (the same phone or e-mail,
``channels/web/repeats.py``) answers 200 with that ticket's number and
``"repeat_of_open": true`` (the ticket was urged, 催办); a new ticket repeating a closed one
carries ``"repeat_of"``.

Both POSTs take ``multipart/form-data`` (or urlencoded without files) from the browser form
and from other systems alike. A browser (``Accept: text/html``) gets pages: the answer, or
the form again with each message beside its field; anyone else gets JSON, errors as
``{"error": {"code", "message", "fields"}}``. Nothing is stored unless the whole submission
is accepted: 413 a size limit, 415 not a form, 422 a field, 403 CSRF, 429 rate limit
(Retry-After), 503 + Retry-After store or queue down.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from channels.runtime import Runtime
from channels.web.channel import WebChannel
from channels.web.i18n import RATINGS, Translator, pick_lang
from channels.web.inquiry import Inquiries
from channels.web.progress import progress_json
from channels.web.submit import Submissions
from channels.web.uploads import FormReadError, receive_form
from ingest.api import ApiError, error_response


def _multipart_doc(fields: dict[str, Any], required: list[str]) -> dict[str, Any]:
    properties = {
        **fields,
        "evidence": {"type": "array", "items": {"type": "string", "format": "binary"}},
        "idempotency_key": {
            "type": "string",
            "description": "your id of this submission (8-128 of A-Z a-z 0-9 . _ : -); the same "
            "key again answers 200 with the same number. Or send it as Idempotency-Key.",
        },
        "lang": {"type": "string", "enum": ["zh", "en"], "description": "language of messages"},
    }
    schema = {"type": "object", "properties": properties, "required": required}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": schema},
                "application/x-www-form-urlencoded": {"schema": schema},
            },
        }
    }


_COMPLAINT_DOC = _multipart_doc(
    {
        "name": {"type": "string", "maxLength": 50},
        "contact": {"type": "string", "description": "mobile number or email address"},
        "incident_at": {"type": "string", "description": "2026-11-20T14:30 (local) or ISO 8601"},
        "category": {"type": "string", "description": "a category key from the configuration"},
        "details": {"type": "string"},
    },
    ["name", "contact", "incident_at", "category", "details"],
)
_RATING = {"type": "string", "enum": list(RATINGS)}
_FEEDBACK_DOC = _multipart_doc(
    {
        "name": {"type": "string", "description": "empty: anonymous"},
        "contact": {"type": "string", "description": "only needed for a reply"},
        "overall": _RATING,
        "aspect_<key>": _RATING,
        "content": {"type": "string"},
        "suggestions": {"type": "string"},
    },
    ["overall"],
)


def build_router(runtime: Runtime) -> APIRouter:
    web = WebChannel(runtime)
    submissions = Submissions(web)
    inquiries = Inquiries(web)
    router = APIRouter(tags=["web"])
    # The inquiry form carries two short fields and never a file.
    inquiry_limits = web.web.model_copy(update={"max_files": 0, "max_total_size": 0})

    @router.get("/", summary="The complaint page (zh-CN; ?lang=en)", response_model=None)
    async def index(request: Request, lang: str | None = None) -> Response:
        return web.page(request, pick_lang(lang))

    @router.get("/static/web.css", include_in_schema=False)
    async def stylesheet(request: Request) -> Response:
        css = web.pages.css
        headers = {"ETag": f'"{css.etag}"', "Cache-Control": "public, max-age=86400"}
        if request.headers.get("if-none-match") == headers["ETag"]:
            return Response(status_code=304, headers=headers)
        return Response(css.body, media_type="text/css; charset=utf-8", headers=headers)

    @router.post(
        "/api/complaints",
        status_code=201,
        summary="Submit a complaint (multipart form with evidence files)",
        openapi_extra=_COMPLAINT_DOC,
        response_model=None,
    )
    async def post_complaint(request: Request) -> Response:
        return await submissions.submit(request, "complaint")

    @router.post(
        "/api/feedback",
        status_code=201,
        summary="Submit service supervision feedback (may be anonymous)",
        openapi_extra=_FEEDBACK_DOC,
        response_model=None,
    )
    async def post_feedback(request: Request) -> Response:
        return await submissions.submit(request, "feedback")

    def not_found() -> JSONResponse:
        return error_response(
            ApiError(
                404,
                "not_found",
                "no complaint with this number and contact",
            )
        )

    def limited(seconds: int) -> JSONResponse:
        return error_response(
            ApiError(
                429,
                "rate_limited",
                f"too many inquiries from this address; try again in {seconds} s",
                headers={"Retry-After": str(seconds)},
            )
        )

    @router.get(
        "/api/complaints/{number}/progress",
        summary="Public progress of a complaint, when the contact matches",
        response_model=None,
    )
    async def progress(
        request: Request,
        number: str,
        contact: str = Query(
            min_length=1,
            max_length=200,
            description="the mobile number or email given with the complaint",
        ),
    ) -> Response:
        seconds = inquiries.inquiry_limited(request)
        if seconds is not None:
            return limited(seconds)
        view = await inquiries.by_contact(number, contact)
        if view is None:
            return not_found()
        return JSONResponse(
            progress_json(view, web.settings), headers={"Cache-Control": "no-store"}
        )

    @router.get(
        "/api/progress/{token}",
        summary="Public progress by the link from the acknowledgement",
        response_model=None,
    )
    async def progress_by_token(request: Request, token: str) -> Response:
        seconds = inquiries.inquiry_limited(request)
        if seconds is not None:
            return limited(seconds)
        view = await inquiries.by_token(token)
        if view is None:
            return error_response(ApiError(404, "not_found", "no such progress link"))
        return JSONResponse(
            progress_json(view, web.settings), headers={"Cache-Control": "no-store"}
        )

    @router.get("/progress/{token}", include_in_schema=False)
    async def progress_link_page(request: Request, token: str, lang: str | None = None) -> Response:
        chosen = pick_lang(lang)
        switch = f"/progress/{token}?lang={'en' if chosen == 'zh' else 'zh'}"
        seconds = inquiries.inquiry_limited(request)
        if seconds is not None:
            return web.refuse(
                request,
                chosen,
                429,
                "rate_limited",
                "too many inquiries",
                Translator(chosen)("error_rate_limited", seconds=seconds),
                headers={"Retry-After": str(seconds)},
            )
        view = await inquiries.by_token(token)
        return inquiries.progress_page(
            chosen,
            view,
            not_found="token_not_found",
            status=200 if view else 404,
            switch_url=switch,
        )

    @router.post("/progress", include_in_schema=False)
    async def progress_form(request: Request) -> Response:
        lang = pick_lang(request.query_params.get("lang"))
        seconds = inquiries.inquiry_limited(request)
        if seconds is not None:
            return web.refuse(
                request,
                lang,
                429,
                "rate_limited",
                "too many inquiries",
                Translator(lang)("error_rate_limited", seconds=seconds),
                headers={"Retry-After": str(seconds)},
            )
        try:
            form = await receive_form(request, inquiry_limits)
        except FormReadError as exc:
            return web.refuse(
                request, lang, exc.status, exc.code, exc.message, Translator(lang)("error_bad_form")
            )
        try:
            lang = pick_lang(form.get("lang") or request.query_params.get("lang"))
            number, contact = form.get("number"), form.get("contact")
            view = await inquiries.by_contact(number, contact)
            return inquiries.progress_page(
                lang,
                view,
                status=200 if view else 404,
                values={"number": number.strip()[:40]},
            )
        finally:
            form.close()

    return router
