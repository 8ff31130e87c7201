"""Batch complaints (批量投诉) through the real router in both deployments: different people
about one fault in one area within the window become one batch, linked, raised to important,
the coordinating office told once; a later complaint joins it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlmodel import col

from ingest.draft import Channel, TicketDraft
from router.settings import BatchSettings
from store.batch_models import Batch
from store.models import Ticket
from store.notification_models import Notification
from tests.stack import Stack, make_draft, ticket_of

WATER = "滨江花园3栋的自来水发黄，有明显异味，已经两天了。"


def call(phone: str, body: str = WATER, **fields: Any) -> TicketDraft:
    return make_draft(
        channel=Channel.PHONE, body=body, complainant={"name": "住户", "phone": phone}, **fields
    )


def with_office_mailbox(stack: Stack, **batches: Any) -> None:
    """The coordinating office gets a mailbox (where the batch notice goes)."""
    departments = tuple(
        d.model_copy(update={"email": "kefu@water.example.cn"})
        if d.key == "customer_service"
        else d
        for d in stack.settings.departments
    )
    settings = stack.settings.batches.model_dump() | batches
    stack.settings = stack.settings.model_copy(
        update={"departments": departments, "batches": BatchSettings.model_validate(settings)}
    )


async def route(stack: Stack, *drafts: TicketDraft) -> list[str]:
    before = await stack.ticket_count()
    await stack.rt.handoff.submit_many(list(drafts))
    assert await stack.drain(stop=True) == before + len(drafts)
    async with stack.rt.database.sessions() as session:
        found = dict(
            (await session.execute(select(col(Ticket.source_key), col(Ticket.number)))).all()
        )
    return [found[d.source_key] for d in drafts]


async def batch_notices(stack: Stack) -> list[Notification]:
    async with stack.rt.database.sessions() as session:
        rows = await session.execute(select(Notification).where(col(Notification.kind) == "batch"))
        return list(rows.scalars())


async def test_three_people_about_one_fault_become_one_batch_and_a_fourth_joins(
    stack: Stack,
) -> None:
    with_office_mailbox(stack)
    first = await route(stack, call("+8613900000001"), call("+8613900000002"))
    for number in first:
        ticket = await ticket_of(stack, number)
        assert ticket["links"]["batch"] is None, "two people are not yet a batch"
        assert ticket["severity"] == "general"

    (third,) = await route(stack, call("+8613900000003"))
    key = f"B{first[0]}"
    members = [*first, third]
    for number in members:
        ticket = await ticket_of(stack, number)
        assert ticket["links"]["batch"] == key
        assert ticket["severity"] == "important"
        (batched,) = [e for e in ticket["events"] if e["kind"] == "batched"]
        assert batched["detail"]["area"] == "滨江花园" and batched["detail"]["batch"] == key
    (notice,) = await batch_notices(stack)
    assert notice.recipient == "kefu@water.example.cn" and notice.number == first[0]
    assert notice.detail["members"] == 3

    (late,) = await route(stack, call("+8613900000004", body="滨江路这边停水了，水很黄"))
    assert (await ticket_of(stack, late))["links"]["batch"] == key
    async with stack.rt.database.sessions() as session:
        (batch,) = (await session.execute(select(Batch))).scalars()
    assert (batch.key, batch.members) == (key, 4)
    assert len(await batch_notices(stack)) == 1, "the office is told once"


async def test_other_areas_other_matters_and_too_few_people_make_no_batch(
    stack: Stack,
) -> None:
    with_office_mailbox(stack)
    numbers = await route(
        stack,
        call("+8613900000011"),
        call("+8613900000012"),
        # Another area, and another matter in the same area.
        call("+8613900000013", body="东湖新村的自来水发黄，有明显异味。"),
        call("+8613900000014", body="滨江花园的水费账单多收了两百元，要求核查退费。"),
        # No area named at all.
        call("+8613900000015", body="自来水发黄，有明显异味，已经两天了。"),
    )
    for number in numbers:
        assert (await ticket_of(stack, number))["links"]["batch"] is None
    assert await batch_notices(stack) == []


async def test_batches_can_be_switched_off_and_the_threshold_set(stack: Stack) -> None:
    with_office_mailbox(stack, min_complainants=2)
    pair = await route(stack, call("+8613900000021"), call("+8613900000022"))
    assert [(await ticket_of(stack, n))["links"]["batch"] for n in pair] == [f"B{pair[0]}"] * 2

    with_office_mailbox(stack, enabled=False)
    more = await route(
        stack, *(call(f"+86139000000{i}", body="新华街道的自来水发黄有异味") for i in (31, 32, 33))
    )
    assert [(await ticket_of(stack, n))["links"]["batch"] for n in more] == [None] * 3


async def test_the_batch_notice_is_mailed_to_the_office_without_the_people(stack: Stack) -> None:
    from tests.test_notify import Sink, smtp_sink, sweep_until, with_email
    from workers.notify import NotifyWorker

    with_office_mailbox(stack)
    numbers = await route(stack, *(call(f"+86139000000{i}") for i in (41, 42, 43)))
    async with smtp_sink(sink := Sink()) as server:
        runtime = with_email(stack.rt, outbound=server)
        runtime.settings = runtime.settings.model_copy(
            update={"departments": stack.settings.departments}
        )
        worker = NotifyWorker(runtime, stack.settings.worker)

        async def sent() -> bool:
            return any(r.status == "sent" for r in await batch_notices(stack))

        await sweep_until([worker], sent)
    (mail,) = [m for m in sink.received if m.rcpt_tos == ["kefu@water.example.cn"]]
    assert "批量投诉" in mail.message["Subject"] and "滨江花园" in mail.message["Subject"]
    assert f"B{numbers[0]}" in mail.text and "3" in mail.text
    assert "139000000" not in mail.text and "异味" not in mail.text, "no person, no complaint"


async def test_two_competing_routers_open_one_batch(stack: Stack) -> None:
    from store.models import DeadLetter

    with_office_mailbox(stack)
    drafts = [call(f"+86139000000{i}") for i in range(50, 58)]
    stack.start_router()
    stack.start_router()
    await stack.rt.handoff.submit_many(drafts)
    assert await stack.drain(stop=True) == len(drafts)
    async with stack.rt.database.sessions() as session:
        batches = list((await session.execute(select(Batch))).scalars())
        linked = (await session.execute(select(col(Ticket.batch)))).scalars().all()
        dead = (await session.execute(select(DeadLetter))).scalars().all()
    assert dead == []
    assert len(batches) == 1 and batches[0].members == len(drafts)
    assert set(linked) == {batches[0].key}
    assert len(await batch_notices(stack)) == 1
