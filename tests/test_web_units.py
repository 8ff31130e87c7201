"""The web channel's pure parts: file names, byte sniffing, sizes, contacts, the rate
limiter's window and the CSRF token, each on a table of cases."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from channels.web import sniff
from channels.web.abuse import CsrfGuard, CsrfProblem, SlidingWindowLimiter, cross_site
from channels.web.forms import parse_contact, parse_incident
from channels.web.names import safe_filename
from channels.web.settings import RateLimit, WebSettings, format_size, parse_size
from tests.test_web_support import ZONE, fixture


@pytest.mark.parametrize(
    ("raw", "kind", "safe"),
    [
        ("../../etc/passwd.png", "png", "passwd.png"),
        ("C:\\Users\\张三\\Desktop\\现场.JPG", "jpg", "现场.jpg"),
        ("photo\u202egpj.exe", "jpg", "photo_gpj.jpg"),
        ("bad\x00name\r\n.pdf", "pdf", "bad_name__.pdf"),
        ("...", "png", "evidence-3.png"),
        ("CON.pdf", "pdf", "CON_.pdf"),
        ('<img src=x onerror="alert(1)">.png', "png", "_img src=x onerror=_alert(1)__.png"),
        ("照片" * 60 + ".jpeg", "jpg", "照片" * 40 + ".jpeg"),
        ("report.exe", None, "report.exe"),
    ],
)
def test_file_names_lose_paths_control_and_bidi_characters_and_get_the_real_extension(
    raw: str, kind: str | None, safe: str
) -> None:
    assert safe_filename(raw, kind, 3) == safe


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("meter.jpg", "jpg"),
        ("leak.png", "png"),
        ("statement.pdf", "pdf"),
        ("clip.mp4", "mp4"),
        ("letter.doc", "doc"),
        ("letter.docx", "docx"),
        ("sheet.xls", "doc"),  # OLE2 claims doc; confirm() says no
        ("archive.zip", "docx"),  # ZIP claims docx; confirm() says no
        ("page.html", None),
    ],
)
def test_the_first_bytes_name_a_kind_and_containers_are_confirmed_from_the_whole_file(
    name: str, kind: str | None
) -> None:
    data = fixture(name)
    assert sniff.sniff_head(data[: sniff.HEAD_BYTES]) == kind
    if kind is not None:
        assert sniff.confirm_bytes(kind, data) is (name not in ("sheet.xls", "archive.zip"))


def test_a_quicktime_movie_is_not_an_mp4_and_says_what_it_is() -> None:
    mov = b"\x00\x00\x00\x14ftypqt  \x00\x00\x02\x00qt  "
    assert sniff.sniff_head(mov) is None
    assert sniff.describe(mov) == "mov"


@pytest.mark.parametrize(
    ("text", "size"),
    [("5 MB", 5 * 1024**2), ("500KB", 500 * 1024), ("1.5 mb", 1536 * 1024), (1024, 1024)],
)
def test_sizes_are_read_as_people_write_them(text: str | int, size: int) -> None:
    assert parse_size(text) == size


def test_sizes_in_messages_read_back_the_same() -> None:
    assert [format_size(n) for n in (5 * 1024**2, 64 * 1024, 1536 * 1024, 900)] == [
        "5 MB",
        "64 KB",
        "1.5 MB",
        "900 B",
    ]
    with pytest.raises(ValueError):
        WebSettings.model_validate({"evidence": [{"kind": "jpg", "max_size": "lots"}]})
    with pytest.raises(ValueError):
        WebSettings.model_validate({"evidence": [{"kind": "exe", "max_size": "1 MB"}]})


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("13812345678", "+8613812345678"),
        ("+86 138-1234-5678", "+8613812345678"),
        ("１３８１２３４５６７８", "+8613812345678"),
        ("010 6512 3456", "+861065123456"),
        ("Zhang.San@Example.CN", "zhang.san@example.cn"),
        ("95598", None),
        ("12345678901234", None),
        ("a@b", None),
        ("", None),
    ],
)
def test_a_contact_is_a_callable_number_or_an_email_in_one_canonical_form(
    raw: str, canonical: str | None
) -> None:
    contact = parse_contact(raw)
    assert (contact.canonical if contact else None) == canonical


def test_the_incident_time_is_local_unless_it_says_otherwise() -> None:
    local = parse_incident("2026-11-20T14:30", ZONE)
    assert local == datetime(2026, 11, 20, 6, 30, tzinfo=UTC)
    assert parse_incident("2026-11-20 14:30", ZONE) == local
    assert parse_incident("2026-11-20T06:30:00Z", ZONE) == local
    assert parse_incident("20/11/2026", ZONE) is None


def test_the_sliding_window_lets_requests_through_again_as_old_ones_leave_it() -> None:
    now = [1000.0]
    limiter = SlidingWindowLimiter(RateLimit(requests=3, per_seconds=60), clock=lambda: now[0])
    assert [limiter.hit("a") for _ in range(3)] == [None, None, None]
    assert limiter.hit("a") == pytest.approx(60.0)
    assert limiter.hit("b") is None, "each address has its own window"
    now[0] += 30
    assert limiter.hit("a") == pytest.approx(30.0)
    now[0] += 30.5
    assert limiter.hit("a") is None


def test_the_limiter_forgets_addresses_rather_than_grow_without_bound() -> None:
    now = [0.0]
    limiter = SlidingWindowLimiter(
        RateLimit(requests=1, per_seconds=10), clock=lambda: now[0], max_keys=100
    )
    for i in range(1000):
        limiter.hit(f"10.0.{i // 256}.{i % 256}")
    assert len(limiter._hits) <= 100


def test_a_csrf_token_verifies_only_with_its_own_cookie_and_only_while_fresh() -> None:
    now = [1_800_000_000.0]
    guard = CsrfGuard(b"secret", 3600, clock=lambda: now[0])
    own = {"http://127.0.0.1:8000"}
    browser = {"origin": "http://127.0.0.1:8000", "sec-fetch-site": "same-origin"}
    token = guard.token_for("cookie-a")
    assert guard.check(browser, "cookie-a", token, own) is None
    assert guard.check(browser, "cookie-b", token, own) is CsrfProblem.INVALID
    assert guard.check(browser, None, token, own) is CsrfProblem.MISSING
    assert guard.check(browser, "cookie-a", None, own) is CsrfProblem.MISSING
    assert guard.check(browser, "cookie-a", "1800000000.forged", own) is CsrfProblem.INVALID
    assert CsrfGuard(b"other", 3600).check(browser, "cookie-a", token, own) is CsrfProblem.INVALID
    now[0] += 3601
    assert guard.check(browser, "cookie-a", token, own) is CsrfProblem.EXPIRED
    # Other systems: no Origin, no Sec-Fetch-*, no cookie, no token.
    assert guard.check({}, None, None, own) is None


@pytest.mark.parametrize(
    ("headers", "cross"),
    [
        ({"origin": "https://evil.example"}, True),
        ({"origin": "null"}, True),
        ({"sec-fetch-site": "cross-site"}, True),
        ({"origin": "http://127.0.0.1:8000", "sec-fetch-site": "same-origin"}, False),
        ({}, False),
    ],
)
def test_a_cross_site_post_is_recognised_by_its_origin_or_fetch_metadata(
    headers: dict[str, str], cross: bool
) -> None:
    assert cross_site(headers, {"http://127.0.0.1:8000"}) is cross
