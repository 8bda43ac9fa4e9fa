"""Theme, CSS and the page script of the app (passed to ``Blocks.launch``)."""
import gradio as gr

# System fonts only: the default theme would fetch web fonts from Google, which an
# offline machine cannot reach, and they have no Chinese glyphs anyway.
_FONTS = ["WenQuanYi Micro Hei", "PingFang SC", "Microsoft YaHei", "Noto Sans CJK SC", "sans-serif"]
THEME = gr.themes.Soft(primary_hue="blue", neutral_hue="slate", font=_FONTS,
                       font_mono=["WenQuanYi Micro Hei Mono", "monospace"])

CSS = """
.rag-header h1 { font-size: 1.45rem; margin: 0.2rem 0 0.15rem; }
.rag-header p { margin: 0; color: var(--body-text-color-subdued); font-size: 0.9rem; }
.rag-placeholder { color: var(--body-text-color-subdued); font-size: 0.95rem; }
/* Answers take the chat's width, however short, so their source cards line up. */
.rag-chat .message-row.bot-row { width: calc(100% - 60px); }
.rag-chat .bot-row > .role, .rag-chat .bot-row .message { width: 100%; }

.rag-answer { line-height: 1.75; }
.rag-rewrite { font-size: 0.78rem; color: var(--body-text-color-subdued); margin-bottom: 0.3rem; }
.rag-notice { font-size: 0.82rem; color: #92400e; background: #fef3c7; border-radius: 6px;
              padding: 0.25rem 0.5rem; margin-bottom: 0.4rem; }
.rag-refused { color: var(--body-text-color-subdued); }
.rag-error { color: #b91c1c; }
.rag-draft .rag-status { font-size: 0.78rem; color: var(--body-text-color-subdued); }
a.rag-cite { color: var(--color-accent); font-weight: 600; font-size: 0.85em; text-decoration: none;
             padding: 0 1px; cursor: pointer; }
a.rag-cite:hover { text-decoration: underline; }

.rag-sources-title { margin: 0.8rem 0 0.1rem; font-size: 0.78rem; font-weight: 600;
                     color: var(--body-text-color-subdued); }
details.rag-card { border: 1px solid var(--border-color-primary); border-radius: 8px; margin-top: 0.4rem;
                   background: var(--background-fill-primary); transition: box-shadow 0.3s; }
details.rag-card > summary { cursor: pointer; padding: 0.35rem 0.6rem; font-size: 0.84rem; line-height: 1.6; }
details.rag-card.rag-flash { box-shadow: 0 0 0 2px var(--color-accent); }
.rag-card-n { font-weight: 700; color: var(--color-accent); margin-right: 0.25rem; }
.rag-card-title { font-weight: 600; }
.rag-card-where { color: var(--body-text-color-subdued); margin-left: 0.35rem; }
.rag-card-section { display: block; font-size: 0.76rem; color: var(--body-text-color-subdued);
                    white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
details.rag-card[open] .rag-card-section { white-space: normal; }
.rag-card-text { padding: 0.1rem 0.8rem 0.6rem; font-size: 0.88rem; line-height: 1.8; }
.rag-card-text mark { background: #fde68a; color: inherit; border-radius: 2px; padding: 0 1px; }

.rag-footer { display: flex; justify-content: space-between; align-items: center; margin-top: 0.6rem;
              font-size: 0.75rem; color: var(--body-text-color-subdued); }
button.rag-copy { border: 1px solid var(--border-color-primary); border-radius: 6px; background: transparent;
                  color: inherit; font-size: 0.75rem; padding: 0.05rem 0.6rem; cursor: pointer; }
button.rag-copy:hover { background: var(--background-fill-secondary); }
.rag-status-box { font-size: 0.9rem; }
.rag-llm label { flex: 1 1 100%; }
"""

# One listener for the whole page, so it also serves messages rendered later.
JS = """
() => {
  async function copyText(text) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch (error) {
      // No clipboard API outside a secure context (the app on a LAN address over http).
      const area = document.createElement("textarea");
      area.value = text;
      document.body.appendChild(area);
      area.select();
      const copied = document.execCommand("copy");
      area.remove();
      return copied;
    }
  }
  document.addEventListener("click", async (event) => {
    const cite = event.target.closest("a.rag-cite");
    if (cite) {
      event.preventDefault();
      const card = document.getElementById(cite.dataset.card);
      if (!card) return;
      card.open = true;
      card.scrollIntoView({ behavior: "smooth", block: "nearest" });
      card.classList.add("rag-flash");
      setTimeout(() => card.classList.remove("rag-flash"), 1500);
      return;
    }
    const copy = event.target.closest("button.rag-copy");
    if (copy) {
      copy.textContent = (await copyText(copy.dataset.copy)) ? "已复制" : "复制失败";
      setTimeout(() => { copy.textContent = "复制回答"; }, 1500);
    }
  });
}
"""
