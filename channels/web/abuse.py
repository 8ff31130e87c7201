"""Abuse resistance for the public web channel: per-IP rate limits, CSRF, the honeypot.

Rate limits are a sliding window per client IP, **in memory, per process**: with several
edges behind a load balancer each edge counts on its own, so the effective limit is the
configured one times the number of edges. That is deliberate: the limit is there to stop a
script flooding one edge, not to meter people exactly, and it needs no shared store.

CSRF (for the browser form) is a double-submit cookie bound to a signed token: the page sets
a random cookie and puts ``HMAC(secret, cookie | issued)`` in a hidden field; a POST must
bring both, and the field must verify against the cookie. A cross-site page can make a
browser send the cookie but can neither read it nor the page, so it cannot forge the field.

Which requests are "from a browser"? Browsers send ``Origin`` on every POST (Fetch
standard, "append a request `Origin` header") and ``Sec-Fetch-Site`` with it; other systems
posting to the API send neither and no cookie. A request carrying any of those signals must
pass the check; a cross-site ``Origin`` or ``Sec-Fetch-Site: cross-site`` is refused outright.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

from channels.web.settings import RateLimit

CSRF_COOKIE = "shouli_csrf"
CSRF_FIELD = "csrf_token"
# A field no person sees or fills: hidden off-screen, out of the tab order and from
# assistive technology. Bots that fill every input fill this one.
HONEYPOT_FIELD = "website"


class SlidingWindowLimiter:
    """At most ``limit.requests`` hits per key in any ``limit.per_seconds`` window."""

    def __init__(
        self,
        limit: RateLimit,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self.limit = limit
        self._clock = clock
        self._max_keys = max_keys
        self._hits: dict[str, deque[float]] = {}

    def hit(self, key: str) -> float | None:
        """Count one request; ``None`` when allowed, else seconds until one would be."""
        now = self._clock()
        window = self.limit.per_seconds
        hits = self._hits.get(key)
        if hits is None:
            if len(self._hits) >= self._max_keys:
                self._evict(now)
            hits = self._hits[key] = deque()
        while hits and hits[0] <= now - window:
            hits.popleft()
        if len(hits) >= self.limit.requests:
            return max(hits[0] + window - now, 0.001)
        hits.append(now)
        return None

    def _evict(self, now: float) -> None:
        # Keys whose last hit left the window first; then the oldest keys (dict order),
        # so memory stays bounded even under a flood of distinct addresses.
        window = self.limit.per_seconds
        for key in [k for k, v in self._hits.items() if not v or v[-1] <= now - window]:
            del self._hits[key]
        while len(self._hits) >= self._max_keys:
            del self._hits[next(iter(self._hits))]


class CsrfProblem(StrEnum):
    CROSS_SITE = "cross_site"
    MISSING = "missing"
    INVALID = "invalid"
    EXPIRED = "expired"


@dataclass(frozen=True)
class CsrfGuard:
    secret: bytes
    max_age_seconds: float
    clock: Callable[[], float] = time.time

    @staticmethod
    def new_cookie() -> str:
        return secrets.token_urlsafe(32)

    def token_for(self, cookie: str) -> str:
        issued = str(int(self.clock()))
        return f"{issued}.{self._mac(cookie, issued)}"

    def check(
        self, headers: Mapping[str, str], cookie: str | None, token: str | None, own: set[str]
    ) -> CsrfProblem | None:
        """``None`` when the request may proceed. ``own``: origins this site is served as."""
        if cross_site(headers, own):
            return CsrfProblem.CROSS_SITE
        from_browser = bool(
            headers.get("origin") or headers.get("sec-fetch-site") or cookie or token
        )
        if not from_browser:
            return None
        if not cookie or not token:
            return CsrfProblem.MISSING
        issued, _, mac = token.partition(".")
        if not issued.isdigit() or not hmac.compare_digest(mac, self._mac(cookie, issued)):
            return CsrfProblem.INVALID
        if self.clock() - int(issued) > self.max_age_seconds:
            return CsrfProblem.EXPIRED
        return None

    def _mac(self, cookie: str, issued: str) -> str:
        digest = hmac.new(self.secret, f"{cookie}|{issued}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def cross_site(headers: Mapping[str, str], own: set[str]) -> bool:
    if headers.get("sec-fetch-site", "").lower() == "cross-site":
        return True
    origin = headers.get("origin")
    if not origin:
        return False
    # "null" is what a sandboxed or privacy-stripped page sends: not ours either.
    return origin.lower() not in own


def honeypot_filled(value: str | None) -> bool:
    return bool(value and value.strip())
