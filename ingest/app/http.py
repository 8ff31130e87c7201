"""The HTTP edge: health, readiness, metrics and the staff ticket API.

Every error is ``{"error": {"code", "message", "fields"}}`` with a 4xx that says what was
wrong (CONTRACT.md); a 503 with Retry-After when the store or queue is down.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import structlog
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import update
from starlette.exceptions import HTTPException as StarletteHTTPException

from channels.runtime import Runtime
from ingest.api import ApiError, Staff, StaffToken, error_response
from ingest.bodies import BodyRefused, add_body_schemas, openapi_body, read_model
from ingest.queue import QueueUnavailable
from router.calendar import WorkCalendar
from router.clock_moves import move_clocks
from router.clocks import ClockBook, ClockRefused
from router.lifecycle import IllegalTransition, LifecycleError, MissingFields, transition
from store.clocks import clock_counts
from store.db import STORE_ERRORS
from store.models import Ticket
from store.tickets import NewEvent, add_event, find_ticket, list_tickets, ticket_json

log = structlog.get_logger(__name__)


class StaffEvent(BaseModel):
    kind: str = Field(min_length=1, max_length=64, description="accept, dispatch, handle, ...")
    detail: dict[str, Any] = Field(default_factory=dict)


def _privileged(who: StaffToken, ticket: Ticket) -> bool:
    """Who may see a confidential complainant: staff not tied to a department (the
    complaints office) and the first-contact desk's own department (the liaison)."""
    return who.department is None or who.department == ticket.first_contact_department


def create_app(runtime: Runtime) -> FastAPI:
    settings = runtime.settings
    app = FastAPI(
        title="Shouli (受理) complaint intake",
        version="1",
        description="Every complaint captured once, from every channel.",
    )
    app.state.runtime = runtime
    app.state.auth = settings.auth
    clocks = ClockBook.from_settings(
        settings, WorkCalendar(settings.calendar, settings.organisation.timezone)
    )

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(BodyRefused)
    async def _body_refused(_request: Request, exc: BodyRefused) -> JSONResponse:
        return error_response(ApiError(exc.status, exc.code, exc.message, exc.fields))

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = {
            ".".join(str(p) for p in error["loc"] if p not in ("body", "query", "path"))
            or "body": error["msg"]
            for error in exc.errors()
        }
        return error_response(ApiError(422, "invalid_request", "some fields are invalid", fields))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(ApiError(exc.status_code, code, str(exc.detail)))

    @app.exception_handler(QueueUnavailable)
    async def _queue_down(_request: Request, _exc: QueueUnavailable) -> JSONResponse:
        return error_response(
            ApiError(
                503,
                "queue_unavailable",
                "the queue is unavailable; try again shortly",
                headers={"Retry-After": "5"},
            )
        )

    async def _store_down(_request: Request, _exc: Exception) -> JSONResponse:
        log.error("store_unavailable_during_request", error=type(_exc).__name__)
        return error_response(
            ApiError(
                503,
                "store_unavailable",
                "the store is unavailable; try again shortly",
                headers={"Retry-After": "5"},
            )
        )

    for error_type in STORE_ERRORS:
        if issubclass(error_type, Exception):
            app.add_exception_handler(error_type, _store_down)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"])
    async def readyz() -> JSONResponse:
        store_ok = await runtime.database.ping()
        queue_ok = await runtime.queue.ready()
        runtime.metrics.component_up.labels(component="store").set(int(store_ok))
        runtime.metrics.component_up.labels(component="queue").set(int(queue_ok))
        ok = store_ok and queue_ok
        body: dict[str, Any] = {
            "status": "ready" if ok else "unavailable",
            "store": store_ok,
            "queue": queue_ok,
        }
        # Shown, not gating: a dead IMAP mailbox must not take web and hotline intake out of
        # the load balancer. Its own metric (shouli_imap_up) is what to alert on.
        for name, check in runtime.health.items():
            body[name] = check()
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["ops"])
    async def metrics() -> Response:
        # Counted at scrape time: the SLA worker may run in another process.
        async with runtime.database.sessions() as session:
            runtime.metrics.set_clocks(await clock_counts(session, datetime.now(UTC)))
        return PlainTextResponse(runtime.metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/api/tickets/{number}", tags=["tickets"])
    async def get_ticket(number: str, who: Staff) -> dict[str, Any]:
        async with runtime.database.sessions() as session:
            ticket = await find_ticket(session, number)
            if ticket is None:
                raise ApiError(404, "ticket_not_found", f"no ticket {number}")
            return await ticket_json(session, ticket, privileged=_privileged(who, ticket))

    @app.get("/api/tickets", tags=["tickets"])
    async def get_tickets(
        who: Staff,
        channel: str | None = None,
        since: datetime | None = None,
        status: str | None = None,
        department: str | None = None,
        after: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        async with runtime.database.sessions() as session:
            rows = await list_tickets(
                session,
                channel=channel,
                since=since,
                status=status,
                department=department,
                after_id=after,
                limit=limit,
                viewer_department=who.department,
            )
        return {
            "tickets": [row for _, row in rows],
            "next_after": rows[-1][0] if len(rows) == limit else None,
        }

    from channels.registry import http_routers

    for router in http_routers(runtime):
        app.include_router(router)

    @app.post(
        "/api/tickets/{number}/events",
        status_code=201,
        tags=["tickets"],
        openapi_extra=openapi_body(StaffEvent),
        responses={413: {"description": "larger than http.max_json_body_bytes"}},
    )
    async def post_event(number: str, request: Request, who: Staff) -> dict[str, Any]:
        # Read here, not declared as a parameter: FastAPI would read it before the token check.
        event, _ = await read_model(
            request,
            StaffEvent,
            max_bytes=settings.http.max_json_body_bytes,
            max_depth=settings.http.max_json_depth,
        )
        detail = dict(event.detail)
        if event.kind in ("dispatch", "transfer") and detail.get("department"):
            known = [d.key for d in settings.departments]
            if detail["department"] not in known:
                raise ApiError(
                    422,
                    "unknown_department",
                    f"unknown department {detail['department']!r}",
                    {"detail.department": f"one of: {', '.join(known)}"},
                )
        now = datetime.now(UTC)
        async with runtime.database.transaction() as session:
            ticket = await find_ticket(session, number)
            if ticket is None:
                raise ApiError(404, "ticket_not_found", f"no ticket {number}")
            try:
                new_status = transition(ticket.status, event.kind, detail)
            except IllegalTransition as exc:
                raise ApiError(
                    409, "illegal_transition", str(exc), {"allowed": exc.allowed}
                ) from exc
            except MissingFields as exc:
                raise ApiError(
                    422,
                    "missing_fields",
                    str(exc),
                    {f"detail.{name}": "required" for name in exc.missing},
                ) from exc
            except LifecycleError as exc:
                raise ApiError(422, "unknown_event_kind", str(exc)) from exc
            previous_department = ticket.department
            values: dict[str, Any] = {"status": new_status.value, "updated_at": now}
            if event.kind in ("dispatch", "transfer", "review") and detail.get("department"):
                values["department"] = detail["department"]
            # Compare-and-set on the status: two officers acting at once cannot both win.
            result = await session.execute(
                update(Ticket)
                .where(Ticket.id == ticket.id, Ticket.status == ticket.status)  # type: ignore[arg-type]
                .values(**values)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                raise ApiError(
                    409, "concurrent_change", "the ticket changed meanwhile; reload and retry"
                )
            if event.kind == "transfer":
                detail["from_department"] = previous_department
            try:
                detail |= await move_clocks(
                    session, clocks, ticket, event.kind, detail, new_status.value, now
                )
            except ClockRefused as exc:
                raise ApiError(422, "clock_refused", str(exc), {"detail.clock": str(exc)}) from exc
            await add_event(session, ticket, NewEvent(event.kind, f"staff:{who.id}", detail), now)
            await session.refresh(ticket)
            body = await ticket_json(session, ticket, privileged=_privileged(who, ticket))
        log.info("ticket_event", number=number, kind=event.kind, status=new_status.value)
        return body

    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        # The JSON bodies read with read_model are described by openapi_body; their schemas
        # are added once, when the document is first made.
        if app.openapi_schema is None:
            add_body_schemas(default_openapi())
        return default_openapi()

    app.openapi = openapi  # type: ignore[method-assign]
    return app
