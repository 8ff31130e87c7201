"""Keyword matching that cannot miss: every configured keyword found as a substring of the
normalised text, all at once, with where it occurs.

Matching on segmented words missed keywords inside longer words (漫游 in 国际漫游, 赔偿 in
赔偿金), so the router matches substrings instead; a rule that must not fire on a longer word
says so (``none_of``, or a negation cue before the keyword; see router/conditions.py).

Text and keywords are normalised the same way: NFKC (full-width letters and digits from
Chinese input methods become ASCII: １２３１５ is 12315), case folding, traditional Chinese
to simplified (OpenCC's tables; 國際漫遊 is 国际漫游), runs of white space to one space, and
none between Chinese characters (停 水 is 停水).
Latin-script keywords keep word boundaries ("fire" is not in "firewall", "110" not in
"1100"), since for them a substring is not the same word. Clause punctuation is kept, so a
phrase keyword never matches across it ("consumer, association").

One Aho-Corasick automaton (pyahocorasick) finds every keyword in one pass over the text.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import ahocorasick
import opencc

_HAN_CHARS = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
_HAN = re.compile(f"[{_HAN_CHARS}]")
# Line breaks stay: they end a clause, as the subject ends before the body.
_SPACE = re.compile(r"[^\S\n]+")
# Punctuation that ends a clause (after NFKC the full-width forms are already ASCII): a
# negation cue before it does not negate what follows.
CLAUSE_BREAKS = frozenset('.,;:!?。、｡､()[]{}【】〔〕《》〈〉「」『』"“”\n')

# Loaded once per process: OpenCC reads its dictionaries at construction (a few ms).
_T2S = opencc.OpenCC("t2s")


def _changing_characters() -> frozenset[str] | None:
    """Every character the t2s tables can change; None when the tables are not where the
    package keeps them (then every text is converted). The conversion is pure Python and the
    router's costliest step, while most complaints hold no traditional character at all."""
    folder = Path(opencc.__file__).parent / "dictionary"
    found: set[str] = set()
    try:
        for name in ("TSPhrases.txt", "TSCharacters.txt"):
            for line in (folder / name).read_text(encoding="utf-8").splitlines():
                key, _, values = line.partition("\t")
                for value in values.split(" "):
                    if len(value) == len(key):
                        found.update(k for k, v in zip(key, value, strict=True) if k != v)
                    else:
                        found.update(key)
    except OSError:
        return None
    return frozenset(found)


_CHANGING = _changing_characters()


def _simplified(text: str) -> str:
    if _CHANGING is not None and _CHANGING.isdisjoint(text):
        return text
    converted: str = _T2S.convert(text)
    if len(converted) == len(text):
        return converted
    # A phrase table entry of another length would shift every position after it; character
    # by character keeps them (and loses only a rare phrase-level choice).
    return "".join(str(_T2S.convert(ch)) if _HAN.match(ch) else ch for ch in text)


# Spaces between Chinese characters are not word breaks (停 水 in a typed-up letter, OCR):
# Chinese is written without them.
_HAN_GAP = re.compile(f"(?<=[{_HAN_CHARS}]) (?=[{_HAN_CHARS}])")


def normalise(text: str) -> str:
    """The form keywords and texts are compared in (see the module docstring)."""
    text = _SPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold())
    return _simplified(_HAN_GAP.sub("", text))


def _is_word_char(ch: str) -> bool:
    """A letter or digit of a script written with spaces between words."""
    return ch.isalnum() and not _HAN.match(ch)


@dataclass(frozen=True)
class Hit:
    keyword: str  # as spelt in the configuration
    start: int  # in the normalised text
    end: int


@dataclass(frozen=True)
class Matches:
    """Every keyword occurrence in one normalised text, in text order."""

    text: str
    hits: tuple[Hit, ...]

    def of(self, keywords: Iterable[str]) -> tuple[Hit, ...]:
        wanted = set(keywords)
        return tuple(h for h in self.hits if h.keyword in wanted)

    def found(self, keywords: Iterable[str]) -> tuple[str, ...]:
        """The keywords (in the order given) that occur at least once."""
        present = {h.keyword for h in self.hits}
        return tuple(dict.fromkeys(k for k in keywords if k in present))


class Matcher:
    """Finds a fixed set of keywords; built once at start-up, then read-only (thread-safe)."""

    def __init__(self, keywords: Iterable[str]) -> None:
        self._by_form: dict[str, list[str]] = {}
        for keyword in keywords:
            form = normalise(keyword).strip()
            if form and keyword not in self._by_form.get(form, []):
                self._by_form.setdefault(form, []).append(keyword)
        self._automaton: ahocorasick.Automaton | None = None
        if self._by_form:
            automaton = ahocorasick.Automaton()
            for form in self._by_form:
                automaton.add_word(form, form)
            automaton.make_automaton()
            self._automaton = automaton

    @staticmethod
    def usable(keyword: str) -> bool:
        """Whether a keyword can ever match: it has a letter or digit."""
        return any(ch.isalnum() for ch in normalise(keyword))

    def match(self, text: str) -> Matches:
        normal = normalise(text)
        hits: list[Hit] = []
        if self._automaton is not None:
            for last, form in self._automaton.iter(normal):
                start, end = last + 1 - len(form), last + 1
                if _bounded(normal, form, start, end):
                    hits.extend(Hit(k, start, end) for k in self._by_form[form])
        hits.sort(key=lambda h: (h.start, h.end))
        return Matches(normal, tuple(hits))


def _bounded(text: str, form: str, start: int, end: int) -> bool:
    """A Latin-script edge of a keyword must be a word edge in the text too."""
    if _is_word_char(form[0]) and start > 0 and _is_word_char(text[start - 1]):
        return False
    return not (_is_word_char(form[-1]) and end < len(text) and _is_word_char(text[end]))
