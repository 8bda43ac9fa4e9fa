"""The evaluation metrics on small hand-made cases (no index, no model)."""
from __future__ import annotations

import pytest

from eval.metrics import (
    aggregate, answer_metrics, holds_evidence, metric_order, numbers, percentile, retrieval_metrics,
    summarise, unsupported_numbers,
)
from eval.questions import Item

SAND = "成立由区分管负责人任组长,13个部门、14个街镇、2个国有企业主要负责人作为成员的砂石资源整治工作专班。"
CHECKPOINTS = "在高庄、牛泉、雪野、和庄等镇街设置7处联合检查点,24小时不间断巡查。"
UNRELATED = "2022年全市实现地区生产总值12027.5亿元,增长3.1%。"


def item(**fields) -> Item:
    defaults = dict(id="q1", question="莱芜区如何整改砂石问题", answerable=True,
                    evidence=("砂石资源整治工作专班",), type="how",
                    answer_points=("砂石资源整治工作专班", "7处联合检查点"))
    return Item(**{**defaults, **fields})


def hits(*texts: str) -> list[dict]:
    return [{"rank": i, "doc_id": "d.txt", "section": "", "paragraph": i, "text": t}
            for i, t in enumerate(texts, start=1)]


def ask_result(answer: str, cited: list[str], retrieved: list[str], refused: bool = False,
               timings: dict | None = None) -> dict:
    """A hand-made ``rag ask --json`` object."""
    return {"question": "q", "standalone_question": "q", "answer": answer, "refused": refused,
            "generator": "test", "citations": [{"n": i, "doc_id": "d.txt", "doc_title": "d", "section": "",
                                               "paragraph": i, "text": t} for i, t in enumerate(cited, 1)],
            "retrieved": hits(*retrieved), "timings": timings or {}}


# -- matching ----------------------------------------------------------------------------

def test_evidence_matching_ignores_whitespace_on_both_sides():
    assert holds_evidence("设置 7处联合\n检查点", ["设置7处联合检查点"])
    assert holds_evidence("设置7处联合检查点", ["设置 7处 联合检查点"])
    assert holds_evidence("雪野，和庄", ["雪野,和庄"])  # full-width and half-width commas
    assert not holds_evidence("设置8处联合检查点", ["设置7处联合检查点"])
    assert not holds_evidence("anything", ["  "])  # an empty evidence string matches nothing


# -- retrieval ---------------------------------------------------------------------------

def test_hit_at_k_and_mrr_use_the_rank_of_the_first_paragraph_holding_evidence():
    m = retrieval_metrics(item(), hits(UNRELATED, SAND, CHECKPOINTS), k=10)
    assert m == {"hit@1": 0.0, "hit@3": 1.0, "hit@5": 1.0, "hit@10": 1.0, "mrr": 0.5}


def test_a_miss_scores_zero_and_ranks_beyond_k_do_not_count():
    assert retrieval_metrics(item(), hits(UNRELATED, CHECKPOINTS), k=10)["mrr"] == 0.0
    m = retrieval_metrics(item(), hits(UNRELATED, UNRELATED, UNRELATED, SAND), k=3)
    assert m == {"hit@1": 0.0, "hit@3": 0.0, "mrr": 0.0}  # no hit@5/hit@10 when only 3 are retrieved


def test_unanswerable_questions_have_no_retrieval_metrics():
    assert retrieval_metrics(item(answerable=False, evidence=(), type="unanswerable"), hits(SAND), 10) == {}


def test_cross_questions_need_all_evidence_within_k():
    cross = item(type="cross", evidence=("砂石资源整治工作专班", "7处联合检查点"))
    retrieved = hits(SAND, UNRELATED, UNRELATED, CHECKPOINTS)
    assert retrieval_metrics(cross, retrieved, k=10)["all_evidence@10"] == 1.0
    m = retrieval_metrics(cross, retrieved, k=3)
    assert m["hit@1"] == 1.0 and m["all_evidence@3"] == 0.0
    assert "all_evidence@10" not in retrieval_metrics(item(), retrieved, k=10)  # only for cross items


# -- answers -----------------------------------------------------------------------------

def test_a_correct_cited_answer_scores_high():
    result = ask_result("莱芜区成立了砂石资源整治工作专班[1]，设置7处联合检查点[2]。",
                        cited=[SAND, CHECKPOINTS], retrieved=[SAND, CHECKPOINTS])
    m = answer_metrics(item(evidence=("砂石资源整治工作专班", "7处联合检查点")), result)
    assert m["key_fact_coverage"] == 1.0
    assert m["citation_precision"] == 1.0 and m["citation_recall"] == 1.0
    assert m["unsupported_numbers"] == 0.0 and m["false_refusals"] == 0.0


def test_a_wrong_answer_citing_a_wrong_paragraph_with_an_invented_number_scores_low():
    result = ask_result("济南市地区生产总值12027.5亿元，莱芜区设置了9处检查点[1]。",
                        cited=[UNRELATED], retrieved=[UNRELATED, CHECKPOINTS])
    m = answer_metrics(item(), result)
    assert m["key_fact_coverage"] == 0.0
    assert m["citation_precision"] == 0.0 and m["citation_recall"] == 0.0
    assert m["unsupported_numbers"] == 1.0  # "9"; 12027.5 is in a retrieved paragraph
    assert m["answers_with_unsupported_numbers"] == 1.0


def test_key_fact_coverage_ignores_whitespace_and_punctuation():
    point = item(answer_points=("“1+5+N”招商引资工作体制", "五大工作组", "“一条龙”服务"))
    result = ask_result("制定了 1+5+N 招商引资工作体制，提供「一条龙」服务。", cited=[], retrieved=[])
    assert answer_metrics(point, result)["key_fact_coverage"] == pytest.approx(2 / 3)


def test_citation_precision_is_the_share_of_citations_holding_evidence():
    result = ask_result("…", cited=[SAND, UNRELATED], retrieved=[SAND, UNRELATED])
    m = answer_metrics(item(), result)
    assert m["citation_precision"] == 0.5 and m["citation_recall"] == 1.0
    assert "citation_precision" not in answer_metrics(item(), ask_result("…", cited=[], retrieved=[]))


def test_numbers_are_read_as_figures_without_citation_markers():
    assert numbers("2022年6月22日，增长3.50%，13个项目[1]【2】[3,4]") == {"2022", "6", "22", "3.5", "13"}
    assert numbers("0531-51701041，三个") == {"531", "51701041"}  # Chinese numerals are not read


def test_a_number_is_supported_by_a_retrieved_paragraph_or_the_question_but_not_by_a_longer_one():
    assert unsupported_numbers("2031年完成31个", ["2031年"]) == ["31"]
    assert unsupported_numbers("2022年新增50家", ["新增50家", "2022年新增多少家？"]) == []


def test_refusals():
    unanswerable = item(answerable=False, evidence=(), answer_points=(), type="unanswerable")
    refused = ask_result("文档中没有找到答案。", cited=[], retrieved=[UNRELATED], refused=True)
    answered = ask_result("嬴州资源公司注册资本为5000万元。", cited=[UNRELATED], retrieved=[UNRELATED])
    assert answer_metrics(unanswerable, refused)["refusal_accuracy"] == 1.0
    assert answer_metrics(unanswerable, answered)["refusal_accuracy"] == 0.0
    assert "citation_recall" not in answer_metrics(unanswerable, answered)
    m = answer_metrics(item(), refused)
    assert m["false_refusals"] == 1.0 and m["citation_recall"] == 0.0 and "refusal_accuracy" not in m


# -- aggregation -------------------------------------------------------------------------

def test_percentiles_interpolate_between_ranks():
    values = [float(v) for v in range(1, 11)]
    assert percentile(values, 50) == pytest.approx(5.5)
    assert percentile(values, 95) == pytest.approx(9.55)
    assert percentile([2.0], 95) == 2.0


def test_latency_is_summarised_as_p50_and_p95_per_stage():
    rows = [{"retrieve_s": 0.1 * i, "total_s": float(i)} for i in range(1, 11)]
    s = summarise(rows)
    assert s["total_s_p50"] == 5.5 and s["total_s_p95"] == 9.55
    assert s["retrieve_s_p50"] == 0.55 and "retrieve_s" not in s


def test_means_are_over_the_questions_a_metric_applies_to_overall_and_by_type():
    items = [item(id="a", type="how"), item(id="b", type="how"), item(id="c", type="fact"),
             item(id="d", type="unanswerable", answerable=False, evidence=())]
    rows = [{"hit@1": 1.0, "mrr": 1.0}, {"hit@1": 0.0, "mrr": 0.5}, {"hit@1": 0.0, "mrr": 0.25},
            {"refusal_accuracy": 1.0}]
    result = aggregate(items, rows)
    assert result["overall"] == {"questions": 4, "hit@1": pytest.approx(1 / 3, abs=1e-4),
                                 "mrr": pytest.approx(1.75 / 3, abs=1e-4), "refusal_accuracy": 1.0}
    assert list(result["by_type"]) == ["how", "fact", "unanswerable"]
    assert result["by_type"]["how"] == {"questions": 2, "hit@1": 0.5, "mrr": 0.75}
    assert result["by_type"]["fact"] == {"questions": 1, "hit@1": 0.0, "mrr": 0.25}
    assert result["by_type"]["unanswerable"] == {"questions": 1, "refusal_accuracy": 1.0}


def test_metrics_are_listed_in_display_order():
    names = ["total_s_p95", "mrr", "hit@10", "refusal_accuracy", "hit@1", "total_s_p50", "all_evidence@10",
             "hit@3", "key_fact_coverage"]
    assert sorted(names, key=metric_order) == ["hit@1", "hit@3", "hit@10", "mrr", "all_evidence@10",
                                               "key_fact_coverage", "refusal_accuracy", "total_s_p50",
                                               "total_s_p95"]


# -- figures stated for the wrong attribute ---------------------------------------------------

def test_a_figure_given_for_another_attribute_is_counted():
    from eval.metrics import misattributed_figures
    clinic = "高标准建设鹏泉街道社区卫生服务中心,建筑面积达2.7万平方米,建成后可为辖区20万人提供就医服务。"
    assert misattributed_figures("项目总投资为2.7万平方米[1]。", [clinic]) == ["2.7万平"]
    assert misattributed_figures("建筑面积2.7万平方米[1]。", [clinic]) == []
    park = "累计签约138个高端优质项目、总投资3144亿元。"
    assert misattributed_figures("政府采购合同金额是3144亿元。", [park]) == ["3144亿元"]
    assert misattributed_figures("PM2.5年均浓度是7.5微克每立方米", ["PM2.5平均浓度同比改善7.5%"]) == ["7.5微"]
    # a count is of what follows it: 「覆盖了7个街镇」 as the source counts 「对7个街镇…开展巡察」;
    # list numbers and names are not figures
    assert misattributed_figures("第七、第八轮巡察覆盖了7个街镇[1]。", ["第七、第八轮巡察对7个街镇开展巡察。"]) == []
    assert misattributed_figures("巡察覆盖了7个部门[1]。", ["第七、第八轮巡察对7个街镇开展巡察。"]) == ["7个"]
    assert misattributed_figures("1. 抓好问题整改。[1]\n2. 抓好管网改造。", ["一是抓好问题整改。"]) == []


def test_misattributed_figures_read_only_the_summary_and_any_figure_for_an_unanswerable_question():
    park = "累计签约138个高端优质项目、总投资3144亿元。"
    quoted = ask_result("起步区累计签约138个高端优质项目。[1]\n原文要点：\n累计签约138个高端优质项目、总投资3144亿元。[1]",
                        [park], [park])
    assert answer_metrics(item(), quoted)["answers_with_misattributed_figures"] == 0.0
    wrong = ask_result("合同金额是3144亿元。[1]", [park], [park])
    assert answer_metrics(item(), wrong)["answers_with_misattributed_figures"] == 1.0
    unanswerable = item(answerable=False, evidence=(), question="智慧生态黄河示范项目的合同金额是多少？")
    m = answer_metrics(unanswerable, ask_result("总投资3144亿元。[1]", [park], [park]))
    assert m["unanswerable_with_figure"] == 1.0 and m["answers_with_misattributed_figures"] == 1.0
    refused = answer_metrics(unanswerable, ask_result("文档中没有找到…；文档提到的是：总投资3144亿元[1]。",
                                                      [park], [park], refused=True))
    assert refused["unanswerable_with_figure"] == 0.0 and "answers_with_misattributed_figures" not in refused
