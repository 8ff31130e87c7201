"""The routing table (router/rules.py) and word segmentation (router/segment.py).

Most cases route with the shipped ``config.yaml``, so the default organisation's departments,
keywords and rules are tested too; a few build a small Settings in code where a case
needs a configuration the default does not have.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jieba
import pytest

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
from ingest.sections import ConfigError
from router.rule_language import Rule
from router.rules import Router, RoutingDecision
from router.segment import Segmenter
from router.settings import (
    Category,
    Department,
    DepartmentRole,
    RoutingSettings,
    Severity,
)

CONFIG = Path(__file__).resolve().parent.parent / "config.yaml"
SHIPPED = load_settings(CONFIG, environ={})

NAMED = Complainant(name="张三", phone="+8613800138000")
ANONYMOUS = Complainant(anonymous=True)


def make_draft(**fields: Any) -> TicketDraft:
    values: dict[str, Any] = {
        "channel": Channel.WEB,
        "source_key": "submission-1",
        "received_at": datetime(2026, 11, 23, 10, 0, tzinfo=UTC),
        "complainant": NAMED,
        "first_contact": FirstContact(kind=FirstContactKind.WEB, id="web-form"),
    }
    values.update(fields)
    return TicketDraft(**values)


@pytest.fixture(scope="module")
def router() -> Router:
    # environ={} so a developer's SHOULI_* variables cannot change what is tested.
    return Router(load_settings(CONFIG, environ={}))


def hits(decision: RoutingDecision) -> list[str]:
    return [t.rule for t in decision.trace if t.hit]


def effect(decision: RoutingDecision, rule: str) -> str:
    return next(t.effect for t in decision.trace if t.rule == rule)


# -- category and department -------------------------------------------------------------


@dataclass(frozen=True)
class Routed:
    name: str
    draft: dict[str, Any]
    category: str
    department: str
    deciding: tuple[str, ...]  # hit rules of the category and dispatch stages, in order
    status: str = "dispatched"


CATEGORY_CASES = [
    Routed(
        "an explicit category wins over keywords",
        {"category": "billing", "body": "自来水发黄有异味，水质很差"},
        "billing",
        "billing",
        ("category.explicit", "dispatch.category"),
    ),
    Routed(
        "an unknown explicit category falls through to keywords",
        {"category": "product_quality", "body": "自来水发黄有异味"},
        "water_quality",
        "water_quality_centre",
        ("category.keywords", "dispatch.category"),
    ),
    Routed(
        "chinese keywords name the category",
        {"body": "自来水发黄有异味"},
        "water_quality",
        "water_quality_centre",
        ("category.keywords", "dispatch.category"),
    ),
    Routed(
        "a chinese keyword inside a sentence is still a word",
        {"body": "小区水压不足，五楼以上上不去水"},
        "water_pressure",
        "supply_dispatch",
        ("category.keywords", "dispatch.category"),
    ),
    Routed(
        "english keywords name the category",
        {"subject": "Complaint - Li Wei", "body": "The tap water is discoloured and has an odour."},
        "water_quality",
        "water_quality_centre",
        ("category.keywords", "dispatch.category"),
    ),
    Routed(
        "an english phrase keyword matches consecutive words",
        {"body": "Very low water pressure on the fifth floor every evening."},
        "water_pressure",
        "supply_dispatch",
        ("category.keywords", "dispatch.category"),
    ),
    Routed(
        "the subject counts as well as the body",
        {"subject": "停水", "body": "从昨天晚上到现在一直这样，也没有通知"},
        "supply_outage",
        "supply_dispatch",
        ("category.keywords", "dispatch.category"),
    ),
    Routed(
        "the category with the most keyword hits wins",
        {"body": "水表走得太快，这个月水费账单翻倍，门口水管也有点漏水"},
        "billing",
        "billing",
        ("category.keywords", "dispatch.category"),
    ),
    Routed(
        "nothing matched falls back to other and the coordinating office",
        {"body": "请问你们营业厅周六上班吗"},
        "other",
        "customer_service",
        ("category.fallback", "dispatch.coordinating"),
    ),
    Routed(
        "an explicit fallback category goes to the coordinating office",
        {"category": "other", "body": "营业厅周六没有开门"},
        "other",
        "customer_service",
        ("category.explicit", "dispatch.coordinating"),
    ),
    Routed(
        "a tie between departments goes to the coordinating office",
        {"body": "水质发黄，水费还多收了"},
        "water_quality",
        "customer_service",
        ("category.keywords", "dispatch.coordinating"),
    ),
    Routed(
        "misconduct goes to the discipline office although the text names another department",
        {"body": "营业收费部的抄表员上门抄表时索要好处费，不给就估抄水费"},
        "misconduct",
        "discipline",
        ("category.keywords", "category.misconduct", "dispatch.discipline"),
    ),
    Routed(
        "misconduct keywords override an explicitly chosen category",
        {"category": "pipe_repair", "body": "抢修师傅说不给红包就不修漏水"},
        "misconduct",
        "discipline",
        ("category.explicit", "category.misconduct", "dispatch.discipline"),
    ),
    Routed(
        "the misconduct category goes to the discipline office",
        {"category": "misconduct", "body": "The meter reader asked me for a bribe."},
        "misconduct",
        "discipline",
        ("category.explicit", "dispatch.discipline"),
    ),
    Routed(
        "english misconduct keywords go to the discipline office",
        {"body": "The contractor wanted a kickback before the new connection."},
        "misconduct",
        "discipline",
        ("category.keywords", "category.misconduct", "dispatch.discipline"),
    ),
    Routed(
        "a first contact who closed it on the spot keeps it closed in their department",
        {
            "channel": Channel.PHONE,
            "body": "询问本月水费为什么比上月高",
            "first_contact": FirstContact(
                kind=FirstContactKind.AGENT, id="agent-007", department="customer_service"
            ),
            "resolved_on_contact": ResolvedOnContact(outcome="解释阶梯水价", answer_code="BILL-01"),
        },
        "billing",
        "customer_service",
        ("category.keywords", "dispatch.first_contact_closed"),
        status="closed",
    ),
    Routed(
        "a closure on the spot without a department is recorded for the category's department",
        {
            "channel": Channel.PHONE,
            "body": "小区停水什么时候恢复供水",
            "first_contact": FirstContact(kind=FirstContactKind.AGENT, id="agent-007"),
            "resolved_on_contact": ResolvedOnContact(outcome="告知计划停水至18点"),
        },
        "supply_outage",
        "supply_dispatch",
        ("category.keywords", "dispatch.first_contact_closed"),
        status="closed",
    ),
    Routed(
        "a misconduct complaint cannot be closed on the spot by the first receiver",
        {
            "channel": Channel.PHONE,
            "body": "抄表员吃拿卡要，向我索要好处费",
            "first_contact": FirstContact(
                kind=FirstContactKind.AGENT, id="agent-007", department="customer_service"
            ),
            "resolved_on_contact": ResolvedOnContact(outcome="已安抚"),
        },
        "misconduct",
        "discipline",
        ("category.keywords", "dispatch.discipline"),
    ),
]


@pytest.mark.parametrize("case", CATEGORY_CASES, ids=lambda case: case.name)
def test_router_decides_category_and_department(router: Router, case: Routed) -> None:
    decision = router.route(make_draft(**case.draft))

    assert decision.category == case.category
    assert decision.department == case.department
    assert decision.status == case.status
    assert decision.valid
    deciding = [r for r in hits(decision) if r.startswith(("category.", "dispatch."))]
    assert tuple(deciding) == case.deciding


def test_multi_department_tie_names_every_department_involved(router: Router) -> None:
    decision = router.route(make_draft(body="水质发黄，水费还多收了"))

    assert "multi-department" in effect(decision, "category.keywords")
    coordinating = effect(decision, "dispatch.coordinating")
    assert "water_quality→water_quality_centre" in coordinating
    assert "billing→billing" in coordinating


def test_a_tie_within_one_department_is_not_multi_department() -> None:
    settings = _small_settings(
        categories=(
            _category("pressure", "dispatch", ("水压",)),
            _category("outage", "dispatch", ("停水",)),
            _category("other", "office"),
        )
    )
    decision = Router(settings).route(make_draft(body="早上水压很小，晚上停水"))

    assert decision.category == "pressure"  # the first tied category in configuration order
    assert decision.department == "dispatch"
    assert hits(decision)[-1] == "dispatch.category"


# -- words, not substrings ---------------------------------------------------------------


@dataclass(frozen=True)
class WordCase:
    name: str
    body: str
    category: str
    severity: Severity


WORD_CASES = [
    WordCase(
        "an english keyword does not match inside a longer word",
        "Our firewall at the office blocks your website.",
        "other",
        Severity.GENERAL,
    ),
    WordCase(
        "an english keyword matches in any letter case",
        "FIRE near the pumping station, the hydrant was dry.",
        "pipe_repair",
        Severity.MAJOR,
    ),
    WordCase(
        "a chinese keyword does not match inside a longer word",
        "学校多媒体教室停水了",
        "supply_outage",
        Severity.GENERAL,
    ),
    WordCase(
        "a phrase keyword does not match across punctuation",
        "Consumer, association and neighbours: no water since Monday.",
        "supply_outage",
        Severity.GENERAL,
    ),
    WordCase(
        "full-width digits match an ascii keyword",
        "停水三天，已经向１２３１５反映",
        "supply_outage",
        Severity.MAJOR,
    ),
    WordCase(
        "a house number is not a call to the police",
        "幸福路110号停水两天了",
        "supply_outage",
        Severity.GENERAL,
    ),
]


@pytest.mark.parametrize("case", WORD_CASES, ids=lambda case: case.name)
def test_keywords_match_whole_words(router: Router, case: WordCase) -> None:
    decision = router.route(make_draft(body=case.body))

    assert decision.category == case.category
    assert decision.severity is case.severity


# -- severity ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Graded:
    name: str
    draft: dict[str, Any]
    severity: Severity
    rule: str  # the severity rule that set the level


SEVERITY_CASES = [
    Graded("a plain complaint is general", {"body": "小区停水了"}, Severity.GENERAL, "default"),
    Graded("media attention is major", {"body": "再不修好我就找记者曝光"}, Severity.MAJOR, "media"),
    Graded(
        "an english journalist is major",
        {"body": "No water for two days. I have contacted a journalist."},
        Severity.MAJOR,
        "media",
    ),
    Graded(
        "a lawsuit is major",
        {"body": "水管漏水泡坏了地板，我已请律师准备起诉"},
        Severity.MAJOR,
        "lawsuit",
    ),
    Graded(
        "a complaint to 12315 is major",
        {"body": "多收水费，我已经向12315投诉"},
        Severity.MAJOR,
        "regulator",
    ),
    Graded(
        "the consumer association is major",
        {"body": "I was overcharged and will write to the Consumer Association."},
        Severity.MAJOR,
        "regulator",
    ),
    Graded(
        "calling the police is major",
        {"body": "施工队堵了路，邻居已经报警"},
        Severity.MAJOR,
        "regulator",
    ),
    Graded(
        "a safety hazard is major",
        {"body": "路边爆管，有行人受伤"},
        Severity.MAJOR,
        "safety",
    ),
    Graded(
        "an english injury is major",
        {"body": "A child was injured by the open manhole."},
        Severity.MAJOR,
        "safety",
    ),
    Graded(
        "a compensation demand is important",
        {"body": "水管漏水泡坏了地板，要求赔偿"},
        Severity.IMPORTANT,
        "compensation",
    ),
    Graded(
        "an english refund demand is important",
        {"body": "I was overcharged on my bill and want a refund."},
        Severity.IMPORTANT,
        "compensation",
    ),
    Graded(
        "a repeated problem is important",
        {"body": "多次报修漏水一直没人来"},
        Severity.IMPORTANT,
        "repeated",
    ),
    Graded(
        "a referral channel is important",
        {
            "channel": Channel.REFERRAL,
            "body": "市民反映小区停水",
            "referral": ReferralOrder(source="12345", reference="GD20261123001"),
        },
        Severity.IMPORTANT,
        "referral",
    ),
    Graded(
        "a referral order on another channel is important",
        {
            "channel": Channel.EMAIL,
            "body": "转办：市民反映小区停水",
            "referral": ReferralOrder(source="12345", reference="GD20261123002"),
        },
        Severity.IMPORTANT,
        "referral",
    ),
    Graded(
        "a later milder rule never lowers the level",
        {"body": "要求赔偿，不然找媒体曝光"},
        Severity.MAJOR,
        "media",
    ),
    Graded(
        "a referral that mentions the media is major",
        {
            "channel": Channel.REFERRAL,
            "body": "市民称已联系电视台记者",
            "referral": ReferralOrder(source="12345", reference="GD20261123003"),
        },
        Severity.MAJOR,
        "media",
    ),
]


@pytest.mark.parametrize("case", SEVERITY_CASES, ids=lambda case: case.name)
def test_router_grades_severity(router: Router, case: Graded) -> None:
    decision = router.route(make_draft(**case.draft))

    assert decision.severity is case.severity
    setting = [t for t in decision.trace if t.effect.startswith("severity=")]
    assert setting[-1].rule == (
        "severity.default" if case.rule == "default" else f"rule.{case.rule}"
    )


def test_a_milder_rule_that_matches_is_traced_but_keeps_the_level(router: Router) -> None:
    decision = router.route(make_draft(body="要求赔偿，不然找媒体曝光"))

    compensation = next(t for t in decision.trace if t.rule == "rule.compensation")
    assert compensation.hit
    assert compensation.effect.startswith("kept major, not raised to important")


def _severity_rule(name: str, level: str, keywords: tuple[str, ...], how: str = "at_least") -> Rule:
    return Rule.model_validate(
        {"name": name, "when": {"text": {"any_of": keywords}}, "then": {"severity": {how: level}}}
    )


def test_severity_at_least_is_never_lowered_whatever_the_rule_order() -> None:
    settings = _small_settings(
        rules=(
            _severity_rule("grave", "major", ("爆管",)),
            _severity_rule("mild", "important", ("赔偿",)),
            _severity_rule("calm", "general", ("路面",)),
        )
    )
    decision = Router(settings).route(make_draft(body="爆管冲坏路面，要求赔偿"))

    assert decision.severity is Severity.MAJOR
    assert [t.rule for t in decision.trace if t.effect.startswith("severity=")] == [
        "severity.default",
        "rule.grave",
    ]


def test_severity_exactly_sets_the_level_also_lower() -> None:
    settings = _small_settings(
        rules=(
            _severity_rule("grave", "major", ("爆管",)),
            _severity_rule("calm", "general", ("路面",), how="exactly"),
        )
    )
    decision = Router(settings).route(make_draft(body="爆管冲坏路面"))

    assert decision.severity is Severity.GENERAL
    assert effect(decision, "rule.calm").startswith("severity=general (exactly)")


# -- validity ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Checked:
    name: str
    draft: dict[str, Any]
    valid: bool
    status: str
    department: str
    reason: str | None = None  # a fragment of invalid_reason


VALIDITY_CASES = [
    Checked(
        "an anonymous complaint with no contact is invalid but still categorised",
        {"complainant": ANONYMOUS, "body": "自来水发黄有异味"},
        False,
        "invalid",
        "customer_service",
        "anonymous with no phone or email",
    ),
    Checked(
        "an anonymous complaint with a phone number is valid",
        {
            "complainant": Complainant(
                anonymous=True, phone="+8613800138000", phone_raw="138 0013 8000"
            ),
            "body": "停水了好几天",
        },
        True,
        "dispatched",
        "supply_dispatch",
    ),
    Checked(
        "anonymous supervision feedback with no contact is valid",
        {"channel": Channel.FEEDBACK, "complainant": ANONYMOUS, "body": "营业厅工作人员态度恶劣"},
        True,
        "dispatched",
        "customer_service",
    ),
    Checked(
        "a complaint too short to verify is invalid",
        {"body": " 停水 "},
        False,
        "invalid",
        "customer_service",
        "2 characters of subject and body, fewer than 4",
    ),
    Checked(
        "a complaint invalid for both reasons gives both",
        {"complainant": ANONYMOUS, "body": "差"},
        False,
        "invalid",
        "customer_service",
        "anonymous with no phone or email to reply to; 1 characters",
    ),
    Checked(
        "an invalid complaint is not closed even if the first contact closed it",
        {
            "complainant": ANONYMOUS,
            "body": "水费为什么这么贵",
            "resolved_on_contact": ResolvedOnContact(outcome="解释阶梯水价"),
        },
        False,
        "invalid",
        "customer_service",
        "anonymous",
    ),
    Checked(
        "an invalid misconduct report still goes to the discipline office",
        {"complainant": ANONYMOUS, "body": "抄表员索要好处费"},
        False,
        "invalid",
        "discipline",
        "anonymous",
    ),
]


@pytest.mark.parametrize("case", VALIDITY_CASES, ids=lambda case: case.name)
def test_router_checks_validity(router: Router, case: Checked) -> None:
    decision = router.route(make_draft(**case.draft))

    assert decision.valid is case.valid
    assert decision.status == case.status
    assert decision.department == case.department
    if case.reason is None:
        assert decision.invalid_reason is None
    else:
        assert decision.invalid_reason is not None
        assert case.reason in decision.invalid_reason


def test_invalid_complaints_keep_their_category_and_severity(router: Router) -> None:
    decision = router.route(make_draft(complainant=ANONYMOUS, body="爆管了，有人受伤"))

    assert decision.category == "pipe_repair"
    assert decision.severity is Severity.MAJOR
    assert hits(decision)[-1] == "dispatch.invalid"


def test_anonymity_is_allowed_when_the_setting_is_off() -> None:
    settings = _small_settings(
        routing=RoutingSettings(invalid_when_anonymous_and_uncontactable=False)
    )
    decision = Router(settings).route(make_draft(complainant=ANONYMOUS, body="小区停水三天"))

    assert decision.valid
    assert effect(decision, "validity.anonymous_uncontactable") == "disabled in routing settings"


# -- the trace ---------------------------------------------------------------------------


def test_trace_lists_every_rule_consulted_in_order(router: Router) -> None:
    decision = router.route(
        make_draft(subject="投诉", body="小区水压太低，多次反映没人管，再不解决就找记者")
    )

    assert [(t.rule, t.hit) for t in decision.trace] == [
        ("validity.anonymous_uncontactable", False),
        ("validity.too_short", False),
        ("category.explicit", False),
        ("category.keywords", True),
        ("category.misconduct", False),
        ("severity.default", True),
        *((f"rule.{rule.name}", rule.name in ("media", "repeated")) for rule in SHIPPED.rules),
        ("dispatch.discipline", False),
        ("dispatch.invalid", False),
        ("dispatch.not_accepted", False),
        ("dispatch.first_contact_closed", False),
        ("dispatch.rule", False),
        ("dispatch.coordinating", False),
        ("dispatch.category", True),
    ]
    assert effect(decision, "category.keywords").startswith("category=water_pressure")
    assert effect(decision, "rule.media") == "severity=major, flags: 越级倾向 (keywords: 记者)"
    assert effect(decision, "category.explicit") == "no category given"
    assert effect(decision, "dispatch.category") == "department=supply_dispatch"


def test_trace_says_why_an_explicit_category_was_ignored(router: Router) -> None:
    decision = router.route(make_draft(category="product_quality", body="自来水发黄"))

    assert effect(decision, "category.explicit") == "unknown category 'product_quality'"


def test_routing_is_pure(router: Router) -> None:
    """The decision is the draft's and the config's alone: the module's router after another
    decision, and a router built apart from it, decide the same, and the draft is untouched."""
    draft = make_draft(body="水质发黄，水费还多收了，要求退款")
    before = draft.model_copy(deep=True)
    apart = Router(load_settings(CONFIG, environ={}))
    router.route(make_draft(body="小区水压太低，多次反映没人管，再不解决就找记者"))

    decisions = [router.route(draft), apart.route(draft), apart.route(draft)]

    for decision in decisions:
        assert (decision.category, decision.department, decision.status) == (
            "water_quality",
            "customer_service",
            "dispatched",
        )
        assert decision.severity.value == "important" and decision.valid
        assert hits(decision) == [
            "category.keywords",
            "severity.default",
            "rule.compensation",
            "dispatch.coordinating",
        ]
        assert effect(decision, "dispatch.coordinating") == (
            "department=customer_service"
            " (multi-department: water_quality→water_quality_centre, billing→billing)"
        )
    assert decisions[1:] == decisions[:-1], "and every trace alike"
    assert draft == before


# -- configuration errors at start-up ----------------------------------------------------


def test_shipped_config_defines_every_role_and_a_fallback() -> None:
    settings = load_settings(CONFIG, environ={})

    assert settings.department_with_role(DepartmentRole.COORDINATING).key == "customer_service"
    assert settings.department_with_role(DepartmentRole.DISCIPLINE).key == "discipline"
    fallback = settings.category(settings.routing.fallback_category)
    assert fallback is not None and fallback.department == "customer_service"
    for category in settings.categories:
        if category.key != "other":
            assert 8 <= len(category.keywords) <= 20, category.key


def test_unknown_channel_in_a_rule_stops_start_up() -> None:
    wechat = Rule.model_validate(
        {"name": "wechat", "when": {"channel": ["wechat"]}, "then": {"flags": ["x"]}}
    )
    settings = _small_settings(rules=(wechat,))

    with pytest.raises(ConfigError, match=r"rules\.0\.when\.channel: unknown channel"):
        Router(settings)


def test_keyword_without_letters_stops_start_up() -> None:
    settings = _small_settings(
        categories=(_category("outage", "dispatch", ("停水", "!!")), _category("other", "office"))
    )

    with pytest.raises(ConfigError, match=r"categories\.0\.keywords\.1"):
        Router(settings)


# -- segmentation --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def segmenter() -> Segmenter:
    return Segmenter(["水压", "停水", "突然停水", "fire", "Consumer Association", "12315热线"])


@pytest.mark.parametrize(
    ("text", "found"),
    [
        pytest.param("水压太低", {"水压"}, id="a keyword at the start of a sentence"),
        pytest.param("小区水压不足", {"水压"}, id="a keyword in the middle of a sentence"),
        pytest.param("The firewall is down", set(), id="fire is not a word of firewall"),
        pytest.param("Fire! Fire!", {"fire"}, id="fire on its own is"),
        pytest.param(
            "I wrote to the consumer association.",
            {"Consumer Association"},
            id="a phrase matches consecutive words",
        ),
        pytest.param(
            "association of consumer groups", set(), id="a phrase does not match out of order"
        ),
        pytest.param(
            "小区突然停水了", {"突然停水", "停水"}, id="a longer keyword also says the shorter one"
        ),
        pytest.param("打了12315热线", {"12315热线"}, id="a mixed keyword matches as a phrase"),
    ],
)
def test_segmenter_finds_keywords_as_words(
    segmenter: Segmenter, text: str, found: set[str]
) -> None:
    assert segmenter.matches(text) == found


def test_segmenter_words_are_lower_cased_and_segmented(segmenter: Segmenter) -> None:
    assert segmenter.words("小区水压不足 Low PRESSURE") == {
        "小区",
        "水压",
        "不足",
        "low",
        "pressure",
    }


def test_segmenter_matches_agrees_with_its_words(segmenter: Segmenter) -> None:
    # matches() skips segmenting runs that cannot hold a keyword; that must not change results.
    for text in ["小区水压不足，突然停水", "他说fire了", "无关的一句话。停水"]:
        words = segmenter.words(text)
        single = {k for k in ("水压", "停水", "突然停水", "fire") if k in words}
        assert single <= segmenter.matches(text)


def test_segmenter_leaves_the_global_jieba_dictionary_alone(segmenter: Segmenter) -> None:
    assert "突然停水" not in jieba.dt.FREQ


def test_segmenter_does_not_log_dictionary_loading(capfd: pytest.CaptureFixture[str]) -> None:
    Segmenter(["水压"])

    assert "Prefix dict" not in capfd.readouterr().err


# -- small settings built in code --------------------------------------------------------


def _category(key: str, department: str, keywords: tuple[str, ...] = ()) -> Category:
    return Category(key=key, name=key, name_en=key, department=department, keywords=keywords)


def _small_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "departments": (
            Department(
                key="office", name="办公室", name_en="Office", role=DepartmentRole.COORDINATING
            ),
            Department(key="ethics", name="纪检", name_en="Ethics", role=DepartmentRole.DISCIPLINE),
            Department(key="dispatch", name="调度", name_en="Dispatch"),
        ),
        "categories": (_category("outage", "dispatch", ("停水",)), _category("other", "office")),
    }
    values.update(overrides)
    return Settings(**values)


# -- misconduct, 不予受理 and the rules' effects ---------------------------------------------


def test_misconduct_names_the_category_and_records_the_others_as_involved(router: Router) -> None:
    decision = router.route(make_draft(body="抄表员索要好处费，水费也多收了，水压还低"))

    assert (decision.category, decision.department) == ("misconduct", "discipline")
    assert set(decision.involved) == {"billing", "water_pressure"}
    assert effect(decision, "category.misconduct").startswith("category=misconduct (索要, 好处费)")


def _rule(name: str, when: dict[str, Any], then: dict[str, Any]) -> Rule:
    return Rule.model_validate({"name": name, "when": when, "then": then})


def test_a_rules_department_never_moves_a_misconduct_complaint() -> None:
    settings = _small_settings(
        categories=(
            _category("outage", "dispatch", ("停水",)),
            Category(
                key="misconduct",
                name="违纪",
                name_en="Misconduct",
                department="ethics",
                keywords=("红包",),
                misconduct=True,
            ),
            _category("other", "office"),
        ),
        rules=(_rule("to_dispatch", {"text": {"any_of": ["停水"]}}, {"department": "dispatch"}),),
    )
    decision = Router(settings).route(make_draft(body="停水了，抢修的人要红包"))

    assert (decision.category, decision.department) == ("misconduct", "ethics")
    assert hits(decision)[-1] == "dispatch.discipline"


def test_a_rule_sends_a_complaint_to_its_department(router: Router) -> None:
    settings = _small_settings(
        rules=(_rule("to_office", {"channel": ["letter"]}, {"department": "office"}),)
    )
    decision = Router(settings).route(make_draft(channel=Channel.LETTER, body="小区停水三天"))

    assert decision.department == "office"
    assert effect(decision, "dispatch.rule") == "department=office (rule.to_office)"


def test_a_complaint_not_accepted_goes_to_the_coordinating_office_with_the_reason(
    router: Router,
) -> None:
    decision = router.route(
        make_draft(body="水费多收了", incident_at=datetime(2026, 3, 1, tzinfo=UTC))
    )

    assert (decision.status, decision.department, decision.accepted) == (
        "rejected",
        "customer_service",
        False,
    )
    assert decision.valid and decision.category == "billing"
    assert decision.rejected_rule == "rule.billing_dispute_too_old"
    assert decision.rejected_reason is not None and "五个月" in decision.rejected_reason
    assert effect(decision, "rule.billing_dispute_too_old").startswith("not accepted: ")


def test_a_threat_to_go_to_the_regulator_is_important_and_flagged_their_involvement_major(
    router: Router,
) -> None:
    threat = router.route(make_draft(body="水费乱收费，不解决我要去12315投诉"))
    involved = router.route(make_draft(body="水费乱收费，已经向12315投诉了"))

    assert (threat.severity, threat.flags) == (Severity.IMPORTANT, ("越级倾向",))
    assert involved.severity is Severity.MAJOR
