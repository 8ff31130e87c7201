"""``POST /api/referrals/{source}`` (signed work orders) and ``POST /api/letters`` (letters,
visits and faxes registered by staff).

Referral answers (CONTRACT.md):

* 201 ``{"number"}``: a new work order, a new ticket;
* 200 ``{"number", "duplicate": true}``: this order was received before;
* 200 ``{"number", "update": "urge" | ...}``: an update applied to the order's ticket, or
  ``"pending": true`` when it is held until the router has made the ticket;
* 401 with a reason code (``signature_mismatch``, ``timestamp_expired``, ``replayed``, ...
  see ``channels.referral.signature``), 404 ``unknown_source`` / ``unknown_order``,
  413 ``body_too_large``, 422 naming the payload field (``json_too_deep`` / ``xml_too_deep``
  past ``http.max_json_depth``), 503 + Retry-After when the store or the queue is down
  (nothing half-stored: the sender's identical retry is accepted).

The body is read only up to the source's ``max_body_bytes`` (``ingest.bodies.read_body``);
the signature is checked over the raw bytes before anything parses them.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Annotated

import structlog
from fastapi import APIRouter, File, Form, Request, Response, UploadFile
from pydantic import AwareDatetime, BaseModel, Field

from channels.intake import accept
from channels.referral.letters import LetterKind, LetterRecord, letter_draft
from channels.referral.mapping import MappingError
from channels.referral.orders import Received, ReferralIntake, UnknownOrder
from channels.referral.payload import PayloadError
from channels.referral.settings import ReferralSource
from channels.referral.signature import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureRejected,
    verify,
)
from channels.runtime import Runtime
from ingest.api import ApiError, Staff, error_doc, staff_member
from ingest.bodies import checked_first, read_body
from ingest.draft import AttachmentRef

log = structlog.get_logger(__name__)
FUTURE_TOLERANCE = timedelta(minutes=10)


class ReferralAnswer(BaseModel):
    number: str = Field(description="our complaint number (受理编号) for this work order")
    update: str | None = Field(default=None, description="the update applied: urge, ...")
    pending: bool | None = Field(
        default=None, description="true: held until the ticket exists, then applied"
    )
    duplicate: bool | None = Field(default=None, description="true: received before")


class LetterAnswer(BaseModel):
    number: str


def build_router(runtime: Runtime) -> APIRouter:
    settings = runtime.settings
    referrals = settings.referrals
    intake = ReferralIntake(runtime)
    router = APIRouter()

    @router.post(
        "/api/referrals/{source}",
        status_code=201,
        response_model=ReferralAnswer,
        response_model_exclude_none=True,
        summary="Receive a signed work order (or an update of one) from an authority",
        description=(
            f"Sign each request: `{TIMESTAMP_HEADER}: <unix seconds>` and "
            f"`{SIGNATURE_HEADER}: sha256=<hex>`, the HMAC-SHA256 of `<timestamp>.<raw body>` "
            "with the source's secret. The body is the source's work order format "
            "(referrals.mappings in config.yaml)."
        ),
        responses={
            200: {"model": ReferralAnswer, "description": "an update, or received before"},
            401: error_doc("signature_mismatch", "not signed, wrongly signed, too old or replayed"),
            404: error_doc("unknown_source", "no such source, or an update of an unknown order"),
            413: error_doc("body_too_large", "larger than the source's max_body_bytes"),
            422: error_doc("invalid_work_order", "a field of the work order is wrong"),
            503: error_doc("queue_unavailable", "try again shortly (Retry-After)"),
        },
    )
    async def post_referral(source: str, request: Request, response: Response) -> ReferralAnswer:
        found = referrals.source(source)
        if found is None:
            raise ApiError(404, "unknown_source", f"no referral source {source!r}")
        secrets = found.secrets()
        if not secrets:
            log.error("referral_secret_missing", source=source, secret_env=found.secret_env)
            raise ApiError(
                503,
                "source_not_configured",
                "this source's secret is not configured on our side; try again later",
                headers={"Retry-After": "60"},
            )
        raw = await read_body(request, found.max_body_bytes)
        try:
            verified = verify(
                secrets=secrets,
                timestamp=request.headers.get(TIMESTAMP_HEADER),
                signature=request.headers.get(SIGNATURE_HEADER),
                body=raw,
                now=time.time(),
                max_age_seconds=referrals.signature_max_age_seconds,
            )
            received = await _receive(intake, found, raw, verified.digest)
        except SignatureRejected as exc:
            log.info("referral_refused", source=source, reason=exc.code)
            raise ApiError(
                401, exc.code, exc.message, headers={"WWW-Authenticate": "Signature"}
            ) from exc
        if not received.new:
            response.status_code = 200
        log.info(
            "referral_received",
            source=source,
            number=received.number,
            new=received.new,
            update=received.update.value if received.update else None,
            pending=received.pending,
            duplicate=received.duplicate,
        )
        return ReferralAnswer(
            number=received.number,
            update=received.update.value if received.update else None,
            pending=True if received.pending else None,
            duplicate=True if received.duplicate else None,
        )

    letters = referrals.letters
    # Every scan at its largest, the text fields, and the multipart framing around them.
    letter_limit = letters.max_scans * letters.max_scan_bytes + 2 * 1_048_576
    registered = APIRouter(
        route_class=checked_first(staff_member, max_bytes=lambda _request: letter_limit)
    )

    @registered.post(
        "/api/letters",
        status_code=201,
        response_model=LetterAnswer,
        summary="Register a letter, visit or fax (书信/来访/传真) with its scans",
        responses={
            200: {"model": LetterAnswer, "description": "this registration number was filed"},
            401: error_doc("invalid_token", "no staff token (checked before the body is read)"),
            413: error_doc("scan_too_large", "a scan is larger than referrals.letters"),
            422: error_doc("invalid_request", "some fields are invalid"),
        },
    )
    async def post_letter(
        who: Staff,
        response: Response,
        body: Annotated[str, Form(min_length=1, max_length=100_000, description="内容/记录")],
        kind: Annotated[LetterKind, Form(description="letter 书信, visit 来访, fax 传真")] = (
            "letter"
        ),
        registration_no: Annotated[str | None, Form(max_length=200, description="登记号")] = None,
        received_at: Annotated[AwareDatetime | None, Form()] = None,
        subject: Annotated[str | None, Form(max_length=1000)] = None,
        complainant_name: Annotated[str | None, Form(max_length=200)] = None,
        phone: Annotated[str | None, Form(max_length=100)] = None,
        email: Annotated[str | None, Form(max_length=320)] = None,
        address: Annotated[str | None, Form(max_length=500)] = None,
        category: Annotated[str | None, Form(max_length=64)] = None,
        confidential: Annotated[bool, Form(description="是否保密")] = False,
        desk: Annotated[str | None, Form(max_length=200, description="registering desk")] = None,
        referral_source: Annotated[str | None, Form(max_length=100)] = None,
        referral_reference: Annotated[str | None, Form(max_length=200)] = None,
        referral_deadline: Annotated[AwareDatetime | None, Form()] = None,
        scans: Annotated[list[UploadFile] | None, File(description="scans: pdf, jpg, png")] = None,
    ) -> LetterAnswer:
        now = datetime.now(UTC)
        problems: dict[str, str] = {}
        if received_at is not None and received_at > now + FUTURE_TOLERANCE:
            problems["received_at"] = "is in the future"
        categories = {c.key for c in settings.categories}
        category = category or None
        if category is not None and category not in categories:
            problems["category"] = f"unknown category; one of: {', '.join(sorted(categories))}"
        if bool(referral_source) != bool(referral_reference):
            problems["referral_reference" if referral_source else "referral_source"] = (
                "give referral_source and referral_reference together"
            )
        uploads = [s for s in scans or [] if s.filename]
        if len(uploads) > letters.max_scans:
            problems["scans"] = f"at most {letters.max_scans} scans"
        for index, upload in enumerate(uploads):
            content_type = (upload.content_type or "").split(";")[0].strip().lower()
            if content_type not in letters.scan_types:
                problems[f"scans.{index}"] = (
                    f"{content_type or 'no type'} is not accepted; one of: "
                    f"{', '.join(letters.scan_types)}"
                )
        if problems:
            raise ApiError(422, "invalid_request", "some fields are invalid", problems)
        attachments = []
        for index, upload in enumerate(uploads):
            data = await upload.read(letters.max_scan_bytes + 1)
            if len(data) > letters.max_scan_bytes:
                raise ApiError(
                    413,
                    "scan_too_large",
                    f"a scan is larger than {letters.max_scan_bytes} bytes",
                    {f"scans.{index}": f"larger than {letters.max_scan_bytes} bytes"},
                )
            attachments.append(
                AttachmentRef(
                    filename=(upload.filename or f"scan-{index + 1}")[:500],
                    content_type=(upload.content_type or "").split(";")[0].strip().lower(),
                    size=len(data),
                    sha256=await runtime.blobs.put(data),
                )
            )
        record = LetterRecord(
            kind=kind,
            body=body,
            received_at=(received_at or now).astimezone(UTC),
            registration_no=registration_no or None,
            subject=subject or None,
            complainant_name=complainant_name or None,
            phone=phone or None,
            email=email or None,
            address=address or None,
            category=category,
            confidential=confidential,
            referral_source=referral_source or None,
            referral_reference=referral_reference or None,
            referral_deadline=referral_deadline.astimezone(UTC) if referral_deadline else None,
        )
        # The registration as filed (without the scans, which are blobs of their own).
        original = json.dumps(
            {k: v.isoformat() if isinstance(v, datetime) else v for k, v in vars(record).items()}
            | {"registered_by": who.id, "scans": [a.sha256 for a in attachments]},
            ensure_ascii=False,
        ).encode()
        draft = letter_draft(
            record,
            desk=desk or who.id,
            department=who.department,
            registered_by=who.id,
            attachments=tuple(attachments),
            raw_sha256=await runtime.blobs.put(original),
            region=referrals.default_region,
        )
        accepted = await accept(runtime, draft)
        if not accepted.new:
            response.status_code = 200
        log.info(
            "letter_registered",
            number=accepted.number,
            kind=kind,
            staff=who.id,
            scans=len(attachments),
            new=accepted.new,
        )
        return LetterAnswer(number=accepted.number)

    router.include_router(registered)
    return router


async def _receive(
    intake: ReferralIntake, source: ReferralSource, raw: bytes, signature: str
) -> Received:
    """The intake's outcome, with the sender's mistakes as 4xx answers."""
    try:
        return await intake.receive(source, raw, signature=signature)
    except PayloadError as exc:
        raise ApiError(422, exc.code, str(exc), {"body": str(exc)}) from exc
    except MappingError as exc:
        raise ApiError(
            422, "invalid_work_order", f"the work order is not valid: {exc}", exc.fields
        ) from exc
    except UnknownOrder as exc:
        raise ApiError(404, "unknown_order", str(exc)) from exc
