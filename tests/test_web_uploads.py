"""Evidence uploads: kinds read from the bytes, limits enforced while the body streams in,
file names made safe, and nothing stored from a refused submission."""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from channels.web.settings import EvidenceType
from tests.stack import Stack, ticket_of
from tests.support_http import api_client
from tests.test_web_support import (
    complaint_fields,
    fixture,
    reserved_numbers,
    shared_app_fixture,
    with_web,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")
MB = 1024 * 1024
BOUNDARY = "----shouli-test-boundary"


shared = shared_app_fixture("web-uploads", router=True)


@pytest_asyncio.fixture(loop_scope="module")
async def client(shared: tuple[Stack, FastAPI]) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(shared[1]) as opened:
        yield opened


async def ticket_for(stack: Stack, number: str) -> dict[str, Any]:
    from store.tickets import find_ticket

    async def made() -> bool:
        async with stack.rt.database.sessions() as session:
            return await find_ticket(session, number) is not None

    assert await stack.wait_until(made, timeout=30), f"no ticket {number}"
    return await ticket_of(stack, number)


def blob_files(stack: Stack) -> list[Path]:
    root = stack.rt.blobs.root
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


async def test_each_accepted_kind_is_stored_with_the_type_read_from_its_bytes(
    client: httpx.AsyncClient, shared: tuple[Stack, FastAPI]
) -> None:
    stack = shared[0]
    files = {
        "现场照片.jpg": ("meter.jpg", "image/jpeg"),
        "漏水.png": ("leak.png", "image/png"),
        "缴费凭证.pdf": ("statement.pdf", "application/pdf"),
        "情况说明.docx": (
            "letter.docx",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        ),
        "旧版说明.doc": ("letter.doc", "application/msword"),
        "视频.mp4": ("clip.mp4", "video/mp4"),
    }
    response = await client.post(
        "/api/complaints",
        data=complaint_fields(),
        # What a browser declares is ignored: everything claims to be octet-stream here.
        files=[
            ("evidence", (name, fixture(source), "application/octet-stream"))
            for name, (source, _) in files.items()
        ],
    )
    assert response.status_code == 201, response.text
    ticket = await ticket_for(stack, response.json()["number"])
    stored = {a["filename"]: a for a in ticket["attachments"]}
    assert set(stored) == set(files)
    for name, (source, content_type) in files.items():
        attachment = stored[name]
        assert attachment["content_type"] == content_type
        assert attachment["size"] == len(fixture(source))
        assert await stack.rt.blobs.get(attachment["sha256"]) == fixture(source)


async def test_a_web_page_named_like_a_photo_is_refused_with_what_it_really_is(
    client: httpx.AsyncClient, shared: tuple[Stack, FastAPI]
) -> None:
    before = await reserved_numbers(shared[0])
    response = await client.post(
        "/api/complaints",
        data=complaint_fields(),
        files=[("evidence", ("photo.jpg", fixture("page.html"), "image/jpeg"))],
    )
    assert response.status_code == 422
    assert response.json()["error"]["fields"] == {
        "evidence": "“photo.jpg” is a web page or script, not an accepted file type "
        "(accepted: jpg, png, mp4, pdf, doc, docx)"
    }
    assert await reserved_numbers(shared[0]) == before


async def test_a_png_named_pdf_is_kept_as_a_png_under_a_corrected_name(
    client: httpx.AsyncClient, shared: tuple[Stack, FastAPI]
) -> None:
    response = await client.post(
        "/api/complaints",
        data=complaint_fields(contact="13812340115"),
        files=[("evidence", ("扫描件.pdf", fixture("leak.png"), "application/pdf"))],
    )
    assert response.status_code == 201, response.text
    ticket = await ticket_for(shared[0], response.json()["number"])
    (attachment,) = ticket["attachments"]
    assert (attachment["filename"], attachment["content_type"]) == ("扫描件.png", "image/png")


@pytest.mark.parametrize(
    ("name", "source", "real"),
    [
        ("合同.docx", "archive.zip", "a ZIP archive"),
        ("报表.doc", "sheet.xls", "a Word document"),
    ],
)
async def test_containers_that_are_not_word_documents_are_refused(
    client: httpx.AsyncClient, name: str, source: str, real: str
) -> None:
    response = await client.post(
        "/api/complaints",
        data=complaint_fields(),
        files=[("evidence", (name, fixture(source), "application/msword"))],
    )
    assert response.status_code == 422
    message = response.json()["error"]["fields"]["evidence"]
    assert message.startswith(f"“{name}”") and "not an accepted file type" in message
    if source == "archive.zip":
        assert real in message


async def test_an_empty_file_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/complaints",
        data=complaint_fields(),
        files=[("evidence", ("空.png", b"", "image/png"))],
    )
    assert response.status_code == 422
    assert response.json()["error"]["fields"] == {"evidence": "“空.png” is empty"}


async def test_a_file_over_its_kinds_limit_is_refused_with_413_and_nothing_is_stored(
    shared: tuple[Stack, FastAPI],
) -> None:
    stack = shared[0]
    runtime = with_web(
        stack,
        evidence=(
            EvidenceType(kind="jpg", max_size=64 * 1024),
            EvidenceType(kind="png", max_size=256 * 1024),
        ),
    )
    big_jpeg = fixture("meter.jpg") + bytes(100 * 1024)
    before, blobs = await reserved_numbers(stack), blob_files(stack)
    async with api_client(runtime) as client:
        response = await client.post(
            "/api/complaints",
            data=complaint_fields(),
            files=[
                ("evidence", ("small.png", fixture("leak.png"), "image/png")),
                ("evidence", ("big.jpg", big_jpeg, "image/jpeg")),
            ],
        )
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "too_large"
    assert error["fields"] == {"evidence": "“big.jpg” is larger than 64 KB"}
    assert await reserved_numbers(stack) == before
    assert blob_files(stack) == blobs, "not even the small valid file is stored"


async def test_files_beyond_the_count_or_the_total_size_are_refused(
    shared: tuple[Stack, FastAPI],
) -> None:
    runtime = with_web(shared[0], max_files=2, max_total_size=8 * 1024)
    png = fixture("leak.png")  # 2.7 KB
    async with api_client(runtime) as client:
        counted = await client.post(
            "/api/complaints",
            data=complaint_fields(),
            files=[("evidence", (f"{i}.png", png, "image/png")) for i in range(3)],
        )
        assert counted.status_code == 422
        assert counted.json()["error"]["fields"] == {
            "evidence": "“2.png” was not uploaded: at most 2 files"
        }
    runtime = with_web(shared[0], max_files=5, max_total_size=6 * 1024)
    async with api_client(runtime) as client:
        total = await client.post(
            "/api/complaints",
            data=complaint_fields(),
            files=[("evidence", (f"{i}.png", png, "image/png")) for i in range(3)],
        )
    assert total.status_code == 413
    assert total.json()["error"]["fields"] == {
        "evidence": "“2.png” was not uploaded: all files together may not exceed 6 KB"
    }


def multipart_head(fields: dict[str, str], filename: str) -> bytes:
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
        for k, v in fields.items()
    ]
    parts.append(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="evidence"; '
        f'filename="{filename}"\r\nContent-Type: image/jpeg\r\n\r\n'
    )
    return "".join(parts).encode()


class Endless:
    """A request body of ``total`` bytes (a JPEG that never ends), counting what was read."""

    def __init__(
        self, total: int, *, chunk: int = MB, fields: dict[str, str] | None = None
    ) -> None:
        self.total = total
        self.chunk = chunk
        self.sent = 0
        self.head = multipart_head(fields or complaint_fields(), "huge.jpg")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self.sent += len(self.head)
        yield self.head
        block = b"\xff\xd8\xff\xe0" + bytes(self.chunk - 4)
        first = True
        while self.sent < self.total:
            data = block if first else bytes(self.chunk)
            first = False
            self.sent += len(data)
            yield data
            await asyncio.sleep(0)


async def test_a_streamed_two_gigabyte_upload_is_cut_off_at_the_limit_without_keeping_it(
    client: httpx.AsyncClient, shared: tuple[Stack, FastAPI]
) -> None:
    stack = shared[0]
    limit = stack.settings.web.max_request_size
    body = Endless(2 * 1024 * MB)
    before, blobs = await reserved_numbers(stack), blob_files(stack)
    tracemalloc.start()
    try:
        # No Content-Length: chunked, so only counting while reading can stop it.
        response = await client.post(
            "/api/complaints",
            content=body.__aiter__(),
            headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"
    assert body.sent <= limit + 2 * MB, f"read {body.sent / MB:.0f} MB of 2048 MB"
    assert peak < 12 * MB, f"peak Python memory {peak / MB:.1f} MB"
    assert await reserved_numbers(stack) == before
    assert blob_files(stack) == blobs


async def test_a_declared_length_over_the_limit_is_refused_before_reading_the_body(
    client: httpx.AsyncClient, shared: tuple[Stack, FastAPI]
) -> None:
    body = Endless(2 * 1024 * MB)
    response = await client.post(
        "/api/complaints",
        content=body.__aiter__(),
        headers={
            "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
            "Content-Length": str(2 * 1024 * MB),
        },
    )
    assert response.status_code == 413
    assert body.sent == 0


async def test_a_body_declared_a_little_over_the_limit_is_read_to_the_end_for_a_browser(
    shared: tuple[Stack, FastAPI],
) -> None:
    runtime = with_web(shared[0], max_total_size=2 * MB, max_files=1, drain_size=4 * MB)
    limit = runtime.settings.web.max_request_size
    declared = limit + 2 * MB
    body = Endless(declared, chunk=256 * 1024)
    async with api_client(runtime) as client:
        response = await client.post(
            "/api/complaints",
            content=body.__aiter__(),
            headers={
                "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
                "Content-Length": str(declared),
                "Accept": "text/html",
            },
        )
    assert response.status_code == 413
    assert "提交的内容过大" in response.text, "a page, not a reset connection"
    assert body.sent >= declared


async def test_a_malformed_or_truncated_multipart_body_is_refused_with_400(
    client: httpx.AsyncClient,
) -> None:
    no_boundary = await client.post(
        "/api/complaints", content=b"x", headers={"Content-Type": "multipart/form-data"}
    )
    assert no_boundary.status_code == 400
    truncated = await client.post(
        "/api/complaints",
        content=multipart_head(complaint_fields(), "a.jpg") + b"\xff\xd8\xff\xe0abc",
        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    assert truncated.status_code == 400
    assert truncated.json()["error"]["code"] == "bad_form"


async def test_a_form_with_too_many_parts_is_refused(client: httpx.AsyncClient) -> None:
    fields = {f"extra{i}": "x" for i in range(200)}
    response = await client.post(
        "/api/complaints",
        data=complaint_fields(),
        files=[("evidence", ("", b"", "application/octet-stream"))]
        + [(k, (None, v)) for k, v in fields.items()],  # type: ignore[misc]
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_many_parts"
