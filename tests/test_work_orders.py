"""A department's own work-order system: each dispatch to a department with a ``webhook`` is
POSTed there once, signed, retried while it is busy, without the person for a confidential
complainant (是否保密 on a referral); to a real local HTTP receiver, in both deployments."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

from channels.runtime import Runtime
from ingest.signing import signature
from router.settings import DepartmentWebhook
from tests.stack import Stack
from tests.support_http import api_client
from tests.test_notify import FAST, rows, sweep_until
from tests.test_referral_support import (  # referral_secrets: the autouse env fixture
    order,
    post_signed,
    referral_secrets,  # noqa: F401
)
from tests.test_sms import BUSY, OK, REFUSED, Received, Receiver, receiving
from workers.notify import NotifyWorker

SECRET = "work-order-shared-secret-0123"


def with_webhook(runtime: Runtime, url: str) -> Runtime:
    settings = runtime.settings
    hook = DepartmentWebhook(url=url, secret=SECRET)
    departments = tuple(
        d.model_copy(update={"webhook": hook}) if d.key == "supply_dispatch" else d
        for d in settings.departments
    )
    email = settings.email.model_copy(update={"outbox": FAST})
    return dataclasses.replace(
        runtime, settings=settings.model_copy(update={"departments": departments, "email": email})
    )


def verified(request: Received) -> dict[str, Any]:
    stamp = request.headers["x-shouli-timestamp"]
    assert request.headers["x-shouli-signature"] == signature(SECRET, stamp, request.body)
    body: dict[str, Any] = json.loads(request.body)
    return body


async def test_each_dispatch_is_posted_once_signed_and_a_confidential_person_stays_out(
    stack: Stack,
) -> None:
    async with api_client(stack.rt) as client:
        secret = await post_signed(client, order(工单编号="WO-SECRET", 是否保密="是"))
        public = await post_signed(client, order(工单编号="WO-OPEN", 是否保密="否"))
        assert secret.status_code == public.status_code == 201, secret.text
    assert await stack.drain(stop=True) == 2
    numbers = {"secret": secret.json()["number"], "public": public.json()["number"]}

    receiver = Receiver([BUSY, BUSY, OK])
    async with receiving(receiver) as url:
        runtime = with_webhook(stack.rt, url)
        workers = [NotifyWorker(runtime, stack.settings.worker) for _ in range(2)]
        try:

            async def both_sent() -> bool:
                found = [r for r in await rows(stack) if r.kind == "work_order"]
                return len(found) == 2 and all(r.status == "sent" for r in found)

            await sweep_until(workers, both_sent)
            for _ in range(3):  # more sweeps by both workers: nothing is posted again
                await asyncio.gather(*(w.sweep() for w in workers))
        finally:
            for worker in workers:
                await worker.close()

    orders = [verified(r) for r in receiver.received]
    accepted = {o["number"]: o for o in orders[2:]}
    assert len(orders) == 4 and set(accepted) == set(numbers.values())
    public_order, secret_order = accepted[numbers["public"]], accepted[numbers["secret"]]
    assert public_order["department"] == "supply_dispatch" and public_order["due_at"]
    assert public_order["complainant"]["phone"], "who to call back"
    assert "complainant" not in secret_order, "a confidential complainant stays out"


async def test_a_refusing_work_order_system_ends_in_a_dead_letter(stack: Stack) -> None:
    async with api_client(stack.rt) as client:
        answer = await post_signed(client, order(工单编号="WO-REFUSED"))
        assert answer.status_code == 201, answer.text
    assert await stack.drain(stop=True) == 1
    receiver = Receiver([REFUSED])
    async with receiving(receiver) as url:
        worker = NotifyWorker(with_webhook(stack.rt, url), stack.settings.worker)
        try:

            async def dead() -> bool:
                return [r.status for r in await rows(stack) if r.kind == "work_order"] == ["dead"]

            await sweep_until([worker], dead)
        finally:
            await worker.close()
    assert len(receiver.received) == 1
