"""The SLA worker's due-soon and breach marks reach the handling department and the
coordinating office by mail, and the one-month rule's escalation the office: once per mark
and mailbox, with nothing of the complaint."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from datetime import UTC, datetime, timedelta

from channels.runtime import Runtime
from router.calendar import WorkCalendar
from tests.stack import Stack, make_draft
from tests.test_notify import FAST, Sink, rows, smtp_sink, sweep_until
from workers.notify import NotifyWorker
from workers.sla import SlaWorker

OFFICE = "kefu@water.example.cn"
WATER = "shuizhi@water.example.cn"


def with_office_mailbox(runtime: Runtime, **email: object) -> Runtime:
    settings = runtime.settings
    departments = tuple(
        d.model_copy(update={"email": OFFICE}) if d.key == "customer_service" else d
        for d in settings.departments
    )
    changed = settings.email.model_copy(update={"outbox": FAST, **email})
    return dataclasses.replace(
        runtime,
        settings=settings.model_copy(update={"email": changed, "departments": departments}),
    )


async def test_each_breach_is_mailed_once_to_the_department_and_the_coordinating_office(
    stack: Stack,
) -> None:
    old = make_draft("late-1", received_at=datetime.now(UTC) - timedelta(days=40))
    await stack.rt.handoff.submit(old)
    assert await stack.drain(stop=True) == 1
    settings = stack.settings
    sla = SlaWorker(
        settings=settings,
        database=stack.rt.database,
        calendar=WorkCalendar(settings.calendar, settings.organisation.timezone),
    )
    assert await sla.watch_clocks() == (0, 2), "first contact and handling are long past due"
    assert await sla.sweep() == (1, 1), "overdue, and major after a month unresolved"

    async with smtp_sink(sink := Sink()) as server:
        runtime = with_office_mailbox(stack.rt, outbound=server)
        workers = [
            NotifyWorker(runtime, stack.settings.worker),
            NotifyWorker(runtime, stack.settings.worker),
        ]

        async def all_sent() -> bool:
            found = [r for r in await rows(stack) if r.kind == "clock"]
            return len(found) == 5 and all(r.status == "sent" for r in found)

        await sweep_until(workers, all_sent)
        await asyncio.gather(*(w.sweep() for w in workers))
        await NotifyWorker(runtime, stack.settings.worker).sweep()
    assert Counter(r for m in sink.received for r in m.rcpt_tos) == {WATER: 2, OFFICE: 3}
    subjects = Counter(m.message["Subject"].split("] ")[1] for m in sink.received)
    assert subjects == {"超时提醒 / Overdue": 4, "超期未办结升级 / Unresolved, raised to major": 1}
    for mail in sink.received:
        raw = mail.raw.decode("utf-8", "replace") + mail.text
        for personal in ("张三", "13812345678", "zhang@example.cn", old.body, old.subject):
            assert personal not in raw, personal
    texts = " ".join(m.text for m in sink.received)
    assert "首次联系投诉人" in texts and "办理" in texts
