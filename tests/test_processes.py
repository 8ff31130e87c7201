"""The `shouli` processes as an operator runs them: serve, submit, Ctrl-C."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

from tests.stack import Stack


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            assert process.poll() is None, "serve exited early"
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError("serve never became ready")


async def test_serve_answers_routes_a_submitted_draft_and_stops_cleanly_on_ctrl_c(
    stack: Stack,
) -> None:
    port = _free_port()
    env = stack.process_env() | {"SHOULI_HTTP__PORT": str(port)}
    log = stack.tmp_path / "serve.log"
    with log.open("wb") as out:
        serve = subprocess.Popen(
            stack.shouli_command("serve"), env=env, cwd=stack.tmp_path, stdout=out, stderr=out
        )
        try:
            await _wait_ready(f"http://127.0.0.1:{port}/readyz", serve)
            draft = stack.tmp_path / "draft.json"
            draft.write_text(
                json.dumps(
                    {"source_key": "ops-1", "subject": "停水", "body": "小区停水两天没有任何通知"},
                    ensure_ascii=False,
                ),
                encoding="utf-8",
            )
            code, out_text, err = await stack.shouli("submit", str(draft))
            assert (code, json.loads(out_text)) == (0, {"queued": "api:ops-1"}), err
            assert await stack.wait_for_tickets(1, timeout=60) == 1
            code, out_text, err = await stack.shouli(
                "tickets", "list", "--json", "--channel", "api"
            )
            assert code == 0, err
            (ticket,) = [json.loads(line) for line in out_text.splitlines()]
            assert ticket["category"] == "supply_outage" and ticket["status"] == "dispatched"
        finally:
            serve.send_signal(signal.SIGINT)
            exit_code = serve.wait(30)
    text = log.read_text(errors="replace")
    assert exit_code == 0, text[-2000:]
    assert "shouli_stopped" in text
    assert "小区停水" not in text, "complaint text must not reach the logs"


async def test_submit_reports_each_problem_of_a_bad_draft_and_queues_nothing(
    embedded_stack: Stack, tmp_path: Path
) -> None:
    stack = embedded_stack
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps({"source_key": " ", "channel": "fax", "complainant": {"phone": 13800000000}}),
        encoding="utf-8",
    )
    code, _, err = await stack.shouli("submit", str(bad))
    assert code == 1
    lines = err.strip().splitlines()
    assert any(line.startswith("channel: Input should be 'email', 'phone'") for line in lines)
    assert "source_key: Value error, must not be blank" in lines
    assert "complainant.phone: Input should be a valid string" in lines
    broken = tmp_path / "broken.json"
    broken.write_text('{"source_key": "x",', encoding="utf-8")
    code, _, err = await stack.shouli("submit", str(broken))
    assert code == 1 and err.startswith(f"{broken}: not valid JSON")
    assert await stack.rt.queue.depth(stack.rt.names.drafts) == 0


async def test_an_unknown_worker_name_stops_with_the_list_of_known_ones(
    embedded_stack: Stack,
) -> None:
    code, _, err = await embedded_stack.shouli("worker", "imap-poller")
    assert code == 2
    assert err.strip() == (
        "unknown worker 'imap-poller'; known workers: imap, notify, referrals, router, sla"
    )
