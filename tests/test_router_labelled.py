"""The router on the labelled set written from the seeds (tests/fixtures/router_labelled/):
five organisations (the water utility of config.yaml, a telecom operator, a bank, a power
company on 95598, the service centre of the English web page), each with its own config in
the rule language. The aims are issue 12's: at least 95 % of
categories and departments and 90 % of severities right, every 不予受理 and 无效 rule applied,
and never a misconduct complaint to the department complained about.

``python -m bench.routing`` prints the same figures as a table.
"""

from __future__ import annotations

import pytest

from bench.routing import ORGANISATIONS, Routed, route_all, score
from ingest.app.settings import load_settings


@pytest.fixture(scope="module")
def routed() -> dict[str, list[Routed]]:
    return route_all()


def _all(routed: dict[str, list[Routed]]) -> list[Routed]:
    return [item for items in routed.values() for item in items]


def test_the_set_covers_five_organisations_with_over_150_cases(
    routed: dict[str, list[Routed]],
) -> None:
    assert len(routed) == 5
    assert all(len(items) >= 30 for items in routed.values())
    assert len(_all(routed)) >= 150


@pytest.mark.parametrize("organisation", sorted(ORGANISATIONS))
def test_each_organisation_meets_the_aims(
    routed: dict[str, list[Routed]], organisation: str
) -> None:
    result = score(routed[organisation])

    assert result.percent("category") >= 95, result.failures
    assert result.percent("department") >= 95, result.failures
    assert result.percent("severity") >= 90, result.failures


def test_validity_and_acceptance_are_right_for_every_case(
    routed: dict[str, list[Routed]],
) -> None:
    wrong = [
        f"{item.case.organisation}/{item.case.id}"
        for item in _all(routed)
        if (item.decision.valid, item.decision.accepted)
        != (item.case.expect["valid"], item.case.expect["accepted"])
    ]
    assert not wrong


def test_every_refusal_says_why_and_goes_where_the_seeds_say(
    routed: dict[str, list[Routed]],
) -> None:
    for item in _all(routed):
        decision = item.decision
        if not decision.accepted:
            assert decision.status == "rejected", item.case.id
            assert decision.rejected_reason and decision.rejected_rule, item.case.id
        if not decision.valid:
            assert decision.status == "invalid", item.case.id
            assert decision.invalid_reason, item.case.id


@pytest.mark.parametrize("organisation", sorted(ORGANISATIONS))
def test_every_not_accepted_and_invalid_rule_is_applied_somewhere(
    routed: dict[str, list[Routed]], organisation: str
) -> None:
    settings = load_settings(ORGANISATIONS[organisation], environ={})
    refusing = {
        f"rule.{rule.name}"
        for rule in settings.rules
        if rule.then.accepted is False or rule.then.valid is False
    }
    applied = {
        trace.rule
        for item in routed[organisation]
        for trace in item.decision.trace
        if trace.hit and trace.rule in refusing
    }
    assert refusing, "the organisation has 不予受理 and 无效 rules"
    assert applied == refusing


def test_misconduct_never_goes_to_the_department_complained_about(
    routed: dict[str, list[Routed]],
) -> None:
    labelled = [item for item in _all(routed) if item.case.expect["category"] == "misconduct"]
    assert len(labelled) >= 12
    for item in labelled:
        assert item.decision.category == "misconduct", item.case.id
        assert item.decision.department == "discipline", item.case.id
    for item in _all(routed):
        if item.decision.category == "misconduct":
            assert item.decision.department == "discipline", item.case.id
