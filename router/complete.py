"""From a routing decision to what the store records: status, deadline and audit events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ingest.draft import TicketDraft
from ingest.settings import TimeLimits
from router.calendar import WorkCalendar
from router.rules import RoutingDecision
from store.tickets import NewEvent

ROUTER_ACTOR = "router"


@dataclass(frozen=True)
class Deadline:
    due_at: datetime
    rule: str
    limit: str


def deadline_for(
    draft: TicketDraft, decision: RoutingDecision, calendar: WorkCalendar, limits: TimeLimits
) -> Deadline | None:
    """The handling deadline: the channel's or the severity's limit in working time, or the
    referring authority's own deadline when that is earlier."""
    if decision.status != "dispatched":
        return None
    # The channel's own limit (e.g. 2 working days for supervision feedback) and the
    # severity's both apply: the earlier one wins, so a major feedback is not slowed down.
    candidates = [
        Deadline(
            calendar.add(draft.received_at, limits.handle[decision.severity]),
            f"deadline.severity.{decision.severity.value}",
            str(limits.handle[decision.severity]),
        )
    ]
    channel_limit = limits.by_channel.get(draft.channel.value)
    if channel_limit is not None:
        candidates.append(
            Deadline(
                calendar.add(draft.received_at, channel_limit),
                f"deadline.channel.{draft.channel.value}",
                str(channel_limit),
            )
        )
    deadline = min(candidates, key=lambda d: d.due_at)
    order_deadline = draft.referral.deadline if draft.referral else None
    if order_deadline is not None and order_deadline < deadline.due_at:
        return Deadline(order_deadline, "deadline.referral", "the referring authority's deadline")
    return deadline


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
