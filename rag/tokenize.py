"""Chinese word tokens for BM25 (jieba), shared by indexing and querying."""
from __future__ import annotations

import logging
import re
import threading

# Question words and function words: they say what kind of answer is wanted, not what it
# is about, and would otherwise make every "如何…" question match every "如何" sentence.
STOPWORDS = frozenset("""
的 了 和 与 及 以及 或 是 在 对 把 被 将 为 于 等 其 之 也 都 又 并 而 就 有 中 上 下 个 这 那 该 此
如何 怎么 怎样 怎么样 哪些 什么 多少 几 是否 有没有 有无 吗 呢 吧 啊 请问 请 问 关于 方面 情况 一下
采取 采取了 进行 进行了 做 做了 哪 谁 何时 为什么 主要 具体 相关 有关
""".split())
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


# Words that end like a place but name a kind of area: 城区, 园区, 起步区, 城市, 乡镇…
_NOT_PLACES = ("城区", "主城区", "中心城区", "老城区", "园区", "社区", "景区", "小区", "片区", "起步区", "功能区",
               "市区", "城市", "都市", "辖区", "山区", "城镇", "小城镇", "乡镇", "村镇", "集镇", "街镇", "特色小镇")
_COUNTY_UP = ("市", "区", "县", "省")
_TOWN = ("镇", "乡", "街道")
_NAME_FLAGS = ("ns", "nr", "nz", "n")  # jieba tags a town's name as any of these (青石/n + 镇)


def place_names(text: str) -> list[str]:
    """Place names such as 济南市, 莱芜区, 钢城区, 雪野街道, 青石镇, in order of appearance.

    jieba keeps some names whole (济南市, 钢城区, 牛泉镇) and splits others (莱芜 + 区,
    莱芜 + 区委, 青石 + 镇); both shapes are read, and words that only look like places
    (城区, 起步区, 街镇, 示范镇) are not.
    """
    import jieba.posseg
    _jieba()
    found: list[str] = []
    tokens = jieba.posseg.lcut(text)
    for prev, tok in zip([None] + tokens, tokens):
        word, place = tok.word, ""
        if word in {"区", "市", "县", "区委", "市委", "县委"} and prev is not None and prev.flag.startswith("ns"):
            place = prev.word + word[0]
        elif word in _TOWN and prev is not None and len(prev.word) >= 2 and prev.flag in _NAME_FLAGS:
            place = prev.word + word
        elif len(word) >= 4 and word.endswith(("市委", "区委", "县委")):
            place = word[:-1]
        elif len(word) >= 3 and word.endswith(_COUNTY_UP):
            place = word
        elif len(word) >= 3 and word.endswith(_TOWN) and tok.flag in _NAME_FLAGS:
            place = word
        if place and place not in _NOT_PLACES and place not in found:
            found.append(place)
    return found


def issuer_place(title: str) -> str:
    """The most specific place of a document's issuing body: 「中共济南市莱芜区委关于…」 → 莱芜区.
    An official document speaks for that place, which scopes what it can answer."""
    found = place_names(title.split("关于")[0])
    return found[-1] if found else ""


def mentions_place(text: str, place: str) -> bool:
    """Whether ``text`` names ``place``, also by its bare name: people write 济南 for
    济南市 and 莱芜 for 莱芜区, which ``place_names`` cannot read as places by itself."""
    if place in place_names(text):
        return True
    stem = place[:-1] if len(place) >= 3 and place.endswith(("市", "区", "县", "镇", "乡")) else ""
    return bool(stem) and stem in text
