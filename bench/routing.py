"""The router measured on complaints written from the seeds: per organisation and field, how
many of the labelled cases it decides as labelled.

    PYTHONPATH=. .venv/bin/python -m bench.routing [--failures]

Each organisation is a config (the shipped ``config.yaml`` for the water utility; a telecom
operator, a bank, a power company on 95598 and the service centre of the English web page in
examples/) and a file of labelled cases in tests/fixtures/router_labelled/. The cases go
through the router (router/rules.py) with drafts as the channels make them; the same set is
asserted by tests/test_router_labelled.py.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from ingest.app.settings import Settings, load_settings
from ingest.draft import (
    Channel,
    Complainant,
    FirstContact,
    FirstContactKind,
    ReferralOrder,
    ResolvedOnContact,
    TicketDraft,
)
from router.rules import Router, RoutingDecision

ROOT = Path(__file__).resolve().parent.parent
LABELLED = ROOT / "tests" / "fixtures" / "router_labelled"
ORGANISATIONS = {
    "water": ROOT / "config.yaml",
    "telecom": ROOT / "examples" / "telecom.yaml",
    "bank": ROOT / "examples" / "bank.yaml",
    "service": ROOT / "examples" / "service.yaml",
    "power": ROOT / "examples" / "power.yaml",
}
FIELDS = ("category", "department", "severity", "valid", "accepted")
ZONE = ZoneInfo("Asia/Shanghai")
RECEIVED = datetime(2026, 11, 23, 10, 0, tzinfo=ZONE)

_FIRST_CONTACT = {
    Channel.PHONE: FirstContact(kind=FirstContactKind.AGENT, id="1001", department=None),
    Channel.EMAIL: FirstContact(kind=FirstContactKind.MAILBOX, id="mailbox-complaints"),
    Channel.REFERRAL: FirstContact(kind=FirstContactKind.REGULATOR, id="liaison"),
    Channel.LETTER: FirstContact(kind=FirstContactKind.DESK, id="letters"),
}


@dataclass(frozen=True)
class Case:
    organisation: str
    id: str
    draft: TicketDraft
    expect: dict[str, Any]


@dataclass
class Score:
    right: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FIELDS, 0))
    total: int = 0
    failures: list[str] = field(default_factory=list)

    def percent(self, name: str) -> float:
        return 100.0 * self.right[name] / self.total if self.total else 0.0


def _complainant(kind: str, serial: int) -> Complainant:
    """A complainant of its own per case, so that no case is another's repeat (重复投诉)."""
    if kind == "anonymous":
        return Complainant(anonymous=True)
    if kind == "unusable":  # a number the phone parser could not place, no email
        return Complainant(name="王五", phone_raw="1380013")
    return Complainant(
        name="张三", phone=f"+86139{serial:08d}", email=f"complainant{serial}@example.cn"
    )


def _draft(organisation: str, serial: int, raw: dict[str, Any], settings: Settings) -> TicketDraft:
    channel = Channel(raw.get("channel", "web"))
    first = _FIRST_CONTACT.get(channel, FirstContact(kind=FirstContactKind.WEB, id="web-form"))
    if raw.get("closed"):
        coordinating = next(d.key for d in settings.departments if d.role.value == "coordinating")
        first = first.model_copy(update={"department": coordinating})
    incident = raw.get("incident")
    source = raw.get("referral")
    return TicketDraft(
        channel=channel,
        source_key=f"{organisation}-{raw['id']}",
        received_at=RECEIVED,
        complainant=_complainant(raw.get("contact", "named"), serial),
        subject=raw.get("subject", ""),
        body=raw["body"],
        incident_at=datetime.combine(incident, time(12), ZONE)
        if isinstance(incident, date)
        else None,
        category=raw.get("chosen"),
        first_contact=first,
        resolved_on_contact=ResolvedOnContact(outcome="当场解答") if raw.get("closed") else None,
        referral=ReferralOrder(source=source, reference=f"R-{raw['id']}") if source else None,
        repeat_of="TS202610-000001" if raw.get("repeat") else None,
    )


def cases(organisation: str, settings: Settings) -> Iterator[Case]:
    path = LABELLED / f"{organisation}.cases.yaml"
    for serial, raw in enumerate(yaml.safe_load(path.read_text(encoding="utf-8"))):
        expect = {"valid": True, "accepted": True} | dict(raw["expect"])
        draft = _draft(organisation, serial, raw, settings)
        yield Case(organisation, raw["id"], draft, expect)


def expected_status(case: Case) -> str:
    """The ticket status the labels imply."""
    if not case.expect["valid"]:
        return "invalid"
    if not case.expect["accepted"]:
        return "rejected"
    return "closed" if case.draft.resolved_on_contact is not None else "dispatched"


def observed(decision: RoutingDecision) -> dict[str, Any]:
    return {
        "category": decision.category,
        "department": decision.department,
        "severity": decision.severity.value,
        "valid": decision.valid,
        "accepted": decision.accepted,
    }


@dataclass(frozen=True)
class Routed:
    case: Case
    decision: RoutingDecision


def route_all(organisations: Iterable[str] = ORGANISATIONS) -> dict[str, list[Routed]]:
    routed: dict[str, list[Routed]] = {}
    for organisation in organisations:
        settings = load_settings(ORGANISATIONS[organisation], environ={})
        router = Router(settings)
        routed[organisation] = [
            Routed(case, router.route(case.draft)) for case in cases(organisation, settings)
        ]
    return routed


def score(routed: Iterable[Routed]) -> Score:
    result = Score()
    for item in routed:
        result.total += 1
        seen = observed(item.decision)
        wrong = []
        for name in FIELDS:
            if seen[name] == item.case.expect[name]:
                result.right[name] += 1
            else:
                wrong.append(f"{name} {seen[name]} (want {item.case.expect[name]})")
        if wrong:
            result.failures.append(f"{item.case.organisation}/{item.case.id}: {'; '.join(wrong)}")
    return result


def table(routed: dict[str, list[Routed]]) -> str:
    rows = [("organisation", "cases", *FIELDS)]
    scores = {name: score(items) for name, items in routed.items()}
    scores["all"] = score(item for items in routed.values() for item in items)
    for name, result in scores.items():
        rows.append((name, str(result.total), *(f"{result.percent(f):.1f} %" for f in FIELDS)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--failures", action="store_true", help="list every wrong field")
    args = parser.parse_args()
    routed = route_all()
    print(table(routed))
    if args.failures:
        for line in score(i for items in routed.values() for i in items).failures:
            print(line)


if __name__ == "__main__":
    main()
