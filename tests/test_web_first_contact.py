"""First contact (首问负责制) of web intake: the department configured for each form owns
what it brings in, as each mailbox's department does for mail."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from ingest.app.settings import load_settings
from ingest.sections import ConfigError
from tests.stack import CONFIG, Stack, ticket_of
from tests.support_http import api_client
from tests.test_web_support import complaint_fields, feedback_fields


async def test_each_form_names_its_first_contact_department(stack: Stack) -> None:
    web = stack.settings.web
    assert (web.complaint_department, web.feedback_department) == (
        "customer_service",
        "customer_service",
    ), "the shipped config names them"
    settings = stack.settings.model_copy(
        update={"web": web.model_copy(update={"feedback_department": "engineering"})}
    )
    stack.settings = settings
    stack.rt.settings = settings
    async with api_client(stack.rt) as client:
        complaint = await client.post("/api/complaints", data=complaint_fields())
        feedback = await client.post("/api/feedback", data=feedback_fields())
    assert complaint.status_code == 201, complaint.text
    assert feedback.status_code == 201, feedback.text
    assert await stack.drain(stop=True) == 2
    made = {
        answer.json()["number"]: (await ticket_of(stack, answer.json()["number"]))["first_contact"]
        for answer in (complaint, feedback)
    }
    assert made[complaint.json()["number"]]["department"] == "customer_service"
    assert made[feedback.json()["number"]]["department"] == "engineering"


def test_an_unknown_first_contact_department_is_a_config_error(tmp_path: Path) -> None:
    data: dict[str, Any] = copy.deepcopy(yaml.safe_load(CONFIG.read_text(encoding="utf-8")))
    data["web"]["feedback_department"] = "nowhere"
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_settings(path, environ={})
    assert any(
        where == "web.feedback_department" and "unknown department 'nowhere'" in message
        for where, message in raised.value.problems
    )
