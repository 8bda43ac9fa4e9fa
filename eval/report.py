"""A run's outputs: metrics.json, report.md and PNG charts comparing the configurations."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from .harness import ConfigRun
from .metrics import ANSWER_METRICS, RETRIEVAL_METRICS, TIMINGS, metric_base, metric_order
from .questions import Item

TABLES = (("Retrieval", RETRIEVAL_METRICS), ("Answers", ANSWER_METRICS), ("Latency, seconds", TIMINGS))
WORST_MISSES = 10  # per configuration, in report.md
NAN = float("nan")  # a metric that does not apply to a configuration (e.g. no citations at all)


def write_outputs(out: Path, runs: list[ConfigRun], items: list[Item], meta: dict) -> list[Path]:
    """Write metrics.json, report.md and the charts into ``out``; return their paths."""
    metrics = {"meta": meta, "configs": {run.name: run.metrics for run in runs}}
    paths = [out / "metrics.json", out / "report.md"]
    paths[0].write_text(json.dumps(metrics, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    paths[1].write_text(render_report(runs, items, meta), encoding="utf-8")
    return paths + write_charts(out, runs)


# -- report.md ---------------------------------------------------------------------------

def _cell(value) -> str:
    return "–" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def tables(summaries: dict[str, dict]) -> str:
    """One markdown table per metric group (rows: configurations), groups without data left out."""
    out = []
    for title, group in TABLES:
        columns = sorted({m for s in summaries.values() for m in s
                          if m != "questions" and metric_base(m) in group}, key=metric_order)
        if not columns:
            continue
        out.append(f"{title}:\n")
        out.append("| config | questions | " + " | ".join(columns) + " |")
        out.append("|---|---:|" + "---:|" * len(columns))
        for name, s in summaries.items():
            out.append(f"| {name} | {s['questions']} | " + " | ".join(_cell(s.get(c)) for c in columns) + " |")
        out.append("")
    return "\n".join(out)


def _short(text: str, n: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n] + "…"


def worst_misses(run: ConfigRun, items: list[Item]) -> str:
    """Answerable questions whose evidence is not in the top 3, worst first."""
    misses = sorted(((row["mrr"], item.id, item, record) for item, record, row
                     in zip(items, run.records, run.rows) if "mrr" in row and row["mrr"] < 1 / 3),
                    key=lambda m: (m[0], m[1]))
    lines = [f"### {run.name}: {len(misses)} questions without evidence in the top 3"
             + (f", the {WORST_MISSES} worst" if len(misses) > WORST_MISSES else ""), ""]
    for mrr, _, item, record in misses[:WORST_MISSES]:
        found = f"first evidence at rank {round(1 / mrr)}" if mrr else f"no evidence in the top {run.config.k}"
        lines.append(f"- **{item.id}** ({item.type}) {item.question} — {found}")
        if record.get("standalone_question", item.question) != item.question:
            lines.append(f"  - searched: {record['standalone_question']}")
        lines.append("  - expected: " + "; ".join(f"「{e}」" for e in item.evidence))
        for hit in (record.get("retrieved") or [])[:3]:
            section = hit["section"].split(" > ")[-1]  # the innermost heading says the most
            lines.append(f"  - got {hit['rank']}: {hit['doc_id']} · {_short(section, 40) or '—'} · "
                         f"「{_short(hit['text'])}」")
    return "\n".join(lines) + "\n"


def render_report(runs: list[ConfigRun], items: list[Item], meta: dict) -> str:
    types = Counter(item.type for item in items)
    parts = [f"# Evaluation of {meta['questions']}", "",
             f"Command: `{meta['command']}`", "",
             f"{len(items)} questions ({', '.join(f'{t} {n}' for t, n in types.items())}); "
             f"mode: {meta['mode']}; retrieval depth k={meta['k']}. Retrieval metrics are over the "
             f"{sum(item.answerable for item in items)} answerable questions. "
             "What each number means: eval/README.md.", "",
             "## Overall", "", tables({run.name: run.metrics["overall"] for run in runs}),
             "## By question type", ""]
    for t, n in types.items():
        parts += [f"### {t} (n={n})", "",
                  tables({run.name: run.metrics["by_type"][t] for run in runs})
                  or "No metric applies to these questions in this mode.\n"]
    parts += ["## Worst retrieval misses", ""]
    parts += [worst_misses(run, items) for run in runs]
    return "\n".join(parts)


# -- charts ------------------------------------------------------------------------------

def _ascii(label: str) -> str:
    # Chart labels stay ASCII (config, type and metric names; anything else escaped) so
    # they render without a CJK font, which a server often lacks (fc-list :lang=zh).
    return label.encode("ascii", "backslashreplace").decode()


def grouped_bars(path: Path, categories: list[str], series: dict[str, list[float]], title: str) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(categories) * max(1, len(series)) / 2), 4.2))
    width = 0.8 / len(series)
    for i, (label, values) in enumerate(series.items()):
        xs = [x + (i - (len(series) - 1) / 2) * width for x in range(len(categories))]
        bars = ax.bar(xs, values, width, label=_ascii(label))
        ax.bar_label(bars, labels=[f"{v:.2f}" if v == v else "n/a" for v in values], fontsize=7)  # NaN: n/a
    ax.set_xticks(range(len(categories)), [_ascii(c) for c in categories])
    ax.set_ylim(0, 1.08)
    ax.set_title(_ascii(title))
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_charts(out: Path, runs: list[ConfigRun]) -> list[Path]:
    names = [run.name for run in runs]
    overall = [run.metrics["overall"] for run in runs]
    present = set().union(*overall)
    paths = []
    shown = [m for m in ("hit@1", "hit@5", "mrr") if m in present]
    if shown:
        paths.append(grouped_bars(out / "retrieval.png", names,
                                  {m: [s.get(m, NAN) for s in overall] for m in shown},
                                  "Retrieval, all answerable questions"))
        deepest = max((m for m in present if m.startswith("hit@") and int(m[4:]) <= 5), key=metric_order)
        types = [t for t in runs[0].metrics["by_type"] if "mrr" in runs[0].metrics["by_type"][t]]
        paths.append(grouped_bars(out / "retrieval_by_type.png", types,
                                  {run.name: [run.metrics["by_type"][t].get(deepest, NAN) for t in types]
                                   for run in runs},
                                  f"{deepest} by question type"))
    shown = [m for m in ANSWER_METRICS if m in present and m != "unsupported_numbers"]  # shares only
    if shown:
        paths.append(grouped_bars(out / "answers.png", names,
                                  {m: [s.get(m, NAN) for s in overall] for m in shown}, "Answers"))
    return paths
