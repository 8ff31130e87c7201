"""One word segmenter per process: jieba's dictionary (about a second and tens of MB) is loaded
once for the HTTP app (hotline and web repeat rules), the router and the repeat finder together,
and what they decide is what each decided with a segmenter of its own."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jieba
import pytest

from ingest.app.http import create_app
from ingest.app.settings import load_settings
from router import rules
from router.repeats import RepeatFinder, TextSimilarity
from router.rules import Router
from router.segment import Segmenter
from tests.stack import CONFIG, Stack, make_draft
from workers.registry import build_worker

TEXTS = [
    "小区停水两天没有任何通知",
    "早上水压很小，晚上停水",
    "爆管冲坏路面，要求赔偿，已经联系了电视台记者",
    "本月水费比上月高出三倍，水表读数有误，请核查。",
    "自来水发黄，有异味，已经三天了，请尽快处理。",
    "I wrote to the Consumer Association about the water bill",
    "抄表员态度恶劣，多次上门不出示证件，要去12315投诉",
]


@pytest.fixture
def tokenizers(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every jieba Tokenizer made from now on, and every dictionary it loads."""
    made: list[str] = []

    class Counting(jieba.Tokenizer):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            made.append("made")
            super().__init__(*args, **kwargs)

        def initialize(self, dictionary: Any = None) -> None:
            if not self.initialized:
                made.append("loaded")
            super().initialize(dictionary)

    monkeypatch.setattr(jieba, "Tokenizer", Counting)
    yield made


async def test_the_app_the_router_and_the_repeat_finder_load_the_dictionary_once(
    embedded_stack: Stack, tokenizers: list[str]
) -> None:
    rt = embedded_stack.rt
    create_app(rt)
    create_app(rt)  # a second app of the same process (tests build many) shares it too
    build_worker(
        "router", rt, embedded_stack.settings
    )  # the router worker: a Router and a RepeatFinder
    assert tokenizers == ["made", "loaded"]
    # Whoever else composes this process passes the same one.
    Router(rt.settings, rt.segmenter)
    RepeatFinder.from_settings(rt.settings, rt.segmenter)
    assert tokenizers == ["made", "loaded"]


def test_routing_with_the_shared_segmenter_is_routing_with_its_own() -> None:
    settings = load_settings(CONFIG, environ={})
    shared, own = Router(settings, rules.segmenter_for(settings)), Router(settings)
    for text in TEXTS:
        draft = make_draft(body=text)
        assert shared.route(draft) == own.route(draft)


def test_repeat_scores_with_the_shared_segmenter_are_those_with_category_keywords() -> None:
    # Before one segmenter served all, the repeat finder's knew the category keywords only.
    settings = load_settings(CONFIG, environ={})
    shared = TextSimilarity(rules.segmenter_for(settings))
    own = TextSimilarity(Segmenter(k for c in settings.categories for k in c.keywords))
    for a in TEXTS:
        assert shared.words(a) == own.words(a)
        for b in TEXTS:
            assert shared.score(a, b) == own.score(a, b)


def test_a_router_refuses_a_segmenter_that_does_not_know_its_keywords() -> None:
    settings = load_settings(CONFIG, environ={})
    with pytest.raises(ValueError, match="does not know"):
        Router(settings, Segmenter(["水压"]))
