"""Chinese word tokens for BM25 (jieba), shared by indexing and querying."""
from __future__ import annotations

import functools
import logging
import re
import threading

from .profile import ZH_GOV, Profile

# Question words and function words (the profile's): they say what kind of answer is
# wanted, not what it is about, and would otherwise make every "如何…" question match
# every "如何" sentence.
STOPWORDS = ZH_GOV.stopwords
_WORD = re.compile(r"[\w\u4e00-\u9fff]", re.UNICODE)
_lock = threading.Lock()
_ready = False


def _jieba():
    global _ready
    import jieba
    if not _ready:
        with _lock:  # jieba builds its dictionary lazily and is not safe to race
            if not _ready:
                jieba.setLogLevel(logging.WARNING)
                jieba.initialize()
                _ready = True
    return jieba


def tokenize(text: str) -> list[str]:
    """Search-mode jieba tokens (long words plus their sub-words), lower-cased, without
    punctuation and stop words."""
    out = []
    for tok in _jieba().cut_for_search(text):
        tok = tok.strip().lower()
        if tok and _WORD.search(tok) and tok not in STOPWORDS:
            out.append(tok)
    return out


_BODY_OF_PLACE = ("区委", "市委", "县委", "省委")  # 莱芜 + 区委 → 莱芜区
_NAME_FLAGS = ("ns", "nr", "nz", "n")  # jieba tags a town's name as any of these (青石/n + 镇)


def place_names(text: str, profile: Profile = ZH_GOV) -> list[str]:
    """Place names such as 济南市, 莱芜区, 钢城区, 雪野街道, 青石镇, 内蒙古自治区, in order of
    appearance.

    jieba keeps some names whole (济南市, 钢城区, 牛泉镇, 内蒙古自治区) and splits others
    (莱芜 + 区, 莱芜 + 区委, 青石 + 镇); both shapes are read, a body named after its place
    (内蒙古自治区人民政府) gives the place, and words that only look like places (城区,
    起步区, 街镇, 示范镇, a bare 自治区) are not.
    """
    import jieba.posseg
    _jieba()
    suffixes = profile.place_suffixes
    towns = profile.town_suffixes
    found: list[str] = []
    tokens = jieba.posseg.lcut(text)
    for prev, tok in zip([None] + tokens, tokens):
        word, place = tok.word, ""
        if (word in suffixes or word in _BODY_OF_PLACE) and prev is not None and prev.flag.startswith("ns"):
            place = prev.word + word[0] if word.endswith("委") else prev.word + word
        elif word in towns and prev is not None and len(prev.word) >= 2 and prev.flag in _NAME_FLAGS:
            place = prev.word + word
        elif len(word) >= 4 and word.endswith(_BODY_OF_PLACE):
            place = word[:-1]
        elif tok.flag == "nt" and (m := re.match(rf"^(.{{2,10}}?({'|'.join(suffixes)}))(人民政府|政府|委员会|人大)",
                                                 word)):
            place = m.group(1)
        elif len(word) >= 3 and word.endswith(suffixes) and tok.flag not in ("m",):
            place = word
        elif len(word) >= 3 and word.endswith(towns) and tok.flag in _NAME_FLAGS:
            place = word
        if place and place not in profile.not_places and place not in found:
            found.append(place)
    return found


@functools.lru_cache(maxsize=1024)
def bare_place_names(text: str, profile: Profile = ZH_GOV) -> frozenset[str]:
    """The places a text names by a bare name too (西安, 四川: jieba's place tag), which
    ``place_names`` reads only with a suffix (西安市); not a quoted term (“太平官”思想) nor a
    region no document speaks for (``profile.not_places``: 欧洲, 全国)."""
    import jieba.posseg
    _jieba()
    unquoted = re.sub(r"“[^”]*”|\"[^\"]*\"", "|", text)
    return frozenset(t.word for t in jieba.posseg.lcut(unquoted)
                     if t.flag == "ns" and len(t.word) >= 2 and t.word not in profile.not_places)


def issuer_place(title: str) -> str:  # for indexes made before places were stored
    """The most specific place of a document's issuing body: 「中共济南市莱芜区委关于…」 → 莱芜区.
    An official document speaks for that place, which scopes what it can answer."""
    found = place_names(title.split("关于")[0])
    return found[-1] if found else ""


def place_stem(place: str) -> str:
    """A place's bare name (济南 of 济南市, 内蒙古 of 内蒙古自治区), or "" when it has none."""
    return place[:-3] if len(place) >= 5 and place.endswith("自治区") else \
        place[:-1] if len(place) >= 3 and place.endswith(("省", "市", "区", "县", "镇", "乡")) else ""


def mentions_place(text: str, place: str) -> bool:
    """Whether ``text`` names ``place``, also by its bare name: people write 济南 for
    济南市 and 莱芜 for 莱芜区, which ``place_names`` cannot read as places by itself."""
    if place in place_names(text):
        return True
    stem = place_stem(place)
    return bool(stem) and stem in text


def names_place(text: str, place: str) -> bool:
    """Whether the place's name or its bare name is written in ``text`` (a table row's
    「省（市）：广东」 names 广东省): a plain substring test, without the tagger."""
    stem = place_stem(place)
    return place in text or bool(stem) and stem in text
