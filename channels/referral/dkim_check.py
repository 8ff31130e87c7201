"""DKIM verification of a mailed work order (dkimpy), with key records from config first.

``referrals.dkim_keys`` gives key records by name (``selector._domainkey.domain``) for
networks without public DNS (government intranets) and for tests; any other name is looked
up in DNS as dkimpy does by default.

A signature proves who signed, not who is in From: a stranger can sign with his own domain
and write our authority's address in From. So a pass counts for a source only when the
signing domain is the From domain or a parent of it (DMARC's relaxed alignment); the result
says whether it is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import dkim
import dkim.dnsplug

DnsFunc = Callable[..., bytes | None]
DkimStatus = Literal["pass", "fail", "none"]
_REASON_CHARS = 200
_DNS_TIMEOUT_SECONDS = 5


@dataclass(frozen=True)
class DkimResult:
    result: DkimStatus
    domain: str | None = None  # d= of the signature this result is about
    reason: str | None = None  # why it failed (no PII: dkimpy names domains, not people)
    aligned: bool = False  # the signing domain is the From domain or a parent of it

    @property
    def passed(self) -> bool:
        """A pass that vouches for the From address."""
        return self.result == "pass" and self.aligned

    def describe(self) -> str:
        if self.result == "none":
            return "none (the mail is not signed)"
        where = f"d={self.domain}" if self.domain else "no d="
        if self.result == "pass":
            return f"pass ({where})" if self.aligned else f"pass ({where}, not the From domain)"
        return f"fail ({where}: {self.reason or 'the signature does not verify'})"


def key_lookup(keys: Mapping[str, str], fallback: DnsFunc = dkim.dnsplug.get_txt) -> DnsFunc:
    """A dnsfunc for dkimpy: configured records first, then ``fallback`` (DNS)."""

    def lookup(name: bytes, timeout: int = _DNS_TIMEOUT_SECONDS) -> bytes | None:
        record = keys.get(name.decode("ascii", "replace").strip().lower().rstrip("."))
        if record is not None:
            return record.encode()
        return fallback(name, timeout=timeout)

    return lookup


def aligned(signing_domain: str | None, from_domain: str | None) -> bool:
    if not signing_domain or not from_domain:
        return False
    signing, sender = signing_domain.lower().rstrip("."), from_domain.lower().rstrip(".")
    return sender == signing or sender.endswith("." + signing)


class _Collected(logging.Handler):
    """dkimpy reports key and DNS problems only to its logger; keep them for the reason
    (and out of our logs)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def verify_dkim(raw: bytes, from_domain: str | None, dnsfunc: DnsFunc) -> DkimResult:
    """Verify every DKIM signature of ``raw``; an aligned pass wins, then any pass, then the
    first failure. Blocking (DNS): call it in a thread."""
    collected = _Collected()
    logger = logging.Logger("shouli.dkim", logging.WARNING)  # unregistered: never propagates
    logger.addHandler(collected)
    try:
        checker = dkim.DKIM(raw, logger=logger, timeout=_DNS_TIMEOUT_SECONDS)
        count = sum(1 for name, _ in checker.headers if name.lower() == b"dkim-signature")
    except Exception as exc:  # dkimpy refuses the message structure itself
        return DkimResult("fail", reason=_clean(f"{type(exc).__name__}: {exc}"))
    if count == 0:
        return DkimResult("none")
    results: list[DkimResult] = []
    for index in range(count):
        collected.messages.clear()
        checker.domain, checker.signature_fields = None, {}
        try:
            ok = bool(checker.verify(idx=index, dnsfunc=dnsfunc))
            reason = None if ok else (collected.messages[-1] if collected.messages else None)
        except dkim.DKIMException as exc:
            ok, reason = False, f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # a malformed signature dkimpy did not anticipate
            ok, reason = False, type(exc).__name__
        # d= even when the signature failed before dkimpy took it as the domain verified.
        domain = _domain(checker.domain or checker.signature_fields.get(b"d"))
        results.append(
            DkimResult(
                "pass" if ok else "fail",
                domain=domain,
                reason=None if ok else _clean(reason),
                aligned=aligned(domain, from_domain),
            )
        )
    return next(
        (r for r in results if r.passed),
        next((r for r in results if r.result == "pass"), results[0]),
    )


def _domain(value: bytes | str | None) -> str | None:
    if value is None:
        return None
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
    return text.strip().lower() or None


def _clean(reason: str | None) -> str | None:
    if reason is None:
        return None
    # "body hash mismatch (got b'...', expected b'...')": the hashes help nobody reading it.
    reason = reason.split(" (got ", 1)[0]
    return " ".join(reason.split())[:_REASON_CHARS]
