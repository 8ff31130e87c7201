"""Clocks on real tickets, in both deployments: started in the router's transaction, moved by
staff events over the API, watched by two competing SLA workers, counted on /metrics."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlmodel import col

from router.calendar import WorkCalendar
from store.models import Ticket
from tests.stack import Stack, events, make_draft, ticket_of
from tests.support_http import api_client
from workers.sla import SlaWorker


def _token(stack: Stack) -> str:
    return next(s.token for s in stack.settings.auth.staff if s.token)


async def _numbers(stack: Stack) -> dict[str, str]:
    async with stack.rt.database.sessions() as session:
        rows = await session.execute(select(col(Ticket.source_key), col(Ticket.number)))
        return {key: number for key, number in rows.all()}


def _clocks(ticket: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {clock["name"]: clock for clock in ticket["clocks"]}


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _sla(stack: Stack, now: datetime) -> SlaWorker:
    settings = stack.settings
    return SlaWorker(
        settings=settings,
        database=stack.rt.database,
        calendar=WorkCalendar(settings.calendar, settings.organisation.timezone),
        clock=lambda: now,
    )


async def test_a_ticket_s_clocks_start_at_intake_and_follow_it_to_closure(stack: Stack) -> None:
    await stack.rt.handoff.submit(make_draft("clock-life"))
    assert await stack.drain(stop=True) == 1
    number = (await _numbers(stack))["clock-life"]
    ticket = await ticket_of(stack, number)
    clocks = _clocks(ticket)
    assert set(clocks) == {"accept", "first_contact", "handle"}
    assert clocks["accept"]["met_at"] is not None, "the router accepted it at once"
    assert clocks["handle"]["met_at"] is None and clocks["handle"]["paused"] is False
    assert ticket["due_at"] == clocks["handle"]["due_at"], "due_at is the handling clock"
    async with api_client(stack.rt, token=_token(stack)) as api:

        async def post(kind: str, **detail: str) -> dict[str, Any]:
            response = await api.post(
                f"/api/tickets/{number}/events", json={"kind": kind, "detail": detail}
            )
            assert response.status_code == 201, response.text
            return dict(response.json())

        assert _clocks(await post("contact"))["first_contact"]["met_at"] is not None
        paused = await post("pause", clock="handle", reason="等待投诉人提供水表照片")
        assert _clocks(paused)["handle"]["paused"] is True
        resumed = await post("resume", clock="handle")
        assert _clocks(resumed)["handle"]["paused"] is False
        before = _at(_clocks(resumed)["handle"]["due_at"])
        extended = await post("extend", clock="handle", by="5 working days", reason="需现场检测")
        after = _at(_clocks(extended)["handle"]["due_at"])
        assert after > before + timedelta(days=4)
        assert extended["due_at"] == _clocks(extended)["handle"]["due_at"]
        (extension,) = events(extended, "extend")
        assert extension["detail"]["reason"] == "需现场检测"
        assert _at(extension["detail"]["due_at"]) == after
        assert _at(extension["detail"]["from_due_at"]) == before
        too_long = await api.post(
            f"/api/tickets/{number}/events",
            json={
                "kind": "extend",
                "detail": {"clock": "handle", "by": "11 working days", "reason": "x"},
            },
        )
        assert too_long.status_code == 422
        assert too_long.json()["error"]["code"] == "clock_refused"
        handled = await post("handle", result="已冲洗管道，水质复检合格")
        assert _clocks(handled)["handle"]["met_at"] is not None
        assert _clocks(handled)["feedback"]["met_at"] is None
        await post("feedback", channel="phone")
        await post("callback", satisfaction="satisfied")
        closed = await post("close")
    final = _clocks(closed)
    assert set(final) == {"accept", "first_contact", "handle", "feedback", "callback"}
    assert all(clock["met_at"] is not None for clock in final.values()), final


async def test_each_warning_and_breach_is_recorded_once_under_two_sla_workers(
    stack: Stack,
) -> None:
    await stack.rt.handoff.submit_many([make_draft("sla-a"), make_draft("sla-b")])
    assert await stack.drain(stop=True) == 2
    numbers = await _numbers(stack)
    first = _clocks(await ticket_of(stack, numbers["sla-a"]))
    handle_due = _at(first["handle"]["due_at"])
    # An hour before handling is due: inside its 4 hour lead, and first contact (24 hours)
    # is long past; both tickets were made the same moment, give or take a second.
    soon = handle_due - timedelta(hours=1)
    results = await asyncio.gather(
        _sla(stack, soon).watch_clocks(), _sla(stack, soon).watch_clocks()
    )
    assert sum(w for w, _ in results) == 2 and sum(b for _, b in results) == 2
    assert await _sla(stack, soon).watch_clocks() == (0, 0), "a later sweep adds nothing"
    late = handle_due + timedelta(minutes=5)
    results = await asyncio.gather(
        _sla(stack, late).watch_clocks(), _sla(stack, late).watch_clocks()
    )
    assert sum(w for w, _ in results) == 0 and sum(b for _, b in results) == 2
    for number in numbers.values():
        ticket = await ticket_of(stack, number)
        due_soon = [e["detail"]["clock"] for e in events(ticket, "clock_due_soon")]
        breached = [e["detail"]["clock"] for e in events(ticket, "clock_breached")]
        assert due_soon == ["handle"]
        assert sorted(breached) == ["first_contact", "handle"]
        assert _clocks(ticket)["handle"]["breached_at"] is not None


async def test_metrics_count_breached_and_due_soon_clocks_per_department(stack: Stack) -> None:
    old = make_draft("metrics-old", received_at=datetime.now(UTC) - timedelta(days=40))
    await stack.rt.handoff.submit_many([old, make_draft("metrics-new")])
    assert await stack.drain(stop=True) == 2
    async with api_client(stack.rt) as client:
        text = (await client.get("/metrics")).text
    department = (await ticket_of(stack, (await _numbers(stack))["metrics-old"]))["department"]
    # The old ticket's first contact and handling are past due; the new one's are not yet.
    assert f'shouli_clocks{{department="{department}",state="breached"}} 2.0' in text
    assert 'state="due_soon"' not in text
