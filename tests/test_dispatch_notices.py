"""派单通知: a department with a mailbox is told when a ticket is dispatched to it, once per
dispatch however many notify workers sweep, and never told who a confidential complainant
is (是否保密 on a referral)."""

from __future__ import annotations

import asyncio
import dataclasses

from channels.runtime import Runtime
from tests.stack import Stack
from tests.support_http import api_client
from tests.test_notify import FAST, Sink, rows, smtp_sink, sweep_until
from tests.test_referral_support import (  # referral_secrets: the autouse env fixture
    order,
    post_signed,
    referral_secrets,  # noqa: F401
)
from workers.notify import NotifyWorker

MAILBOX = "diaodu@water.example.cn"


def with_dispatch_notices(runtime: Runtime, **email: object) -> Runtime:
    settings = runtime.settings
    departments = tuple(
        d.model_copy(update={"email": MAILBOX}) if d.key == "supply_dispatch" else d
        for d in settings.departments
    )
    changed = settings.email.model_copy(update={"outbox": FAST, "dispatch_notices": True, **email})
    return dataclasses.replace(
        runtime,
        settings=settings.model_copy(update={"email": changed, "departments": departments}),
    )


async def test_a_dispatch_is_mailed_once_and_a_confidential_complainant_stays_out(
    stack: Stack,
) -> None:
    async with api_client(stack.rt) as client:
        secret = await post_signed(client, order(工单编号="SECRET-1", 是否保密="是"))
        public = await post_signed(client, order(工单编号="OPEN-1", 是否保密="否"))
        assert secret.status_code == public.status_code == 201
    assert await stack.drain(stop=True) == 2
    numbers = {"secret": secret.json()["number"], "public": public.json()["number"]}

    async with smtp_sink(sink := Sink()) as server:
        runtime = with_dispatch_notices(stack.rt, outbound=server)
        workers = [
            NotifyWorker(runtime, stack.settings.worker),
            NotifyWorker(runtime, stack.settings.worker),
        ]

        async def both_sent() -> bool:
            found = [r for r in await rows(stack) if r.kind == "dispatch"]
            return len(found) == 2 and all(r.status == "sent" for r in found)

        await sweep_until(workers, both_sent)
        # Replays of the sweep, by both workers and by a fresh one after a restart.
        await asyncio.gather(*(w.sweep() for w in workers))
        await NotifyWorker(runtime, stack.settings.worker).sweep()
    dispatches = [r for r in await rows(stack) if r.kind == "dispatch"]
    assert sorted(r.number or "" for r in dispatches) == sorted(numbers.values())
    assert {r.recipient for r in dispatches} == {MAILBOX}
    mails = {m.message["Subject"].split("]")[0].lstrip("["): m for m in sink.received}
    assert len(sink.received) == 2 and set(mails) == set(numbers.values())
    public_text = mails[numbers["public"]].text
    assert "王女士" in public_text and "+8613812345678" in public_text
    assert "派" in mails[numbers["public"]].message["Subject"]
    hidden = mails[numbers["secret"]]
    raw = hidden.raw.decode("utf-8", "replace") + hidden.text
    assert numbers["secret"] in hidden.text and "保密" in hidden.text
    for personal in ("王女士", "13812345678", "光明小区"):
        assert personal not in raw, personal


async def test_without_the_setting_no_dispatch_notice_is_queued(stack: Stack) -> None:
    async with api_client(stack.rt) as client:
        assert (await post_signed(client, order(工单编号="QUIET-1"))).status_code == 201
    assert await stack.drain(stop=True) == 1
    runtime = with_dispatch_notices(stack.rt, dispatch_notices=False)
    await NotifyWorker(runtime, stack.settings.worker).sweep()
    assert [r for r in await rows(stack) if r.kind == "dispatch"] == []
