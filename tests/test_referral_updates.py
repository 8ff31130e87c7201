"""One work order, one ticket: the same order again, and every kind of update (催办, 延期,
撤单, 退单, 督办) applied to its ticket; updates that arrive before the ticket is made."""

# ruff: noqa: F811  (pytest fixtures are imported from tests/test_referral_support.py)

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import select

from store.referral_models import ReferralUpdateRecord
from tests.stack import Stack, events, ticket_of
from tests.support_http import STAFF
from tests.test_referral_support import (  # noqa: F401  (fixtures)
    client,
    embedded_client,
    order,
    post_signed,
    referral_secrets,
    referrals_worker,
)

REF = "SZ12345-20261124-000871"


def update(kind: str, **fields: Any) -> dict[str, Any]:
    return {"工单编号": REF, "操作类型": kind, **fields}


async def _new_ticket(stack: Stack, client: httpx.AsyncClient) -> str:
    response = await post_signed(client, order())
    assert response.status_code == 201, response.text
    assert await stack.drain() == 1
    number: str = response.json()["number"]
    return number


async def test_the_same_order_sent_again_answers_the_same_number_and_changes_nothing(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    first = await post_signed(client, order())
    again = await post_signed(
        client, order(诉求内容="内容改了也还是同一张工单"), at=time.time() + 1
    )
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == {"number": first.json()["number"], "duplicate": True}
    assert await stack.drain(stop=True) == 1
    assert await stack.ticket_count() == 1


async def test_every_update_kind_changes_the_one_ticket_of_the_order(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    number = await _new_ticket(stack, client)

    urge = await post_signed(client, update("催办", 业务流水号="CB-1", 说明="市民再次来电催办"))
    assert urge.status_code == 200, urge.text
    assert urge.json() == {"number": number, "update": "urge"}
    ticket = await ticket_of(stack, number)
    (urged,) = events(ticket, "urge")
    assert urged["actor"] == "referral:gov12345"
    assert urged["detail"]["notify_department"] == "supply_dispatch"
    assert urged["detail"]["reason"] == "市民再次来电催办"
    assert ticket["status"] == "dispatched"

    extended = await post_signed(
        client, update("延期", 业务流水号="YQ-1", 办结时限="2026-12-04 17:30:00", 说明="同意延期")
    )
    assert extended.json() == {"number": number, "update": "extension"}
    ticket = await ticket_of(stack, number)
    assert ticket["due_at"] == "2026-12-04T09:30:00Z"
    assert ticket["referral"]["deadline"] == "2026-12-04T09:30:00Z"
    (moved,) = events(ticket, "referral_extended")
    assert moved["detail"]["to"].startswith("2026-12-04T09:30:00")
    clocks = {c["name"]: c for c in ticket["clocks"]}
    assert clocks["referral"]["due_at"] == clocks["handle"]["due_at"] == "2026-12-04T09:30:00Z"

    supervised = await post_signed(client, update("督办", 业务流水号="DB-1", 说明="市领导督办"))
    assert supervised.json() == {"number": number, "update": "supervision"}
    ticket = await ticket_of(stack, number)
    assert ticket["severity"] == "major"
    (raised,) = events(ticket, "severity_raised")
    assert raised["detail"] == {"from": "important", "to": "major", "rule": "referral.supervision"}

    handled = await client.post(
        f"/api/tickets/{number}/events",
        json={"kind": "handle", "detail": {"result": "已恢复供水"}},
        headers=STAFF,
    )
    assert handled.status_code == 201, handled.text
    returned = await post_signed(
        client,
        update(
            "退单",
            业务流水号="TD-1",
            说明="答复未说明停水原因，退回重办",
            承办单位="水务集团管网维修部",
            办结时限="2026-12-08 17:30:00",
        ),
    )
    assert returned.json() == {"number": number, "update": "returned"}
    ticket = await ticket_of(stack, number)
    assert ticket["status"] == "dispatched"
    assert ticket["department"] == "network_maintenance"
    assert ticket["due_at"] == "2026-12-08T09:30:00Z"
    clocks = {c["name"]: c for c in ticket["clocks"]}
    assert clocks["handle"]["met_at"] is None, "a returned order is handled again"
    assert clocks["referral"]["met_at"] is None
    assert clocks["referral"]["due_at"] == clocks["handle"]["due_at"] == "2026-12-08T09:30:00Z"
    (back,) = events(ticket, "referral_returned")
    assert back["detail"]["from_status"] == "handled"
    assert back["detail"]["from_department"] == "supply_dispatch"

    withdrawn = await post_signed(client, update("撤单", 业务流水号="CD-1", 说明="市民撤回诉求"))
    assert withdrawn.json() == {"number": number, "update": "withdrawal"}
    ticket = await ticket_of(stack, number)
    assert ticket["status"] == "closed"
    (closed,) = events(ticket, "referral_withdrawn")
    assert closed["detail"]["reason"] == "市民撤回诉求"
    assert closed["detail"]["from_status"] == "dispatched"
    await stack.stop_routers()
    assert await stack.ticket_count() == 1


async def test_an_update_sent_twice_is_applied_once(
    embedded_stack: Stack, embedded_client: httpx.AsyncClient
) -> None:
    number = await _new_ticket(embedded_stack, embedded_client)
    first = await post_signed(embedded_client, update("催办", 业务流水号="CB-9"))
    # Signed afresh (a second later): the same update, not the same request.
    again = await post_signed(
        embedded_client, update("催办", 业务流水号="CB-9"), at=time.time() + 1
    )
    assert first.json() == {"number": number, "update": "urge"}
    assert again.json() == {"number": number, "update": "urge", "duplicate": True}
    other = await post_signed(embedded_client, update("催办", 业务流水号="CB-10"))
    assert "duplicate" not in other.json()
    assert len(events(await ticket_of(embedded_stack, number), "urge")) == 2


async def test_an_update_without_its_own_id_is_identified_by_its_bytes(
    embedded_stack: Stack, embedded_client: httpx.AsyncClient
) -> None:
    number = await _new_ticket(embedded_stack, embedded_client)
    await post_signed(embedded_client, update("催办", 说明="第一次催办"))
    await post_signed(embedded_client, update("催办", 说明="第一次催办"), at=time.time() + 1)
    await post_signed(embedded_client, update("催办", 说明="第二次催办"))
    urges = events(await ticket_of(embedded_stack, number), "urge")
    assert [u["detail"]["reason"] for u in urges] == ["第一次催办", "第二次催办"]


async def test_updates_that_arrive_before_the_ticket_is_made_are_held_and_applied_in_order(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    placed = await post_signed(client, order())
    number = placed.json()["number"]
    urge = await post_signed(client, update("催办", 业务流水号="CB-1"))
    extension = await post_signed(
        client, update("延期", 业务流水号="YQ-1", 办结时限="2026-12-10 17:30:00")
    )
    assert urge.json() == {"number": number, "update": "urge", "pending": True}
    assert extension.json() == {"number": number, "update": "extension", "pending": True}
    worker = referrals_worker(stack)
    try:
        assert (await worker.sweep()).updates_applied == 0, "no ticket yet: still held"
        assert await stack.drain() == 1
        sweep = await worker.sweep()
    finally:
        await worker.close()
    assert sweep.updates_applied == 2 and sweep.registered == 1
    ticket = await ticket_of(stack, number)
    assert ticket["due_at"] == "2026-12-10T09:30:00Z"
    kinds = [e["kind"] for e in ticket["events"]]
    assert kinds.index("urge") < kinds.index("referral_extended")
    async with stack.rt.database.sessions() as session:
        held = (await session.execute(select(ReferralUpdateRecord))).scalars().all()
    assert all(h.applied_at is not None for h in held)
    assert all("held_since" in h.result for h in held)
    again = await post_signed(client, update("催办", 业务流水号="CB-1"), at=time.time() + 1)
    assert again.json() == {"number": number, "update": "urge", "duplicate": True}


async def test_an_update_of_an_order_never_received_is_404(
    embedded_client: httpx.AsyncClient,
) -> None:
    response = await post_signed(embedded_client, update("催办", 工单编号="NEVER-SENT"))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_order"


async def test_an_extension_without_a_new_deadline_is_422_naming_the_field(
    embedded_stack: Stack, embedded_client: httpx.AsyncClient
) -> None:
    await _new_ticket(embedded_stack, embedded_client)
    response = await post_signed(embedded_client, update("延期", 说明="申请延期"))
    assert response.status_code == 422
    assert set(response.json()["error"]["fields"]) == {"办结时限"}


async def test_a_past_deadline_extended_into_the_future_clears_the_overdue_mark(
    embedded_stack: Stack, embedded_client: httpx.AsyncClient
) -> None:
    from sqlalchemy import update as sql_update

    from store.models import Ticket

    number = await _new_ticket(embedded_stack, embedded_client)
    past = datetime(2026, 1, 1, tzinfo=UTC)
    async with embedded_stack.rt.database.transaction() as session:
        await session.execute(
            sql_update(Ticket).where(Ticket.number == number).values(overdue_at=past)  # type: ignore[arg-type]
        )
    await post_signed(embedded_client, update("延期", 办结时限="2099-12-31 17:30:00"))
    async with embedded_stack.rt.database.sessions() as session:
        row = (await session.execute(select(Ticket).where(Ticket.number == number))).scalar_one()  # type: ignore[arg-type]
    assert row.overdue_at is None
