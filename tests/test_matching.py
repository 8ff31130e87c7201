"""Keyword matching (router/matching.py) and rule conditions (router/conditions.py): the
classes of miss the old word-based matching had, each as a case."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from ingest.app.settings import load_settings
from ingest.draft import (
    Channel,
    Complainant,
    FirstContact,
    FirstContactKind,
    ReferralOrder,
    TicketDraft,
)
from ingest.sections import ConfigError
from router.conditions import Facts, evaluate
from router.matching import Matcher, normalise
from router.rule_language import Age, Negation, Rule, When

NEGATION = Negation()
CONFIG = Path(__file__).resolve().parent.parent / "config.yaml"


def _draft(body: str = "", **fields: Any) -> TicketDraft:
    values: dict[str, Any] = {
        "channel": Channel.WEB,
        "source_key": "k-1",
        "received_at": datetime(2026, 11, 23, 10, 0, tzinfo=UTC),
        "complainant": Complainant(name="张三", phone="+8613800138000"),
        "first_contact": FirstContact(kind=FirstContactKind.WEB, id="web-form"),
        "body": body,
    }
    values.update(fields)
    return TicketDraft(**values)


def _holds(when: dict[str, Any], draft: TicketDraft, category: str = "other") -> bool:
    rule = Rule.model_validate({"name": "r", "when": when, "then": {"flags": ["x"]}})
    keywords = [*(rule.when.text.keywords() if rule.when.text else ()), *NEGATION.cues]
    matches = Matcher(keywords).match(f"{draft.subject}\n{draft.body}")
    return evaluate(rule.when, Facts(draft, matches, category), NEGATION).holds


@pytest.mark.parametrize(
    ("keyword", "text", "found"),
    [
        ("漫游", "开通了国际漫游却扣费", True),  # inside a longer word
        ("赔偿", "要求赔偿金", True),
        ("漫游", "開通國際漫遊後扣費", True),  # traditional text, simplified keyword
        ("12315", "已经向１２３１５反映", True),  # full-width digits
        ("fire", "FIRE near the station", True),  # case
        ("fire", "our firewall blocks it", False),  # Latin word boundary
        ("打110", "幸福路110号", False),
        ("打110", "我要打1100", False),
        ("consumer association", "the Consumer   Association", True),  # spaces folded
        ("consumer association", "consumer, association", False),  # not across punctuation
        ("停水", "小区停 水三天", True),  # a space inside Chinese text is not a break
        ("水压低", "水压\n低", False),  # a line break is
    ],
)
def test_keywords_match_as_substrings_of_normalised_text(
    keyword: str, text: str, found: bool
) -> None:
    assert bool(Matcher([keyword]).match(text).found([keyword])) is found


def test_normalising_keeps_the_length_of_chinese_text() -> None:
    assert len(normalise("國際漫遊費用")) == len("國際漫遊費用")


@pytest.mark.parametrize(
    ("text", "holds"),
    [
        ("有人受伤了", True),
        ("没有人受伤", False),
        ("并未造成人员受伤", False),
        ("没有人管，结果有人受伤", True),  # the cue is in another clause
        ("不小心受伤", True),  # 不 is not a cue
        ("Nobody was injured.", False),
        ("A child was injured.", True),
    ],
)
def test_a_negation_cue_before_a_keyword_cancels_it(text: str, holds: bool) -> None:
    when = {"text": {"any_of": ["受伤", "injured"]}}
    assert _holds(when, _draft(text)) is holds


def test_a_condition_that_is_not_negatable_ignores_cues() -> None:
    when = {"text": {"any_of": ["受伤"], "negatable": False}}
    assert _holds(when, _draft("没有人受伤"))


@pytest.mark.parametrize(
    ("text", "holds"),
    [
        ("营业厅给我多办了一张副卡", True),
        ("多办了业务，另外我想咨询一下家里老人的那张副卡怎么注销，还有宽带的事情很久了", False),
        ("副卡被多办了", True),  # either order
        ("只说了多办", False),
    ],
)
def test_all_of_within_n_characters(text: str, holds: bool) -> None:
    when = {"text": {"all_of": ["多办", ["副卡", "副号"]], "within": 12}}
    assert _holds(when, _draft(text)) is holds


def test_none_of_excludes_a_longer_word() -> None:
    when = {"text": {"any_of": ["媒体"], "none_of": ["多媒体"]}}
    assert _holds(when, _draft("找媒体曝光"))
    assert not _holds(when, _draft("多媒体教室停水"))


def test_conditions_on_the_draft() -> None:
    referral = ReferralOrder(source="gov12345", reference="GD-1")
    assert _holds({"channel": ["referral"]}, _draft("x", channel=Channel.EMAIL, referral=referral))
    assert _holds({"referral_source": ["gov12345"]}, _draft("x", referral=referral))
    assert not _holds({"referral_source": ["gov12345"]}, _draft("x"))
    assert _holds({"explicit_category": ["billing"]}, _draft("x", category="billing"))
    assert _holds({"category": ["billing"]}, _draft("x"), category="billing")
    assert _holds({"repeat": True}, _draft("x", repeat_of="TS202611-000001"))
    assert _holds({"contact": "present"}, _draft("x"))
    assert _holds({"contact": "absent"}, _draft("x", complainant=Complainant(anonymous=True)))
    unusable = Complainant(name="李", phone_raw="1380013")
    assert _holds({"contact": "unusable"}, _draft("x", complainant=unusable))


@pytest.mark.parametrize(
    ("incident", "age", "holds"),
    [
        (datetime(2026, 6, 22, tzinfo=UTC), "5 months", True),
        (datetime(2026, 6, 23, tzinfo=UTC), "5 months", False),
        (datetime(2024, 11, 22, tzinfo=UTC), "2 years", True),
        (datetime(2025, 1, 1, tzinfo=UTC), "2年", False),
        (None, "1 day", False),  # no incident time: no age to judge
    ],
)
def test_incident_older_than(incident: datetime | None, age: str, holds: bool) -> None:
    assert _holds({"incident_older_than": age}, _draft("x", incident_at=incident)) is holds


def test_ages_are_read_as_staff_write_them() -> None:
    assert Age.parse("5 months") == Age(5, "months")
    assert Age.parse("2年") == Age(2, "years")
    assert Age.parse("180 days") == Age(180, "days")
    with pytest.raises(ValueError):
        Age.parse("soon")


def test_a_rule_needs_a_reason_to_reject() -> None:
    with pytest.raises(ValueError, match="need a reason"):
        Rule.model_validate({"name": "r", "when": When(), "then": {"accepted": False}})


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        ({"then": {"department": "nowhere"}}, r"rules\.0\.then\.department: unknown department"),
        ({"then": {"category": "nothing"}}, r"rules\.0\.then\.category: unknown category"),
        (
            {"when": {"referral_source": ["mars"]}, "then": {"flags": ["x"]}},
            r"rules\.0\.when\.referral_source: unknown referral source",
        ),
        (
            {"when": {"text": {"any_of": ["!!"]}}, "then": {"flags": ["x"]}},
            r"rules\.0\.when\.text: keyword '!!' has no letters",
        ),
        ({"then": {"valid": False}}, r"rules\.0\.then: .*need a reason"),
        ({"when": {"incident_older_than": "soon"}, "then": {"flags": ["x"]}}, r"not an age"),
        ({"then": {"severity": {"at_least": "major", "exactly": "general"}}}, r"exactly one"),
    ],
)
def test_a_bad_rule_is_named_by_check_config(
    tmp_path: Path, rule: dict[str, Any], problem: str
) -> None:
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    config["rules"] = [{"name": "bad", **rule}]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")

    with pytest.raises(ConfigError, match=problem):
        load_settings(path, environ={})


def test_a_duplicate_rule_name_is_refused(tmp_path: Path) -> None:
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    config["rules"] = [{"name": "twice", "then": {"flags": ["x"]}}] * 2
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")

    with pytest.raises(ConfigError, match=r"rules\.1\.name: duplicate rule 'twice'"):
        load_settings(path, environ={})


def test_english_negation_reaches_the_next_word_only() -> None:
    when = {"text": {"any_of": ["will complain"]}}
    assert _holds(when, _draft("If it is not fixed I will complain to the mayor."))
    assert not _holds({"text": {"any_of": ["injured"]}}, _draft("No one was injured."))


def test_the_traditional_check_changes_nothing_the_full_conversion_would_not() -> None:
    """Texts without a character the t2s tables change skip the (slow) conversion; with one
    they are converted. Both must equal converting every text."""
    from router import matching

    texts = ["國際漫遊費用太高", "一目瞭然", "上鍊的錶", "停水三天了", "乾淨的水", "没有人受伤"]
    for path in sorted(
        (Path(__file__).parent / "fixtures" / "router_labelled").glob("*.cases.yaml")
    ):
        cases = yaml.safe_load(path.read_text(encoding="utf-8"))
        for case in cases if isinstance(cases, list) else cases.get("cases", []):
            texts.append(f"{case.get('subject', '')}\n{case.get('body', '')}")
    assert len(texts) > 150 and matching._CHANGING, "the tables were read"

    def converted(text: str) -> str:
        whole = str(matching._T2S.convert(text))
        if len(whole) == len(text):
            return whole
        return "".join(str(matching._T2S.convert(c)) if matching._HAN.match(c) else c for c in text)

    assert [matching._simplified(t) for t in texts] == [converted(t) for t in texts]
    assert matching._simplified("國際漫遊") == "国际漫游"
