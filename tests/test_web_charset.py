"""Web form text in another charset than the form declares (a GBK page of a partner portal
posting to us as "utf-8"): decoded as the email channel decodes mail (channels.email.charset),
and the decision recorded on the ticket as an intake note without any of the text."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from tests.stack import Stack, ticket_of
from tests.support_http import api_client
from tests.test_web_support import complaint_fields, fixture, shared_app_fixture

in_module_loop = pytest.mark.asyncio(loop_scope="module")
BOUNDARY = "----shouli-charset-boundary"
DETAILS = "光明小区5栋自来水发黄，有明显异味，已经持续三天，请尽快派人检测。"
NAME = "张三"


shared = shared_app_fixture("web-charset", router=True)


@pytest_asyncio.fixture(loop_scope="module")
async def client(shared: tuple[Stack, FastAPI]) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(shared[1]) as opened:
        yield opened


def gbk_fields() -> dict[str, str]:
    # A phone of its own per test: the same phone and category would merge as a repeat.
    phone = f"139{random.randrange(10**8):08d}"
    return complaint_fields(name=NAME, contact=phone, details=DETAILS)


def multipart(fields: dict[str, bytes], files: tuple[tuple[bytes, bytes], ...] = ()) -> bytes:
    """A multipart body with the bytes as given (httpx would encode them as UTF-8); ``files``
    are (file name, content) pairs of evidence."""
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        + value
        + b"\r\n"
        for name, value in fields.items()
    ]
    parts.extend(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="evidence"; filename="'.encode()
        + filename
        + b'"\r\nContent-Type: image/png\r\n\r\n'
        + content
        + b"\r\n"
        for filename, content in files
    )
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


async def ticket_for(stack: Stack, number: str) -> dict[str, Any]:
    from store.tickets import find_ticket

    async def made() -> bool:
        async with stack.rt.database.sessions() as session:
            return await find_ticket(session, number) is not None

    assert await stack.wait_until(made, timeout=30), f"no ticket {number}"
    return await ticket_of(stack, number)


def intake_notes(ticket: dict[str, Any]) -> list[str]:
    return [e["detail"]["note"] for e in ticket["events"] if e["kind"] == "intake_note"]


def assert_decoded_with_note(ticket: dict[str, Any]) -> None:
    assert ticket["body"] == DETAILS
    assert ticket["complainant"]["name"] == NAME
    notes = intake_notes(ticket)
    assert any(n.startswith("form field 'details':") and "gb18030" in n for n in notes), notes
    assert any(n.startswith("form field 'name':") and "gb18030" in n for n in notes), notes
    for note in notes:  # codec names and field names only, never what the person wrote
        assert NAME not in note and "光明" not in note and "139" not in note


@in_module_loop
async def test_a_multipart_form_declaring_utf8_but_sending_gbk_is_decoded_and_noted(
    client: httpx.AsyncClient, shared: tuple[Stack, FastAPI]
) -> None:
    fields = {k: v.encode("gbk") for k, v in gbk_fields().items()}
    fields["_charset_"] = b"utf-8"  # what an HTML form declares (WHATWG "_charset_")
    photo = ("漏水.png".encode("gbk"), fixture("leak.png"))
    response = await client.post(
        "/api/complaints",
        content=multipart(fields, (photo,)),
        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    assert response.status_code == 201, response.text
    ticket = await ticket_for(shared[0], response.json()["number"])
    assert_decoded_with_note(ticket)
    assert [a["filename"] for a in ticket["attachments"]] == ["漏水.png"]
    assert "file name of evidence 1: label utf-8 wrong, detected gb18030" in intake_notes(ticket)


@in_module_loop
async def test_an_urlencoded_form_declaring_utf8_but_sending_gbk_is_decoded_and_noted(
    client: httpx.AsyncClient, shared: tuple[Stack, FastAPI]
) -> None:
    response = await client.post(
        "/api/complaints",
        content=urlencode(gbk_fields(), encoding="gbk").encode("ascii"),
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
    )
    assert response.status_code == 201, response.text
    assert_decoded_with_note(await ticket_for(shared[0], response.json()["number"]))


@in_module_loop
async def test_a_utf8_form_gets_no_charset_note(
    client: httpx.AsyncClient, shared: tuple[Stack, FastAPI]
) -> None:
    response = await client.post("/api/complaints", data=gbk_fields())
    assert response.status_code == 201, response.text
    ticket = await ticket_for(shared[0], response.json()["number"])
    assert ticket["body"] == DETAILS
    assert not [n for n in intake_notes(ticket) if n.startswith("form field")]


def test_short_fields_are_decoded_with_the_codec_of_the_whole_form() -> None:
    from channels.web.charset import decode_form_texts

    # "张三" alone (4 bytes) reads as Big5 too; with the details beside it the form is GBK.
    fields, notes = decode_form_texts(
        {"name": NAME.encode("gbk"), "details": DETAILS.encode("gbk"), "category": b"billing"},
        "utf-8",
    )
    assert fields == {"name": NAME, "details": DETAILS, "category": "billing"}
    assert len(notes) == 2 and all("gb18030" in n for n in notes)
