"""POST /api/letters (multipart scans, staff only): the staff token is checked and the size
bounded before FastAPI spools the form, so an anonymous upload is never read."""

from __future__ import annotations

from collections.abc import AsyncIterator

from tests.stack import Stack
from tests.support_http import STAFF, api_client

MB = 1024 * 1024
BOUNDARY = "shouli-test-boundary"
MULTIPART = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


class CountingForm:
    """A multipart body of one huge scan made on demand, counting the chunks pulled."""

    def __init__(self, chunks: int) -> None:
        self.chunks = chunks
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self.pulled += 1
        yield (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="body"\r\n\r\n来信内容\r\n'
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="scans"; '
            'filename="scan.pdf"\r\nContent-Type: application/pdf\r\n\r\n'
        ).encode()
        for _ in range(self.chunks):
            self.pulled += 1
            yield b"%" * MB


async def test_an_anonymous_200_mb_letter_upload_is_401_without_being_read(
    embedded_stack: Stack,
) -> None:
    body = CountingForm(200)
    async with api_client(embedded_stack.rt) as client:
        response = await client.post("/api/letters", content=body, headers=MULTIPART)
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "unauthenticated"
    assert body.pulled == 0


async def test_a_staff_upload_past_every_scan_limit_is_413_while_it_streams(
    embedded_stack: Stack,
) -> None:
    letters = embedded_stack.settings.referrals.letters
    chunks = (letters.max_scans * letters.max_scan_bytes) // MB + 4
    body = CountingForm(chunks)
    async with api_client(embedded_stack.rt) as client:
        response = await client.post("/api/letters", content=body, headers=MULTIPART | STAFF)
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "body_too_large"
    assert body.pulled < chunks


async def test_a_declared_ten_gigabyte_letter_is_413_before_any_byte(
    embedded_stack: Stack,
) -> None:
    body = CountingForm(1)
    headers = MULTIPART | STAFF | {"Content-Length": str(10 * 1024 * MB)}
    async with api_client(embedded_stack.rt) as client:
        response = await client.post("/api/letters", content=body, headers=headers)
    assert response.status_code == 413, response.text
    assert body.pulled == 0
