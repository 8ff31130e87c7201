"""End to end in headless Chromium against a real ``shouli serve``: a person files a complaint
in Chinese with a photo, reads the number, follows the progress; feedback by keyboard alone;
screenshots of the page in both languages and on a phone screen under test-artifacts/web/.

Needs Debian's ``chromium`` (and ``fonts-noto-cjk`` for readable screenshots) and the
Python package ``playwright``, driving that browser (never a downloaded one). Skips with the
reason when either is missing, unless SHOULI_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.stack import Stack
from tests.support import REQUIRE_SERVICES
from tests.test_web_support import ARTIFACTS, FIXTURES, ZONE, serve

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def need_browser() -> None:
    missing = []
    if not CHROMIUM.exists():
        missing.append(f"Debian's chromium ({CHROMIUM}; apt-get install -y chromium)")
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        missing.append("the Python package playwright (pip install playwright)")
    if not missing:
        return
    message = "headless browser test needs " + " and ".join(missing)
    if REQUIRE_SERVICES:
        pytest.fail(f"{message}, and SHOULI_REQUIRE_SERVICES=1", pytrace=False)
    pytest.skip(message)


@asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def test_a_person_files_a_complaint_in_chinese_with_a_photo_and_follows_its_progress(
    embedded_stack: Stack,
) -> None:
    need_browser()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    photo = FIXTURES / "leak.png"
    incident = (datetime.now(UTC) - timedelta(days=1)).astimezone(ZONE)
    async with serve(embedded_stack) as (url, _), chromium() as browser:
        context = await browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
        page = await context.new_page()
        await page.goto(f"{url}/")
        assert await page.title() == "投诉与服务监督 · 示例市水务集团"
        await page.screenshot(path=str(ARTIFACTS / "page-zh.png"), full_page=True)

        form = page.locator("#complaint form")
        await form.get_by_label("姓名").fill("张三")
        await form.get_by_label("联系方式").fill("138 1234 5678")
        await form.get_by_label("事件发生时间").fill(incident.strftime("%Y-%m-%dT%H:%M"))
        await form.get_by_label("投诉类型").select_option(label="水质")
        await form.get_by_label("投诉详情").fill(
            "光明小区5栋从前天起自来水发黄、有异味，烧开后有沉淀。请尽快派人检测水质并告知原因。"
        )
        await form.get_by_label("证据材料").set_input_files(str(photo))
        await form.get_by_role("button", name="提交投诉").click()
        await page.wait_for_selector("#complaint-number")
        assert "投诉已提交" in await page.content()
        number = (await page.locator("#complaint-number").inner_text()).strip()
        assert number.startswith("TS") and "-" in number
        await page.screenshot(path=str(ARTIFACTS / "answer-zh.png"), full_page=True)

        # The link from the answer page, then the inquiry form with number and contact.
        await page.locator("#progress-link").click()
        await page.wait_for_selector("#progress-status")
        assert number in await page.locator("#complaint-number").inner_text()

        dispatched = "已派至水质监测中心办理"
        for _ in range(60):
            await page.goto(f"{url}/")
            inquiry = page.locator("#progress form")
            await inquiry.get_by_label("投诉编号").fill(number)
            await inquiry.get_by_label("联系方式").fill("13812345678")
            await inquiry.get_by_role("button", name="查询进度").click()
            await page.wait_for_selector("#progress-title")
            if dispatched in await page.content():
                break
            await page.wait_for_timeout(500)
        assert dispatched in await page.content(), "the router dispatched it"
        assert await page.locator("#progress-status").inner_text() == "办理中"
        await page.screenshot(path=str(ARTIFACTS / "progress-zh.png"), full_page=True)

        english = await browser.new_context(locale="en-GB", viewport={"width": 1280, "height": 900})
        en_page = await english.new_page()
        await en_page.goto(f"{url}/?lang=en")
        assert "Complaint form" in await en_page.content()
        await en_page.screenshot(path=str(ARTIFACTS / "page-en.png"), full_page=True)

        phone = await browser.new_context(
            locale="zh-CN",
            viewport={"width": 390, "height": 844},
            device_scale_factor=2,
            is_mobile=True,
            has_touch=True,
        )
        phone_page = await phone.new_page()
        await phone_page.goto(f"{url}/")
        assert await phone_page.evaluate(
            "document.documentElement.scrollWidth <= window.innerWidth"
        ), "nothing wider than a phone screen"
        button = await phone_page.get_by_role("button", name="提交投诉").bounding_box()
        assert button is not None and button["height"] >= 44 and button["width"] > 300
        await phone_page.screenshot(path=str(ARTIFACTS / "page-phone-zh.png"), full_page=True)

    code, out, err = await embedded_stack.shouli("tickets", "show", number, "--json")
    assert code == 0, err
    ticket = json.loads(out)
    assert ticket["channel"] == "web" and ticket["category"] == "water_quality"
    assert ticket["complainant"]["phone"] == "+8613812345678"
    (attachment,) = ticket["attachments"]
    assert attachment["filename"] == "leak.png" and attachment["content_type"] == "image/png"
    assert attachment["sha256"] == hashlib.sha256(photo.read_bytes()).hexdigest()
    for shot in ("page-zh", "answer-zh", "progress-zh", "page-en", "page-phone-zh"):
        assert (ARTIFACTS / f"{shot}.png").stat().st_size > 10_000


async def test_feedback_can_be_given_with_the_keyboard_alone(embedded_stack: Stack) -> None:
    need_browser()
    async with serve(embedded_stack) as (url, _), chromium() as browser:
        context = await browser.new_context(locale="en-GB")
        page = await context.new_page()
        await page.goto(f"{url}/?lang=en")
        # The first Tab stop is the skip link to the complaint form.
        await page.keyboard.press("Tab")
        assert await page.evaluate("document.activeElement.textContent") == (
            "Skip to the complaint form"
        )
        await page.locator("#f-name").focus()
        await page.keyboard.type("Wang Wu")
        await page.keyboard.press("Tab")
        await page.keyboard.type("wang.wu@example.cn")
        await page.keyboard.press("Tab")  # into the overall rating group: the first radio
        await page.keyboard.press("ArrowRight")  # "Satisfied", selected as it moves
        await page.keyboard.press("ArrowRight")  # "Neutral"
        for _ in range(4):  # the four aspect groups, left unrated
            await page.keyboard.press("Tab")
        await page.keyboard.press("Tab")
        await page.keyboard.type("Clear answers on the phone.")
        await page.keyboard.press("Tab")
        await page.keyboard.type("Open on Saturdays.")
        await page.keyboard.press("Tab")
        focused = await page.evaluate("document.activeElement.textContent")
        assert focused == "Send feedback"
        await page.keyboard.press("Enter")
        await page.wait_for_selector("#complaint-number")
        text = await page.content()
        assert "Feedback sent" in text and "within 2 working days" in text
        assert await embedded_stack.wait_for_tickets(1, timeout=60) == 1
    code, out, _ = await embedded_stack.shouli("tickets", "list", "--json", "--channel", "feedback")
    assert code == 0
    (ticket,) = [json.loads(line) for line in out.splitlines()]
    assert ticket["body"].startswith("总体评价：一般")
    complainant = ticket["complainant"]
    assert (complainant["name"], complainant["email"]) == ("Wang Wu", "wang.wu@example.cn")
    assert complainant["phone"] is None and complainant["anonymous"] is False
