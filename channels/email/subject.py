"""The subject convention "Complaint Matter + Your Name" (投诉事项+姓名), read leniently but
never into a name that is not one.

Organisations ask complainants to write the subject so, and people write it in every
variation: full-width ＋ and ：, extra spaces, "投诉：张三", a category in brackets after the
name, "【紧急】" in front, "转发：" or "Re:" from their client. :func:`split_subject` reads all
of those. It returns no name rather than a wrong one (issue 14 §6): ordinary subjects have
plus signs too ("Part 2 HTML + inline picture", "C++ + Rust"), and a UTF-7 ``+APY-`` left in a
subject is an encoded ö, not a separator. What follows the ``+`` is a name only when it looks
like a person's: a short run of Han characters that are not a common word (附件, 图片, 问题)
and hold no function character (的, 我, 请), or up to five capitalised Latin words with no
digits and none of the common words of mail subjects. The result says whether the convention
was used and, when a ``+`` was there but no name, why not, for the intake note.

Kept apart from :mod:`.complainant` so that the noise classifier (which asks whether a
subject follows the convention) does not import the parser's consumers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

__all__ = ["SubjectConvention", "split_subject"]


@dataclass(frozen=True, slots=True)
class SubjectConvention:
    matter: str | None
    name: str | None
    anonymous: bool = False
    """The complainant wrote 匿名 / anonymous where the name goes."""
    declined: str | None = None
    """Why a subject with a separator gave no name ("not a person's name"); no PII."""

    @property
    def follows(self) -> bool:
        return self.name is not None or self.anonymous

    @property
    def note(self) -> str | None:
        """The intake note: the convention was used, or was there and declined."""
        if self.anonymous:
            return "subject convention (matter + name): the complainant asked to stay anonymous"
        if self.name is not None:
            return "subject convention (matter + name): complainant name taken from the subject"
        if self.declined is not None:
            return f"subject convention not applied: {self.declined}"
        return None


_NONE: Final = SubjectConvention(None, None)

_FOLD: Final = str.maketrans({"＋": "+", "﹢": "+", "：": ":", "\u3000": " ", "\xa0": " "})
_SPACES_RE: Final = re.compile(r"\s+")
# Reply and forward prefixes clients add, possibly several: "Re: 转发: Fw:" ...
_PREFIX_RE: Final = re.compile(
    r"^\s*(?:(?:re|fw|fwd|aw|wg|sv|vs|回复|回覆|答复|答覆|转发|轉發|转寄|轉寄)\s*(?:\[\d+\])?\s*:"
    r"|[\[【]\s*(?:转发|轉發|fwd?|回复)\s*[\]】])\s*",
    re.IGNORECASE,
)
# "投诉：张三". Only known labels: "关于：小区噪音" must not make 小区噪音 a name.
_COLON_RE: Final = re.compile(
    r"^(?P<label>投诉事项|投诉内容|投诉|投诉人|举报|举报人|反映|反映人|来信人|姓名|署名|"
    r"complaint|complainant|name|from)\s*:\s*(?P<rest>.+)$",
    re.IGNORECASE,
)
_NAME_LABELS: Final = frozenset({"投诉人", "举报人", "反映人", "来信人", "姓名", "署名"})
_NAME_LABELS_EN: Final = frozenset({"complainant", "name", "from"})
# Where a name ends and a trailing category begins: brackets and list punctuation always;
# a hyphen only after a Han character ("余琍-路灯损坏"), or with spaces around it, since Latin
# names have hyphens ("Mary-Jane Smith").
_TAIL_RE: Final = re.compile(
    r"[（(【\[〔<《，,；;、/|]|\s+[-－—–]+\s*|(?<=[\u3400-\u9fff])\s*[-－—–]"
)
_ANONYMOUS: Final = frozenset(
    {"匿名", "匿名者", "匿名用户", "不愿透露", "不便透露", "anonymous", "anon"}
)
# Han names are one to six characters; minority names join parts with a middle dot
# (阿卜杜拉·买买提). Longer runs of Han characters are sentences, not names.
_HAN: Final = r"[\u3400-\u9fff\U00020000-\U0003134f]"
_HAN_NAME_RE: Final = re.compile(
    rf"^(?:{_HAN}{{1,6}}|{_HAN}{{1,10}}(?:[·•・]{_HAN}{{1,10}}){{1,3}})$"
)
_HAN_SPACED_RE: Final = re.compile(rf"(?<={_HAN}) (?={_HAN})")
_LATIN_NAME_RE: Final = re.compile(
    r"^[^\W\d_][^\W\d_'.\-]*(?:[ '.\-][^\W\d_][^\W\d_'.\-]*){0,4}\.?$"
)
_PHONE_LIKE_RE: Final = re.compile(r"^[\d\s()+\-]{5,}$")
# Words of a subject's second half that are the matter's, not a person's.
_HAN_WORDS: Final = frozenset(
    {
        "附件", "见附件", "详见附件", "图片", "照片", "截图", "视频", "录音", "文件", "材料",
        "问题", "投诉", "举报", "反映", "建议", "咨询", "求助", "紧急", "加急", "急", "急件",
        "详情", "内容", "说明", "补充", "回复", "谢谢", "感谢", "测试", "正文", "其他", "其它",
        "水费", "停水", "水压", "水质", "水表", "漏水", "噪音", "维修", "报修", "发票", "账单",
        "通知", "会议", "报告", "资料", "表格", "申请", "证明", "合同",
    }
)  # fmt: skip
# Characters that occur in Chinese sentences but (almost) never in a person's name.
_HAN_FUNCTION_CHARS: Final = frozenset("的了是在我你他她们请吗呢吧啊这那么么个和与及或把被对从给")
_LATIN_WORDS: Final = frozenset(
    """a an the and or of for to in on at by with from about re fw fwd part page
    html text plain inline attached attachment attachments picture pictures image images photo
    photos file files document documents pdf doc mail email message test testing sample
    example info information update notes note agenda meeting report invoice receipt order
    bill payment account request question help support issue problem complaint reply
    subject draft copy version new old more other misc details detail list data
    me you us we they it this that here there please thanks thank regards""".split()
)
_LATIN_PARTICLES: Final = frozenset(
    {"van", "von", "de", "der", "den", "da", "di", "du", "del", "la", "le", "bin", "al", "ibn"}
)
# A UTF-7 shift sequence left undecoded in a subject ("+APY-" is ö): its "+" is no separator.
_UTF7_RUN_RE: Final = re.compile(r"\+[A-Za-z0-9/]{2,}-")


def _clean(subject: str) -> str:
    text = _SPACES_RE.sub(" ", subject.translate(_FOLD)).strip()
    while True:
        stripped = _PREFIX_RE.sub("", text, count=1)
        if stripped == text:
            return text
        text = stripped.strip()


def _name_and_tail(text: str) -> tuple[str, str]:
    text = text.strip()
    match = _TAIL_RE.search(text)
    if match is None or match.start() == 0:
        name, tail = text, ""
    else:
        name, tail = text[: match.start()].strip(), text[match.start() :].strip()
    return _HAN_SPACED_RE.sub("", name), tail  # "张 三" is 张三


def _is_latin_name(text: str) -> bool:
    if _LATIN_NAME_RE.match(text) is None:
        return False
    words = [w for w in re.split(r"[ \-]", text) if w]
    if not 1 <= len(words) <= 5:
        return False
    for word in words:
        bare = word.strip(".'")
        if bare.casefold() in _LATIN_WORDS:
            return False
        if bare.casefold() in _LATIN_PARTICLES:
            continue
        # A person writes their own name capitalised; "inline picture" is a phrase.
        if not bare[:1].isupper():
            return False
        if len(bare) > 1 and bare.isupper() and len(words) == 1:
            return False  # "HTML", "PDF": an acronym, not a name
    return True


def _is_name(text: str) -> bool:
    if not text or len(text) > 40:
        return False
    if re.search(_HAN, text):
        if _HAN_NAME_RE.match(text) is None:
            return False
        return text not in _HAN_WORDS and not any(ch in _HAN_FUNCTION_CHARS for ch in text)
    if not text.isascii() and not all(
        ch.isascii() or "\u00c0" <= ch <= "\u024f" or ch in "'’" for ch in text
    ):
        return False  # one script per name: Latin here (Han above)
    return _is_latin_name(text)


def _result(label: str, rest: str, *, label_is_matter: bool = True) -> SubjectConvention:
    """The convention read from ``label`` (the matter, or a name label) and ``rest``."""
    name, tail = _name_and_tail(rest)
    base = label.strip(" +:-") if label_is_matter else ""
    if base and tail:
        matter: str | None = base + tail  # "投诉事项（噪音扰民）", as written
    else:
        matter = base or tail.strip("（）()【】[]〔〕 -－—–") or None
    if name.casefold() in _ANONYMOUS:
        return SubjectConvention(matter, None, anonymous=True)
    if not _is_name(name):
        return SubjectConvention(None, None, declined="what follows the separator is not a name")
    return SubjectConvention(matter, name)


def _utf7_free(text: str) -> str:
    """``text`` with UTF-7 shift sequences masked, so their "+" is not read as a separator."""

    def mask(match: re.Match[str]) -> str:
        try:
            decoded = match.group().encode("ascii").decode("utf-7")
        except UnicodeDecodeError:
            return match.group()
        return "\0" * len(match.group()) if not decoded.isascii() else match.group()

    return _UTF7_RUN_RE.sub(mask, text)


def split_subject(subject: str) -> SubjectConvention:
    """Matter and name of a subject written "Matter + Name" (or "投诉：Name"), else nothing."""
    text = _clean(subject)
    if not text:
        return _NONE
    masked = _utf7_free(text)
    declined: SubjectConvention | None = None
    if "+" in masked:
        cuts = [i for i, ch in enumerate(masked) if ch == "+"]
        segments = [text[a + 1 : b] for a, b in zip([-1, *cuts], [*cuts, len(text)], strict=True)]
        # "噪音+张三+13812345678": a phone number at the end is not the name.
        while len(segments) > 1 and _PHONE_LIKE_RE.match(segments[-1].strip()):
            segments.pop()
        if len(segments) > 1 and not all(s.strip() for s in segments[:-1]):
            # "C++ + Rust", "1+1": plus signs inside the matter, not a separator before a name.
            declined = SubjectConvention(None, None, declined="plus signs inside the matter")
        elif len(segments) > 1:
            found = _result("+".join(segments[:-1]).strip(), segments[-1])
            if found.follows:
                return found
            declined = found
    elif "\0" in masked:
        declined = SubjectConvention(None, None, declined="a UTF-7 sequence, not a separator")
    match = _COLON_RE.match(text)
    if match is not None:
        label = match.group("label")
        is_name_label = label in _NAME_LABELS or label.lower() in _NAME_LABELS_EN
        found = _result(label, match.group("rest"), label_is_matter=not is_name_label)
        if found.follows:
            return found
        declined = declined or found
    return declined or _NONE
