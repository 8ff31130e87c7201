"""The example organisations under examples/ (a telecom operator, a bank, a 95598 power
company, the service centre of the English page; the water utility is config.yaml itself):
each passes check-config and takes a complaint end to end through the real web channel."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from click.testing import CliRunner

from ingest.app.cli import main
from ingest.app.settings import load_settings
from tests.stack import Stack, ticket_of
from tests.support_http import api_client
from tests.test_web_support import complaint_fields

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.yaml"))
# One complaint each, written from the seed the example follows: the type chosen on the
# form, the text, and the department it must reach.
COMPLAINTS = {
    "bank": ("cards", "信用卡被多收了年费，客户经理说会退但一直没有退。", "cards"),
    "power": ("supply_quality", "我家这几天电压不稳，灯一闪一闪的，电视机也烧坏了。", "operations"),
    "service": (
        "service_attitude",
        "窗口办事人员态度很差，材料齐全还让我跑了三趟。",
        "service_hall",
    ),
    "telecom": ("tariff", "手机套餐被扣了国际漫游费，我根本没有出过国。", "billing_centre"),
}


def test_there_are_four_examples() -> None:
    assert [p.stem for p in EXAMPLES] == sorted(COMPLAINTS)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_each_example_passes_check_config(example: Path) -> None:
    result = CliRunner().invoke(main, ["check-config", "-c", str(example)], env={})
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
async def test_each_example_takes_a_web_complaint_to_a_ticket(stack: Stack, example: Path) -> None:
    # The stack's store and queue; the example's organisation, departments and rules.
    settings = load_settings(example, environ=stack.env)
    stack.settings = settings
    runtime = dataclasses.replace(stack.rt, settings=settings)
    category, details, department = COMPLAINTS[example.stem]
    async with api_client(runtime) as client:
        answer = await client.post(
            "/api/complaints", data=complaint_fields(category=category, details=details)
        )
    assert answer.status_code == 201, answer.text
    number = answer.json()["number"]
    assert number.startswith(settings.organisation.number_prefix)
    assert await stack.drain(stop=True) == 1
    ticket = await ticket_of(stack, number)
    assert ticket["department"] in {d.key for d in settings.departments}
    assert ticket["department"] == department, ticket["events"]
