"""Links sent to complainants (the answer page's progress link, the acknowledgement mail's)
start with ``organisation.public_url``, or without one with this instance's own listening
address, never another instance's."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from channels.runtime import Runtime
from ingest.app.settings import Settings, load_settings
from tests.stack import CONFIG, Stack
from tests.support_http import api_client
from tests.test_notify import (
    Sink,
    all_sent,
    email_draft,
    make_tickets,
    notify_worker,
    smtp_sink,
    sweep_until,
    with_email,
)
from tests.test_web_support import complaint_fields

OTHER_PORT = 8123


def settings_with(**environ: str) -> Settings:
    return load_settings(CONFIG, environ=environ)


def test_the_shipped_config_leaves_public_url_to_the_listening_address() -> None:
    assert settings_with().organisation.public_url == ""
    assert settings_with().public_base_url == "http://127.0.0.1:8000"
    port = settings_with(SHOULI_HTTP__PORT=str(OTHER_PORT))
    assert port.public_base_url == f"http://127.0.0.1:{OTHER_PORT}"


@pytest.mark.parametrize(
    ("host", "base"),
    [
        ("192.168.1.20", "http://192.168.1.20:8000"),
        ("0.0.0.0", "http://127.0.0.1:8000"),  # every address: this machine's own works
        ("::", "http://[::1]:8000"),
        ("fe80::1", "http://[fe80::1]:8000"),
        ("shouli.local", "http://shouli.local:8000"),
    ],
)
def test_the_listening_host_becomes_a_host_a_link_can_name(host: str, base: str) -> None:
    assert settings_with(SHOULI_HTTP__HOST=host).public_base_url == base


def test_a_configured_public_url_wins_without_its_trailing_slash() -> None:
    settings = settings_with(
        SHOULI_ORGANISATION__PUBLIC_URL="https://tousu.water.example.cn/",
        SHOULI_HTTP__PORT=str(OTHER_PORT),
    )
    assert settings.public_base_url == "https://tousu.water.example.cn"


def on_other_port(runtime: Runtime, **organisation: Any) -> Runtime:
    """The same store and queue, listening on OTHER_PORT, without a public_url."""
    settings = runtime.settings
    changed = settings.model_copy(
        update={
            "http": settings.http.model_copy(update={"port": OTHER_PORT}),
            "organisation": settings.organisation.model_copy(
                update={"public_url": "", **organisation}
            ),
        }
    )
    return dataclasses.replace(runtime, settings=changed)


async def test_the_answer_page_links_to_this_instance_on_its_own_port(
    embedded_stack: Stack,
) -> None:
    runtime = on_other_port(embedded_stack.rt)
    async with api_client(runtime) as client:
        response = await client.post("/api/complaints", data=complaint_fields())
    assert response.status_code == 201, response.text
    url = response.json()["progress_url"]
    assert url.startswith(f"http://127.0.0.1:{OTHER_PORT}/progress/"), url


async def test_the_acknowledgement_mail_links_to_this_instance_on_its_own_port(
    embedded_stack: Stack,
) -> None:
    stack = embedded_stack
    async with smtp_sink(sink := Sink()) as server:
        runtime = with_email(on_other_port(stack.rt), outbound=server)
        stack.settings = runtime.settings
        await make_tickets(stack, email_draft())
        await sweep_until([notify_worker(stack, runtime)], all_sent(stack, 1))
    (mail,) = sink.received
    assert f"http://127.0.0.1:{OTHER_PORT}/progress/" in mail.text, mail.text
    assert "http://127.0.0.1:8000" not in mail.text
