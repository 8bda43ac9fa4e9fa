"""The app in a real Chromium, answering with the real bundled LLM over the sample corpus."""
from __future__ import annotations

import pytest

from .conftest import REPO, write_doc
from .ui_fixtures import CHROMIUM_ARGS, GRADIO_PANDAS_WARNINGS, chromium, local_app  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.slow, *GRADIO_PANDAS_WARNINGS]

ARTIFACTS = REPO / "tests" / "artifacts"
ANSWER_WAIT_MS = 300_000  # the first answer also starts the local LLM; 2 shared cores


@pytest.fixture
def page(chromium):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 1000}, locale="zh-CN")
        context.grant_permissions(["clipboard-read", "clipboard-write"])
        context.set_default_timeout(60_000)
        yield context.new_page()
        browser.close()


def ask(page, question: str) -> None:
    """Type a question, send it, and wait until its checked answer replaced the draft."""
    answers = page.locator(".rag-footer, .rag-error").count()
    page.fill("#rag-question textarea", question)
    page.press("#rag-question textarea", "Enter")
    page.wait_for_function(f"document.querySelectorAll('.rag-footer, .rag-error').length > {answers}",
                           timeout=ANSWER_WAIT_MS)


def test_streamed_cited_answer_source_card_and_upload(chromium, local_app, page, tmp_path):
    # `chromium` first: a missing browser or font fails before the index is built.
    from playwright.sync_api import expect

    page.goto(local_app.url)
    page.fill("#rag-question textarea", "莱芜区如何整改砂石问题")
    asked = page.evaluate("performance.now()")
    page.press("#rag-question textarea", "Enter")
    # The retrieved paragraphs are shown before the model's first token, as soon as
    # retrieval has decided them (issue 12: ≤ 0.2 s after retrieval).
    shown = page.wait_for_function(
        """() => { const d = document.querySelector('.rag-draft .rag-evidence');
                   return d && {at: performance.now(), decided: parseFloat(d.dataset.evidenceS),
                                text: d.closest('.rag-draft').querySelector('.rag-text').textContent.trim()}; }""",
        timeout=ANSWER_WAIT_MS, polling="raf").json_value()
    assert shown["text"] == ""  # nothing generated yet
    after_retrieval = (shown["at"] - asked) / 1000 - shown["decided"]
    (ARTIFACTS).mkdir(exist_ok=True)
    (ARTIFACTS / "sources-shown.txt").write_text(
        f"sources shown {after_retrieval:.3f} s after retrieval decided them "
        f"({(shown['at'] - asked) / 1000:.3f} s after the question)\n")
    assert after_retrieval <= 1.0  # loose: shared CI cores; the note reports the measured value
    # The draft streams in before the checked answer replaces it.
    page.wait_for_function(
        "[...document.querySelectorAll('.rag-draft .rag-text')].some(e => e.textContent.trim())",
        timeout=ANSWER_WAIT_MS)
    page.wait_for_selector(".rag-footer", timeout=ANSWER_WAIT_MS)
    answer = page.locator(".rag-answer").last
    expect(answer.locator(".rag-error")).to_have_count(0)
    cites = answer.locator("a.rag-cite")
    assert cites.count() > 0, answer.inner_text()

    # Click the [n] whose source is the paragraph about the working group, then see it.
    card_ids = [cites.nth(i).get_attribute("data-card") for i in range(cites.count())]
    sand = next((i for i, card in enumerate(card_ids)
                 if "砂石资源整治工作专班" in page.locator(f"#{card}").text_content()), None)
    assert sand is not None, f"no citation of the working-group paragraph in: {answer.inner_text()}"
    card = page.locator(f"#{card_ids[sand]}")
    expect(card.locator(".rag-card-text")).to_be_hidden()
    cites.nth(sand).click()
    expect(card.get_by_text("砂石资源整治工作专班")).to_be_visible()
    expect(card).to_be_in_viewport()
    expect(card.locator("mark").first).to_be_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    page.wait_for_timeout(800)  # the smooth scroll and the highlight settle
    page.screenshot(path=str(ARTIFACTS / "ui-answer.png"))

    answer.locator("button.rag-copy").click()
    expect(answer.locator("button.rag-copy")).to_have_text("已复制")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied.startswith(answer.locator(".rag-text").inner_text().split("[")[0]) and "来源：" in copied

    # Upload a new document through the widget; it is searchable at once.
    doc = write_doc(tmp_path, "青石镇口袋公园通报.txt",
                    ["青石镇2024年新建口袋公园18处,由镇园林站统一管护口袋公园。",
                     "口袋公园全部免费开放,方便群众就近休闲。"], title="青石镇口袋公园建设情况通报")
    page.get_by_role("tab", name="文档").click()
    page.set_input_files("#rag-upload input[type=file]", str(doc))
    expect(page.locator("#rag-document-status")).to_contain_text("已加入", timeout=ANSWER_WAIT_MS)
    expect(page.locator("#rag-documents")).to_contain_text("青石镇口袋公园建设情况通报")
    assert (local_app.uploads_dir / doc.name).is_file()

    page.get_by_role("tab", name="问答").click()
    ask(page, "青石镇新建了多少处口袋公园？")
    answer = page.locator(".rag-answer").last
    expect(answer.locator("a.rag-cite").first).to_be_visible()
    expect(answer.locator(".rag-card-title", has_text="青石镇口袋公园建设情况通报").first).to_be_attached()
    expect(answer.locator(".rag-text")).to_contain_text("18")
    page.screenshot(path=str(ARTIFACTS / "ui-upload.png"))
