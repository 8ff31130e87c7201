"""``POST /api/calls``: an agent files one hotline call (CONTRACT.md, issue 4).

Answers:

* 201 ``{"number"}``: a new ticket (with ``"repeat_of"`` when it repeats a closed one);
* 200 ``{"number"}``: this call id was filed before, same number;
* 200 ``{"number", "repeat_of_open": true}``: the caller already has an open ticket about the
  same matter (the router's repeat rule, ``router.repeats``, asked): no new ticket, the
  router adds an urge (催办) to that one;
* 401 no or unknown token, 403 a token filing as another agent, 413 a body larger than
  ``http.max_json_body_bytes``, 422 field by field (``json_too_deep`` past
  ``http.max_json_depth``), 503 + Retry-After when the store or the queue is down (nothing
  half-stored).

The token is checked before a byte of the body is read (see ``ingest.bodies``).

Each agent token is bound to one agent id and team (``hotline.agents``): the agent is the
first contact (首问责任人), and one agent cannot file calls in another's name.
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime
from typing import Annotated

import structlog
from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from channels.hotline.records import (
    CallContext,
    CallRecord,
    call_draft,
    record_problems,
)
from channels.hotline.settings import HotlineAgent, HotlineSettings
from channels.intake import accept
from channels.runtime import Runtime
from ingest.api import ApiError, error_doc
from ingest.bodies import openapi_body, read_model
from router.calendar import WorkCalendar
from router.repeats import RepeatRule
from router.rules import Router

log = structlog.get_logger(__name__)


class CallAnswer(BaseModel):
    number: str = Field(description="the complaint number (投诉编号) the caller is told")
    repeat_of_open: bool | None = Field(
        default=None, description="true: merged into this open ticket as a repeat (催办)"
    )
    repeat_of: str | None = Field(
        default=None, description="the closed ticket this new one repeats (重复投诉)"
    )


def calling_agent(request: Request) -> HotlineAgent:
    """The agent behind ``Authorization: Bearer``, compared in constant time."""
    hotline: HotlineSettings = request.app.state.runtime.settings.hotline
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            401,
            "unauthenticated",
            "send an agent token as 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    presented = token.strip().encode()
    found: HotlineAgent | None = None
    for agent in hotline.agents:
        secret = agent.secret()
        # No early exit: every agent is compared, so timing does not tell which matched.
        if secret and hmac.compare_digest(secret.encode(), presented) and found is None:
            found = agent
    if found is None:
        raise ApiError(
            401,
            "invalid_token",
            "this token is not an agent token (hotline.agents)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return found


Agent = Annotated[HotlineAgent, Depends(calling_agent)]


def build_router(runtime: Runtime) -> APIRouter:
    settings = runtime.settings
    hotline = settings.hotline
    context = CallContext(
        region=hotline.default_region,
        calendar=WorkCalendar(settings.calendar, settings.organisation.timezone),
    )
    rule = RepeatRule.for_router(settings, Router(settings, runtime.segmenter))
    categories = frozenset(c.key for c in settings.categories)

    router = APIRouter()

    @router.post(
        "/api/calls",
        status_code=201,
        response_model=CallAnswer,
        response_model_exclude_none=True,
        summary="File one hotline call record",
        responses={
            200: {
                "model": CallAnswer,
                "description": "filed before, or merged into an open "
                "ticket of the same caller (repeat_of_open)",
            },
            401: error_doc("invalid_token", "no token, or not an agent token"),
            403: error_doc("agent_mismatch", "the token belongs to another agent"),
            413: error_doc("body_too_large", "larger than http.max_json_body_bytes"),
            422: error_doc("invalid_request", "some fields are invalid"),
            503: error_doc("queue_unavailable", "try again shortly (Retry-After)"),
        },
        openapi_extra=openapi_body(CallRecord),
    )
    async def post_call(request: Request, response: Response, agent: Agent) -> CallAnswer:
        # Read here, not declared as a parameter: FastAPI would read it before the token check.
        record, raw = await read_model(
            request,
            CallRecord,
            max_bytes=settings.http.max_json_body_bytes,
            max_depth=settings.http.max_json_depth,
        )
        if record.agent_id is not None and record.agent_id != agent.id:
            raise ApiError(
                403,
                "agent_mismatch",
                "an agent token can only file calls as its own agent",
                {"agent_id": f"this token files as agent {agent.id!r}"},
            )
        problems = record_problems(record, categories=categories, now=datetime.now(UTC))
        if problems:
            raise ApiError(422, "invalid_request", "some fields are invalid", problems)
        raw_sha256 = await runtime.blobs.put(raw)
        draft = call_draft(
            record,
            agent_id=agent.id,
            department=agent.department,
            context=context,
            raw_sha256=raw_sha256,
        )
        # The router decides whether the call repeats an open ticket; the agent is told now.
        accepted = await accept(runtime, draft, repeats=rule.answer)
        if accepted.repeat_of_open or not accepted.new:
            response.status_code = 200
        log.info(
            "call_filed",
            number=accepted.number,
            agent=agent.id,
            new=accepted.new,
            repeat_of_open=accepted.repeat_of_open,
            repeat_of=accepted.repeat_of,
        )
        return CallAnswer(
            number=accepted.number,
            repeat_of_open=True if accepted.repeat_of_open else None,
            repeat_of=accepted.repeat_of,
        )

    return router
