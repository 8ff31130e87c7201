"""A real ``shouli edge`` process and raw HTTP/1.1 over one socket: what the server does to the
connection (keep-alive after an error, answering before the body is sent) is invisible
through the ASGI transport."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from tests.stack import Stack
from tests.test_processes import _free_port, _wait_ready


@asynccontextmanager
async def edge(stack: Stack, **env: str) -> AsyncIterator[tuple[int, subprocess.Popen[bytes]]]:
    """``shouli edge`` (HTTP only) on a free port of this stack; (port, process)."""
    port = _free_port()
    log = stack.tmp_path / f"edge-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            stack.shouli_command("edge"),
            env=stack.process_env() | env | {"SHOULI_HTTP__PORT": str(port)},
            cwd=stack.tmp_path,
            stdout=out,
            stderr=out,
        )
    try:
        await _wait_ready(f"http://127.0.0.1:{port}/readyz", process)
        yield port, process
    finally:
        process.terminate()
        try:
            await asyncio.to_thread(process.wait, 30)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait, 10)


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Connection:
    """One keep-alive TCP connection to the server."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except OSError:
            pass

    async def send_head(self, method: str, path: str, headers: dict[str, str]) -> None:
        lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *map(": ".join, headers.items())]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await self.writer.drain()

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> Answer:
        await self.send_head(method, path, (headers or {}) | {"Content-Length": str(len(body))})
        self.writer.write(body)
        await self.writer.drain()
        return await self.answer()

    async def answer(self, timeout: float = 30) -> Answer:
        """The next response (the server's responses here all carry a Content-Length)."""
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in header_lines if line)
        }
        length = int(headers.get("content-length", "0"))
        body = await asyncio.wait_for(self.reader.readexactly(length), timeout)
        return Answer(int(status_line.split()[1]), headers, body)
