"""The staff ticket API and the lifecycle state machine behind it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from router.lifecycle import IllegalTransition, allowed_actions, transition
from tests.stack import Stack, make_draft
from tests.support_http import api_client


def _staff_token(stack: Stack) -> str:
    return next(s.token for s in stack.settings.auth.staff if s.token)


@pytest.fixture
async def api(embedded_stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(embedded_stack.rt, token=_staff_token(embedded_stack)) as client:
        yield client


async def _one_ticket(stack: Stack, **fields) -> str:
    await stack.rt.handoff.submit(make_draft(**fields))
    assert await stack.drain(stop=True) == 1
    async with stack.rt.database.sessions() as session:
        from sqlalchemy import select

        from store.models import Ticket

        return (await session.execute(select(Ticket.number))).scalar_one()


async def test_a_ticket_goes_through_its_whole_lifecycle_over_the_api(
    embedded_stack: Stack, api: httpx.AsyncClient
) -> None:
    number = await _one_ticket(embedded_stack)
    steps = [
        ("transfer", {"department": "network_maintenance", "reason": "管网问题"}, "dispatched"),
        ("urge", {}, "dispatched"),
        ("handle", {"result": "已更换水表"}, "handled"),
        ("feedback", {"channel": "phone"}, "feedback_given"),
        ("callback", {"satisfaction": "satisfied"}, "callback_done"),
        ("close", {}, "closed"),
    ]
    for kind, detail, status in steps:
        response = await api.post(
            f"/api/tickets/{number}/events", json={"kind": kind, "detail": detail}
        )
        assert response.status_code == 201, response.text
        assert response.json()["status"] == status
    ticket = (await api.get(f"/api/tickets/{number}")).json()
    assert ticket["department"] == "network_maintenance"
    transfer = next(e for e in ticket["events"] if e["kind"] == "transfer")
    assert transfer["actor"].startswith("staff:")
    assert transfer["detail"]["from_department"] != "network_maintenance"
    assert [e["kind"] for e in ticket["events"]][-6:] == [k for k, _, _ in steps]


async def test_an_illegal_transition_is_409_and_names_the_allowed_ones(
    embedded_stack: Stack, api: httpx.AsyncClient
) -> None:
    number = await _one_ticket(embedded_stack)
    response = await api.post(
        f"/api/tickets/{number}/events", json={"kind": "callback", "detail": {"satisfaction": "ok"}}
    )
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "illegal_transition"
    assert error["fields"]["allowed"] == allowed_actions("dispatched")
    assert "handle" in error["message"] and "dispatched" in error["message"]


async def test_missing_fields_and_unknown_departments_are_422_with_field_names(
    embedded_stack: Stack, api: httpx.AsyncClient
) -> None:
    number = await _one_ticket(embedded_stack)
    missing = await api.post(f"/api/tickets/{number}/events", json={"kind": "handle"})
    assert missing.status_code == 422
    assert missing.json()["error"]["fields"] == {"detail.result": "required"}
    unknown = await api.post(
        f"/api/tickets/{number}/events",
        json={"kind": "transfer", "detail": {"department": "mars_office", "reason": "x"}},
    )
    assert unknown.status_code == 422
    assert unknown.json()["error"]["code"] == "unknown_department"
    nothing_stored = (await api.get(f"/api/tickets/{number}")).json()
    assert nothing_stored["status"] == "dispatched"
    assert [e["kind"] for e in nothing_stored["events"]][-1] == "dispatched"


async def test_ticket_api_needs_a_staff_token(
    embedded_stack: Stack, api: httpx.AsyncClient
) -> None:
    number = await _one_ticket(embedded_stack)
    no_token = await api.get(f"/api/tickets/{number}", headers={"Authorization": ""})
    assert no_token.status_code == 401 and no_token.json()["error"]["code"] == "unauthenticated"
    wrong = await api.get(
        f"/api/tickets/{number}", headers={"Authorization": "Bearer nope-nope-nope-nope"}
    )
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_token"
    missing = await api.get("/api/tickets/TS209901-000001")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "ticket_not_found"


async def test_listing_filters_by_channel_and_pages(
    embedded_stack: Stack, api: httpx.AsyncClient
) -> None:
    await _one_ticket(embedded_stack)
    listed = (await api.get("/api/tickets", params={"channel": "api"})).json()
    assert [t["channel"] for t in listed["tickets"]] == ["api"]
    assert (await api.get("/api/tickets", params={"channel": "email"})).json()["tickets"] == []


async def test_health_readiness_metrics_and_openapi_answer(api: httpx.AsyncClient) -> None:
    assert (await api.get("/healthz")).json() == {"status": "ok"}
    ready = await api.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {
        "status": "ready",
        "store": True,
        "queue": True,
    }
    metrics = await api.get("/metrics")
    assert "shouli_tickets_created_total" in metrics.text
    spec = (await api.get("/openapi.json")).json()
    assert "/api/tickets/{number}/events" in spec["paths"]


def test_the_state_machine_refuses_skipping_steps() -> None:
    with pytest.raises(IllegalTransition) as raised:
        transition("received", "close", {})
    assert raised.value.allowed == ["accept", "reject", "mark_invalid", "dispatch", "note"]
    assert (
        transition("dispatched", "close_abnormal", {"reason": "诉求超出政策"}) == "closed_abnormal"
    )
    assert transition("closed", "review", {"reason": "不满意"}) == "dispatched"
