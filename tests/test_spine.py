"""The spine end to end: draft -> queue -> router -> store, in both deployment modes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from ingest.draft import Channel, ReferralOrder, ResolvedOnContact, TicketDraft
from ingest.queue import Outgoing
from router.rules import Router, RoutingDecision
from store.dead_letters import open_dead_letters
from store.models import DeadLetter, Event, InboundItem, Ticket
from store.tickets import find_ticket, ticket_json
from tests.stack import ZHANG, Stack, make_draft


async def _ticket_for(stack: Stack, source_key: str, channel: str = "api") -> dict:
    async with stack.rt.database.sessions() as session:
        number = (
            await session.execute(
                select(Ticket.number).where(
                    Ticket.channel == channel, Ticket.source_key == source_key
                )
            )
        ).scalar_one()
        ticket = await find_ticket(session, number)
        assert ticket is not None
        return await ticket_json(session, ticket)


async def test_a_submitted_draft_becomes_a_routed_ticket_with_its_audit_trail(stack: Stack) -> None:
    draft = make_draft("water-1", complainant=ZHANG)
    await stack.rt.handoff.submit(draft)
    stack.start_router()
    assert await stack.wait_for_tickets(1) == 1

    ticket = await _ticket_for(stack, "water-1")
    assert ticket["number"].startswith("TS" + draft.received_at.astimezone().strftime("%Y"))
    assert ticket["channel"] == "api"
    assert ticket["category"] == "water_quality"
    assert ticket["status"] == "dispatched"
    assert ticket["department"] == stack.settings.category("water_quality").department
    assert ticket["complainant"] == {
        "name": "张三",
        "phone": "+8613812345678",
        "email": "zhang@example.cn",
        "anonymous": False,
        "confidential": False,
    }
    assert ticket["due_at"] is not None and ticket["due_at"] > ticket["received_at"]
    kinds = [e["kind"] for e in ticket["events"]]
    assert kinds == ["received", "routed", "accepted", "dispatched"]
    dispatched = ticket["events"][-1]["detail"]
    assert dispatched["rule"] == "dispatch.category"
    assert dispatched["deadline_rule"] == "deadline.severity.general"
    routed_rules = {r["rule"]: r["hit"] for r in ticket["events"][1]["detail"]["rules"]}
    assert routed_rules["category.keywords"] is True


async def test_two_competing_routers_make_each_ticket_once_with_unique_numbers(
    stack: Stack,
) -> None:
    drafts = [make_draft(f"compete-{i}") for i in range(300)]
    for start in range(0, 300, 50):
        await stack.rt.handoff.submit_many(drafts[start : start + 50])
    stack.start_router()
    stack.start_router()
    assert await stack.wait_for_tickets(300) == 300
    async with stack.rt.database.sessions() as session:
        numbers = (await session.execute(select(Ticket.number))).scalars().all()
        inbound = (
            await session.execute(select(func.count()).select_from(InboundItem))
        ).scalar_one()
    assert len(set(numbers)) == 300
    serials = sorted(int(n.rsplit("-", 1)[1]) for n in numbers)
    assert serials == list(range(1, 301)), "numbers are a gapless month serial"
    assert inbound == 300


async def test_the_same_draft_delivered_twice_makes_one_ticket(stack: Stack) -> None:
    draft = make_draft("dup-1")
    await stack.rt.handoff.submit(draft)
    await stack.rt.handoff.submit(draft)
    # And once more in a later batch, after the first ticket exists.
    stack.start_router()
    assert await stack.wait_for_tickets(1) == 1
    await stack.rt.handoff.submit(draft)
    assert await stack.wait_until(lambda: _queue_empty(stack))
    await stack.stop_routers()
    assert await stack.ticket_count() == 1
    dup = stack.rt.metrics.duplicates.labels(channel="api")._value.get()
    assert dup == 2


async def _queue_empty(stack: Stack) -> bool:
    return await stack.rt.queue.depth(stack.rt.names.drafts) == 0


class _BuggyRouter(Router):
    """Stands for a routing bug that a later deploy fixes."""

    def route(self, draft: TicketDraft) -> RoutingDecision:
        if "POISON" in draft.body:
            raise RuntimeError("rule table cannot handle this draft")
        return super().route(draft)


async def test_a_poison_draft_is_dead_lettered_with_its_reason_and_replays_after_the_fix(
    stack: Stack,
) -> None:
    good, poison = (
        make_draft("good-1"),
        make_draft("poison-1", subject="水压不足", body="POISON 水压太低"),
    )
    await stack.rt.handoff.submit_many([good, poison])
    await stack.rt.queue.publish(stack.rt.names.drafts, [Outgoing(b"{not json", "garbage-1")])
    stack.start_router(_BuggyRouter(stack.settings))
    assert await stack.wait_for_tickets(1) == 1

    async def two_dead_letters() -> bool:
        async with stack.rt.database.sessions() as session:
            return len(await open_dead_letters(session)) == 2

    assert await stack.wait_until(two_dead_letters)
    await stack.stop_routers()
    async with stack.rt.database.sessions() as session:
        letters = {d.message_id: d for d in await open_dead_letters(session)}
    assert "routing failed: RuntimeError: rule table cannot handle this draft" in (
        letters["api:poison-1"].reason
    )
    assert letters["garbage-1"].reason.startswith("not a valid ticket draft")

    code, out, err = await stack.shouli("dead-letters", "list")
    assert code == 0, err
    assert "routing failed" in out and "not a valid ticket draft" in out

    # The fix is deployed: a correct router. Replay brings the draft back.
    poison_id = str(letters["api:poison-1"].id)
    code, out, err = await stack.shouli("dead-letters", "replay", poison_id)
    assert (code, out.strip()) == (0, f"replayed dead letter {poison_id}"), err
    code, out, err = await stack.shouli("dead-letters", "replay", poison_id)
    assert code == 1 and "already replayed" in err
    stack.start_router()
    assert await stack.wait_for_tickets(2) == 2
    ticket = await _ticket_for(stack, "poison-1")
    assert ticket["category"] == "water_pressure"
    async with stack.rt.database.sessions() as session:
        remaining = await open_dead_letters(session)
        total = (await session.execute(select(func.count()).select_from(DeadLetter))).scalar_one()
    assert [d.message_id for d in remaining] == ["garbage-1"]
    assert total == 2


async def test_a_complaint_closed_on_the_spot_is_recorded_closed_and_not_dispatched(
    stack: Stack,
) -> None:
    draft = make_draft(
        "spot-1",
        channel=Channel.PHONE,
        body="咨询水费为什么比上月高",
        first_contact={"kind": "agent", "id": "agent-007", "department": "customer_service"},
        resolved_on_contact=ResolvedOnContact(outcome="解释了阶梯水价", answer_code="FAQ-12"),
    )
    await stack.rt.handoff.submit(draft)
    stack.start_router()
    assert await stack.wait_for_tickets(1) == 1
    ticket = await _ticket_for(stack, "spot-1", channel="phone")
    assert ticket["status"] == "closed"
    assert ticket["due_at"] is None
    assert ticket["first_contact"] == {
        "kind": "agent",
        "id": "agent-007",
        "department": "customer_service",
    }
    closed = ticket["events"][-1]
    assert closed["kind"] == "closed_on_contact"
    assert closed["actor"] == "agent:agent-007"
    assert closed["detail"]["answer_code"] == "FAQ-12"
    assert "dispatched" not in [e["kind"] for e in ticket["events"]]


async def test_a_referral_deadline_earlier_than_our_rules_becomes_the_due_date(
    stack: Stack,
) -> None:
    deadline = datetime.now(UTC) + timedelta(hours=2)
    draft = make_draft(
        "ref-1",
        channel=Channel.REFERRAL,
        referral=ReferralOrder(source="12345", reference="GD-1", deadline=deadline),
        first_contact={"kind": "regulator", "id": "12345-liaison"},
    )
    await stack.rt.handoff.submit(draft)
    stack.start_router()
    assert await stack.wait_for_tickets(1) == 1
    ticket = await _ticket_for(stack, "ref-1", channel="referral")
    assert ticket["severity"] in ("important", "major")
    assert ticket["referral"]["reference"] == "GD-1"
    assert datetime.fromisoformat(ticket["due_at"]) == deadline.replace(
        microsecond=deadline.microsecond
    )
    assert ticket["events"][-1]["detail"]["deadline_rule"] == "deadline.referral"


async def test_every_routing_decision_is_an_event_naming_its_rule(stack: Stack) -> None:
    draft = make_draft("rules-1", body="抄表员吃拿卡要，索要好处费，我要向媒体曝光")
    await stack.rt.handoff.submit(draft)
    stack.start_router()
    assert await stack.wait_for_tickets(1) == 1
    async with stack.rt.database.sessions() as session:
        events = (await session.execute(select(Event).order_by(Event.id))).scalars().all()
    dispatched = next(e for e in events if e.kind == "dispatched")
    assert dispatched.detail["rule"] == "dispatch.discipline"
    assert dispatched.detail["department"] == "discipline"
    routed = next(e for e in events if e.kind == "routed")
    hits = [r["rule"] for r in routed.detail["rules"] if r["hit"]]
    assert "rule.media" in hits
    assert routed.detail["category"] == "misconduct"
    assert routed.detail["severity"] == "major"


async def test_a_number_reserved_at_intake_is_the_tickets_number_and_resending_keeps_it(
    stack: Stack,
) -> None:
    from channels.intake import accept

    first = await accept(stack.rt, make_draft("intake-1"))
    again = await accept(stack.rt, make_draft("intake-1"))
    other = await accept(stack.rt, make_draft("intake-2"))
    assert first.new and not again.new and other.new
    assert again.number == first.number != other.number
    stack.start_router()
    assert await stack.wait_for_tickets(2) == 2
    assert (await _ticket_for(stack, "intake-1"))["number"] == first.number
    assert (await _ticket_for(stack, "intake-2"))["number"] == other.number
    # Once the ticket exists, a re-sent item is answered with its number and not re-queued.
    late = await accept(stack.rt, make_draft("intake-1"))
    assert (late.number, late.new) == (first.number, False)
    assert await stack.rt.queue.depth(stack.rt.names.drafts) == 0
    # Router-numbered tickets continue the same serial, never reusing a reserved number.
    await stack.rt.handoff.submit(make_draft("router-numbered"))
    assert await stack.wait_for_tickets(3) == 3
    numbers = {first.number, other.number, (await _ticket_for(stack, "router-numbered"))["number"]}
    assert len(numbers) == 3
