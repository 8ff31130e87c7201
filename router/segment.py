"""Word segmentation for text similarity (the repeat rule's "same matter"), with the category
keywords cut out whole. Routing itself matches keywords as substrings (router/matching.py).

Chinese has no spaces, so Chinese runs are segmented with jieba; every other run of letters
and digits is split on everything that is not a letter or digit. A keyword matches when its
own words appear consecutively in the text: "水压" in "小区水压不足", "consumer association"
in "I wrote to the Consumer Association", but "fire" not in "firewall" and "媒体" not in
"多媒体" (jieba keeps 多媒体 as one word).

Text is NFKC-normalised and lower-cased first, so full-width digits and letters from Chinese
input methods ("１２３１５", "ＦＩＲＥ") match their ASCII keywords.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterable, Iterator

import jieba

# CJK Unified Ideographs, Extension A, compatibility ideographs, Extensions B-G.
_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
# Punctuation that ends a clause: a phrase keyword must not match across it. Apostrophes and
# hyphens are left out on purpose ("don't", "e-mail" are one clause). After NFKC the
# full-width ，！？：；（） are already their ASCII forms.
_BREAKS = r".,;:!?。、｡､()\[\]{}【】〔〕《》〈〉「」『』\"“”"
_PIECE = re.compile(
    rf"(?P<han>[{_HAN}]+)"
    rf"|(?P<word>[^\W_{_HAN}]+)"  # letters and digits of any other script
    rf"|(?P<brk>[{_BREAKS}])"
)

# Marks a clause break in a token list; never equal to a word, so no phrase spans it.
BREAK = ""
# Stands for a Chinese run that holds no keyword and so was not segmented.
_UNSEGMENTED = "\x00"


def normalise(text: str) -> str:
    return unicodedata.normalize("NFKC", text).lower()


class Segmenter:
    """Segments text into words with a private jieba dictionary that knows every keyword.

    One instance per process, built at start-up (loading jieba's dictionary takes about a
    second and tens of MB; ``Runtime.segmenter`` is that one); after that it is read-only and
    safe to share between threads.
    """

    def __init__(self, keywords: Iterable[str] = ()) -> None:
        # jieba logs "Building prefix dict ..." at DEBUG through its own stderr handler;
        # that is noise in every worker's log, and only WARNING and above says anything.
        logging.getLogger("jieba").setLevel(logging.WARNING)
        # Its warnings go to the root logger like every library's (ingest/logs.py: one JSON
        # stream), not plain text through that private handler.
        logging.getLogger("jieba").removeHandler(jieba.log_console)
        # A private tokenizer, not jieba's module-level one: words added here must not leak
        # into (or be disturbed by) other users of jieba in the same process.
        self._tokenizer = jieba.Tokenizer()
        self._tokenizer.initialize()
        keywords = [k for k in keywords if k.strip()]
        # What it was built for: a user sharing it checks its own keywords are among these.
        self.keywords = frozenset(keywords)
        han_pieces: set[str] = set()
        for keyword in keywords:
            for match in _PIECE.finditer(normalise(keyword)):
                if match.lastgroup == "han":
                    han_pieces.add(match.group())
        # add_word gives each keyword the frequency jieba suggests for cutting it out whole, so
        # "水压" survives in "水压太低". Context still decides: a dictionary word that contains
        # a keyword stays whole (赔偿金, 多媒体), and a strong neighbour can win the overlap
        # (水压低 → 水/压低 unless 水压低 is a keyword too). Forcing a higher frequency was
        # tried and does not fix the former, and would split 多媒体 into 多/媒体 and 报警器
        # into 报警/器: false hits are worse than listing the longer form as a keyword.
        for piece in sorted(han_pieces):
            self._tokenizer.add_word(piece)
        # Segmenting is the slow part (a few microseconds per character); a Chinese run that
        # does not contain any keyword's Chinese text as a substring cannot contain it as a
        # word either, so matches() skips segmenting it. Longest first so the alternation
        # prefers whole keywords.
        self._candidate = (
            re.compile("|".join(re.escape(p) for p in sorted(han_pieces, key=len, reverse=True)))
            if han_pieces
            else None
        )
        self._by_phrase: dict[tuple[str, ...], list[str]] = {}
        for keyword in keywords:
            phrase = self.phrase(keyword)
            if phrase and BREAK not in phrase:
                self._by_phrase.setdefault(phrase, []).append(keyword)
        self._single = {p[0]: tuple(k) for p, k in self._by_phrase.items() if len(p) == 1}
        # Multi-word phrases, looked up only at tokens that can start one (most cannot).
        self._starts = {p[0] for p in self._by_phrase if len(p) > 1}
        self._longest = max((len(p) for p in self._by_phrase), default=0)
        # A keyword that contains another keyword ("突然停水" and "停水") is cut out whole,
        # which would hide the shorter one; a text that says the longer one says both.
        self._implied: dict[str, tuple[str, ...]] = {}
        for word in self._single:
            inner = tuple(o for o in self._single if o != word and o in word and _is_han(o))
            if inner and _is_han(word):
                self._implied[word] = inner

    def tokens(self, text: str) -> list[str]:
        """The words of ``text`` in order, lower-cased, with :data:`BREAK` between clauses."""
        return list(self._tokens(normalise(text), skip_unlikely=False))

    def words(self, text: str) -> set[str]:
        """The set of words in ``text``, including keywords held inside longer keywords."""
        words = set(self.tokens(text))
        words.discard(BREAK)
        for word in list(words):
            words.update(self._implied.get(word, ()))
        return words

    def phrase(self, keyword: str) -> tuple[str, ...]:
        """The words a keyword must match, in order: ("consumer", "association"), ("水压",)."""
        return tuple(self._tokens(normalise(keyword), skip_unlikely=False))

    def matches(self, text: str) -> frozenset[str]:
        """The configured keywords (as spelt in the configuration) that occur in ``text``.

        Equivalent to comparing every keyword's :meth:`phrase` with runs of :meth:`tokens`,
        but only Chinese runs that could hold a keyword are segmented.
        """
        tokens = list(self._tokens(normalise(text), skip_unlikely=True))
        found: set[str] = set()
        for index, token in enumerate(tokens):
            if token in self._single:
                found.update(self._single[token])
                for inner in self._implied.get(token, ()):
                    found.update(self._single[inner])
            if token in self._starts:
                for size in range(2, self._longest + 1):
                    keywords = self._by_phrase.get(tuple(tokens[index : index + size]))
                    if keywords:
                        found.update(keywords)
        return frozenset(found)

    def _tokens(self, text: str, *, skip_unlikely: bool) -> Iterator[str]:
        for match in _PIECE.finditer(text):
            kind = match.lastgroup
            piece = match.group()
            if kind == "han":
                if skip_unlikely and (self._candidate is None or not self._candidate.search(piece)):
                    yield _UNSEGMENTED
                else:
                    # HMM new-word discovery is off: it only glues characters jieba does not
                    # know into guessed words, never helps a configured keyword, and costs time.
                    yield from self._tokenizer.cut(piece, HMM=False)
            elif kind == "word":
                yield piece
            else:
                yield BREAK


def _is_han(word: str) -> bool:
    return bool(re.fullmatch(f"[{_HAN}]+", word))
