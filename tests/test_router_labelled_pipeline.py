"""Every organisation's labelled cases through the real pipeline in both deployments:
published as drafts, routed by the router worker with that organisation's config, stored;
each stored ticket must carry the labelled category, department, severity, validity and
status (不予受理 as ``rejected``, 无效 as ``invalid``), with the event that says so.

Each stored ticket must be what the router decides for its draft (the pipeline keeps every
decision), and as many as with the router alone must match their labels in full."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bench.routing import ORGANISATIONS, Case, cases, expected_status
from ingest.app.settings import load_settings
from router.rules import Router
from store.models import Event, Ticket
from tests.stack import Stack


def _decided(case: Case, router: Router) -> tuple[object, ...]:
    decision = router.route(case.draft)
    return (
        decision.category,
        decision.department,
        decision.severity.value,
        decision.valid,
        decision.status,
    )


def _labelled(case: Case) -> tuple[object, ...]:
    want = case.expect
    names = ("category", "department", "severity", "valid")
    return (*(want[name] for name in names), expected_status(case))


@pytest.mark.parametrize("organisation", sorted(ORGANISATIONS))
async def test_the_labelled_cases_are_stored_as_labelled(stack: Stack, organisation: str) -> None:
    # The stack's database and queue, this organisation's departments, categories and rules.
    stack.settings = load_settings(ORGANISATIONS[organisation], environ=stack.env)
    router = Router(stack.settings)
    labelled = list(cases(organisation, stack.settings))
    for case in labelled:
        await stack.rt.handoff.submit(case.draft)
    stack.start_router(router)

    assert await stack.drain(stop=True) == len(labelled)

    async with stack.rt.database.sessions() as session:
        tickets = {t.source_key: t for t in (await session.execute(select(Ticket))).scalars()}
        events = (await session.execute(select(Event))).scalars().all()
    kinds: dict[int, set[str]] = {}
    for event in events:
        kinds.setdefault(event.ticket_id, set()).add(event.kind)
    wrong: list[str] = []
    right = 0
    for case in labelled:
        ticket = tickets[case.draft.source_key]
        seen = (ticket.category, ticket.department, ticket.severity, ticket.valid, ticket.status)
        if seen != _decided(case, router):
            wrong.append(f"{case.id}: stored {seen}, routed {_decided(case, router)}")
        if seen == _labelled(case):
            right += 1
        assert ticket.id is not None
        if ticket.status == "rejected":
            assert "rejected" in kinds[ticket.id], case.id
        if not ticket.valid:
            assert "invalid" in kinds[ticket.id], case.id
    assert not wrong
    # As the router alone scores (tests/test_router_labelled.py): the pipeline loses nothing.
    assert right >= 0.95 * len(labelled)
