"""Each shipped mapping (config.yaml referrals.mappings) on real work orders, and malformed
payloads answered 422 naming the payload's field."""

# ruff: noqa: F811  (pytest fixtures are imported from tests/test_referral_support.py)

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from channels.referral.mapping import MappingError, map_order
from channels.referral.payload import PayloadError, parse_payload
from channels.referral.settings import RequestType, UpdateKind
from ingest.app.settings import load_settings
from tests.stack import CONFIG, Stack, events, notes, ticket_of
from tests.test_referral_support import (  # noqa: F401  (fixtures)
    FIXTURES,
    REGULATOR,
    embedded_client,
    fixture,
    order,
    post_signed,
    referral_secrets,
)

SETTINGS = load_settings(CONFIG, environ={})
REFERRALS = SETTINGS.referrals
ZONE = SETTINGS.organisation.timezone


def _map(mapping: str, data: dict[str, Any]) -> Any:
    return map_order(data, REFERRALS.mappings[mapping], ZONE)


def test_the_12345_mapping_reads_every_field_of_a_work_order() -> None:
    mapped = _map("hotline12345", fixture("gov12345-order.json"))
    assert mapped.kind is UpdateKind.NEW
    assert mapped.reference == "SZ12345-20261124-000871"
    assert mapped.update_id == "LS20261124093000871"
    assert (mapped.name, mapped.phone) == ("王女士", "138 1234 5678")
    assert mapped.request_type is RequestType.COMPLAINT and mapped.request_label == "投诉"
    assert mapped.category == "supply_outage"
    assert mapped.address == "示例市光明区光明小区5栋2单元"
    assert mapped.handling_unit == "示例市水务集团"
    # Local times (Asia/Shanghai) are kept in UTC.
    assert mapped.dispatched_at == datetime(2026, 11, 24, 1, 30, tzinfo=UTC)
    assert mapped.sign_for_deadline == datetime(2026, 11, 24, 3, 30, tzinfo=UTC)
    assert mapped.deadline == datetime(2026, 11, 26, 9, 30, tzinfo=UTC)
    assert mapped.confidential is False


def test_the_generic_json_mapping_reads_nested_fields_offsets_and_a_date_alone() -> None:
    mapped = _map("generic_json", fixture("generic-order.json"))
    assert mapped.reference == "HR-2026-11-0457" and mapped.kind is UpdateKind.NEW
    assert (mapped.name, mapped.email) == ("Chen Jing", "chen.jing@example.cn")
    assert mapped.phone == "+86 139 8765 4321"
    assert mapped.subject == "Discoloured tap water for a week"
    assert mapped.category == "water_quality"
    assert mapped.dispatched_at == datetime(2026, 11, 24, 2, 15, tzinfo=UTC)
    assert mapped.sign_for_deadline == datetime(2026, 11, 24, 0, 0, tzinfo=UTC)
    assert mapped.contact_deadline == datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    # "2026-11-28": by the end of that day, local time.
    assert mapped.deadline == datetime(2026, 11, 28, 15, 59, 59, tzinfo=UTC)


@pytest.mark.parametrize(
    ("label", "kind"),
    [
        ("派单", UpdateKind.NEW),
        ("催办", UpdateKind.URGE),
        ("延期", UpdateKind.EXTENSION),
        ("撤单", UpdateKind.WITHDRAWAL),
        ("退单", UpdateKind.RETURNED),
        ("退回重办", UpdateKind.RETURNED),
        ("督办", UpdateKind.SUPERVISION),
    ],
)
def test_the_order_kinds_of_12345_are_read(label: str, kind: UpdateKind) -> None:
    data = {"工单编号": "K-1", "操作类型": label, "诉求内容": "x", "办结时限": "2026-12-01"}
    assert _map("hotline12345", data).kind is kind


@pytest.mark.parametrize(
    ("label", "kind"),
    [
        ("咨询", RequestType.CONSULTATION),
        ("求助", RequestType.HELP),
        ("投诉", RequestType.COMPLAINT),
        ("举报", RequestType.REPORT),
        ("建议", RequestType.SUGGESTION),
    ],
)
def test_the_five_request_types_of_12345_are_read(label: str, kind: RequestType) -> None:
    mapped = _map("hotline12345", {"工单编号": "R-1", "诉求类型": label, "诉求内容": "x"})
    assert mapped.request_type is kind


def test_every_problem_of_a_malformed_12345_order_is_named_by_its_field() -> None:
    with pytest.raises(MappingError) as failed:
        _map("hotline12345", fixture("gov12345-malformed.json"))
    fields = failed.value.fields
    assert set(fields) == {"诉求类型", "办结时限", "是否保密"}
    assert fields["诉求类型"].startswith("unknown request type '抱怨'")
    assert "'2026年11月27日' is not a date and time" in fields["办结时限"]
    assert "'不确定' is not a yes/no value" in fields["是否保密"]


@pytest.mark.parametrize(
    ("data", "field", "problem"),
    [
        ({"诉求内容": "停水"}, "工单编号", "required"),
        ({"工单编号": "  ", "诉求内容": "停水"}, "工单编号", "required"),
        ({"工单编号": "A-1"}, "诉求内容", "required"),
        ({"工单编号": {"id": 1}, "诉求内容": "停水"}, "工单编号", "must be text"),
        (
            {"工单编号": "A-1", "操作类型": "作废", "诉求内容": "x"},
            "操作类型",
            "unknown order kind",
        ),
        ({"工单编号": "A-1", "操作类型": "延期"}, "办结时限", "required for an extension"),
        ({"工单编号": "A-1" * 100, "诉求内容": "x"}, "工单编号", "longer than 200"),
    ],
)
def test_a_missing_or_wrong_field_is_named(data: dict[str, Any], field: str, problem: str) -> None:
    with pytest.raises(MappingError) as failed:
        _map("hotline12345", data)
    assert field in failed.value.fields
    assert problem in failed.value.fields[field]


def test_an_unknown_category_label_is_left_to_the_keyword_rules() -> None:
    mapped = _map("hotline12345", {"工单编号": "C-1", "问题分类": "其他类", "诉求内容": "x"})
    assert mapped.category is None and mapped.category_label == "其他类"


def test_a_malformed_generic_order_names_its_nested_field() -> None:
    data = fixture("generic-order.json")
    data["deadlines"]["complete"] = "next week"
    data["confidential"] = "maybe"
    with pytest.raises(MappingError) as failed:
        _map("generic_json", data)
    assert set(failed.value.fields) == {"deadlines.complete", "confidential"}


def test_an_xml_work_order_in_gbk_is_read_like_its_json_form() -> None:
    text = (FIXTURES / "gov12345-order.xml").read_text(encoding="utf-8")
    raw = text.replace('encoding="UTF-8"', 'encoding="GBK"').encode("gbk")
    mapped = _map("hotline12345", parse_payload(raw, "xml"))
    assert mapped.reference == "SZ12345-20261124-000902"
    assert mapped.request_type is RequestType.REPORT and mapped.confidential is True
    assert mapped.category == "misconduct"


@pytest.mark.parametrize(
    ("raw", "fmt", "problem"),
    [
        (b"", "json", "empty"),
        (b'{"a": ', "json", "not valid JSON"),
        (b"[1, 2]", "json", "must be a JSON object"),
        (b"<a><b></a>", "xml", "not valid XML"),
        (b'<!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>', "xml", "refused XML"),
    ],
)
def test_an_unreadable_payload_says_why(raw: bytes, fmt: Any, problem: str) -> None:
    with pytest.raises(PayloadError, match=problem):
        parse_payload(raw, fmt)


async def test_a_malformed_order_is_answered_422_naming_each_field(
    embedded_stack: Stack, embedded_client: httpx.AsyncClient
) -> None:
    response = await post_signed(embedded_client, fixture("gov12345-malformed.json"))
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_work_order"
    assert set(error["fields"]) == {"诉求类型", "办结时限", "是否保密"}
    assert await embedded_stack.rt.queue.depth(embedded_stack.rt.names.drafts) == 0
    broken = await post_signed(embedded_client, '{"工单编号": "X"'.encode())
    assert broken.status_code == 422
    assert broken.json()["error"]["code"] == "invalid_payload"


async def test_a_12345_order_becomes_an_important_referral_ticket_with_the_liaison_desk(
    embedded_stack: Stack, embedded_client: httpx.AsyncClient
) -> None:
    response = await post_signed(embedded_client, order())
    assert response.status_code == 201, response.text
    assert await embedded_stack.drain() == 1
    ticket = await ticket_of(embedded_stack, response.json()["number"])
    assert ticket["channel"] == "referral"
    assert ticket["source_key"] == "gov12345:SZ12345-20261124-000871"
    assert ticket["first_contact"] == {
        "kind": "regulator",
        "id": "liaison-12345",
        "department": "customer_service",
    }
    assert ticket["referral"] == {
        "source": "gov12345",
        "reference": "SZ12345-20261124-000871",
        "deadline": "2026-11-26T09:30:00Z",
    }
    assert ticket["complainant"]["phone"] == "+8613812345678"
    assert ticket["complainant"]["name"] == "王女士"
    assert ticket["category"] == "supply_outage" and ticket["department"] == "supply_dispatch"
    assert ticket["severity"] == "important"  # referrals are at least important
    assert "诉求地址：示例市光明区光明小区5栋2单元" in ticket["body"]
    assert "request_type: complaint (投诉)" in notes(ticket)
    (dispatched,) = events(ticket, "dispatched")
    assert dispatched["detail"]["deadline_rule"] in (
        "deadline.referral",
        "deadline.severity.important",
    )


async def test_a_generic_order_becomes_a_ticket_with_its_email_and_category(
    embedded_stack: Stack, embedded_client: httpx.AsyncClient
) -> None:
    response = await post_signed(
        embedded_client, fixture("generic-order.json"), source="housing-regulator", secret=REGULATOR
    )
    assert response.status_code == 201, response.text
    assert await embedded_stack.drain() == 1
    ticket = await ticket_of(embedded_stack, response.json()["number"])
    assert ticket["complainant"]["email"] == "chen.jing@example.cn"
    assert ticket["complainant"]["phone"] == "+8613987654321"
    assert ticket["category"] == "water_quality"
    assert ticket["subject"] == "Discoloured tap water for a week"
    assert ticket["first_contact"]["id"] == "liaison-regulator"
