"""From a routing decision to what the store records: status, deadline and audit events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ingest.draft import TicketDraft
from router.clocks import REFERRAL_LIMIT, ClockBook, ClockFacts
from router.rules import RoutingDecision
from store.clocks import NewClock
from store.tickets import NewEvent

ROUTER_ACTOR = "router"


@dataclass(frozen=True)
class Deadline:
    due_at: datetime
    rule: str
    limit: str


def intake_clocks(
    draft: TicketDraft, decision: RoutingDecision, book: ClockBook, now: datetime
) -> tuple[tuple[NewClock, ...], Deadline | None]:
    """The clocks a new ticket starts with, and its handling deadline (the handling clock's
    due time, so the referral deadline policy decides ``due_at`` too)."""
    referral = draft.referral
    facts = ClockFacts(
        severity=decision.severity.value,
        category=decision.category,
        channel=draft.channel.value,
        referral_source=referral.source if referral else None,
        referral_deadline=referral.deadline if referral else None,
    )
    # What intake did, in milestones: received, then what the router decided.
    milestones = {"received", str(decision.status)}
    if decision.status == "dispatched":
        milestones.add("accepted")
    clocks = book.start(facts, milestones, draft.received_at, now)
    handling = next((c for c in clocks if c.name == book.handling_clock), None)
    if handling is None or handling.met_at is not None:
        return clocks, None
    return clocks, Deadline(handling.due_at, handling.rule, handling.time_limit or REFERRAL_LIMIT)


def decision_events(
    draft: TicketDraft, decision: RoutingDecision, deadline: Deadline | None
) -> tuple[NewEvent, ...]:
    """The audit trail of intake and routing: every decision names the rule that made it."""
    first = draft.first_contact
    events = [
        NewEvent(
            "received",
            f"{first.kind.value}:{first.id}",
            {
                "channel": draft.channel.value,
                "first_contact": first.model_dump(mode="json"),
                "attachments": len(draft.attachments),
            },
        )
    ]
    events.extend(
        NewEvent("intake_note", draft.channel.value, {"note": note}) for note in draft.notes
    )
    hits = [t for t in decision.trace if t.hit]
    events.append(
        NewEvent(
            "routed",
            ROUTER_ACTOR,
            {
                "category": decision.category,
                "severity": decision.severity.value,
                "department": decision.department,
                "valid": decision.valid,
                "accepted": decision.accepted,
                "flags": list(decision.flags),
                "involved": list(decision.involved),
                "rules": [
                    {"rule": t.rule, "hit": t.hit, "effect": t.effect} for t in decision.trace
                ],
            },
        )
    )
    deciding = {t.rule.split(".")[0]: t.rule for t in hits}
    if not decision.valid:
        # Recorded and counted (无效投诉) wherever it goes: a misconduct tip is invalid at the
        # discipline office, every other at the coordinating office.
        events.append(
            NewEvent(
                "invalid",
                ROUTER_ACTOR,
                {
                    "reason": decision.invalid_reason,
                    "rule": decision.invalid_rule,
                    "department": decision.department,
                },
            )
        )
    elif not decision.accepted:
        events.append(
            NewEvent(
                "rejected",
                ROUTER_ACTOR,
                {
                    "reason": decision.rejected_reason,
                    "rule": decision.rejected_rule,
                    "department": decision.department,
                },
            )
        )
    elif decision.status == "closed":
        resolved = draft.resolved_on_contact
        events.append(
            NewEvent(
                "closed_on_contact",
                f"{first.kind.value}:{first.id}",
                {
                    "outcome": resolved.outcome if resolved else None,
                    "answer_code": resolved.answer_code if resolved else None,
                    "department": decision.department,
                    "rule": deciding.get("dispatch"),
                },
            )
        )
    else:
        events.append(
            NewEvent("accepted", ROUTER_ACTOR, {"rule": deciding.get("validity", "validity.ok")})
        )
        events.append(
            NewEvent(
                "dispatched",
                ROUTER_ACTOR,
                {
                    "department": decision.department,
                    "rule": deciding.get("dispatch"),
                    "due_at": deadline.due_at.isoformat() if deadline else None,
                    "deadline_rule": deadline.rule if deadline else None,
                    "time_limit": deadline.limit if deadline else None,
                },
            )
        )
    return tuple(events)
