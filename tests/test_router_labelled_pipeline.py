"""The water utility's labelled cases (the shipped config.yaml) through the real pipeline in
both deployments: published as drafts, routed by the router worker, stored; each stored
ticket must carry the labelled category, department, severity, validity and status
(不予受理 as ``rejected``, 无效 as ``invalid``), and its events name the deciding rule."""

from __future__ import annotations

from sqlalchemy import select

from bench.routing import cases, expected_status
from ingest.settings import load_settings
from store.models import Event, Ticket
from tests.stack import CONFIG, Stack


async def test_the_water_utilitys_labelled_cases_are_stored_as_labelled(stack: Stack) -> None:
    labelled = list(cases("water", load_settings(CONFIG, environ={})))
    for case in labelled:
        await stack.rt.handoff.submit(case.draft)

    assert await stack.drain(stop=True) == len(labelled)

    async with stack.rt.database.sessions() as session:
        tickets = {t.source_key: t for t in (await session.execute(select(Ticket))).scalars()}
        events = (await session.execute(select(Event))).scalars().all()
    kinds: dict[int, set[str]] = {}
    for event in events:
        kinds.setdefault(event.ticket_id, set()).add(event.kind)
    wrong = []
    for case in labelled:
        ticket = tickets[case.draft.source_key]
        want = case.expect
        seen = (ticket.category, ticket.department, ticket.severity, ticket.valid, ticket.status)
        wanted = (
            want["category"],
            want["department"],
            want["severity"],
            want["valid"],
            expected_status(case),
        )
        if seen != wanted:
            wrong.append(f"{case.id}: {seen} != {wanted}")
        assert ticket.id is not None
        if ticket.status == "rejected":
            assert "rejected" in kinds[ticket.id], case.id
        if not ticket.valid:
            assert "invalid" in kinds[ticket.id], case.id
    assert not wrong
