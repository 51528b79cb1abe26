"""Report sections of the ``lang``, ``quality``, ``model_quality``, ``toxicity`` and ``pii`` stages.

Each reads ``stats["stage_stats"][stage]`` (written by the stage's stats PCollection) and
returns ``None`` when the stage did not run. Thresholds are drawn on the histograms.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from winnow.pipeline.report import ReportSection, esc, html_table, svg_bars, svg_histogram

__all__ = ["lang_section", "quality_section", "model_quality_section", "toxicity_section", "pii_section"]


def _stage(stats: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    s = (stats.get("stage_stats") or {}).get(name)
    return s if isinstance(s, Mapping) and s else None


def _hist(h: Any, **kw: Any) -> str:
    return svg_histogram(h, **kw) if isinstance(h, Mapping) and h.get("n") else ""


def lang_section(stats: Mapping[str, Any], examples: Sequence[Mapping[str, Any]], config: Mapping[str, Any]
                 ) -> ReportSection | None:
    s = _stage(stats, "lang")
    if s is None:
        return None
    langs = s.get("languages") or {}
    top = list(langs.items())[:25]
    rest = sum(v for _, v in list(langs.items())[25:])
    if rest:
        top.append(("(other)", rest))
    th = (s.get("thresholds") or {}).get("min_score") or None
    body = [f"<p>Records judged by language (backend {esc(s.get('backend', '?'))}; keep list: "
            f"{esc(', '.join(s.get('keep') or []) or 'all languages')}).</p>",
            svg_bars(top, title="records per detected language"),
            _hist(s.get("score_hist"), title="language score", x_label="lang_score", threshold=th)]
    return ReportSection("Language", "".join(body), "sec-lang")


def quality_section(stats: Mapping[str, Any], examples: Sequence[Mapping[str, Any]], config: Mapping[str, Any]
                    ) -> ReportSection | None:
    s = _stage(stats, "quality")
    if s is None:
        return None
    th = s.get("thresholds") or {}
    rules = s.get("rules") or {}
    on = ", ".join(k for k, v in rules.items() if v) or "none"
    body = [f"<p>Rule families on: {esc(on)}. Each drop reason (quality_gopher_*, quality_c4_*, "
            "quality_fineweb_*) is in the funnel and has examples below.</p>",
            _hist(s.get("words_hist"), title="words (log10(n+1)); line at Gopher's minimum",
                  x_label="log10 words", threshold=th.get("log10_words")),
            _hist(s.get("mean_word_length_hist"), title="mean word length; line at Gopher's minimum",
                  x_label="characters", threshold=th.get("min_mean_word_length")),
            _hist(s.get("alpha_ratio_hist"), title="share of words with a letter; line at Gopher's minimum",
                  x_label="fraction", threshold=th.get("min_alpha_words_ratio")),
            _hist(s.get("line_punct_ratio_hist"), title="share of lines ending in punctuation; line at FineWeb's minimum",
                  x_label="fraction", threshold=th.get("fineweb_min_line_punct_ratio"))]
    return ReportSection("Heuristic quality", "".join(body), "sec-quality")


def model_quality_section(stats: Mapping[str, Any], examples: Sequence[Mapping[str, Any]],
                          config: Mapping[str, Any]) -> ReportSection | None:
    s = _stage(stats, "model_quality")
    if s is None:
        return None
    th = s.get("thresholds") or {}
    cfg = s.get("config") or {}
    tr = s.get("training") or {}
    ppl = th.get("max_perplexity")
    rows = [("classifier", cfg.get("classifier")), ("perplexity model", cfg.get("perplexity")),
            ("reference", cfg.get("reference")), ("reference documents", tr.get("reference_docs")),
            ("background sample", tr.get("background_docs")), ("classifier bytes", tr.get("classifier_bytes")),
            ("n-gram model bytes", tr.get("lm_bytes")), ("keep fraction (score)", cfg.get("keep_fraction")),
            ("min score", None if th.get("min_score") is None else round(th["min_score"], 4)),
            ("keep fraction (perplexity)", cfg.get("perplexity_keep_fraction")),
            ("max perplexity", None if ppl is None else round(ppl, 1))]
    warn = f'<p class="warn">{esc(tr["untrained"])}</p>' if tr.get("untrained") else ""
    body = [warn, html_table(["setting", "value"], rows),
            _hist(s.get("score_hist"), title="classifier score (P(reference-like))", x_label="model_quality_score",
                  threshold=th.get("min_score")),
            _hist(s.get("log10_perplexity_hist"), title="perplexity (log10)", x_label="log10 perplexity",
                  threshold=math.log10(ppl) if ppl else None)]
    return ReportSection("Model quality", "".join(body), "sec-model-quality")


def toxicity_section(stats: Mapping[str, Any], examples: Sequence[Mapping[str, Any]], config: Mapping[str, Any]
                     ) -> ReportSection | None:
    s = _stage(stats, "toxicity")
    if s is None:
        return None
    th = (s.get("thresholds") or {}).get("max_score")
    body = [f"<p>Backend {esc(s.get('backend', '?'))}; records above the line are dropped (toxicity_toxic).</p>",
            _hist(s.get("score_hist"), title="toxicity score", x_label="toxicity_score", threshold=th)]
    return ReportSection("Toxicity", "".join(body), "sec-toxicity")


def pii_section(stats: Mapping[str, Any], examples: Sequence[Mapping[str, Any]], config: Mapping[str, Any]
                ) -> ReportSection | None:
    s = _stage(stats, "pii")
    if s is None:
        return None
    found = (s.get("pii") or {}).get("found") or {}
    recs = (s.get("pii") or {}).get("records") or {}
    actions = s.get("actions") or {}
    rows = [(t, found.get(t, 0), recs.get(t, 0), a) for t, a in actions.items()]
    body = [svg_bars([(t, found.get(t, 0)) for t in actions], title="PII found, by type"),
            html_table(["type", "found", "records", "action"], rows, numeric=(1, 2))]
    return ReportSection("PII", "".join(body), "sec-pii")
