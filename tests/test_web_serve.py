"""The web channel in a real ``shouli serve`` over a real socket: a 2 GB upload is cut off
at the limit while the server's memory stays flat, and a queue outage answers 503."""

from __future__ import annotations

import asyncio
import select
import socket
from pathlib import Path

import httpx

from tests.stack import Stack, ticket_of
from tests.support_http import api_client
from tests.test_web_support import complaint_fields, serve

MB = 1024 * 1024
BOUNDARY = "----shouli-socket-test"


def peak_rss(pid: int) -> int:
    """The process's peak resident memory (VmHWM), bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def upload_endlessly(port: int, total: int) -> tuple[int, bytes]:
    """POST a chunked multipart body with one never-ending JPEG; (bytes sent, answer)."""
    fields = "".join(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
        for k, v in complaint_fields().items()
    )
    head = (
        fields + f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="evidence"; '
        'filename="huge.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
    ).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sent = 0
    answer = b""
    with sock:
        sock.sendall(
            (
                f"POST /api/complaints HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
                "Transfer-Encoding: chunked\r\nAccept: application/json\r\n\r\n"
            ).encode()
            + chunk(head)
        )
        first = chunk(b"\xff\xd8\xff\xe0" + bytes(MB - 4))
        rest = chunk(bytes(MB))
        try:
            while sent < total:
                sock.sendall(first if sent == 0 else rest)
                sent += MB
                readable, _, _ = select.select([sock], [], [], 0)
                if readable:
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
        except (ConnectionResetError, TimeoutError):
            pass
    return sent, answer


async def test_a_two_gigabyte_upload_to_the_running_server_is_cut_off_and_memory_stays_flat(
    embedded_stack: Stack,
) -> None:
    limit = embedded_stack.settings.web.max_request_size
    async with serve(embedded_stack) as (url, process):
        port = int(url.rsplit(":", 1)[1])
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{url}/")).status_code == 200
        before = peak_rss(process.pid)
        sent, answer = await asyncio.to_thread(upload_endlessly, port, 2048 * MB)
        after = peak_rss(process.pid)
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{url}/readyz")).status_code == 200, "still serving"
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b'"code":"too_large"' in answer
    # What was sent before the answer came back: the limit plus what the kernel buffers.
    assert sent <= limit + 32 * MB, f"sent {sent // MB} MB"
    assert after - before < 64 * MB, f"peak memory grew by {(after - before) / MB:.0f} MB"
    assert await embedded_stack.ticket_count() == 0


async def test_a_queue_outage_answers_503_and_the_same_form_sent_again_keeps_its_number(
    distributed_stack: Stack,
) -> None:
    # RabbitMQ only: the embedded queue is the store itself, down only with the store.
    stack = distributed_stack
    data = complaint_fields()
    await stack.rt.queue.close()
    try:
        async with api_client(stack.rt) as client:
            down = await client.post("/api/complaints", data=data)
            page = await client.post(
                "/api/complaints", data={**data, "lang": "zh"}, headers={"Accept": "text/html"}
            )
    finally:
        await stack.rt.queue.connect()
    assert down.status_code == 503 and down.headers["retry-after"]
    assert down.json()["error"]["code"] == "queue_unavailable"
    assert page.status_code == 503 and "您的投诉尚未提交成功" in page.text
    async with api_client(stack.rt) as client:
        retry = await client.post("/api/complaints", data=data)
        assert retry.status_code == 200
        number = retry.json()["number"]
        assert retry.json()["progress_url"], "the link is issued once the hand-off succeeds"
        assert await stack.drain() == 1
        assert (await ticket_of(stack, number))["source_key"] == data["idempotency_key"]
        progress = await client.get(
            f"/api/complaints/{number}/progress", params={"contact": data["contact"]}
        )
    assert progress.status_code == 200
