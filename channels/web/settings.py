"""The ``web:`` section of ``config.yaml``: evidence types and limits, rate limits, the CSRF
secret and the feedback form's evaluation aspects.

Pure pydantic on purpose: ``channels.settings`` imports this module, so it must not import
anything of the service (store, router, queue) itself. Organisation name, hotline, service
hours and time limits shown on the page come from the existing sections, not from here.
"""

from __future__ import annotations

import os
import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from ingest.sections import Section

# The evidence kinds the byte sniffer (channels/web/uploads.py) can recognise. A kind not
# listed here cannot be configured: the page must never accept what it cannot check.
EvidenceKind = Literal["jpg", "png", "mp4", "pdf", "doc", "docx"]

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_size(value: Any) -> int:
    """``5 MB`` -> 5 MiB. Sizes are binary (1 MB = 1024 KB), as phones and file managers
    show them, so a photo shown as "5.0 MB" is within a 5 MB limit."""
    if isinstance(value, bool):
        raise ValueError("must be a size like '5 MB' or a number of bytes")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        match = _SIZE.match(value)
        if match:
            unit = (match.group(2) or "").lower()[:1]
            return int(float(match.group(1)) * _UNITS[unit])
    raise ValueError("must be a size like '5 MB', '500 KB' or a number of bytes")


Size = Annotated[int, BeforeValidator(parse_size), Field(ge=0)]


def format_size(size: int) -> str:
    """The inverse for messages: ``5 MB``, ``500 KB``, ``1.5 MB``."""
    for unit, factor in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if size >= factor:
            amount = size / factor
            return f"{amount:.1f}".rstrip("0").rstrip(".") + f" {unit}"
    return f"{size} B"


class EvidenceType(Section):
    kind: EvidenceKind
    max_size: Size


class RateLimit(Section):
    """At most ``requests`` per client IP in any window of ``per_seconds`` (sliding)."""

    requests: int = Field(ge=1)
    per_seconds: float = Field(gt=0)


class RateLimits(Section):
    submissions: RateLimit = RateLimit(requests=10, per_seconds=600)
    inquiries: RateLimit = RateLimit(requests=30, per_seconds=600)


class FeedbackAspect(Section):
    """One step of the service the feedback form asks to rate (分项评价)."""

    key: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name: str
    name_en: str


_DEFAULT_EVIDENCE = (
    EvidenceType(kind="jpg", max_size=5 * 1024**2),
    EvidenceType(kind="png", max_size=5 * 1024**2),
    EvidenceType(kind="mp4", max_size=20 * 1024**2),
    EvidenceType(kind="pdf", max_size=10 * 1024**2),
    EvidenceType(kind="doc", max_size=10 * 1024**2),
    EvidenceType(kind="docx", max_size=10 * 1024**2),
)

_DEFAULT_ASPECTS = (
    FeedbackAspect(key="attitude", name="服务态度", name_en="Service attitude"),
    FeedbackAspect(key="efficiency", name="办理效率", name_en="Speed of handling"),
    FeedbackAspect(key="competence", name="业务能力", name_en="Competence"),
    FeedbackAspect(key="reply", name="答复情况", name_en="Quality of the reply"),
)


class WebSettings(Section):
    evidence: tuple[EvidenceType, ...] = _DEFAULT_EVIDENCE
    max_files: int = Field(default=10, ge=0, le=100)
    max_total_size: Size = 40 * 1024**2
    max_fields_size: Size = Field(
        default=256 * 1024, description="all text fields of one submission together"
    )
    drain_size: Size = Field(
        default=8 * 1024**2,
        description="a request declared at most this much over the limit is read and "
        "discarded so that a browser shows the answer instead of 'connection reset'",
    )
    upload_timeout_seconds: float = Field(default=300.0, gt=0)
    details_min_chars: int = Field(default=10, ge=1)
    details_max_chars: int = Field(default=5000, ge=10, le=100_000)
    rate_limits: RateLimits = RateLimits()
    csrf_secret_env: str = "SHOULI_WEB_CSRF_SECRET"
    form_max_age_hours: float = Field(default=24.0, gt=0)
    progress_floor_seconds: float = Field(
        default=0.25,
        ge=0,
        description="a failed progress inquiry answers no sooner than this, so timing does "
        "not tell a wrong number from a wrong contact",
    )
    feedback_aspects: tuple[FeedbackAspect, ...] = _DEFAULT_ASPECTS
    # First contact (首问负责制): the department whose desk reads what the forms bring in and
    # owns it until it is answered; None: no department is named for web intake.
    complaint_department: str | None = Field(
        default=None, description="first-contact department of the complaint form"
    )
    feedback_department: str | None = Field(
        default=None, description="first-contact department of the supervision feedback form"
    )

    @model_validator(mode="after")
    def _unique(self) -> WebSettings:
        kinds = [e.kind for e in self.evidence]
        if len(set(kinds)) != len(kinds):
            raise ValueError("evidence: each kind may be listed once")
        keys = [a.key for a in self.feedback_aspects]
        if len(set(keys)) != len(keys):
            raise ValueError("feedback_aspects: duplicate key")
        return self

    def limit_for(self, kind: str) -> int | None:
        return next((e.max_size for e in self.evidence if e.kind == kind), None)

    @property
    def largest_file(self) -> int:
        return max((e.max_size for e in self.evidence), default=0)

    @property
    def max_request_size(self) -> int:
        """The most a valid submission can take on the wire: files, fields, and multipart
        framing (boundaries and part headers, generously 16 KB per part)."""
        parts = self.max_files + 64
        return self.max_total_size + self.max_fields_size + parts * 16 * 1024

    def csrf_secret(self) -> bytes | None:
        value = os.environ.get(self.csrf_secret_env)
        return value.encode() if value else None
