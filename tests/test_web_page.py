"""GET /: the page in both languages, its facts from config, labels, headers, stylesheet."""

from __future__ import annotations

from collections.abc import AsyncIterator
from html.parser import HTMLParser

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from channels.web.i18n import EN, ZH
from tests.stack import Stack
from tests.support_http import api_client
from tests.test_web_support import shared_app_fixture

pytestmark = pytest.mark.asyncio(loop_scope="module")


shared = shared_app_fixture("web-page")


@pytest_asyncio.fixture(loop_scope="module")
async def web(shared: tuple[Stack, FastAPI]) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(shared[1]) as opened:
        yield opened


@pytest.fixture
def embedded_stack(shared: tuple[Stack, FastAPI]) -> Stack:
    return shared[0]


class Controls(HTMLParser):
    """Form controls, the ids that labels point at, and what fieldsets wrap."""

    def __init__(self) -> None:
        super().__init__()
        self.controls: list[dict[str, str]] = []
        self.label_for: set[str] = set()
        self.in_label = 0
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "label":
            self.in_label += 1
            if "for" in values:
                self.label_for.add(values["for"])
        elif tag in ("input", "select", "textarea"):
            self.controls.append({**values, "_tag": tag, "_wrapped": str(self.in_label > 0)})
        elif tag == "script":
            self.scripts += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self.in_label -= 1


async def test_the_page_is_chinese_by_default_with_three_sections_and_the_configured_facts(
    web: httpx.AsyncClient, embedded_stack: Stack
) -> None:
    page = await web.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert '<html lang="zh-CN">' in html
    # The fragments land a browser on the error summary, or the timeline, of the answer.
    for action in (
        'action="/api/complaints#c-errors"',
        'action="/api/feedback#f-errors"',
        'action="/progress#progress"',
    ):
        assert action in html
    assert "投诉表单" in html and "服务监督反馈表" in html and "投诉进度查询" in html
    settings = embedded_stack.settings
    assert settings.organisation.name in html and settings.organisation.hotline in html
    assert "周一至周五 9:00–18:00" in html
    # Time limits from config: acceptance, handling by severity, feedback's own 2 days.
    assert "我们将在1个工作日内审核您的投诉" in html
    assert "受理后一般在5个工作日内调查核实并处理（重要投诉3个工作日，重大投诉1个工作日）" in html
    assert "我们将在2个工作日内处理并答复您的监督反馈" in html
    for category in settings.categories:
        assert f'<option value="{category.key}"' in html and category.name in html
    assert "jpg、png（每个不超过5 MB）" in html and "mp4（每个不超过20 MB）" in html
    assert "最多10个文件，合计不超过40 MB" in html
    assert "shouli_csrf=" in page.headers["set-cookie"]
    assert "httponly" in page.headers["set-cookie"].lower()
    assert "samesite=strict" in page.headers["set-cookie"].lower()


async def test_the_english_switch_shows_the_same_page_in_english(
    web: httpx.AsyncClient, embedded_stack: Stack
) -> None:
    zh = await web.get("/")
    assert 'href="/?lang=en"' in zh.text
    page = await web.get("/?lang=en")
    html = page.text
    assert '<html lang="en">' in html
    assert "Complaint form" in html and "Service supervision feedback form" in html
    assert "Complaint progress inquiry" in html
    assert embedded_stack.settings.organisation.name_en in html
    assert "within 1 working day" in html and "within 2 working days" in html
    assert "Monday to Friday 9:00–18:00" in html
    assert 'href="/?lang=zh"' in html
    for category in embedded_stack.settings.categories:
        assert category.name_en in html
    assert "投诉表单" not in html


async def test_every_visible_control_has_a_label_and_the_honeypot_is_out_of_reach(
    web: httpx.AsyncClient,
) -> None:
    for lang in ("zh", "en"):
        parser = Controls()
        parser.feed((await web.get(f"/?lang={lang}")).text)
        visible = [c for c in parser.controls if c.get("type") != "hidden"]
        assert len(visible) > 20
        for control in visible:
            if control.get("type") == "radio":
                assert control["_wrapped"] == "True", control  # inside its own <label>
            else:
                assert control.get("id") in parser.label_for, control
        honeypots = [c for c in parser.controls if c.get("name") == "website"]
        assert len(honeypots) == 2
        assert all(c["tabindex"] == "-1" and c["autocomplete"] == "off" for c in honeypots)
        required = {
            c["name"] for c in visible if "required" in c and c.get("id", "").startswith("c-")
        }
        assert required == {"name", "contact", "incident_at", "category", "details"}


async def test_both_languages_have_every_message(web: httpx.AsyncClient) -> None:
    assert set(ZH) == set(EN)
    placeholders = {key: sorted(set(_names(ZH[key]))) for key in ZH}
    assert placeholders == {key: sorted(set(_names(EN[key]))) for key in EN}


def _names(text: str) -> list[str]:
    import string

    return [name for _, name, _, _ in string.Formatter().parse(text) if name]


async def test_pages_forbid_scripts_framing_and_outside_referrers_and_are_not_cached(
    web: httpx.AsyncClient,
) -> None:
    page = await web.get("/")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "form-action 'self'" in csp and "script-src" not in csp
    assert page.headers["referrer-policy"] == "same-origin"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["cache-control"] == "no-store"
    parser = Controls()
    parser.feed(page.text)
    assert parser.scripts == 0, "the page works without JavaScript and ships none"


async def test_the_stylesheet_is_cached_and_revalidated_by_its_etag(
    web: httpx.AsyncClient,
) -> None:
    page = await web.get("/")
    href = page.text.split('rel="stylesheet" href="', 1)[1].split('"', 1)[0]
    css = await web.get(href)
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert "@media" in css.text, "responsive rules for phone screens"
    again = await web.get(href, headers={"If-None-Match": css.headers["etag"]})
    assert again.status_code == 304


async def test_the_api_description_documents_the_web_endpoints_for_other_systems(
    web: httpx.AsyncClient,
) -> None:
    spec = (await web.get("/openapi.json")).json()
    complaint = spec["paths"]["/api/complaints"]["post"]
    schema = complaint["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert set(schema["required"]) == {"name", "contact", "incident_at", "category", "details"}
    assert schema["properties"]["evidence"]["items"]["format"] == "binary"
    feedback = spec["paths"]["/api/feedback"]["post"]["requestBody"]["content"]
    assert feedback["multipart/form-data"]["schema"]["required"] == ["overall"]
    progress = spec["paths"]["/api/complaints/{number}/progress"]["get"]
    assert [p["name"] for p in progress["parameters"]] == ["number", "contact"]
    assert "/api/progress/{token}" in spec["paths"]
