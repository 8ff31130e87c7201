"""The result fed back by mail (反馈, ``channel: email``): sent once to the complainant, in
the thread of their complaint, through the one outbox; feedback by phone sends nothing."""

from __future__ import annotations

import asyncio

from tests.stack import Stack
from tests.support_http import api_client, post_events
from tests.test_notify import (
    Sink,
    email_draft,
    make_tickets,
    notify_worker,
    rows,
    smtp_sink,
    sweep_until,
    with_email,
)


async def test_feedback_by_mail_sends_the_result_once_in_the_complaint_s_thread(
    stack: Stack,
) -> None:
    by_mail, by_phone = email_draft("wang.wu@example.cn"), email_draft("zhao.liu@example.cn")
    async with smtp_sink(sink := Sink()) as server:
        runtime = with_email(stack.rt, outbound=server)
        stack.settings = runtime.settings
        mailed, phoned = await make_tickets(stack, by_mail, by_phone)
        workers = [notify_worker(stack, runtime), notify_worker(stack, runtime)]

        async def sent(kinds: list[str]) -> bool:
            found = await rows(stack)
            return sorted(r.kind for r in found) == kinds and all(r.status == "sent" for r in found)

        await sweep_until(workers, lambda: sent(["ack", "ack"]))
        async with api_client(runtime) as client:
            for number, channel in ((mailed, "email"), (phoned, "phone")):
                await post_events(
                    client,
                    number,
                    [
                        ("handle", {"result": "已派人更换老化水管"}),
                        ("feedback", {"channel": channel}),
                    ],
                )
        await sweep_until(workers, lambda: sent(["ack", "ack", "result"]))
        for _ in range(3):  # more sweeps, two workers: still one result mail
            await asyncio.gather(*(w.sweep() for w in workers))

    results = [m for m in sink.received if "投诉处理结果" in m.message["Subject"]]
    assert len(results) == 1
    (mail,) = results
    assert mail.rcpt_tos == ["wang.wu@example.cn"]
    assert f"[{mailed}]" in mail.message["Subject"]
    assert mail.message["In-Reply-To"] == by_mail.source_key, "in the complaint's thread"
    assert "已派人更换老化水管" in mail.text and "96116" in mail.text
    assert [r.kind for r in await rows(stack)].count("result") == 1
