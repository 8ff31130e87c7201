"""The signature on what we POST to someone else's HTTP endpoint (an SMS gateway, an
organisation's work-order system): ``X-Shouli-Signature: sha256=HMAC(secret,
"<X-Shouli-Timestamp>.<body>")``, so the receiver can tell our requests from forgeries and
refuse old ones replayed."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime


def signature(secret: str, stamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={digest.hexdigest()}"


def signed_headers(secret: str, body: bytes, now: datetime) -> dict[str, str]:
    stamp = str(int(now.timestamp()))
    return {
        "Content-Type": "application/json; charset=utf-8",
        "X-Shouli-Timestamp": stamp,
        "X-Shouli-Signature": signature(secret, stamp, body),
    }
