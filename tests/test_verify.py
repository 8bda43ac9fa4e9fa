"""The one verifier, on real paragraphs of the sample corpus (data/corpus) and the
development corpus (eval/corpus-dev): each kind of mismatch between a claim's figure and
what its source sentence states — value, unit, attribute, time, a percentage change read
as a level — and what a claim without figures needs."""
from __future__ import annotations

from rag.chunking import split_sentences
from rag.claims import Clause, chinese_number, parse_clauses, quantities
from rag.documents import Paragraph
from rag.evidence import Passage
from rag.retriever import Hit, Match
from rag.verify import ATTRIBUTE, KIND, TIME, UNIT, VALUE, figure_mismatch, figures_stated, verify

from .conftest import CLINIC, PARK, TRAINS

# jinan-city-2023-04-25.txt
AIR = ("深入打好蓝天保卫战,对4256家工业源和1989处扬尘源实施差异化管控,在全省率先实施国二及以下标准老旧汽油车提前报废更新"
       "补贴政策,2022年全市环境空气质量持续改善,PM2.5平均浓度同比改善7.5%,空气质量综合指数在全国168个重点城市排名前进13个位次。")
# laiwu-district-2021-02-08.txt
TRAINING = "去年共举办各类培训21次,培训党员干部1.4万人次。"
# eval/corpus-dev/state-council-2018-iit-special-deductions-interim-measures-notice.html
CHILDREN = "纳税人的子女接受学前教育和学历教育的相关支出，按照每个子女每月1000元的标准定额扣除。"


def stated(claim: str, paragraph: str, question: str = "", doc_date: str = "") -> str:
    return figures_stated(claim, split_sentences(paragraph), doc_date=doc_date, question=question)


def test_the_four_figures_todays_check_let_through_are_caught_each_for_its_reason():
    assert stated("PM2.5年均浓度是7.5微克每立方米", AIR).endswith(UNIT)
    assert stated("项目总投资为2.7万平方米", CLINIC).endswith(ATTRIBUTE)  # an area given as an investment
    assert stated("政府采购合同金额是3144亿元", PARK).endswith(ATTRIBUTE)
    assert stated("2023年一季度中欧班列同比增长4.84%", TRAINS).endswith(TIME)


def test_each_right_reading_of_the_same_sentences_holds():
    assert stated("PM2.5平均浓度同比改善7.5%", AIR) == ""
    assert stated("济南2022年的雾霾情况比上一年改善了7.5%", AIR) == ""  # colloquial, but a change for 2022
    assert stated("鹏泉街道社区卫生服务中心建筑面积达2.7万平方米", CLINIC) == ""
    assert stated("起步区累计签约138个项目，总投资3144亿元", PARK) == ""
    assert stated("2022年济南中欧班列开行801列，同比增长4.84%", TRAINS) == ""


def test_value_is_compared_after_normalising_wan_yi_and_chinese_numerals():
    assert stated("建筑面积达27000平方米", CLINIC) == ""  # 2.7万 = 27000
    assert stated("总投资3144亿元", PARK) == "" and stated("总投资314.4亿元", PARK).endswith(VALUE)
    assert stated("培训党员干部14000人次", TRAINING, doc_date="2021-02-08") == ""
    assert stated("直接连通二十个国家", TRAINS) == ""
    assert chinese_number("二十三") == 23 and chinese_number("一百零五") == 105 and chinese_number("两") == 2
    assert stated("每个子女每月1000元", CHILDREN) == "" and stated("每个子女每月2000元", CHILDREN).endswith(VALUE)


def test_a_unit_must_be_compatible():
    assert stated("建筑面积达2.7万元", CLINIC).endswith(UNIT)  # 元 is not 平方米
    assert stated("开行801个班次", TRAINS) == ""  # 个 counts anything
    assert stated("占全省38.94个百分点", TRAINS).endswith(UNIT)  # % is not 个百分点


def test_a_percentage_change_is_not_a_level():
    assert stated("PM2.5平均浓度为7.5%", AIR).endswith(KIND)
    assert stated("中欧班列占全省比重同比增长38.94%", TRAINS).endswith(KIND)
    level = quantities("增长到50家")[0]
    assert level.kind == "level" and quantities("同比增长4.84%")[0].kind == "change"


def test_the_time_must_be_the_sources():
    assert stated("2023年济南中欧班列开行801列", TRAINS).endswith(TIME)
    # the question's year stands for a claim that names none
    assert stated("济南中欧班列开行801列", TRAINS, question="济南中欧班列2023年计划开行多少列？").endswith(TIME)
    assert stated("济南中欧班列开行801列", TRAINS, question="济南中欧班列2022年开行多少列？") == ""
    # 去年 in a report of February 2021 is 2020
    assert stated("2020年共举办各类培训21次", TRAINING, doc_date="2021-02-08") == ""
    assert stated("2019年共举办各类培训21次", TRAINING, doc_date="2021-02-08").endswith(TIME)


def test_a_quarters_figure_is_not_the_years():
    q = quantities("2023年一季度中欧班列同比增长4.84%")[0]
    assert (q.year, q.period) == ("2023", "一季度")
    assert figure_mismatch(q, "2023年,济南中欧班列同比增长4.84%。") == TIME


def _passage(n: int, text: str, shown: list[str] | None = None, title: str = "中共济南市委关于巡视整改进展情况的通报",
             date: str = "2023-04-25") -> Passage:
    paragraph = Paragraph("jinan.txt", n, text, ("一、整改情况",), 0, len(text))
    return Passage(n, Hit(n, 1.0 / n, paragraph, title, date, [Match(text, 1.0, 0.9)]), shown or [])


def test_one_verdict_per_clause_for_every_generator():
    passages = [_passage(1, PARK, [split_sentences(PARK)[-1]])]
    model = verify(parse_clauses("政府采购合同金额是3144亿元[1]。"), passages, "智慧生态黄河示范项目的合同金额是多少？")
    assert model.refused and not model.kept and "attribute" in model.flags[-1]
    quote = verify([Clause(split_sentences(PARK)[-1], (1,), 0, "quote")], passages, "起步区签约了多少项目？")
    assert not quote.refused and quote.kept[0].passages == [1]


def test_a_claim_without_figures_needs_its_words_in_the_passage_and_the_place_it_speaks_for():
    laiwu = _passage(1, "区纪委监委收到移交问题线索、移交信访件,已办结45件。", title="中共济南市莱芜区委关于巡视整改进展情况的通报")
    assert verify(parse_clauses("莱芜区已办结45件[1]。"), [laiwu], "问题").kept
    assert verify(parse_clauses("济南市已办结45件[1]。"), [laiwu], "问题").refused
    assert not verify(parse_clauses("群众对此非常满意并纷纷点赞[1]。"), [laiwu], "问题").kept


def test_an_attribute_is_read_only_within_a_few_words_of_its_figure():
    # Direction of ATTRIBUTE_BEFORE: 总投资 eight characters and a clause away from 2.7万平方米
    # does not make the area an investment.
    text = "项目总投资5亿元,高标准建设社区卫生服务中心,建筑面积达2.7万平方米。"
    assert stated("建筑面积2.7万平方米", text) == ""
    assert stated("总投资2.7万平方米", text).endswith(ATTRIBUTE)
    q = quantities(text)[-1]
    assert q.before == "建筑面积" and "总投资" not in q.before


def test_a_figure_stated_without_a_year_is_of_its_documents_time():
    # A work report of 2026 states 「实现地区生产总值67665亿元」 without a year: it is 2025's
    # (or 2026's), never 2024's.
    gdp = "实现地区生产总值67665亿元，增长5.5%，总量和增速均居全国第5位。"
    assert stated("四川2025年地区生产总值67665亿元", gdp, doc_date="2026-01-27") == ""
    assert stated("四川2024年地区生产总值67665亿元", gdp, doc_date="2026-01-27").endswith(TIME)
    assert stated("四川2024年地区生产总值67665亿元", gdp) == ""  # an undated document: no time to compare


# eval/corpus-dev/state-council-office-1996-tibet-classes-expansion-forwarding-notice.html:
# a table row, each cell read as 「header：value」 (rag/readers.py)
FUJIAN = ("省（市）：福建；1995年招生人数：45（扩招）；扩招：5；分年度招生任务·1996年：45；"
          "分年度招生任务·1997年：50；分年度招生任务·1998年：50")


def test_a_table_cells_header_is_its_figures_attribute():
    # the last cell's bare figure is a figure too (it was once dropped as "part of a date")
    last = quantities("分年度招生任务·1998年：50")
    assert [(q.value, q.year) for q in last] == [(50.0, "1998")] and "任务" in last[0].before
    sentences = split_sentences(FUJIAN)
    assert figures_stated("福建省1998年的招生任务是50人。", sentences, doc_date="1996-07-17") == ""
    assert ATTRIBUTE in figures_stated("福建省1998年的扩招是50人。", sentences, doc_date="1996-07-17")
    assert TIME in figures_stated("福建省1996年的招生任务是50人。", sentences, doc_date="1996-07-17")
    # the row names 福建省 by its bare name: the clause speaks for a place the passage names
    hit = Hit(1, 1.0, Paragraph("tibet.html", 29, FUJIAN, ("附：扩大招生计划表",), 0, len(FUJIAN)),
              "国务院办公厅转发国家教委关于内地西藏班（校）扩大规模有关问题请示的通知", "1996-07-17", [Match(FUJIAN, 1.0, 0.9)])
    checked = verify([Clause("福建省1998年的招生任务是50人。", (1,))], [Passage(1, hit, [])], "福建省1998年要招多少人？")
    assert checked.kept and checked.kept[0].passages == [1]


def test_a_figure_must_be_of_the_kind_its_own_words_name():
    # dev d144: 340万人次 is in the paragraph, but a 消费总额 is money, not visitors
    tourism = "全省接待游客超11亿人次，其中入境游客340万人次，引进营业性演出1.2万场、带动综合消费184亿元。"
    question = "2025年四川入境游客的消费总额是多少？"
    assert UNIT in figures_stated("2025年四川入境游客的消费总额是340万人次。", [tourism], question=question)
    assert figures_stated("2025年四川入境游客340万人次。", [tourism], question=question) == ""
    # dev d141: a bare figure answers the question, whose 贴息比例 is a %
    loans = "符合创业担保贷款申请条件的人员自主创业的，可申请最高不超过15万元的创业担保贷款。"
    assert UNIT in figures_stated("15万元。", [loans], question="创业担保贷款财政贴息比例是多少？")
    assert figures_stated("15万元。", [loans], question="个人自主创业最高能申请多少创业担保贷款？") == ""


def test_a_linking_word_is_no_attribute():
    # d138: 「累计」 is all the invented 标箱 figure shares with the source's count of trains.
    trains = "中欧班列（成渝）累计开行超2.6万列、占全国23.9%。"
    assert stated("2025年中欧班列累计运送了超2.6万标箱货物", trains).endswith(ATTRIBUTE)
    assert stated("中欧班列（成渝）累计开行超2.6万列", trains) == ""


def test_a_class_written_as_a_number_is_no_figure():
    assert [q.text for q in quantities("全省地区生产总值连跨3个千亿级台阶，2025年人均生产总值提升至7.6万元。")] == ["3个", "7.6万元"]
    assert [q.text for q in quantities("二级及以上公立医院6家")] == ["6家"]


# eval/corpus-dev/state-council-office-2018-zero-waste-city-pilot-plan-notice.html
INDICATORS = ("建立“无废城市”建设指标体系，发挥导向引领作用。2019年6月底前，研究建立以固体废物减量化和循环利用率为核心指标的"
              "“无废城市”建设指标体系。（生态环境部牵头，国家发展改革委、工业和信息化部参与）")


def test_a_part_no_passage_backs_is_removed_from_a_supported_sentence():
    # d037: the date holds and carries the sentence; the body said to lead it is invented
    # (the model read it from the document's title). The question restated is kept.
    passages = [_passage(1, INDICATORS, title="国务院办公厅关于印发“无废城市”建设试点工作方案的通知")]
    question = "建立“无废城市”建设指标体系由哪个部门牵头，要在什么时候之前完成？"
    checked = verify(parse_clauses("国务院办公厅牵头，2019年6月底前完成[1]。"), passages, question)
    assert [v.text for v in checked.kept] == ["2019年6月底前完成。"]
    assert any("国务院办公厅牵头" in f for f in checked.flags)
    checked = verify(parse_clauses("建立“无废城市”建设指标体系，由生态环境部牵头[1]。"), passages, question)
    assert checked.kept[0].text == "建立“无废城市”建设指标体系，由生态环境部牵头。"


# eval/corpus-dev/guizhou-2026-government-work-report.txt (its targets for 2026)
GUIZHOU_TARGETS = ("主要预期目标是：地区生产总值增长5%左右，其中一二三产增加值分别增长3.5%左右、6%左右、5%左右。"
                   "规模以上工业增加值增长7.5%左右；一般公共预算收入增长2%左右；")


def test_a_target_is_for_the_year_its_report_looks_ahead_to():
    # d098: a 2026 report's targets are no results of 2025, though a figure without a year
    # in that report may be either; the lead-in governs the sentences after it too.
    report = "2026-01-20"
    assert stated("2025年贵州地区生产总值增长5%左右", GUIZHOU_TARGETS, doc_date=report).endswith(TIME)
    assert stated("2025年一般公共预算收入增长2%左右", GUIZHOU_TARGETS, doc_date=report).endswith(TIME)
    assert stated("2026年贵州地区生产总值增长5%左右", GUIZHOU_TARGETS, doc_date=report) == ""
    assert stated("2026年一般公共预算收入增长2%左右", GUIZHOU_TARGETS, doc_date=report) == ""
    # 稳预期 is no target: a result without a year is still of the year before
    result = "多措并举稳就业、稳企业、稳市场、稳预期，地区生产总值增长5.1％，城镇新增就业44.1万人。"
    assert stated("2025年陕西地区生产总值增长5.1%", result, doc_date=report) == ""


def test_a_place_the_question_names_by_its_bare_name_must_be_the_passages():
    # d078: the Sichuan report's 中欧班列（成渝） figure is no figure of 中欧班列（西安）; 西安
    # has no suffix, so only the question's own place words (jieba's tag) say it is a place.
    question = "2025年中欧班列（西安）开行了多少列？"
    sichuan = _passage(1, "中欧班列（成渝）累计开行超2.6万列、占全国23.9%。", title="2026年四川省人民政府工作报告",
                       date="2026-01-26")
    shaanxi = _passage(1, "中欧班列（西安）开行6037列、增长21.1％，带动陕西进出口415.4亿元、增长11.7％。",
                       title="陕西省2026年政府工作报告", date="2026-01-26")
    assert not verify(parse_clauses("2025年中欧班列（西安）累计开行超2.6万列[1]。"), [sichuan], question).kept
    assert verify(parse_clauses("2025年中欧班列（西安）开行6037列[1]。"), [shaanxi], question).kept
    # a document is about the place its title names after 关于 (not its issuer's)
    letter = _passage(1, "对你省近期上报的45个食品加工业项目，发展改革委正按程序抓紧组织研究。",
                      title="国务院办公厅关于四川省在温家宝总理考察时提出有关问题处理意见的复函", date="2004-06-01")
    question = "四川省近期上报了多少个食品加工业项目？"
    assert verify(parse_clauses("四川近期上报了45个食品加工业项目[1]。"), [letter], question).kept
    # a region of the world, or a quoted term, is no place a document speaks for
    trains = _passage(1, "2022年,新开通阿塞拜疆线路,运行线路达到13条,直接连通20个国家47个城市。")
    question = "从济南开往欧洲的货运专列能通达多少个国家和城市？"
    assert verify(parse_clauses("济南开往欧洲的货运专列能通达20个国家47个城市[1]。"), [trains], question).kept


def test_a_numbered_part_a_clause_names_must_be_named_by_its_passage():
    # d010: 图3 comes from the question, so its digit is no claim to check; the clause still
    # says what 图3 is, and the caption it cites is 图5's.
    caption = _passage(1, "图5　汽车前号牌", title="国务院办公厅关于国家综合性消防救援车辆悬挂应急救援专用号牌有关事项的通知")
    question = "应急救援专用号牌式样附件里，图3是什么图？"
    assert not verify(parse_clauses("图3是汽车前号牌[1]。"), [caption], question).kept
    assert verify(parse_clauses("图5是汽车前号牌[1]。"), [caption], question).kept
    article = _passage(1, "第三十二条　本办法自2019年1月1日起施行。")
    assert not verify(parse_clauses("第二十三条规定本办法自2019年1月1日起施行[1]。"), [article], "问题").kept
