"""The referral channel in a real `shouli serve` (HTTP edge, router and referrals worker in one
process), and its configuration as `shouli check-config` reports it."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
from click.testing import CliRunner

from ingest.app.cli import main
from tests.stack import CONFIG, Stack, events
from tests.support_http import STAFF
from tests.test_processes import _free_port, _wait_ready
from tests.test_referral_support import (  # noqa: F401  (fixtures)
    REGULATOR,
    SECRETS,
    fixture,
    referral_secrets,
    signed,
)


async def test_the_edge_and_the_referrals_worker_take_a_confidential_referral_off_the_logs(
    embedded_stack: Stack,
) -> None:
    """`shouli edge`, `shouli worker router` and `shouli worker referrals` as three processes
    on one store: the order is taken, made a ticket and registered with its confidential
    marker, and no process logs the complainant's name, phone or email."""
    stack = embedded_stack
    port = _free_port()
    env = (
        stack.process_env()
        | SECRETS
        | {
            "SHOULI_HTTP__PORT": str(port),
            "SHOULI_REFERRALS__POLL_SECONDS": "0.2",
            "SHOULI_EMAIL__SMTP__ENABLED": "false",
        }
    )
    work_order = fixture("generic-order.json") | {"confidential": True}
    log = stack.tmp_path / "roles.log"
    roles = (["edge"], ["worker", "router"], ["worker", "referrals"])
    with log.open("wb") as out:
        processes = [
            subprocess.Popen(
                stack.shouli_command(*role), env=env, cwd=stack.tmp_path, stdout=out, stderr=out
            )
            for role in roles
        ]
        try:
            base = f"http://127.0.0.1:{port}"
            await _wait_ready(f"{base}/readyz", processes[0])
            body, headers = signed(work_order, REGULATOR)
            async with httpx.AsyncClient(base_url=base) as client:
                placed = await client.post(
                    "/api/referrals/housing-regulator", content=body, headers=headers
                )
                assert placed.status_code == 201, placed.text
                number = placed.json()["number"]
                ticket: dict[str, Any] = {}
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline and not ticket:
                    answer = await client.get(f"/api/tickets/{number}", headers=STAFF)
                    if answer.status_code == 200 and events(answer.json(), "referral_registered"):
                        ticket = answer.json()
                    await asyncio.sleep(0.2)
            assert ticket, "the referrals worker never registered the ticket"
        finally:
            for process in processes:
                process.send_signal(signal.SIGINT)
            codes = [process.wait(30) for process in processes]
    text = log.read_text(errors="replace")
    assert codes == [0, 0, 0], text[-2000:]
    (registered,) = events(ticket, "referral_registered")
    assert registered["detail"]["confidential"] is True
    assert "referral_received" in text and "referrals_started" in text
    for secret in ("Chen Jing", "13987654321", "139 8765 4321", "chen.jing@example.cn"):
        assert secret not in text, f"{secret!r} reached the logs"


def test_a_source_naming_an_unknown_mapping_is_reported_with_its_path(tmp_path: Path) -> None:
    patched = CONFIG.read_text(encoding="utf-8").replace("mapping: generic_json", "mapping: nope")
    path = tmp_path / "config.yaml"
    path.write_text(patched, encoding="utf-8")
    result = CliRunner().invoke(main, ["check-config", "-c", str(path)], env={})
    assert result.exit_code == 1
    assert result.output.strip() == (
        "referrals.sources.1.mapping: unknown mapping 'nope' (known: generic_json, hotline12345)"
    )


def test_replies_by_email_are_refused_at_start_up_without_an_outbound_mail_server(
    tmp_path: Path,
) -> None:
    patched = CONFIG.read_text(encoding="utf-8").replace(
        """        webhook:
          url: https://regulator.example/api/referrals/replies
          secret_env: SHOULI_REFERRAL_REGULATOR_REPLY_SECRET""",
        """        email: referrals@regulator.example""",
    )
    path = tmp_path / "config.yaml"
    path.write_text(patched, encoding="utf-8")
    runner = CliRunner()
    checked = runner.invoke(main, ["check-config", "-c", str(path)], env={})
    assert checked.exit_code == 1
    assert checked.output.startswith(
        "referrals.sources.1.reply.email: replies by email are sent through email.outbound"
    )
    served = runner.invoke(main, ["serve", "-c", str(path)], env={})
    assert served.exit_code == 1 and "reply.email" in served.output


def test_mapping_and_source_mistakes_are_each_reported(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        """
departments:
  - {key: office, name: 办公室, name_en: Office, role: coordinating}
  - {key: discipline, name: 纪检, name_en: Discipline, role: discipline}
categories:
  - {key: other, name: 其他, name_en: Other, department: office}
referrals:
  sources:
    - {key: a, name: A, mapping: m, liaison_desk: d, liaison_department: nowhere,
       sign_for_confirmations: true}
    - {key: a, name: A2, mapping: m, liaison_desk: d, secret_env: X,
       reply: {webhook: {url: "ftp://x"}}}
  mappings:
    m:
      fields: {reference: id, body: text, colour: c}
      categories: {水: water}
""",
        encoding="utf-8",
    )
    result = CliRunner().invoke(main, ["check-config", "-c", str(path)], env={})
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert any(
        line.startswith("referrals.mappings.m.fields: Value error, unknown ticket field(s) colour")
        for line in lines
    )
    assert any(
        line.startswith("referrals.sources.1.reply.webhook.url: Value error, use an http")
        for line in lines
    )


def test_cross_references_of_referral_sources_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        """
departments:
  - {key: office, name: 办公室, name_en: Office, role: coordinating}
  - {key: discipline, name: 纪检, name_en: Discipline, role: discipline}
categories:
  - {key: other, name: 其他, name_en: Other, department: office}
referrals:
  sources:
    - {key: a, name: A, mapping: m, liaison_desk: d, liaison_department: nowhere,
       sign_for_confirmations: true, drop_folder: /tmp/x}
    - {key: a, name: A2, mapping: gone, liaison_desk: d, secret_env: X, drop_folder: /tmp/x}
  mappings:
    m:
      fields: {reference: id, body: text}
      categories: {水: water}
      departments: {某部: nowhere}
""",
        encoding="utf-8",
    )
    result = CliRunner().invoke(main, ["check-config", "-c", str(path)], env={})
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert (
        "referrals.sources.0.liaison_department: "
        "unknown department 'nowhere' (known: office, discipline)" in lines
    )
    assert "referrals.sources.0: give secret_env (preferred) or secret" in lines
    assert (
        "referrals.sources.0.sign_for_confirmations: needs a reply route "
        "(reply.webhook or reply.email)" in lines
    )
    assert "referrals.sources.1.key: duplicate source 'a'" in lines
    assert "referrals.sources.1.mapping: unknown mapping 'gone' (known: m)" in lines
    assert (
        "referrals.sources.1.drop_folder: already the drop folder of referrals.sources.0" in lines
    )
    assert "referrals.mappings.m.categories.水: unknown category 'water' (known: other)" in lines
    assert (
        "referrals.mappings.m.departments.某部: "
        "unknown department 'nowhere' (known: office, discipline)" in lines
    )
