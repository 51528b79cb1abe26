"""``grammar``: Harper lints English text; counted lints per 100 words decide (see
:mod:`winnow.filters.grammar`). Stats: the rate's histogram and the counted lints per kind
(lints found, and records with at least one), for the report."""

from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

import apache_beam as beam

from winnow.filters.grammar import GrammarConfig, GrammarFilter
from winnow.pipeline.report import ReportSection, esc, html_table, svg_bars, svg_histogram
from winnow.pipeline.stages.spec import BuildContext, StageDecl
from winnow.pipeline.stages.stats import linear_edges
from winnow.pipeline.stages.text_filters import FilterStage, SumCountsFn

__all__ = ["DECLARATION", "grammar_stage", "grammar_section"]


def _kind_counts(judged: beam.PCollection) -> list[beam.PCollection]:
    def kinds(batch: Any) -> list[dict]:
        return [json.loads(r["grammar_kinds"]) for r in batch.rows if r.get("grammar_kinds")]

    sums = judged | "GrammarKinds" >> beam.FlatMap(kinds) | "GrammarSum" >> beam.CombineGlobally(SumCountsFn())
    return [sums | "GrammarWrap" >> beam.Map(lambda d: {"kinds": d})]


def grammar_stage(cfg: GrammarConfig, ctx: BuildContext) -> beam.PTransform:
    return FilterStage(
        "grammar", lambda: GrammarFilter(cfg), batch_size=16,
        hists=(("rate_hist", "grammar_errors_per_100_words", linear_edges(0, 10, 40), lambda v: min(v, 9.999)),),
        extra=_kind_counts,
        constants={"thresholds": {"max_errors_per_100_words": cfg.max_errors_per_100_words},
                   "counted_kinds": list(cfg.kinds), "rules_off": list(cfg.rules_off)},
    )


def grammar_section(stats: Mapping[str, Any], examples: Sequence[Mapping[str, Any]], config: Mapping[str, Any]
                    ) -> ReportSection | None:
    s = (stats.get("stage_stats") or {}).get("grammar")
    if not s:
        return None
    kinds = s.get("kinds") or {}
    found, recs = kinds.get("found") or {}, kinds.get("records") or {}
    th = (s.get("thresholds") or {}).get("max_errors_per_100_words") or None
    body = [f"<p>Harper lints of the counted kinds ({esc(', '.join(s.get('counted_kinds') or []))}) per 100 words; "
            "records above the line are dropped (grammar_too_many_errors).</p>"]
    h = s.get("rate_hist")
    if isinstance(h, Mapping) and h.get("n"):
        body.append(svg_histogram(h, title="counted lints per 100 words", x_label="grammar_errors_per_100_words",
                                  threshold=th))
    if found:
        body.append(svg_bars(sorted(found.items(), key=lambda kv: -kv[1]), title="counted lints, by kind"))
        body.append(html_table(["kind", "lints", "records"], [(k, v, recs.get(k, 0)) for k, v in found.items()],
                               numeric=(1, 2)))
    return ReportSection("Grammar", "".join(body), "sec-grammar")


DECLARATION = StageDecl("grammar", GrammarConfig, grammar_stage, lambda c: GrammarFilter.FIELDS,
                        GrammarFilter.reasons, report=grammar_section)
