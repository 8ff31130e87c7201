"""The signature scheme of the referral webhook, both directions (CONTRACT.md).

A request carries::

    X-Shouli-Timestamp: 1795430400                 (unix seconds, when it was signed)
    X-Shouli-Signature: sha256=<64 lower-case hex>

where the hex is HMAC-SHA256, keyed with the source's secret, over the ASCII timestamp, a
full stop, and the raw body exactly as sent: ``b"1795430400." + body``. Binding the timestamp
into the MAC is what makes the age check mean anything (the Stripe and Slack schemes do the
same). Our replies to a source are signed the same way with the reply secret.

Checks, in this order, each refused with 401 and a reason code:

1. ``timestamp_missing`` / ``timestamp_malformed``, ``signature_missing`` /
   ``signature_malformed``: the headers are absent or not of the form above;
2. ``signature_mismatch``: no configured secret (current or rotated-out) gives this MAC.
   Compared with :func:`hmac.compare_digest`, against every secret without an early exit,
   so timing tells an attacker nothing about how much of a guess was right;
3. ``timestamp_expired`` / ``timestamp_in_future``: signed more than the allowed age ago,
   or that far ahead of our clock. Checked after the MAC, so only a holder of the secret
   learns anything about our clock;
4. ``replayed``: this exact signature was accepted before (``referral_signatures``; the
   guard only needs to remember signatures for the allowed age, older ones fail step 3).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from ingest.errors import Refused
from store.referral_models import ReferralSignature

TIMESTAMP_HEADER = "X-Shouli-Timestamp"
SIGNATURE_HEADER = "X-Shouli-Signature"
_SIGNATURE = re.compile(r"^sha256=([0-9a-fA-F]{64})$")
_TIMESTAMP = re.compile(r"^\d{1,12}$")


class SignatureRejected(Refused):
    """The request is not authentic or not fresh; ``code`` is the 401 reason code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def signed_message(timestamp: str, body: bytes) -> bytes:
    return timestamp.encode("ascii") + b"." + body


def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    """The ``X-Shouli-Signature`` value for ``body`` signed at ``timestamp``."""
    digest = hmac.new(secret.encode(), signed_message(str(timestamp), body), hashlib.sha256)
    return f"sha256={digest.hexdigest()}"


def signed_headers(secret: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign(secret, timestamp, body)}


@dataclass(frozen=True)
class Verified:
    timestamp: int
    digest: str  # the presented MAC, lower-case hex: the replay guard's key


def verify(
    *,
    secrets: Sequence[str],
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    now: float,
    max_age_seconds: float,
) -> Verified:
    """Check steps 1-3 of the module docstring; raise :class:`SignatureRejected`."""
    if not timestamp:
        raise SignatureRejected("timestamp_missing", f"send {TIMESTAMP_HEADER} (unix seconds)")
    timestamp = timestamp.strip()
    if not _TIMESTAMP.match(timestamp):
        raise SignatureRejected(
            "timestamp_malformed", f"{TIMESTAMP_HEADER} must be unix seconds, e.g. 1795430400"
        )
    if not signature:
        raise SignatureRejected(
            "signature_missing", f"send {SIGNATURE_HEADER}: sha256=<hex HMAC-SHA256>"
        )
    match = _SIGNATURE.match(signature.strip())
    if match is None:
        raise SignatureRejected(
            "signature_malformed", f"{SIGNATURE_HEADER} must be sha256=<64 hex digits>"
        )
    presented = match.group(1).lower().encode("ascii")
    message = signed_message(timestamp, body)
    matched = False
    for secret in secrets:
        expected = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest().encode("ascii")
        # No early exit and no short-circuit: every secret costs the same comparison.
        matched = hmac.compare_digest(expected, presented) | matched
    if not matched:
        raise SignatureRejected(
            "signature_mismatch",
            "the signature does not match: HMAC-SHA256 of '<timestamp>.<raw body>' "
            "with this source's secret",
        )
    signed_at = int(timestamp)
    if now - signed_at > max_age_seconds:
        raise SignatureRejected(
            "timestamp_expired",
            f"signed {int(now - signed_at)} s ago; requests older than "
            f"{int(max_age_seconds)} s are refused (sign each request when sending it)",
        )
    if signed_at - now > max_age_seconds:
        raise SignatureRejected(
            "timestamp_in_future", "the timestamp is ahead of our clock; check the sender's clock"
        )
    return Verified(signed_at, presented.decode("ascii"))


def claim_signature(conn: Connection, source: str, digest: str, now: datetime) -> None:
    """Remember an accepted signature (alone in one ``Database.write``); a second claim of the
    same one raises :class:`SignatureRejected` ``replayed``. Unique key, so two edges racing
    on one request cannot both win."""
    try:
        conn.execute(insert(ReferralSignature).values(source=source, signature=digest, seen_at=now))
    except IntegrityError as exc:
        raise SignatureRejected(
            "replayed", "this signed request was received before; sign every request afresh"
        ) from exc


def release_signature(conn: Connection, source: str, digest: str) -> None:
    """Forget a claim whose request failed on our side (503), so the sender's identical
    retry is not taken for a replay."""
    conn.execute(
        delete(ReferralSignature).where(
            col(ReferralSignature.source) == source, col(ReferralSignature.signature) == digest
        )
    )


def forget_signatures(conn: Connection, before: datetime) -> int:
    """Drop signatures older than the timestamp window: step 3 refuses those requests now."""
    result = conn.execute(delete(ReferralSignature).where(col(ReferralSignature.seen_at) < before))
    return int(result.rowcount or 0)


def replay_window(max_age_seconds: float) -> timedelta:
    # Both sides of "now": a request signed in the future is valid for as long.
    return timedelta(seconds=2 * max_age_seconds + 60)
