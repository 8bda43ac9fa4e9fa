"""The corpus profile: the genre's knowledge as data, read by the code."""
from __future__ import annotations

import pytest

from rag import prompts
from rag.profile import ZH_GOV, get_profile


def test_profiles_by_name():
    assert get_profile("zh-gov") is ZH_GOV
    with pytest.raises(ValueError, match="unknown corpus profile 'laws'; known: zh-gov"):
        get_profile("laws")


def test_prompts_take_the_genre_and_examples_from_the_profile():
    for question, follow_up, rewritten in ZH_GOV.rewrite_examples:
        assert f"追问“{follow_up}”，改写为“{rewritten}”" in prompts.REWRITE_SYSTEM
    assert f"文件是{ZH_GOV.genre}。" in prompts.RESTATE_SYSTEM


def test_the_modules_read_the_profiles_lists():
    from rag import answer, claims, decide, tokenize
    assert tokenize.STOPWORDS is ZH_GOV.stopwords
    assert claims.MEASURE_UNITS is ZH_GOV.measure_units and decide.ASKS_WHO is ZH_GOV.asks_who
    assert answer._FOLLOW_UP is ZH_GOV.follow_up
